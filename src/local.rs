//! The local commands `restore` and `verify`: they work on the catalog and the Doltgres binary
//! directly, without a running sidecar. Long work shows progress on stderr: a bar on a terminal,
//! a plain line per quarter otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::catalog::{Catalog, Entry};
use crate::cli::{LocalArgs, RestoreArgs, VerifyArgs};
use crate::config::{Config, ConfigError};
use crate::dirlock::{self, DirLock};
use crate::restore::{
    self,
    staging::{self, Staging},
};
use crate::verify::{self, ScratchConfig};

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

/// What a local command works with.
struct Local {
    catalog: PathBuf,
    scratch: ScratchConfig,
}

impl Local {
    fn resolve(args: &LocalArgs) -> Result<Local, LocalError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        crate::secrets::read_secret_files(&mut config)?;
        let server = &config.server;
        let catalog = args
            .catalog
            .clone()
            .or_else(|| config.backup.copy.as_ref().map(|c| c.catalog.clone()))
            .unwrap_or_else(|| PathBuf::from("var/backups"));
        let password = server
            .password
            .clone()
            .or_else(|| std::env::var("DOLTGRES_PASSWORD").ok())
            .unwrap_or_else(|| "password".into());
        Ok(Local {
            catalog,
            scratch: ScratchConfig {
                binary: args
                    .doltgres
                    .clone()
                    .unwrap_or_else(|| server.binary.clone()),
                user: server.user.clone(),
                password,
                ready_timeout: server.ready_timeout,
            },
        })
    }

    fn entry(&self, id: &str) -> Result<Entry, LocalError> {
        let catalog = Catalog::open(&self.catalog)
            .map_err(|e| failed(format!("catalog {}: {e}", self.catalog.display())))?;
        let found = if id == "latest" {
            catalog.latest()
        } else {
            catalog.entry(id).ok()
        };
        found.ok_or_else(|| {
            failed(format!(
                "no copy entry {id:?} in {} (entries: {})",
                self.catalog.display(),
                catalog
                    .entries()
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
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
    let local = Local::resolve(&args.local)?;
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
    let restored = if is_url(&args.from) {
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
            restore::copy_listed(&from, &into, tick)
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
    let local = Local::resolve(&args.local)?;
    if is_url(&args.target) {
        return verify::verify_url(&local.scratch, &args.target)
            .await
            .map_err(failed);
    }
    let entry = local.entry(&args.target)?;
    let mut bar = progress_bar("verifying", entry.manifest.bytes());
    let result = verify::verify_entry(&local.scratch, &entry, &mut |n| bar.tick(n)).await;
    bar.finish();
    let record = crate::catalog::VerifyRecord {
        ok: result.is_ok(),
        at_unix: crate::window::record::unix(std::time::SystemTime::now()),
        detail: match &result {
            Ok(s) | Err(s) => s.clone(),
        },
    };
    let _ = entry.record_verify(&record);
    result
        .map(|detail| format!("copy {} verifies: {detail}", entry.id))
        .map_err(|detail| failed(format!("copy {} does not verify: {detail}", entry.id)))
}

/// Runs blocking work that reports bytes done, showing progress.
async fn run_with_progress<F>(what: &'static str, total: u64, work: F) -> Result<(), String>
where
    F: FnOnce(&mut dyn FnMut(u64)) -> Result<(), String> + Send + 'static,
{
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || {
        work(&mut |n| {
            let _ = sender.send(n);
        })
    });
    let mut bar = progress_bar(what, total);
    let mut task = std::pin::pin!(task);
    let result = loop {
        tokio::select! {
            Some(n) = receiver.recv() => bar.tick(n),
            done = &mut task => {
                while let Ok(n) = receiver.try_recv() {
                    bar.tick(n);
                }
                break done.map_err(|e| e.to_string()).and_then(|r| r);
            }
        }
    };
    bar.finish();
    result
}

/// Progress of one step, on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    done: u64,
    quarter: u64,
}

fn progress_bar(what: &'static str, total: u64) -> Progress {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    Progress {
        bar,
        what,
        total,
        done: 0,
        quarter: 0,
    }
}

impl Progress {
    fn tick(&mut self, bytes: u64) {
        self.done += bytes;
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None => {
                let quarter = (self.done * 4).checked_div(self.total).unwrap_or(4).min(4);
                if quarter > self.quarter {
                    self.quarter = quarter;
                    eprintln!(
                        "{}: {}% ({} of {} bytes)",
                        self.what,
                        quarter * 25,
                        self.done,
                        self.total
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
