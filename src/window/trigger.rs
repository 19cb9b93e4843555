//! Triggers: open a window every N write commits, or at most `interval` after the first write
//! commit no backup holds yet ([`super::due`]); retry failures with exponential backoff; one last
//! window on shutdown (run by the shutdown, once the sessions have ended).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::due::Unbacked;
use crate::shared::Shared;
use crate::state::record::{Outcome, Trigger};

/// How often the trigger conditions are checked.
const TICK: Duration = Duration::from_millis(100);

/// Watches the write-commit counter and opens windows until `shutdown`. The triggers are read
/// from the running configuration at every check, so a reload that adds, changes or removes
/// them takes effect at the next one.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut unbacked = Unbacked::default();
    let mut backoff = None;
    let mut not_before = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // The successor of an upgrade runs windows from then on.
            _ = shared.handover.handed_over() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let config = shared.config();
        let backup = &config.backup;
        let since = shared.metrics.write_commits_since_backup.get();
        let now = Instant::now();
        // Every check, so that the clock is right when a reload turns the interval on.
        unbacked.observe(since, shared.windows.last_cut(), now);
        let actions = backup.triggered_actions();
        if actions.is_empty() || (backup.every_write_commits == 0 && backup.interval.is_none()) {
            continue;
        }
        let by_count = backup.every_write_commits > 0 && since >= backup.every_write_commits as i64;
        let by_time = backup.interval.is_some_and(|i| unbacked.due(i, now));
        if !(by_count || by_time) || now < not_before {
            continue;
        }
        let trigger = if by_count {
            Trigger::Commits
        } else {
            Trigger::Interval
        };
        let mut all_ok = true;
        for action in &actions {
            let record = super::run(&shared, *action, trigger).await;
            all_ok &= record.result == Outcome::Ok;
        }
        if all_ok {
            backoff = None;
        } else {
            let wait: Duration = backoff.unwrap_or(backup.retry_initial);
            info!(retry_in = ?wait, "triggered window failed: backing off");
            not_before = Instant::now() + wait;
            backoff = Some((wait * 2).min(backup.retry_max));
        }
    }
}

/// The last window on graceful shutdown, if enabled and anything was written since the last
/// successful one; run once every session has ended, so it holds every acknowledged commit.
/// Bounded by the drain and action timeouts, and waits at most as long for a window still open.
pub async fn final_window(shared: &Arc<Shared>) {
    let config = shared.config();
    let backup = &config.backup;
    if !backup.on_shutdown || shared.metrics.write_commits_since_backup.get() <= 0 {
        return;
    }
    let wait = backup.action_timeout + config.drain_timeout;
    for action in backup.triggered_actions() {
        info!(action = action.as_str(), "shutdown: final backup window");
        if super::run_within(shared, action, Trigger::Shutdown, wait)
            .await
            .is_none()
        {
            warn!(
                action = action.as_str(),
                ?wait,
                "shutdown: another window stayed open: no final backup window"
            );
            return;
        }
    }
}
