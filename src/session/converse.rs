//! The proxy speaking on a session's upstream connection itself, with no client reading: it sends
//! requests and consumes every answer up to their last ReadyForQuery. Used to replay a session's
//! state on a new connection ([`super::reattach`]) and to read its settings before a copy window
//! detaches it ([`super::readback`]). Nothing here reaches the client or the transaction tracker,
//! so none of it is counted as the client's.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::protocol::backend;
use crate::protocol::frame::{Scanner, Seen};
use crate::protocol::tags;
use crate::tls::MaybeTls;

/// Why an exchange failed, for the log and the client.
#[derive(Debug, thiserror::Error)]
pub enum ConverseError {
    #[error("lost the connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed")]
    Closed,
    #[error("invalid message from the server: {0}")]
    Frame(#[from] crate::protocol::FrameError),
    /// The server's first ErrorResponse: its message and SQLSTATE.
    #[error("{0}")]
    Refused(String),
}

/// Sends `messages` and reads the answers up to the `requests`-th ReadyForQuery, showing every
/// other whole message (tag and body) to `seen`. The first ErrorResponse fails the exchange, once
/// all of it has been read (the connection is then still usable). No deadline of its own: the
/// caller bounds it.
pub async fn converse(
    server: &mut MaybeTls,
    messages: &[u8],
    requests: usize,
    max_len: u32,
    mut seen: impl FnMut(u8, &[u8]),
) -> Result<(), ConverseError> {
    if requests == 0 {
        return Ok(());
    }
    server.write_all(messages).await?;
    let mut scanner = Scanner::new(max_len);
    let mut buf = BytesMut::with_capacity(1024);
    let mut ready = 0;
    let mut error = None;
    while ready < requests {
        if server.read_buf(&mut buf).await? == 0 {
            return Err(ConverseError::Closed);
        }
        let done = scanner.scan(&buf, |m| {
            let Seen::Whole(m) = m else { return };
            match m.tag {
                tags::READY_FOR_QUERY => ready += 1,
                tags::ERROR_RESPONSE => {
                    if error.is_none() {
                        error = Some(error_text(m.body));
                    }
                }
                tag => seen(tag, m.body),
            }
        })?;
        buf.advance(done);
    }
    match error {
        Some(message) => Err(ConverseError::Refused(message)),
        None => Ok(()),
    }
}

/// An ErrorResponse's message and SQLSTATE.
fn error_text(body: &[u8]) -> String {
    let fields = backend::error_fields(body);
    format!(
        "{} ({})",
        fields.message.unwrap_or("error"),
        fields.code.unwrap_or("?")
    )
}
