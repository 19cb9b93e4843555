//! ErrorResponse and NoticeResponse messages the proxy itself originates.

use bytes::{BufMut, BytesMut};

/// SQLSTATE codes the proxy uses for its own errors.
pub mod sqlstate {
    /// The peer broke the protocol.
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    /// The upstream connection could not be made or was lost.
    pub const CONNECTION_FAILURE: &str = "08006";
    /// The upstream cannot accept connections now.
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// The proxy ended the session (shutdown or window policy).
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// The proxy's connection limit is reached.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// The client's credentials or transport are not acceptable.
    pub const INVALID_AUTHORIZATION: &str = "28000";
    /// A wrong password (or an unknown user: PostgreSQL does not tell them apart).
    pub const INVALID_PASSWORD: &str = "28P01";
    /// Unsupported feature.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
}

/// Severity of a proxy-originated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Notice,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "FATAL",
            Severity::Error => "ERROR",
            Severity::Notice => "NOTICE",
        }
    }
}

/// Appends an ErrorResponse (or NoticeResponse for [`Severity::Notice`]) to `out`.
pub fn write(out: &mut BytesMut, severity: Severity, code: &str, message: &str) {
    write_detailed(out, severity, code, message, None)
}

/// [`write`], with a detail field (`D`) when given.
pub fn write_detailed(
    out: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    let tag = match severity {
        Severity::Notice => super::tags::NOTICE_RESPONSE,
        _ => super::tags::ERROR_RESPONSE,
    };
    let start = out.len();
    out.put_u8(tag);
    out.put_u32(0);
    for (field, value) in [
        (b'S', severity.as_str()),
        (b'V', severity.as_str()),
        (b'C', code),
        (b'M', message),
    ] {
        out.put_u8(field);
        out.put_slice(value.as_bytes());
        out.put_u8(0);
    }
    if let Some(detail) = detail {
        out.put_u8(b'D');
        out.put_slice(detail.as_bytes());
        out.put_u8(0);
    }
    out.put_u8(0);
    let len = (out.len() - start - 1) as u32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// Builds an ErrorResponse or NoticeResponse as a fresh buffer.
pub fn build(severity: Severity, code: &str, message: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(32 + message.len());
    write(&mut out, severity, code, message);
    out
}

/// Builds a FATAL error as a fresh buffer, with a detail field when given.
pub fn fatal(code: &str, message: &str, detail: Option<&str>) -> BytesMut {
    let mut out = BytesMut::with_capacity(48 + message.len());
    write_detailed(&mut out, Severity::Fatal, code, message, detail);
    out
}

/// A FATAL error in the format of protocol 2 (`E`, then the text, a newline and a NUL), which
/// PostgreSQL sends to a client that asked for a protocol older than 3.
pub fn fatal_v2(message: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(16 + message.len());
    out.put_u8(super::tags::ERROR_RESPONSE);
    out.put_slice(b"FATAL:  ");
    out.put_slice(message.as_bytes());
    out.put_slice(b"\n\0");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_layout() {
        let msg = build(Severity::Fatal, "08006", "gone");
        let expected: &[u8] = b"E\0\0\0\x20SFATAL\0VFATAL\0C08006\0Mgone\0\0";
        assert_eq!(&msg[..], expected);
        let fields = crate::protocol::backend::error_fields(&msg[5..]);
        assert_eq!(fields.code, Some("08006"));
        assert_eq!(fields.message, Some("gone"));
    }

    #[test]
    fn detail_and_protocol_2_layouts() {
        let msg = fatal("08P01", "m", Some("d"));
        assert_eq!(
            &msg[..],
            &b"E\0\0\0\x20SFATAL\0VFATAL\0C08P01\0Mm\0Dd\0\0"[..]
        );
        assert_eq!(&fatal_v2("no")[..], b"EFATAL:  no\n\0");
    }

    #[test]
    fn notice_uses_its_own_tag() {
        let msg = build(Severity::Notice, "01000", "held");
        assert_eq!(msg[0], b'N');
    }
}
