//! The crash supervisor of a managed Doltgres: orchestration over `Shared` (the control, the
//! upstream, the metrics), kept out of `control` so that `control` does not depend on `Shared`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::shared::Shared;

/// Keeps a managed server running: when it exits without being asked to, marks it unavailable,
/// waits (doubling from `restart_initial` up to `restart_max`), starts it again and waits until it
/// accepts logins, counting each restart in `server_restarts_total{cause="crash"}`.
pub async fn supervise(shared: Arc<Shared>, stop: CancellationToken) {
    let control = &shared.control;
    let (Some(managed), Some(settings)) =
        (control.managed(), control.server_config().control.managed())
    else {
        return;
    };
    loop {
        let Some(mut exit) = managed.exit_watch() else {
            // Stopped on purpose (a copy window, shutdown); look again shortly.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = exit.wait_for(Option::is_some) => {}
        }
        if managed.exit_watch().is_none() || stop.is_cancelled() {
            continue; // `stop()` took it: an intended stop.
        }
        control.set_available(false);
        let mut backoff = settings.restart_initial;
        loop {
            warn!(?backoff, "doltgres died: restarting it");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            match control.start(&shared.upstream).await {
                Ok(()) => {
                    info!("doltgres restarted");
                    shared.metrics.server_restarted("crash");
                    control.set_available(true);
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "restarting doltgres failed");
                    let _ = managed.stop().await;
                    backoff = (backoff * 2).min(settings.restart_max);
                }
            }
        }
    }
}
