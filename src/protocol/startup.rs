//! The untagged packets a client may send before the session starts: SSLRequest, GSSENCRequest,
//! CancelRequest and StartupMessage (`len: u32 (includes itself), code: u32, payload`), and the
//! rules PostgreSQL applies to their order ([`Negotiation`]).
//!
//! The proxy answers the startup phase exactly as PostgreSQL does, so that a client cannot tell
//! them apart: where PostgreSQL closes without a word (a bad length, an incomplete packet, a
//! cancel request) the proxy does too; where it sends an error (an unsupported protocol version,
//! an encryption request it has already answered) the proxy sends the same SQLSTATE and severity.

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

/// PostgreSQL's largest startup packet, not counting the length word
/// (`MAX_STARTUP_PACKET_LENGTH`).
pub const POSTGRES_MAX_LEN: u32 = 10_000;

/// What a startup packet asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupPacket<'a> {
    Ssl,
    GssEnc,
    Cancel {
        process_id: u32,
        secret_key: &'a [u8],
    },
    /// A CancelRequest too short to carry a key.
    ShortCancel,
    /// A StartupMessage; `params` holds the NUL-separated name/value pairs.
    Startup {
        version: u32,
        params: &'a [u8],
    },
    Unknown {
        code: u32,
    },
}

/// A startup packet whose length is out of range. PostgreSQL closes such a connection without a
/// word (logging "invalid length of startup packet").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}, below the minimum of 8")]
    TooShort(u32),
    #[error(
        "invalid length of startup packet: {len}, above the maximum of {max} plus the length word"
    )]
    TooLong { len: u32, max: u32 },
}

/// Returns the length of the complete startup packet at the start of `buf`, `None` if it is not
/// complete yet. `max_len` bounds the packet without its 4-byte length word, as PostgreSQL's
/// limit does.
pub fn check(buf: &[u8], max_len: u32) -> Result<Option<usize>, StartupError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    if len < MIN_LEN {
        return Err(StartupError::TooShort(len));
    }
    if len - 4 > max_len {
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
        CANCEL_REQUEST => StartupPacket::ShortCancel,
        v if v >> 16 == 3 => StartupPacket::Startup {
            version: v,
            params: rest,
        },
        code => StartupPacket::Unknown { code },
    }
}

/// The encryption negotiation so far, tracked as PostgreSQL tracks it: an SSLRequest is answered
/// once, and after it a GSSENCRequest only if TLS was refused; a GSSENCRequest is answered once,
/// and after a refusal an SSLRequest may follow again. A request that may not come any more is
/// read as a StartupMessage of an unknown protocol version.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Negotiation {
    ssl_done: bool,
    gss_done: bool,
}

/// What to do with a complete startup packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Answer an SSLRequest: `S` and a TLS handshake when `accept`, else `N`.
    Ssl { accept: bool },
    /// Answer a GSSENCRequest `N`: the proxy does not offer GSSAPI encryption.
    RefuseGss,
    /// Route a cancel request, then close without a word.
    Cancel {
        process_id: u32,
        secret_key: &'a [u8],
    },
    /// Close without a word (a cancel request that names no session).
    Close,
    /// Start the session with this StartupMessage.
    Startup,
    /// Refuse with FATAL `0A000` "unsupported frontend protocol".
    Unsupported { version: u32 },
}

impl Negotiation {
    /// Decides what a packet calls for, and records an encryption request's answer.
    /// `tls_offered` says whether the proxy can accept TLS now.
    pub fn step<'a>(&mut self, packet: StartupPacket<'a>, tls_offered: bool) -> Step<'a> {
        match packet {
            StartupPacket::Ssl if !self.ssl_done => {
                self.ssl_done = true;
                self.gss_done = tls_offered;
                Step::Ssl {
                    accept: tls_offered,
                }
            }
            StartupPacket::GssEnc if !self.gss_done => {
                self.gss_done = true;
                self.ssl_done = false;
                Step::RefuseGss
            }
            StartupPacket::Ssl => Step::Unsupported {
                version: SSL_REQUEST,
            },
            StartupPacket::GssEnc => Step::Unsupported {
                version: GSSENC_REQUEST,
            },
            StartupPacket::Cancel {
                process_id,
                secret_key,
            } => Step::Cancel {
                process_id,
                secret_key,
            },
            StartupPacket::ShortCancel => Step::Close,
            StartupPacket::Startup { .. } => Step::Startup,
            StartupPacket::Unknown { code } => Step::Unsupported { version: code },
        }
    }
}

/// PostgreSQL's text for a refused protocol version, e.g. `unsupported frontend protocol 2.0`.
pub fn unsupported_message(version: u32) -> String {
    format!(
        "unsupported frontend protocol {}.{}: the proxy relays protocol 3",
        version >> 16,
        version & 0xffff
    )
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
        // Terminate sent before the StartupMessage reads as a length of 1,476,395,008.
        assert!(matches!(
            check(b"X\0\0\0\x04", POSTGRES_MAX_LEN),
            Err(StartupError::TooLong { .. })
        ));
    }

    #[test]
    fn the_limit_excludes_the_length_word_as_postgresql_does() {
        assert_eq!(check(&10_004u32.to_be_bytes(), 10_000), Ok(None));
        assert!(check(&10_005u32.to_be_bytes(), 10_000).is_err());
    }

    #[test]
    fn short_cancel_request_closes_silently() {
        let buf = [0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1];
        assert_eq!(parse(&buf), StartupPacket::ShortCancel);
        assert_eq!(Negotiation::default().step(parse(&buf), false), Step::Close);
    }

    const SSL: StartupPacket<'static> = StartupPacket::Ssl;
    const GSS: StartupPacket<'static> = StartupPacket::GssEnc;

    #[test]
    fn ssl_request_is_answered_once() {
        let mut n = Negotiation::default();
        assert_eq!(n.step(SSL, false), Step::Ssl { accept: false });
        assert_eq!(
            n.step(SSL, false),
            Step::Unsupported {
                version: SSL_REQUEST
            }
        );
    }

    #[test]
    fn gss_may_follow_a_refused_ssl_but_not_an_accepted_one() {
        let mut refused = Negotiation::default();
        assert_eq!(refused.step(SSL, false), Step::Ssl { accept: false });
        assert_eq!(refused.step(GSS, false), Step::RefuseGss);
        let mut accepted = Negotiation::default();
        assert_eq!(accepted.step(SSL, true), Step::Ssl { accept: true });
        assert_eq!(
            accepted.step(GSS, false),
            Step::Unsupported {
                version: GSSENC_REQUEST
            }
        );
    }

    #[test]
    fn gss_request_is_answered_once_and_ssl_may_follow() {
        let mut n = Negotiation::default();
        assert_eq!(n.step(GSS, true), Step::RefuseGss);
        assert_eq!(n.step(SSL, true), Step::Ssl { accept: true });
        let mut twice = Negotiation::default();
        twice.step(GSS, false);
        assert_eq!(
            twice.step(GSS, false),
            Step::Unsupported {
                version: GSSENC_REQUEST
            }
        );
    }

    #[test]
    fn versions_other_than_3_are_unsupported() {
        let mut n = Negotiation::default();
        let v2 = [0, 0, 0, 8, 0, 2, 0, 0];
        assert_eq!(
            n.step(parse(&v2), false),
            Step::Unsupported { version: 2 << 16 }
        );
        let v3_9 = [0, 0, 0, 9, 0, 3, 0, 9, 0];
        assert_eq!(n.step(parse(&v3_9), false), Step::Startup);
        assert_eq!(
            unsupported_message(SSL_REQUEST),
            "unsupported frontend protocol 1234.5679: the proxy relays protocol 3"
        );
    }

    #[test]
    fn unknown_code() {
        let buf = [0, 0, 0, 8, 0, 2, 0, 0];
        assert_eq!(parse(&buf), StartupPacket::Unknown { code: 2 << 16 });
    }
}
