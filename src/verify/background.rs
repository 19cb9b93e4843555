//! The sidecar's own verifications (`verify_after`): each new copy entry, and at start every
//! entry found never verified (newest first; one that failed verification is not retried). One
//! runs at a time, since each starts a scratch Doltgres. They run as tracked tasks, so that a
//! shutdown can wait for them: the final entry is verified before the process exits.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use tracing::{debug, info, warn};

use super::{ScratchConfig, verify_entry};
use crate::catalog::{Catalog, VerifyRecord};
use crate::shared::Shared;

/// With `backup.copy.scrub_interval`, checks the files of the entry new copies link from
/// against their checksums every interval, until `stop`.
pub fn scrub_regularly(shared: &Arc<Shared>, stop: CancellationToken) {
    shared
        .verifications
        .tasks
        .spawn(scrub_loop(shared.clone(), stop));
}

/// Verifies the new entry `id` in the background, after any verification under way.
pub fn verify_new(shared: &Arc<Shared>, id: String) {
    shared
        .verifications
        .tasks
        .spawn(verify_and_record(shared.clone(), id, false));
}

/// Verifies entry `id` now (after any verification under way), records the result as
/// `verify_after` does, and returns it; `None` when there is no such entry (or no catalog).
/// It runs as one of these tasks: it ends, and a shutdown waits for it, even if whoever asked
/// goes away.
pub async fn verify_requested(shared: &Arc<Shared>, id: String) -> Option<Result<String, String>> {
    let task = shared
        .verifications
        .tasks
        .spawn(verify_and_record(shared.clone(), id, false));
    task.await.ok().flatten()
}

/// With `verify_after`, verifies in the background every entry of the catalog that was never
/// verified, newest first; stops between entries once `stop` is cancelled or the listeners
/// were handed to a successor (which does the same when it starts).
pub fn verify_unverified(shared: &Arc<Shared>, stop: CancellationToken) {
    let config = shared.config();
    let Some(copy) = config.backup.copy.as_ref().filter(|c| c.verify_after) else {
        return;
    };
    let catalog = Catalog {
        dir: copy.catalog.clone(),
    };
    shared
        .verifications
        .tasks
        .spawn(sweep(shared.clone(), catalog, stop));
}

async fn scrub_loop(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let interval = shared
            .config()
            .backup
            .copy
            .as_ref()
            .map_or(Duration::ZERO, |c| c.scrub_interval);
        // Off (or no copies): look at the setting again in a minute, a reload may change it.
        if !crate::pause::pause(&stop, interval, Duration::from_secs(60)).await {
            return;
        }
        if !interval.is_zero() && !shared.handover.is_handed_over() {
            scrub(&shared).await;
        }
    }
}

/// Checks the files of the entry the next copy would link from against their checksums. A
/// file that fails makes the entry fail its verification: no copy links from it again, and its
/// files are copied afresh from the server by the next window.
pub async fn scrub(shared: &Arc<Shared>) {
    let _turn = shared.verifications.turn.lock().await;
    let config = shared.config();
    let Some(copy) = &config.backup.copy else {
        return;
    };
    let catalog = Catalog {
        dir: copy.catalog.clone(),
    };
    let verifications = shared.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let written = |id: &str| verifications.verifications.written(id);
        let entry = catalog.link_source(&written).ok().flatten()?;
        let result = super::check_files(&entry, &mut |_| {});
        Some((entry, result))
    })
    .await;
    let Ok(Some((entry, result))) = checked else {
        return;
    };
    match result {
        Ok(()) => {
            info!(entry = %entry.id, "scrub: the files new copies link from match their checksums")
        }
        Err(detail) => {
            warn!(entry = %entry.id, %detail, "scrub: a file changed; no copy links from this entry again");
            shared
                .verifications
                .written
                .lock()
                .unwrap()
                .remove(&entry.id);
            let record = VerifyRecord {
                ok: false,
                at_unix: crate::state::record::unix(SystemTime::now()),
                detail: format!("scrub: {detail}"),
            };
            if let Err(e) = entry.record_verify(&record) {
                warn!(entry = %entry.id, error = %e, "cannot record the failed scrub");
            }
            count(shared, Verified::Copy, &entry.id, Err(record.detail));
        }
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
/// result beside it and in the metrics, and returns it. An entry gone meanwhile (retention) is
/// skipped (`None`).
async fn verify_and_record(
    shared: Arc<Shared>,
    id: String,
    unless_verified: bool,
) -> Option<Result<String, String>> {
    let _turn = shared.verifications.turn.lock().await;
    let config = shared.config();
    let copy = config.backup.copy.as_ref()?;
    let catalog = Catalog {
        dir: copy.catalog.clone(),
    };
    let entry = match catalog.entry(&id) {
        Ok(entry) => entry,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            debug!(entry = %id, "not verified: the entry was removed");
            return None;
        }
        Err(e) => {
            let result = Err(format!("entry {id}: {e}"));
            count(&shared, Verified::Copy, &id, result.clone());
            return Some(result);
        }
    };
    if unless_verified && entry.verify_record().is_some() {
        return None;
    }
    info!(entry = %id, "verifying a copy");
    let result = verify_entry(&scratch_config(&shared), &entry, &mut |_| {})
        .await
        .map_err(|e| e.to_string());
    if result.is_err() && !entry.dir.exists() {
        debug!(entry = %id, "not verified: the entry was removed while it was verified");
        return None;
    }
    let record = VerifyRecord {
        ok: result.is_ok(),
        at_unix: crate::state::record::unix(SystemTime::now()),
        detail: match &result {
            Ok(s) | Err(s) => s.clone(),
        },
    };
    if let Err(e) = entry.record_verify(&record) {
        warn!(entry = %id, error = %e, "cannot record the verification");
    }
    if result.is_err() {
        // No copy links from it again.
        shared.verifications.written.lock().unwrap().remove(&id);
    }
    count(&shared, Verified::Copy, &id, result.clone());
    Some(result)
}

/// What a verification verified.
#[derive(Clone, Copy)]
pub(super) enum Verified {
    /// A catalog entry here.
    Copy,
    /// An entry of the off-site repository.
    Offsite,
}

/// Counts a verification's result in the metrics and logs it.
pub(super) fn count(shared: &Shared, verified: Verified, id: &str, result: Result<String, String>) {
    let m = &shared.metrics;
    let (counter, last_success, what) = match verified {
        Verified::Copy => (&m.verify, &m.last_verify_success_timestamp_seconds, "copy"),
        Verified::Offsite => (
            &m.offsite_verify,
            &m.last_offsite_verify_success_timestamp_seconds,
            "off-site entry",
        ),
    };
    let label = crate::metrics::ResultLabel {
        result: if result.is_ok() { "ok" } else { "failed" }.into(),
    };
    counter.get_or_create(&label).inc();
    match result {
        Ok(detail) => {
            last_success.set(crate::state::record::unix(SystemTime::now()));
            info!(entry = %id, %detail, "{what} verified");
        }
        Err(detail) => warn!(entry = %id, %detail, "{what} failed verification"),
    }
}

/// The scratch settings of a running sidecar.
pub fn scratch_config(shared: &Shared) -> ScratchConfig {
    let config = shared.config();
    let server = &config.server;
    ScratchConfig {
        binary: server.binary.clone(),
        user: server.user.clone(),
        password: server.password.clone().unwrap_or_default(),
        ready_timeout: server.ready_timeout,
    }
}
