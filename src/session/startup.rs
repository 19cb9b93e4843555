//! The client's side of the startup phase: answer SSL/GSS encryption requests, and return the
//! first packet that starts a session or asks to cancel one.
//!
//! Every answer and every silence follows PostgreSQL's (see [`crate::protocol::startup`]):
//! failures that PostgreSQL meets by closing the connection are [`StartupFailure`]s without a
//! [`StartupFailure::reply`]; the others reply with PostgreSQL's SQLSTATE and severity.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::protocol::notice::{self, sqlstate};
use crate::protocol::startup::{self, Negotiation, StartupError, Step};

/// What the client asked for.
#[derive(Debug)]
pub enum Opening {
    /// An SSLRequest, when the caller offered TLS: answer `S` and handshake. `unencrypted_data`:
    /// bytes followed the request before the answer; after the handshake the session must fail.
    TlsRequested { unencrypted_data: bool },
    /// A StartupMessage, kept as the exact bytes to forward upstream.
    Startup(BytesMut),
    /// A CancelRequest for the session with this key.
    Cancel {
        process_id: u32,
        secret_key: Vec<u8>,
    },
}

/// A startup phase that cannot continue.
#[derive(Debug, thiserror::Error)]
pub enum StartupFailure {
    /// The client hung up; `received` says whether part of a packet had arrived.
    #[error("client closed the connection during startup")]
    Closed { received: bool },
    #[error("io error during startup: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Length(#[from] StartupError),
    #[error("{}", startup::unsupported_message(*.0))]
    UnsupportedProtocol(u32),
    /// Bytes followed an encryption request before it was answered: they could have been
    /// injected in plain text ahead of the encryption.
    #[error("received unencrypted data after {0} request")]
    UnencryptedData(&'static str),
    #[error("cancel request too short to name a session")]
    ShortCancel,
    #[error("timeout waiting for the startup packet")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

impl StartupFailure {
    /// What PostgreSQL sends the client in this case before it closes, if anything.
    pub fn reply(&self) -> Option<BytesMut> {
        match self {
            // PostgreSQL answers in protocol 2's format when the client asked for an older
            // protocol, except for version 0.0, which it takes for "not known yet".
            StartupFailure::UnsupportedProtocol(version) if *version != 0 && version >> 16 < 3 => {
                Some(notice::fatal_v2(&self.to_string()))
            }
            StartupFailure::UnsupportedProtocol(_) => Some(notice::fatal(
                sqlstate::FEATURE_NOT_SUPPORTED,
                &self.to_string(),
                None,
            )),
            StartupFailure::UnencryptedData(_) => Some(notice::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                &self.to_string(),
                Some(
                    "This could be either a client-software bug or evidence of an attempted \
                     man-in-the-middle attack.",
                ),
            )),
            _ => None,
        }
    }

    /// Worth an info log line: PostgreSQL logs these too. Hang-ups before any byte, timeouts and
    /// short cancel requests it does not log.
    pub fn is_notable(&self) -> bool {
        !matches!(
            self,
            StartupFailure::Closed { received: false }
                | StartupFailure::Io(_)
                | StartupFailure::ShortCancel
                | StartupFailure::Timeout
        )
    }
}

/// Reads startup packets until one opens a session, asks for a cancel, or (when `offer_tls`)
/// asks for TLS. Other encryption requests are answered `N`; the client then goes on in plain
/// text. `negotiation` carries what was answered across a TLS handshake. Every read must finish
/// before `deadline`.
pub async fn negotiate<S>(
    stream: &mut S,
    max_len: u32,
    offer_tls: bool,
    negotiation: &mut Negotiation,
    deadline: Instant,
) -> Result<Opening, StartupFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(256);
    loop {
        let len = loop {
            if let Some(len) = startup::check(&buf, max_len)? {
                break len;
            }
            let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
            if read.map_err(|_| StartupFailure::Timeout)?? == 0 {
                return Err(StartupFailure::Closed {
                    received: !buf.is_empty(),
                });
            }
        };
        let trailing = buf.len() > len;
        match negotiation.step(startup::parse(&buf[..len]), offer_tls) {
            Step::Ssl { accept: true } => {
                return Ok(Opening::TlsRequested {
                    unencrypted_data: trailing,
                });
            }
            Step::Ssl { accept: false } | Step::RefuseGss => {
                let kind = if buf[7] == 0x2f {
                    "SSL"
                } else {
                    "GSSAPI encryption"
                };
                stream.write_all(b"N").await?;
                if trailing {
                    return Err(StartupFailure::UnencryptedData(kind));
                }
                buf.advance(len);
            }
            Step::Cancel {
                process_id,
                secret_key,
            } => {
                return Ok(Opening::Cancel {
                    process_id,
                    secret_key: secret_key.to_vec(),
                });
            }
            Step::Close => return Err(StartupFailure::ShortCancel),
            Step::Startup => return Ok(Opening::Startup(buf.split_to(len))),
            Step::Unsupported { version } => {
                return Err(StartupFailure::UnsupportedProtocol(version));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(10)
    }

    /// Negotiates on `proxy` without offering TLS, with a fresh negotiation.
    async fn negotiate_plain(
        proxy: &mut tokio::io::DuplexStream,
    ) -> Result<Opening, StartupFailure> {
        negotiate(proxy, 10_000, false, &mut Negotiation::default(), later()).await
    }

    /// Writes `bytes` as a client would and negotiates on the other end.
    async fn negotiate_after(
        bytes: &[u8],
        offer_tls: bool,
    ) -> (tokio::io::DuplexStream, Result<Opening, StartupFailure>) {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        client.write_all(bytes).await.unwrap();
        let mut negotiation = Negotiation::default();
        let opening = negotiate(&mut proxy, 10_000, offer_tls, &mut negotiation, later()).await;
        (client, opening)
    }

    #[tokio::test]
    async fn ssl_request_is_returned_when_tls_is_offered() {
        let (_client, opening) = negotiate_after(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], true).await;
        let opening = opening.unwrap();
        assert!(matches!(
            opening,
            Opening::TlsRequested {
                unencrypted_data: false
            }
        ));
    }

    #[tokio::test]
    async fn data_after_ssl_request_is_answered_then_refused() {
        // PostgreSQL answers the request, then fails with 08P01.
        let (_client, opening) =
            negotiate_after(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, b'Q'], true).await;
        let opening = opening.unwrap();
        assert!(matches!(
            opening,
            Opening::TlsRequested {
                unencrypted_data: true
            }
        ));
        let (mut client, err) =
            negotiate_after(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, b'Q'], false).await;
        let err = err.unwrap_err();
        let mut answer = [0u8; 1];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
        assert!(matches!(err, StartupFailure::UnencryptedData("SSL")));
        let reply = err.reply().unwrap();
        assert_eq!(
            crate::protocol::backend::error_fields(&reply[5..]).code,
            Some("08P01")
        );
    }

    #[tokio::test]
    async fn second_ssl_request_is_an_unsupported_protocol() {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        client.write_all(&ssl).await.unwrap();
        let task = tokio::spawn(async move { negotiate_plain(&mut proxy).await });
        let mut answer = [0u8; 1];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
        client.write_all(&ssl).await.unwrap();
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            StartupFailure::UnsupportedProtocol(80_877_103)
        ));
        let reply = err.reply().unwrap();
        let fields = crate::protocol::backend::error_fields(&reply[5..]);
        assert_eq!(
            (fields.severity, fields.code),
            (Some("FATAL"), Some("0A000"))
        );
    }

    #[tokio::test]
    async fn protocol_2_gets_a_protocol_2_error() {
        let (_client, err) = negotiate_after(&[0, 0, 0, 8, 0, 2, 0, 0], false).await;
        let err = err.unwrap_err();
        let reply = err.reply().unwrap();
        assert!(reply.starts_with(b"EFATAL:  unsupported frontend protocol 2.0"));
        assert!(reply.ends_with(b"\n\0"));
    }

    #[tokio::test]
    async fn terminate_before_startup_closes_silently() {
        // node-postgres writes Terminate before its StartupMessage when ended at once.
        let mut bytes = b"X\0\0\0\x04".to_vec();
        bytes.extend_from_slice(&startup_message());
        let (_client, err) = negotiate_after(&bytes, false).await;
        let err = err.unwrap_err();
        assert!(matches!(err, StartupFailure::Length(_)));
        assert!(err.reply().is_none());
        assert!(err.is_notable());
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out() {
        let (_client, err) = negotiate_after(&[], false).await;
        let err = err.unwrap_err();
        assert!(matches!(err, StartupFailure::Timeout));
        assert!(err.reply().is_none());
    }

    fn startup_message() -> Vec<u8> {
        let mut buf = vec![0, 0, 0, 0, 0, 3, 0, 0];
        buf.extend_from_slice(b"user\0u\0\0");
        let len = buf.len() as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf
    }

    #[tokio::test]
    async fn ssl_request_is_refused_then_startup_returned() {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move { negotiate_plain(&mut proxy).await });
        client
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .unwrap();
        let mut answer = [0u8; 1];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
        client.write_all(&startup_message()).await.unwrap();
        let Opening::Startup(bytes) = task.await.unwrap().unwrap() else {
            panic!("expected startup");
        };
        assert_eq!(&bytes[..], &startup_message()[..]);
    }

    #[tokio::test]
    async fn cancel_request_is_returned() {
        let (_client, opening) = negotiate_after(
            &[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 1, 2, 3, 4],
            false,
        )
        .await;
        let opening = opening.unwrap();
        assert!(matches!(opening, Opening::Cancel { process_id: 7, .. }));
    }

    #[tokio::test]
    async fn garbage_length_is_rejected() {
        let (_client, err) = negotiate_after(&[0xff, 0xff, 0xff, 0xff], false).await;
        let err = err.unwrap_err();
        assert!(matches!(err, StartupFailure::Length(_)));
        assert!(err.reply().is_none());
    }

    #[tokio::test]
    async fn hang_up_is_a_disconnect() {
        let (client, mut proxy) = tokio::io::duplex(1024);
        drop(client);
        let err = negotiate_plain(&mut proxy).await.unwrap_err();
        assert!(matches!(err, StartupFailure::Closed { received: false }));
        assert!(err.reply().is_none());
        assert!(!err.is_notable());
    }
}
