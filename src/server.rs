//! The accept loop: one task per client connection, and graceful shutdown.
//!
//! `run` takes an already-bound listener so tests can start the real server on port 0. On shutdown
//! it stops accepting, runs the final backup window, lets sessions finish for `shutdown_timeout`,
//! then closes the rest with `57P01`. After a hand-over to a successor process (an upgrade) it
//! does the same without the final window: the successor runs windows from then on.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::shared::Shared;

/// Accepts clients until `shutdown` is cancelled, then drains sessions.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let sessions = TaskTracker::new();
    let stop_sessions = CancellationToken::new();
    let mut next_id: u64 = 0;
    tokio::spawn(crate::window::trigger::run(
        shared.clone(),
        shutdown.child_token(),
    ));
    tokio::spawn(crate::reload::watch_certificates(
        shared.clone(),
        shutdown.child_token(),
    ));
    info!(listen = %listener.local_addr()?, upstream = %shared.upstream.addr, "proxy accepting clients");
    let handed_over = loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break false,
            _ = shared.handover.handed_over() => break true,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        let span = info_span!("session", id = next_id, %peer);
        sessions.spawn(
            crate::session::serve(next_id, stream, peer, shared.clone(), stop_sessions.clone())
                .instrument(span),
        );
    };
    drop(listener);
    // A hand-over may complete just as a shutdown begins: the final window then gives way.
    if handed_over || shared.handover.is_handed_over() {
        info!("a successor accepts on the listeners: no final backup window here");
    } else {
        tokio::select! {
            _ = crate::window::trigger::final_window(&shared) => {}
            _ = shared.handover.handed_over() => {
                info!("a successor took over: the final backup window gives way");
            }
        }
    }
    sessions.close();
    let shutdown_timeout = shared.config().shutdown_timeout;
    info!(sessions = sessions.len(), timeout = ?shutdown_timeout, "shutting down: waiting for sessions");
    if tokio::time::timeout(shutdown_timeout, sessions.wait())
        .await
        .is_err()
    {
        info!(
            sessions = sessions.len(),
            "shutdown timeout reached: closing sessions"
        );
        stop_sessions.cancel();
        sessions.wait().await;
    }
    info!("proxy stopped");
    Ok(())
}
