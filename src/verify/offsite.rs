//! Verifying what is in the off-site repository, as the sidecar runs it: with the section's
//! `verify_after`, each entry it uploaded is downloaded again (decrypted with `identity_file` if
//! the repository is encrypted, every object checked against its SHA-256) and verified on a
//! scratch Doltgres; with `verify_interval`, a random entry of the repository (not the newest
//! when there are others) is, every interval, so that objects rotting in the bucket are found
//! while newer entries still exist. Uploads and retention wait meanwhile (the repository's turn
//! is held), so nothing is pruned under the download.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::background::{Verified, count, scratch_config};
use super::{ScratchConfig, scratch_dir, verify_entry};
use crate::offsite::config::OffsiteConfig;
use crate::offsite::download;
use crate::offsite::seal::Identities;
use crate::offsite::store::Store;
use crate::shared::Shared;

/// Downloads entry `id` (or `latest`) of the repository into a temporary directory and verifies
/// it there; the directory is removed afterwards.
pub async fn verify_remote(
    scratch: &ScratchConfig,
    offsite: &OffsiteConfig,
    id: &str,
) -> Result<String, String> {
    let settings = offsite.resolve()?;
    let identities = offsite
        .identity_file
        .as_deref()
        .map(Identities::from_file)
        .transpose()?;
    let dir = scratch_dir("offsite");
    let (into, id) = (dir.clone(), id.to_string());
    let fetched = tokio::task::spawn_blocking(move || {
        let store = Store::open(&settings)?;
        let listed = download::find(&store, &id)?;
        download::fetch(&store, &listed, identities.as_ref(), &into, &mut |_| {})
    })
    .await
    .map_err(|e| format!("download task failed: {e}"));
    let result = match fetched.and_then(|r| r) {
        Ok(entry) => verify_entry(scratch, &entry, &mut |_| {})
            .await
            .map(|detail| format!("entry {} downloaded and verified: {detail}", entry.id))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    remove(&dir).await;
    result
}

async fn remove(dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

/// Verifies entry `id` of the repository with the repository's turn held, and counts the result.
pub async fn verify_and_count(shared: &Arc<Shared>, offsite: &OffsiteConfig, id: &str) {
    let _turn = shared.uploads.hold().await;
    info!(entry = %id, repository = %offsite.url, "verifying an off-site entry");
    let result = verify_remote(&scratch_config(shared), offsite, id).await;
    count(shared, Verified::Offsite, id, result);
}

/// With `verify_interval`, every interval verifies a random entry of the repository, until
/// `stop`. The setting is read again each time (a reload may change it).
pub async fn verify_regularly(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let offsite = shared
            .config()
            .backup
            .copy
            .as_ref()
            .and_then(|c| c.offsite.clone());
        let interval = offsite.as_ref().and_then(|o| o.verify_interval);
        // Off: look at the setting again in a minute, a reload may change it.
        let every = interval.unwrap_or_default();
        if !crate::pause::pause(&stop, every, Duration::from_secs(60)).await {
            return;
        }
        let (Some(offsite), Some(_)) = (offsite, interval) else {
            continue;
        };
        if shared.handover.is_handed_over() {
            return;
        }
        match pick(&offsite).await {
            Ok(Some(id)) => verify_and_count(&shared, &offsite, &id).await,
            Ok(None) => {}
            Err(error) => warn!(%error, "cannot list the off-site repository to verify an entry"),
        }
    }
}

/// A random entry of the repository; not the newest when there are others.
async fn pick(offsite: &OffsiteConfig) -> Result<Option<String>, String> {
    let settings = offsite.resolve()?;
    let ids = tokio::task::spawn_blocking(move || download::list(&Store::open(&settings)?))
        .await
        .map_err(|e| format!("list task failed: {e}"))??;
    Ok(match ids.len() {
        0 => None,
        1 => ids.first().cloned(),
        n => ids
            .get((rand::random::<u64>() % (n as u64 - 1)) as usize)
            .cloned(),
    })
}
