//! The sidecar's own verifications (`verify_after`): each new copy entry, and at start every
//! entry found never verified (newest first; one that failed verification is not retried). One
//! runs at a time, since each starts a scratch Doltgres. They run as tracked tasks, so that a
//! shutdown can wait for them: the final entry is verified before the process exits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{scratch_config, verify_entry};
use crate::catalog::{Catalog, VerifyRecord};
use crate::shared::Shared;

/// The verifications running or waiting their turn. One per proxy, in `Shared`.
#[derive(Debug, Default)]
pub struct Verifications {
    tasks: TaskTracker,
    /// Held by the verification under way.
    turn: tokio::sync::Mutex<()>,
}

impl Verifications {
    /// Verifies the new entry `id` in the background, after any verification under way.
    pub fn verify_new(&self, shared: &Arc<Shared>, id: String) {
        self.tasks
            .spawn(verify_and_record(shared.clone(), id, false));
    }

    /// With `verify_after`, verifies in the background every entry of the catalog that was never
    /// verified, newest first; stops between entries once `stop` is cancelled or the listeners
    /// were handed to a successor (which does the same when it starts).
    pub fn verify_unverified(&self, shared: &Arc<Shared>, stop: CancellationToken) {
        let config = shared.config();
        let Some(copy) = config.backup.copy.as_ref().filter(|c| c.verify_after) else {
            return;
        };
        let catalog = Catalog {
            dir: copy.catalog.clone(),
        };
        self.tasks.spawn(sweep(shared.clone(), catalog, stop));
    }

    /// Verifications running or waiting.
    pub fn pending(&self) -> usize {
        self.tasks.len()
    }

    /// Waits up to `within` for every verification started so far to end; false if some still
    /// run then.
    pub async fn wait(&self, within: Duration) -> bool {
        self.tasks.close();
        let done = tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok();
        self.tasks.reopen();
        done
    }
}

async fn sweep(shared: Arc<Shared>, catalog: Catalog, stop: CancellationToken) {
    let entries = match tokio::task::spawn_blocking(move || catalog.entries()).await {
        Ok(entries) => entries,
        Err(e) => {
            warn!(error = %e, "cannot list the copies to verify");
            return;
        }
    };
    let never: Vec<String> = entries
        .into_iter()
        .rev()
        .filter(|e| e.verify_record().is_none())
        .map(|e| e.id)
        .collect();
    if never.is_empty() {
        return;
    }
    info!(entries = never.len(), "verifying the copies never verified");
    for id in never {
        if stop.is_cancelled() || shared.handover.is_handed_over() {
            info!("stopping: the copies left unverified are verified at the next start");
            return;
        }
        verify_and_record(shared.clone(), id, true).await;
    }
}

/// Verifies entry `id` (unless `unless_verified` and it has a record by its turn), records the
/// result beside it and in the metrics. An entry gone meanwhile (retention) is skipped.
async fn verify_and_record(shared: Arc<Shared>, id: String, unless_verified: bool) {
    let _turn = shared.verifications.turn.lock().await;
    let config = shared.config();
    let Some(copy) = &config.backup.copy else {
        return;
    };
    let catalog = Catalog {
        dir: copy.catalog.clone(),
    };
    let entry = match catalog.entry(&id) {
        Ok(entry) => entry,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            debug!(entry = %id, "not verified: the entry was removed");
            return;
        }
        Err(e) => return count(&shared, &id, Err(format!("entry {id}: {e}"))),
    };
    if unless_verified && entry.verify_record().is_some() {
        return;
    }
    info!(entry = %id, "verifying a copy");
    let result = verify_entry(&scratch_config(&shared), &entry, &mut |_| {}).await;
    if result.is_err() && !entry.dir.exists() {
        debug!(entry = %id, "not verified: the entry was removed while it was verified");
        return;
    }
    let record = VerifyRecord {
        ok: result.is_ok(),
        at_unix: crate::window::record::unix(SystemTime::now()),
        detail: match &result {
            Ok(s) | Err(s) => s.clone(),
        },
    };
    if let Err(e) = entry.record_verify(&record) {
        warn!(entry = %id, error = %e, "cannot record the verification");
    }
    count(&shared, &id, result);
}

/// Counts a verification's result in the metrics and logs it.
fn count(shared: &Shared, id: &str, result: Result<String, String>) {
    let label = crate::metrics::ResultLabel {
        result: if result.is_ok() { "ok" } else { "failed" }.into(),
    };
    shared.metrics.verify.get_or_create(&label).inc();
    match result {
        Ok(detail) => {
            shared
                .metrics
                .last_verify_success_timestamp_seconds
                .set(crate::window::record::unix(SystemTime::now()));
            info!(entry = %id, %detail, "copy verified");
        }
        Err(detail) => warn!(entry = %id, %detail, "copy failed verification"),
    }
}
