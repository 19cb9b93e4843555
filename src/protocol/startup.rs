//! The untagged packets a client may send before the session starts: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage (`len: u32 (includes itself), code: u32, payload`).

/// Request code of an SSLRequest.
pub const SSL_REQUEST: u32 = 80_877_103;
/// Request code of a GSSENCRequest.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// Request code of a CancelRequest.
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Major protocol version 3, any minor version.
pub const PROTOCOL_3: u32 = 3 << 16;

/// The smallest startup packet: length and code.
pub const MIN_LEN: u32 = 8;

/// What a startup packet asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupPacket<'a> {
    Ssl,
    GssEnc,
    Cancel {
        process_id: u32,
        secret_key: &'a [u8],
    },
    /// A StartupMessage; `params` holds the NUL-separated name/value pairs.
    Startup {
        version: u32,
        params: &'a [u8],
    },
    Unknown {
        code: u32,
    },
}

/// A startup packet whose length is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("startup packet declares length {0}, below the minimum of 8")]
    TooShort(u32),
    #[error("startup packet declares length {len}, above the maximum of {max}")]
    TooLong { len: u32, max: u32 },
}

/// Returns the length of the complete startup packet at the start of `buf`, `None` if it is not
/// complete yet.
pub fn check(buf: &[u8], max_len: u32) -> Result<Option<usize>, StartupError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    if len < MIN_LEN {
        return Err(StartupError::TooShort(len));
    }
    if len > max_len {
        return Err(StartupError::TooLong { len, max: max_len });
    }
    Ok((buf.len() >= len as usize).then_some(len as usize))
}

/// Interprets a complete packet as returned by [`check`].
pub fn parse(packet: &[u8]) -> StartupPacket<'_> {
    let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let rest = &packet[8..];
    match code {
        SSL_REQUEST => StartupPacket::Ssl,
        GSSENC_REQUEST => StartupPacket::GssEnc,
        CANCEL_REQUEST if rest.len() >= 8 => StartupPacket::Cancel {
            process_id: u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            secret_key: &rest[4..],
        },
        v if v >> 16 == 3 => StartupPacket::Startup {
            version: v,
            params: rest,
        },
        code => StartupPacket::Unknown { code },
    }
}

/// Iterates the name/value pairs of a StartupMessage. Stops at the terminating empty name or at
/// malformed input.
pub fn params(params: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut parts = params.split(|b| *b == 0);
    std::iter::from_fn(move || {
        let name = parts.next().filter(|n| !n.is_empty())?;
        let value = parts.next()?;
        Some((name, value))
    })
}

/// Looks up one startup parameter as text.
pub fn param<'a>(params_bytes: &'a [u8], wanted: &str) -> Option<&'a str> {
    params(params_bytes)
        .find(|(name, _)| *name == wanted.as_bytes())
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_request() {
        let buf = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(check(&buf, 10_000), Ok(Some(8)));
        assert_eq!(parse(&buf), StartupPacket::Ssl);
    }

    #[test]
    fn gssenc_request() {
        let buf = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(parse(&buf), StartupPacket::GssEnc);
    }

    #[test]
    fn cancel_request() {
        let buf = [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 42, 1, 2, 3, 4];
        assert_eq!(
            parse(&buf),
            StartupPacket::Cancel {
                process_id: 42,
                secret_key: &[1, 2, 3, 4]
            }
        );
    }

    #[test]
    fn startup_message_params() {
        let mut buf = vec![0, 0, 0, 0, 0, 3, 0, 0];
        buf.extend_from_slice(b"user\0alice\0database\0db1\0\0");
        let len = buf.len() as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(check(&buf, 10_000), Ok(Some(buf.len())));
        let StartupPacket::Startup { version, params } = parse(&buf) else {
            panic!("not a startup message");
        };
        assert_eq!(version, PROTOCOL_3);
        assert_eq!(param(params, "user"), Some("alice"));
        assert_eq!(param(params, "database"), Some("db1"));
        assert_eq!(param(params, "options"), None);
    }

    #[test]
    fn incomplete_and_bad_lengths() {
        assert_eq!(check(&[0, 0, 0], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0, 9, 0, 3, 0, 0], 100), Ok(None));
        assert_eq!(check(&[0, 0, 0, 7], 100), Err(StartupError::TooShort(7)));
        assert_eq!(
            check(&[0, 0, 1, 0], 100),
            Err(StartupError::TooLong { len: 256, max: 100 })
        );
    }

    #[test]
    fn unknown_code() {
        let buf = [0, 0, 0, 8, 0, 2, 0, 0];
        assert_eq!(parse(&buf), StartupPacket::Unknown { code: 2 << 16 });
    }
}
