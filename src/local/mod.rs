//! The local commands `restore` and `verify`: they work on the catalog and the Doltgres binary
//! directly, without the sidecar's help, but find the ones the running sidecar uses
//! ([`place`]), so they work the same from any directory. Long work shows progress on stderr
//! ([`progress`]).

pub mod place;
pub mod progress;

use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, Entry};
use crate::cli::{RestoreArgs, VerifyArgs};
use crate::config::ConfigError;
use crate::dirlock::{self, DirLock};
use crate::restore::{
    self,
    staging::{self, Staging},
};
use crate::verify::{self, VerifyError};
use place::Places;
use progress::{progress_bar, run_with_progress};

/// A local command that failed; the text says why.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Failed(String),
}

fn failed(text: impl Into<String>) -> LocalError {
    LocalError::Failed(text.into())
}

/// Where the files are; says on stderr what was assumed, if anything.
fn places(args: &crate::cli::LocalArgs) -> Result<Places, LocalError> {
    let places = place::find(args)?;
    if let Some(note) = &places.note {
        eprintln!("note: {note}");
    }
    Ok(places)
}

impl Places {
    /// The copy entry `id` (or the newest, for `latest`). The catalog is only read: a copy the
    /// sidecar is writing meanwhile is left alone.
    fn entry(&self, id: &str) -> Result<Entry, LocalError> {
        let Some(dir) = &self.catalog else {
            return Err(failed(format!(
                "{} keeps no copies (no [backup.copy]): name a catalog with --catalog DIR",
                self.catalog_from
            )));
        };
        if !dir.is_dir() {
            return Err(failed(format!(
                "there is no catalog at {} (from {}): name it with --catalog DIR or --config \
                 FILE, or reach the running sidecar with --admin-url",
                place::absolute(dir).display(),
                self.catalog_from
            )));
        }
        let catalog = Catalog { dir: dir.clone() };
        let found = if id == "latest" {
            catalog.latest()
        } else {
            catalog.entry(id).ok()
        };
        found.ok_or_else(|| {
            let ids: Vec<String> = catalog.entries().into_iter().map(|e| e.id).collect();
            let listed = match ids.is_empty() {
                true => "it has none yet".to_string(),
                false => format!("it has {}", ids.join(", ")),
            };
            let what = match id {
                "latest" => "no copy entry".to_string(),
                id => format!("no copy entry {id:?}"),
            };
            failed(format!(
                "{what} in the catalog {} ({listed})",
                place::absolute(dir).display()
            ))
        })
    }
}

fn is_url(target: &str) -> bool {
    target.contains("://")
}

/// `restore`: prints what it did. The target is refused while a server or sidecar uses it; the
/// backup is built and checked beside it and put in its place only when complete, so a failed
/// restore (a typo, a checksum mismatch, an unreachable URL) leaves the target as it was.
pub async fn restore(args: &RestoreArgs) -> Result<String, LocalError> {
    let local = places(&args.local)?;
    let target =
        std::path::absolute(&args.to).map_err(|e| failed(format!("{}: {e}", args.to.display())))?;
    refuse_if_in_use(&target)?;
    if staging::occupied(&target) {
        if args.if_empty {
            return Ok(format!(
                "{} is not empty: nothing restored",
                target.display()
            ));
        }
        if !args.force {
            return Err(failed(format!(
                "{} is not empty: use --force to replace it, or --if-empty to leave it",
                target.display()
            )));
        }
    }
    if args.missing_ok
        && let Some(nothing) = nothing_to_restore(&local, &args.from).await?
    {
        return Ok(nothing);
    }
    // Held until the end: a sidecar cannot start on the target meanwhile.
    let _lock = match target.is_dir() {
        true => Some(DirLock::take(&target, "restore").map_err(|e| failed(e.to_string()))?),
        false => None,
    };
    let staging = Staging::new(&target).map_err(|e| {
        failed(format!(
            "cannot prepare a restore beside {}: {e}",
            target.display()
        ))
    })?;
    let restored = if args.from.starts_with("s3://") {
        let into = staging.dir().to_path_buf();
        restore_offsite(&args.from, args.offsite.identity.as_deref(), &into).await?
    } else if is_url(&args.from) {
        let database = args.database.clone().unwrap_or_else(|| {
            args.from
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("restored")
                .to_string()
        });
        let head = restore::url_into(&local.scratch, &args.from, &database, staging.dir())
            .await
            .map_err(|e| failed(format!("cannot restore {}: {e}", args.from)))?;
        format!(
            "restored {} as database {database} (HEAD {head})",
            args.from
        )
    } else {
        let entry = local.entry(&args.from)?;
        let (from, into) = (entry.clone(), staging.dir().to_path_buf());
        run_with_progress("restoring", entry.manifest.bytes(), move |tick| {
            crate::catalog::materialize(&from, &into, tick)
        })
        .await
        .map_err(|e| failed(format!("copy {} does not restore: {e}", entry.id)))?;
        format!(
            "restored copy {} ({} files, {} bytes, checksums checked)",
            entry.id,
            entry.manifest.files.len(),
            entry.manifest.bytes()
        )
    };
    restore::point_config_at(staging.dir(), &target)
        .map_err(|e| failed(format!("config.yaml of the restored tree: {e}")))?;
    // A server may have started on the target while the backup was built.
    refuse_if_in_use(&target)?;
    let inside = staging.inside();
    staging.commit().map_err(|e| {
        failed(format!(
            "cannot put the restored tree in place at {}: {e}",
            target.display()
        ))
    })?;
    let how = if inside {
        " (moved into the mount point)"
    } else {
        ""
    };
    Ok(format!(
        "{restored} into {}{how}; start it with server.dir = {}",
        target.display(),
        target.display()
    ))
}

/// Downloads entry `s3://bucket/prefix/ENTRY` (or `…/latest`) of an off-site repository into
/// `dir` (removed when the returned guard is dropped), each object decrypted (with `identity`,
/// if the repository is encrypted) and checked against its SHA-256, with a progress bar on a
/// terminal. Endpoint and credentials come from the AWS environment variables.
async fn download_offsite(
    from: &str,
    identity: Option<&Path>,
    dir: PathBuf,
) -> Result<(Entry, Downloaded), LocalError> {
    let (store, listed, identities) = find_offsite(from, identity).await?;
    let download = Downloaded(dir.clone());
    let total = listed.objects().iter().map(|(_, size)| size).sum();
    let fetched = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = fetched.clone();
    run_with_progress("downloading", total, move |tick| {
        let entry =
            crate::offsite::download::fetch(&store, &listed, identities.as_ref(), &dir, tick)?;
        *slot.lock().unwrap() = Some(entry);
        Ok(())
    })
    .await
    .map_err(|e| failed(format!("cannot download {from}: {e}")))?;
    let entry = fetched
        .lock()
        .unwrap()
        .take()
        .ok_or_else(|| failed(format!("cannot download {from}")))?;
    Ok((entry, download))
}

/// The repository of `s3://bucket/prefix/ENTRY` (found with the AWS variables), the entry as it
/// lists it, and the identity that decrypts it.
async fn find_offsite(
    from: &str,
    identity: Option<&Path>,
) -> Result<
    (
        crate::offsite::store::Store,
        crate::offsite::listed::Listed,
        Option<crate::offsite::seal::Identities>,
    ),
    LocalError,
> {
    let (repository, id) = crate::offsite::split_entry(from).map_err(failed)?;
    let settings = offsite_settings(&repository)?;
    let identities = identity
        .map(crate::offsite::seal::Identities::from_file)
        .transpose()
        .map_err(failed)?;
    let cannot = |e: String| failed(format!("cannot download {from}: {e}"));
    let store = crate::offsite::store::Store::open(&settings).map_err(cannot)?;
    let finding = store.clone();
    let listed = tokio::task::spawn_blocking(move || crate::offsite::download::find(&finding, &id))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(cannot)?;
    Ok((store, listed, identities))
}

/// With `--missing-ok`: whether `from` names the newest backup of a catalog or repository that
/// has none yet, and what to say then.
async fn nothing_to_restore(local: &Places, from: &str) -> Result<Option<String>, LocalError> {
    if let Some(repository) = from
        .strip_suffix("/latest")
        .filter(|r| r.starts_with("s3://"))
    {
        let settings = offsite_settings(repository)?;
        let ids = tokio::task::spawn_blocking(move || {
            let store = crate::offsite::store::Store::open(&settings)?;
            crate::offsite::download::list(&store)
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("cannot list {repository}: {e}")))?;
        return Ok(ids
            .is_empty()
            .then(|| format!("{repository} has no entries yet: nothing to restore")));
    }
    if from == "latest"
        && let Some(dir) = &local.catalog
        && (Catalog { dir: dir.clone() }).latest().is_none()
    {
        return Ok(Some(format!(
            "the catalog {} has no copy yet: nothing to restore",
            place::absolute(dir).display()
        )));
    }
    Ok(None)
}

/// `backups list --repo s3://bucket/prefix`: the repository's complete entries, oldest first,
/// each with its time, databases and size.
pub async fn list_repository(url: &str) -> Result<String, LocalError> {
    let settings = offsite_settings(url)?;
    let (url, shown) = (url.to_string(), url.to_string());
    tokio::task::spawn_blocking(move || {
        let store = crate::offsite::store::Store::open(&settings)?;
        let ids = crate::offsite::download::list(&store)?;
        if ids.is_empty() {
            return Ok(format!("{url} has no entries yet\n"));
        }
        let mut text = format!("{} entries in {url}, oldest first:\n", ids.len());
        for id in ids {
            match crate::offsite::download::find(&store, &id) {
                Ok(listed) => {
                    let (files, bytes) = listed.size();
                    let about = match listed.manifest(None) {
                        Ok(m) => {
                            let names: Vec<&str> =
                                m.databases.iter().map(|d| d.name.as_str()).collect();
                            format!("databases {}", names.join(","))
                        }
                        Err(_) => "encrypted".to_string(),
                    };
                    text.push_str(&format!("{id}  {files} files  {bytes} bytes  {about}\n"));
                }
                Err(e) => text.push_str(&format!("{id}  (unreadable: {e})\n")),
            }
        }
        Ok(text)
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e: String| failed(format!("cannot list {shown}: {e}")))
}

/// The repository's settings, for a local command: from the AWS variables alone.
fn offsite_settings(repository: &str) -> Result<crate::offsite::store::Settings, LocalError> {
    crate::offsite::config::OffsiteConfig::from_url(repository)
        .resolve()
        .map_err(failed)
}

/// Restores an off-site entry into `into` (the staging directory): each object written straight
/// to its place in the server's files, checked as it arrives.
async fn restore_offsite(
    from: &str,
    identity: Option<&Path>,
    into: &Path,
) -> Result<String, LocalError> {
    let (store, listed, identities) = find_offsite(from, identity).await?;
    let (id, (files, bytes)) = (listed.id().to_string(), listed.size());
    let to = into.to_path_buf();
    run_with_progress("restoring", bytes, move |tick| {
        crate::offsite::download::restore_files(&store, &listed, identities.as_ref(), &to, tick)
            .map(|_| ())
    })
    .await
    .map_err(|e| failed(format!("entry {id} of {from} does not restore: {e}")))?;
    Ok(format!(
        "restored off-site entry {id} ({files} files, {bytes} bytes, checksums checked)"
    ))
}

/// Verifies an off-site entry: downloaded to a temporary directory (every object checked), then
/// verified on a scratch Doltgres as a local entry is.
async fn verify_offsite(
    scratch: &verify::ScratchConfig,
    from: &str,
    identity: Option<&Path>,
) -> Result<String, LocalError> {
    let dir = std::env::temp_dir().join(format!(
        "dgs-offsite-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let (entry, _download) = download_offsite(from, identity, dir).await?;
    let mut bar = progress_bar("verifying", entry.manifest.bytes());
    let result = verify::verify_entry(scratch, &entry, &mut |n| bar.tick(n)).await;
    bar.finish();
    result
        .map(|detail| format!("off-site entry {} of {from} verifies: {detail}", entry.id))
        .map_err(|detail| {
            failed(format!(
                "off-site entry {} of {from} does not verify: {detail}",
                entry.id
            ))
        })
}

/// A download directory, removed when dropped.
struct Downloaded(std::path::PathBuf);

impl Drop for Downloaded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails, naming the process, if a server or another sidecar uses `dir`.
fn refuse_if_in_use(dir: &Path) -> Result<(), LocalError> {
    let own = Some(std::process::id() as i32);
    match dirlock::holders(dir).into_iter().find(|h| h.pid != own) {
        Some(holder) => Err(failed(format!(
            "{} is in use by {holder}: stop it before restoring into this directory",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// `verify`: prints the result; fails if the backup does not verify.
pub async fn verify(args: &VerifyArgs) -> Result<String, LocalError> {
    let local = places(&args.local)?;
    if args.target.starts_with("s3://") {
        return verify_offsite(
            &local.scratch,
            &args.target,
            args.offsite.identity.as_deref(),
        )
        .await;
    }
    if is_url(&args.target) {
        return verify::verify_url(&local.scratch, &args.target)
            .await
            .map_err(|e| failed(e.to_string()));
    }
    let entry = local.entry(&args.target)?;
    let mut bar = progress_bar("verifying", entry.manifest.bytes());
    let result = verify::verify_entry(&local.scratch, &entry, &mut |n| bar.tick(n)).await;
    bar.finish();
    let record = crate::catalog::VerifyRecord {
        ok: result.is_ok(),
        at_unix: crate::state::record::unix(std::time::SystemTime::now()),
        detail: match &result {
            Ok(s) => s.clone(),
            Err(e) => e.to_string(),
        },
    };
    let _ = entry.record_verify(&record);
    result
        .map(|detail| format!("copy {} verifies: {detail}", entry.id))
        .map_err(|e| match e {
            // No verdict on the copy: the scratch server is what failed.
            VerifyError::Scratch(why) => {
                failed(format!("copy {} could not be verified: {why}", entry.id))
            }
            differs => failed(format!("copy {} does not verify: {differs}", entry.id)),
        })
}
