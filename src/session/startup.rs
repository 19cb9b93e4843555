//! The client's side of the startup phase: answer SSL/GSS encryption requests, and return the
//! first packet that starts a session or asks to cancel one.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::protocol::startup::{self, StartupError, StartupPacket};

/// What the client asked for.
#[derive(Debug)]
pub enum Opening {
    /// An SSLRequest, when the caller offered TLS: answer `S` and handshake.
    TlsRequested,
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
    #[error("client closed the connection during startup")]
    Closed,
    #[error("io error during startup: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Length(#[from] StartupError),
    #[error("unsupported frontend protocol {}.{}", .0 >> 16, .0 & 0xffff)]
    UnsupportedProtocol(u32),
    #[error("client sent more than one encryption request, or data after one")]
    RepeatedEncryptionRequest,
    #[error("timeout waiting for the startup packet")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

impl StartupFailure {
    /// A clean hang-up is not worth an error log line.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, StartupFailure::Closed)
    }
}

/// Reads startup packets until one opens a session, asks for a cancel, or (when `offer_tls`)
/// asks for TLS. Other encryption requests are answered `N`; the client then goes on in plain
/// text. Every read must finish before `deadline`.
pub async fn negotiate<S>(
    stream: &mut S,
    max_len: u32,
    offer_tls: bool,
    deadline: Instant,
) -> Result<Opening, StartupFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(256);
    let mut encryption_requests = 0;
    loop {
        let len = loop {
            if let Some(len) = startup::check(&buf, max_len)? {
                break len;
            }
            let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
            if read.map_err(|_| StartupFailure::Timeout)?? == 0 {
                return Err(StartupFailure::Closed);
            }
        };
        match startup::parse(&buf[..len]) {
            StartupPacket::Ssl | StartupPacket::GssEnc => {
                encryption_requests += 1;
                if encryption_requests > 2 || buf.len() > len {
                    // Bytes after an encryption request, before our answer, are not allowed:
                    // they could be injected in plain text ahead of the TLS handshake.
                    return Err(StartupFailure::RepeatedEncryptionRequest);
                }
                if offer_tls && startup::parse(&buf[..len]) == StartupPacket::Ssl {
                    return Ok(Opening::TlsRequested);
                }
                stream.write_all(b"N").await?;
                buf.advance(len);
            }
            StartupPacket::Cancel {
                process_id,
                secret_key,
            } => {
                return Ok(Opening::Cancel {
                    process_id,
                    secret_key: secret_key.to_vec(),
                });
            }
            StartupPacket::Startup { version, .. } if version >> 16 == 3 => {
                return Ok(Opening::Startup(buf.split_to(len)));
            }
            StartupPacket::Startup { version, .. } => {
                return Err(StartupFailure::UnsupportedProtocol(version));
            }
            StartupPacket::Unknown { code } => {
                return Err(StartupFailure::UnsupportedProtocol(code));
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

    #[tokio::test]
    async fn ssl_request_is_returned_when_tls_is_offered() {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        client
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .unwrap();
        let opening = negotiate(&mut proxy, 10_000, true, later()).await.unwrap();
        assert!(matches!(opening, Opening::TlsRequested));
    }

    #[tokio::test]
    async fn data_after_ssl_request_is_refused() {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        client
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, b'Q'])
            .await
            .unwrap();
        let err = negotiate(&mut proxy, 10_000, true, later())
            .await
            .unwrap_err();
        assert!(matches!(err, StartupFailure::RepeatedEncryptionRequest));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out() {
        let (_client, mut proxy) = tokio::io::duplex(1024);
        let err = negotiate(&mut proxy, 10_000, false, later())
            .await
            .unwrap_err();
        assert!(matches!(err, StartupFailure::Timeout));
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
        let task = tokio::spawn(async move { negotiate(&mut proxy, 10_000, false, later()).await });
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
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        client
            .write_all(&[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 1, 2, 3, 4])
            .await
            .unwrap();
        let opening = negotiate(&mut proxy, 10_000, false, later()).await.unwrap();
        assert!(matches!(opening, Opening::Cancel { process_id: 7, .. }));
    }

    #[tokio::test]
    async fn garbage_length_is_rejected() {
        let (mut client, mut proxy) = tokio::io::duplex(1024);
        client.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let err = negotiate(&mut proxy, 10_000, false, later())
            .await
            .unwrap_err();
        assert!(matches!(err, StartupFailure::Length(_)));
    }

    #[tokio::test]
    async fn hang_up_is_a_disconnect() {
        let (client, mut proxy) = tokio::io::duplex(1024);
        drop(client);
        let err = negotiate(&mut proxy, 10_000, false, later())
            .await
            .unwrap_err();
        assert!(err.is_disconnect());
    }
}
