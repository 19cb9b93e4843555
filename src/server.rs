//! The accept loop: one task per client connection, and graceful shutdown.
//!
//! `run` takes an already-bound listener so tests can start the real server on port 0. On shutdown
//! it stops accepting and hands over to [`crate::shutdown`]: sessions end at their boundary
//! (within `shutdown_timeout`), then the final backup window runs and its copy is verified. After
//! a hand-over to a successor process (an upgrade) the sessions run on and no final window runs:
//! the successor runs windows from then on.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span};

use crate::shared::Shared;

/// Accepts clients until `shutdown` is cancelled (or a successor takes the listeners over), then
/// shuts down as [`crate::shutdown`] says.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let sessions = TaskTracker::new();
    let stop_sessions = CancellationToken::new();
    // A signal and an operator's SHUTDOWN both end up here.
    tokio::spawn({
        let (ours, theirs) = (shutdown.clone(), shared.shutdown.clone());
        async move {
            tokio::select! {
                _ = ours.cancelled() => theirs.cancel(),
                _ = theirs.cancelled() => ours.cancel(),
            }
        }
    });
    let mut next_id: u64 = 0;
    let mut errors = crate::accept::AcceptErrors::new("proxy");
    tokio::spawn(crate::window::trigger::run(
        shared.clone(),
        shutdown.child_token(),
    ));
    tokio::spawn(crate::reload::watch_certificates(
        shared.clone(),
        shutdown.child_token(),
    ));
    crate::verify::background::verify_unverified(&shared, shutdown.child_token());
    crate::verify::background::scrub_regularly(&shared, shutdown.child_token());
    // Entries a previous run left not uploaded.
    crate::window::after::upload_offsite(&shared);
    tokio::spawn(crate::verify::offsite::verify_regularly(
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
                // Out of file descriptors and the like: pause (the client waits in the listen
                // queue) and retry, never spinning, never giving up.
                let pause = errors.failed(&e);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break false,
                    _ = shared.handover.handed_over() => break true,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        errors.accepted();
        next_id += 1;
        let span = info_span!("session", id = next_id, %peer);
        sessions.spawn(
            crate::session::serve(next_id, stream, peer, shared.clone(), stop_sessions.clone())
                .instrument(span),
        );
    };
    drop(listener);
    if handed_over {
        info!("a successor accepts on the listeners: this process lets its sessions finish");
    }
    crate::shutdown::drain_sessions(&shared, &sessions, &stop_sessions, &shutdown).await;
    crate::shutdown::final_backup(&shared).await;
    info!("proxy stopped");
    Ok(())
}
