//! Verifying backups on a scratch Doltgres: a temporary copy of the backup, served on another
//! loopback port, where every database must open, its commit log must read, and what the
//! manifest recorded at the cut must match (file checksums, each database's HEAD and working-set
//! hash, rows per table). Sync backups and push remotes (by URL) are restored into the scratch
//! server first and must open and read the same way.
//!
//! [`background`] runs the sidecar's own verifications (`verify_after`): each new entry, and at
//! start the entries never verified.

pub mod background;
pub mod offsite;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::{Client, NoTls};

use crate::catalog::copy_tree;
use crate::catalog::{Entry, Manifest};
use crate::control::managed::{ManagedServer, ManagedSpec};
use crate::ports::free_port;
use crate::upstream::quote_ident;

/// Why a backup did not verify. Each kind says where it failed; each shows as its message alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No scratch Doltgres to verify on: no free port, it did not start, or it took no login.
    /// Nothing was learnt about the backup.
    #[error("{0}")]
    Scratch(String),
    /// The entry's files: one unreadable, missing, or of another size or checksum than its
    /// manifest says.
    #[error("{0}")]
    Files(String),
    /// A query on the scratch server failed.
    #[error("{0}")]
    Query(String),
    /// The scratch server serves other data than the backup promised (HEAD, working set, commit
    /// log, row counts), or a URL restores to nothing.
    #[error("{0}")]
    Differs(String),
}

/// The Doltgres binary and the superuser the scratch server runs with. The copy's `auth.db` holds
/// the original users, so these are the original server's credentials.
#[derive(Debug, Clone)]
pub struct ScratchConfig {
    pub binary: PathBuf,
    pub user: String,
    pub password: String,
    pub ready_timeout: Duration,
}

/// A Doltgres on a temporary directory and port, removed when dropped.
pub struct Scratch {
    pub server: ManagedServer,
    remove_dir: bool,
}

impl Scratch {
    /// Starts Doltgres on `dir` (its `data/`, `work/`, `root/` layout), waiting for a login. The
    /// port is found free and released before Doltgres binds it, so another process may take it
    /// in between: a start that fails with the port in use is tried again on a new port, twice.
    pub async fn start(
        config: &ScratchConfig,
        dir: &Path,
        remove_dir: bool,
    ) -> Result<Scratch, VerifyError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port =
                free_port().map_err(|e| VerifyError::Scratch(format!("no free port: {e}")))?;
            let server = ManagedServer::new(ManagedSpec {
                binary: config.binary.clone(),
                dir: dir.to_path_buf(),
                port,
                user: config.user.clone(),
                password: config.password.clone(),
                telemetry: false,
                log_level: "warning".into(),
                stop_timeout: Duration::from_secs(30),
                lock_dir: false,
            });
            let mut scratch = Scratch { server, remove_dir };
            let started = match scratch.server.start().await {
                Ok(()) => scratch.wait_login(config.ready_timeout).await,
                Err(e) => Err(e.to_string()),
            };
            match started {
                Ok(()) => return Ok(scratch),
                Err(e) if attempts < 3 && e.contains("already in use") => {
                    tracing::debug!(port, "the scratch server's port was taken: another port");
                    let _ = scratch.server.stop().await;
                    // The directory serves the next attempt.
                    scratch.remove_dir = false;
                }
                Err(e) => {
                    scratch.finish().await;
                    return Err(VerifyError::Scratch(e));
                }
            }
        }
    }

    /// A connection to `database` on the scratch server.
    pub async fn connect(&self, database: &str) -> Result<Client, VerifyError> {
        let spec = &self.server.spec;
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(spec.port)
            .user(&spec.user)
            .password(&spec.password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            VerifyError::Query(format!(
                "database {database}: {}",
                crate::upstream::describe_sql_error(&e)
            ))
        })?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn wait_login(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.server.exit_watch()
                && let Some(status) = *exit.borrow()
            {
                return Err(format!(
                    "the scratch Doltgres did not start: {}",
                    self.server.exit_report(status)
                ));
            }
            match self.connect("postgres").await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "scratch Doltgres not ready within {timeout:?}: {e}"
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Stops the server (and removes its directory if it is a temporary copy).
    pub async fn finish(self) {
        let _ = self.server.stop().await;
        // Drop removes the directory.
    }
}

impl Drop for Scratch {
    /// A temporary copy goes with its scratch server, also when the work using it is cut off
    /// (a shutdown's deadline, a cancelled task): the server is killed with its handle.
    fn drop(&mut self) {
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.server.spec.dir);
        }
    }
}

/// A fresh temporary directory for a scratch server (its name: `dgs-<name>-<pid>-<nanos>`; made
/// by the caller's copy, with mode 0700). Scratch directories that a process now gone left
/// behind (one killed while it verified) are removed first: they hold a copy of a server's
/// files, its users' verifiers among them.
pub fn scratch_dir(name: &str) -> PathBuf {
    let temp = std::env::temp_dir();
    remove_abandoned_scratch(&temp);
    let unique = format!(
        "dgs-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    temp.join(unique)
}

/// Removes `dgs-verify*-<pid>-<nanos>` directories in `temp` whose process no longer runs.
fn remove_abandoned_scratch(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("dgs-verify") else {
            continue;
        };
        // `-<pid>-<nanos>` at the end, after the name's own dashes.
        let mut parts = rest.rsplit('-');
        let (Some(nanos), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        let ours = std::fs::symlink_metadata(entry.path()).is_ok_and(|m| {
            std::os::unix::fs::MetadataExt::uid(&m) == nix::unistd::geteuid().as_raw() && m.is_dir()
        });
        if ours && nanos.parse::<u128>().is_ok() && !crate::control::managed::alive(pid) {
            tracing::info!(path = %entry.path().display(), "removing the scratch copy of a verification that was cut off");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The first column of every row, as text.
pub async fn column(client: &Client, sql: &str) -> Result<Vec<String>, VerifyError> {
    let rows = client.simple_query(sql).await.map_err(|e| {
        VerifyError::Query(format!(
            "{sql}: {}",
            crate::upstream::describe_sql_error(&e)
        ))
    })?;
    Ok(crate::upstream::first_column(&rows))
}

/// Checks every file of an entry against its manifest's size and checksum.
pub fn check_files(entry: &Entry, progress: &mut dyn FnMut(u64)) -> Result<(), VerifyError> {
    files_match(entry, progress).map_err(VerifyError::Files)
}

fn files_match(entry: &Entry, progress: &mut dyn FnMut(u64)) -> Result<(), String> {
    for record in &entry.manifest.files {
        if let Some(segments) = &record.segments {
            let size = crate::catalog::journal::reassemble(
                &entry.dir,
                &record.path,
                segments,
                &mut std::io::sink(),
                progress,
            )?;
            if size != record.size
                || crate::catalog::journal::combined_sha256(segments) != record.sha256
            {
                return Err(format!("{}: differs from the manifest", record.path));
            }
            continue;
        }
        let path = entry.file_path(record)?;
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", record.path))?;
        if !meta.is_file() {
            return Err(format!("{}: not a regular file", record.path));
        }
        let size = meta.len();
        if size != record.size {
            return Err(format!(
                "{}: {size} bytes, manifest says {}",
                record.path, record.size
            ));
        }
        let sha = copy_tree::sha256_file(&path).map_err(|e| format!("{}: {e}", record.path))?;
        if sha != record.sha256 {
            return Err(format!(
                "{}: checksum differs from the manifest",
                record.path
            ));
        }
        progress(size);
    }
    Ok(())
}

/// Verifies a copy entry: checksums, then a scratch server on a temporary copy where every
/// database's HEAD, working set and row counts must equal the manifest's.
pub async fn verify_entry(
    config: &ScratchConfig,
    entry: &Entry,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<String, VerifyError> {
    let started = Instant::now();
    // One pass: each file is checked against the manifest as it is copied to the scratch
    // directory (a journal reassembled from its segments).
    let dir = scratch_dir("verify");
    let (source, target) = (entry.clone(), dir.clone());
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let copied = tokio::task::spawn_blocking(move || {
        crate::catalog::materialize(&source, &target, &mut |n| {
            let _ = sender.send(n);
        })
    });
    let mut copied = std::pin::pin!(copied);
    let result = loop {
        tokio::select! {
            Some(n) = receiver.recv() => progress(n),
            done = &mut copied => {
                while let Ok(n) = receiver.try_recv() {
                    progress(n);
                }
                break done.map_err(|e| e.to_string()).and_then(|r| r);
            }
        }
    };
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(VerifyError::Files(e));
    }
    let scratch = Scratch::start(config, &dir, true).await?;
    let compared = compare(&scratch, &entry.manifest).await;
    scratch.finish().await;
    compared?;
    Ok(format!(
        "{} databases, {} files match the manifest ({:.1}s)",
        entry.manifest.databases.len(),
        entry.manifest.files.len(),
        started.elapsed().as_secs_f64()
    ))
}

async fn compare(scratch: &Scratch, manifest: &Manifest) -> Result<(), VerifyError> {
    for db in &manifest.databases {
        let client = scratch.connect(&db.name).await?;
        let name = &db.name;
        let hashes = [
            ("HEAD", "SELECT dolt_hashof('HEAD')", &db.head),
            ("working set", "SELECT dolt_hashof_db()", &db.working_set),
        ];
        for (what, sql, expected) in hashes {
            let found = column(&client, sql).await?;
            if found.first() != Some(expected) {
                return Err(VerifyError::Differs(format!(
                    "{name}: {what} is {}, the manifest says {expected}",
                    answer(&found)
                )));
            }
        }
        let log = column(&client, "SELECT count(*) FROM dolt_log").await?;
        if log.first().is_none_or(|n| n == "0") {
            return Err(VerifyError::Differs(format!(
                "{name}: the commit log is empty"
            )));
        }
        for (table, rows) in &db.tables {
            let (schema, table_name) = table.split_once('.').unwrap_or(("public", table));
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(schema),
                quote_ident(table_name)
            );
            let count = column(&client, &sql).await?;
            if count.first().and_then(|c| c.parse::<u64>().ok()) != Some(*rows) {
                return Err(VerifyError::Differs(format!(
                    "{name}: {table} has {} rows, the manifest says {rows}",
                    answer(&count)
                )));
            }
        }
    }
    Ok(())
}

/// A query's one value as a message shows it: the value itself, `nothing` for no row, the values
/// joined for several.
fn answer(values: &[String]) -> String {
    match values {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        several => several.join(", "),
    }
}

/// What [`restore_url`] made.
pub struct RestoredUrl {
    /// The database it is in on the scratch server.
    pub database: String,
    pub head: String,
}

/// Restores a sync backup (`dolt_backup('restore', …)`) as `database` on a scratch server or,
/// failing that, clones a push remote (`dolt_clone`) as `<database>_clone` (a failed restore
/// leaves its database behind: docs/doltgres-notes.md).
pub async fn restore_url(
    scratch: &Scratch,
    url: &str,
    database: &str,
) -> Result<RestoredUrl, VerifyError> {
    let client = scratch.connect("postgres").await?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let restore = format!(
        "SELECT dolt_backup('restore', {}, {})",
        quote(url),
        quote(database)
    );
    let mut name = database.to_string();
    if let Err(backup_error) = column(&client, &restore).await {
        name = format!("{database}_clone");
        let clone = format!("SELECT dolt_clone({}, {})", quote(url), quote(&name));
        column(&client, &clone).await.map_err(|clone_error| {
            VerifyError::Differs(format!(
                "neither a sync backup ({backup_error}) nor a push remote ({clone_error})"
            ))
        })?;
    }
    let restored = scratch.connect(&name).await?;
    let log = column(&restored, "SELECT count(*) FROM dolt_log").await?;
    if log.first().is_none_or(|n| n == "0") {
        return Err(VerifyError::Differs(format!(
            "{url}: the restored commit log is empty"
        )));
    }
    let head = column(&restored, "SELECT dolt_hashof('HEAD')").await?;
    Ok(RestoredUrl {
        database: name,
        head: head.into_iter().next().unwrap_or_default(),
    })
}

/// Verifies a sync backup or push remote by restoring it on a scratch server.
pub async fn verify_url(config: &ScratchConfig, url: &str) -> Result<String, VerifyError> {
    let dir = scratch_dir("verify-url");
    let scratch = Scratch::start(config, &dir, true).await?;
    let restored = restore_url(&scratch, url, "verified").await;
    scratch.finish().await;
    Ok(format!("{url} restores; HEAD {}", restored?.head))
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn values_are_shown_as_values() {
        assert_eq!(answer(&["3".to_string()]), "3");
        assert_eq!(answer(&[]), "nothing");
        assert_eq!(answer(&["a".to_string(), "b".to_string()]), "a, b");
    }
}
