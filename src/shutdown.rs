//! Graceful shutdown, after the accept loop has stopped: PostgreSQL's smart shutdown turning
//! fast, then the last backup.
//!
//! 1. Sessions: one inside a transaction, or with a request running, runs on to its boundary
//!    within `shutdown_timeout`; one at a boundary (idle, held, or still logging in) is ended
//!    with `57P01` at once, and no session at a boundary starts a new request (see
//!    [`crate::gate::Gate::end_at_boundaries`]). At `shutdown_timeout` the rest are ended with
//!    `57P01`.
//! 2. Only then the final backup window (`on_shutdown`, when anything was written since the last
//!    success), so that it holds every commit a client was told succeeded.
//! 3. With `verify_after`, its entry (and any verification still under way) is verified before
//!    the process exits, within `action_timeout`.
//!
//! After a hand-over to a successor (an upgrade) the sessions run on until they end by
//! themselves or `shutdown_timeout` (a shutdown signal then ends those at a boundary), and no
//! final window runs: the successor runs windows from then on.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::registry::EndReason;
use crate::shared::Shared;

/// How long sessions told to end at `shutdown_timeout` get to go away before the process goes on
/// without them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lets the sessions of `sessions` finish as the module doc says; `stop_sessions` ends the rest
/// at `shutdown_timeout`. `shutdown` is the shutdown signal (already given, unless a successor
/// took the listeners over).
pub async fn drain_sessions(
    shared: &Shared,
    sessions: &TaskTracker,
    stop_sessions: &CancellationToken,
    shutdown: &CancellationToken,
) {
    sessions.close();
    let timeout = shared.config().shutdown_timeout;
    let deadline = Instant::now() + timeout;
    if shutdown.is_cancelled() {
        info!(
            sessions = sessions.len(),
            ?timeout,
            "shutting down: sessions inside a transaction may finish; the others end now"
        );
    } else {
        info!(
            sessions = sessions.len(),
            ?timeout,
            "waiting for the sessions to end"
        );
    }
    let drained = async {
        tokio::select! {
            _ = sessions.wait() => {}
            _ = async {
                shutdown.cancelled().await;
                shared.gate.end_at_boundaries(&shared.registry, sessions.wait()).await;
            } => {}
        }
    };
    if tokio::time::timeout_at(deadline, drained).await.is_ok() {
        return;
    }
    info!(
        sessions = sessions.len(),
        "shutdown timeout reached: ending the sessions left"
    );
    stop_sessions.cancel();
    // A relaying session watches its own signal, not the token.
    for session in shared.registry.snapshot() {
        session.end(EndReason::Shutdown);
    }
    if tokio::time::timeout(STOP_GRACE, sessions.wait())
        .await
        .is_err()
    {
        warn!(
            sessions = sessions.len(),
            "sessions did not end within {STOP_GRACE:?} of being told: going on without them"
        );
    }
}

/// The final backup window and the verifications still under way, unless a successor took the
/// listeners over. Call once every session has ended.
pub async fn final_backup(shared: &std::sync::Arc<Shared>) {
    if shared.handover.is_handed_over() {
        info!("a successor accepts on the listeners: no final backup window here");
        return;
    }
    crate::window::trigger::final_window(shared).await;
    let uploads = shared.uploads.pending();
    if uploads > 0 {
        // Uploads that fail (a store down, a wrong key) would only retry: not waited for.
        let within = match shared.uploads.failing() {
            Some(_) => Duration::ZERO,
            None => shared.config().backup.action_timeout,
        };
        info!(
            uploads,
            ?within,
            "shutdown: waiting for the off-site uploads under way"
        );
        if !shared.uploads.finish(within).await {
            warn!(
                ?within,
                "shutdown: off-site uploads did not finish within action_timeout; the next start resumes them"
            );
        }
    }
    let pending = shared.verifications.pending();
    if pending == 0 {
        return;
    }
    let within = shared.config().backup.action_timeout;
    info!(
        verifications = pending,
        ?within,
        "shutdown: waiting for the copies being verified"
    );
    if !shared.verifications.wait(within).await {
        warn!(
            ?within,
            "shutdown: verification did not finish within action_timeout; the next start verifies the copies left unverified"
        );
    }
}
