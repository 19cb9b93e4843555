//! Uploads run by the sidecar: after each copy window, and at start, every entry of the catalog
//! not yet complete off-site is uploaded, oldest first, one upload at a time, with traffic
//! flowing (never under the gate). A failed upload is retried with backoff (the backup's
//! `retry_initial` doubling up to `retry_max`) until it succeeds or the process stops; the next
//! start resumes it, and objects already in the repository are not sent again. An entry not
//! uploaded yet is kept by the catalog's retention. Once everything is uploaded, the section's
//! `keep_last` and `max_age` are applied to the repository ([`super::prune`]).

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::config::OffsiteConfig;
use super::store::Store;
use super::upload::{self, UploadRecord};
use crate::catalog::{Catalog, Entry};
use crate::metrics::Metrics;

/// The uploads running or waiting their turn. One per proxy.
#[derive(Debug, Default)]
pub struct Uploads {
    tasks: TaskTracker,
    /// Held by the upload under way.
    turn: tokio::sync::Mutex<()>,
    /// Cancelled when the process stops uploading.
    stop: CancellationToken,
    /// Why the last attempt to reach the repository failed, until one succeeds.
    failing: std::sync::Mutex<Option<String>>,
}

/// Backoff between failed attempts.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub initial: Duration,
    pub max: Duration,
}

impl Uploads {
    /// Runs `upload` (an [`upload_pending`]) as a tracked task.
    pub fn spawn(&self, upload: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(upload);
    }

    /// Cancelled when uploads should stop.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Why the repository cannot be used, if the last attempt failed.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().unwrap().clone()
    }

    fn set_failing(&self, why: Option<String>) {
        *self.failing.lock().unwrap() = why;
    }

    /// Waits for the upload (or prune) under way to end and holds off the next until the guard
    /// is dropped: what is read from the repository meanwhile is not pruned under the reader.
    pub async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Uploads running or waiting.
    pub fn pending(&self) -> usize {
        self.tasks.len()
    }

    /// Waits up to `within` for the uploads started so far to end, then tells those left to
    /// stop (they stop between attempts); false if some were still running.
    pub async fn finish(&self, within: Duration) -> bool {
        self.tasks.close();
        let done = tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok();
        self.stop.cancel();
        done
    }
}

/// Entries of `catalog` not yet complete in the repository at `url`, oldest first.
pub fn not_uploaded(catalog: &Path, url: &str) -> Vec<Entry> {
    Catalog {
        dir: catalog.to_path_buf(),
    }
    .entries()
    .into_iter()
    .filter(|e| !upload::uploaded_to(e, url))
    .collect()
}

/// Uploads every entry of `catalog` not yet off-site, retrying until each is there or `stop`
/// is cancelled. One runs at a time. With nothing to upload it still lists the repository once,
/// so that a wrong endpoint or key is said at start (in the log and in `/readyz`), not at the
/// first copy. Returns the ids of the entries it uploaded, oldest first.
pub async fn upload_pending(
    uploads: &Uploads,
    metrics: &Metrics,
    catalog: &Path,
    offsite: &OffsiteConfig,
    retry: Retry,
) -> Vec<String> {
    let _turn = uploads.turn.lock().await;
    let stop = uploads.stop_token();
    let mut delay = retry.initial;
    let mut uploaded = Vec::new();
    loop {
        let pending = not_uploaded(catalog, &offsite.url);
        metrics.offsite_pending_entries.set(pending.len() as i64);
        let bytes: u64 = pending.iter().map(|e| e.manifest.bytes()).sum();
        metrics.offsite_pending_bytes.set(bytes as i64);
        let uploaded_any = !uploaded.is_empty();
        if pending.is_empty() {
            if uploaded_any && (offsite.keep_last > 0 || offsite.max_age.is_some()) {
                match prune_repository(offsite).await {
                    Ok(pruned) if !pruned.entries.is_empty() => info!(
                        entries = ?pruned.entries,
                        objects = pruned.objects,
                        "off-site retention deleted entries and the objects only they named"
                    ),
                    Ok(_) => {}
                    Err(error) => warn!(%error, "off-site retention failed"),
                }
            }
            if !uploaded_any
                && uploads.failing().is_none()
                && let Err(error) = probe(offsite).await
            {
                warn!(%error, "the off-site repository cannot be used");
                uploads.set_failing(Some(error));
            }
            return uploaded;
        }
        // One round over every pending entry, oldest first: an entry that fails (a file changed
        // since its copy, say) does not hold back the ones after it.
        let mut progressed = false;
        for entry in pending {
            let started = Instant::now();
            match upload_one(offsite, &entry).await {
                Ok(record) => {
                    progressed = true;
                    uploaded.push(entry.id.clone());
                    uploads.set_failing(None);
                    metrics.offsite_uploaded_bytes.inc_by(record.bytes_sent);
                    metrics
                        .offsite_deduplicated_bytes
                        .inc_by(record.bytes_deduplicated);
                    metrics
                        .last_offsite_success_timestamp_seconds
                        .set(record.at_unix);
                    info!(
                        entry = %entry.id,
                        repository = %record.url,
                        objects = record.objects,
                        sent = record.sent,
                        bytes_sent = record.bytes_sent,
                        bytes_deduplicated = record.bytes_deduplicated,
                        ms = started.elapsed().as_millis() as u64,
                        "copy entry uploaded off-site"
                    );
                }
                Err(error) => {
                    warn!(entry = %entry.id, %error, "off-site upload failed");
                    uploads.set_failing(Some(error));
                }
            }
            if stop.is_cancelled() {
                return uploaded;
            }
        }
        if progressed {
            delay = retry.initial;
        } else {
            // Nothing went up this round: wait before the next.
            tokio::select! {
                _ = stop.cancelled() => return uploaded,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(retry.max);
        }
    }
}

/// Uploads one entry and records it beside the entry.
async fn upload_one(offsite: &OffsiteConfig, entry: &Entry) -> Result<UploadRecord, String> {
    let settings = offsite.resolve()?;
    let recipients = offsite.recipients()?;
    let entry = entry.clone();
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&settings)?;
        let record = upload::upload(&store, &entry, recipients.as_ref(), &mut |_| {})?;
        upload::record(&entry, &record)
            .map_err(|e| format!("{}: recording the upload: {e}", entry.dir.display()))?;
        Ok(record)
    })
    .await
    .map_err(|e| format!("upload task failed: {e}"))?
}

/// Lists the repository's entries: the endpoint answers and the key is accepted.
async fn probe(offsite: &OffsiteConfig) -> Result<(), String> {
    let settings = offsite.resolve()?;
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&settings)?;
        super::download::list(&store).map(|_| ())
    })
    .await
    .map_err(|e| format!("probe task failed: {e}"))?
}

/// Applies the section's `keep_last` and `max_age` to the repository.
async fn prune_repository(offsite: &OffsiteConfig) -> Result<super::prune::Pruned, String> {
    let settings = offsite.resolve()?;
    let (keep_last, max_age, grace) = (offsite.keep_last, offsite.max_age, offsite.prune_grace);
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&settings)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        super::prune::prune(&store, keep_last, max_age, grace, now)
    })
    .await
    .map_err(|e| format!("prune task failed: {e}"))?
}
