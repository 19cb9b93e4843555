//! The proxy's last word to a client whose session it ends: a FATAL ErrorResponse, sent within
//! [`FAREWELL_TIMEOUT`]. A leaf, so that every part that refuses a client can use it.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::protocol::notice;

/// How long the proxy spends telling a client why its session ends.
pub const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends a FATAL ErrorResponse and gives up on the client.
pub async fn farewell<W: AsyncWrite + Unpin>(client: &mut W, code: &str, message: &str) {
    farewell_detailed(client, code, message, None).await
}

/// [`farewell`] with a DETAIL field when given.
pub async fn farewell_detailed<W: AsyncWrite + Unpin>(
    client: &mut W,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    let msg = notice::fatal(code, message, detail);
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.write_all(&msg)).await;
}
