//! The `[backup]` section of the config file: what a window does and when windows open.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::server::ControlMode;

/// What a window does while traffic holds still.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `dolt_push(remote, branch)` per database and branch.
    Push,
    /// `dolt_backup('sync', name)` per database.
    Sync,
    /// An operator command (EBS/LVM/fsfreeze snapshot).
    Snapshot,
    /// Stop the server, copy its files into a catalog entry, start it again.
    Copy,
}

impl Action {
    /// Every action, in the order triggered windows run them.
    pub const ALL: [Action; 4] = [Action::Push, Action::Sync, Action::Snapshot, Action::Copy];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Sync => "sync",
            Action::Snapshot => "snapshot",
            Action::Copy => "copy",
        }
    }

    /// Whether the action stops the server (so a window for it holds new logins, too).
    pub fn stops_server(self) -> bool {
        matches!(self, Action::Copy)
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// `[backup]`: credentials for the sidecar's own connections, the actions, and the triggers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Superuser the sidecar logs in as to run Dolt procedures (they need one).
    pub user: String,
    /// Its password. `run` fills it from `--backup-password`, `DOLTGRES_SIDECAR_BACKUP_PASSWORD`
    /// or `DOLTGRES_PASSWORD` when the file has none; push and sync need it.
    pub password: Option<String>,
    /// A file holding the password (as Kubernetes mounts secrets); read at start.
    pub password_file: Option<std::path::PathBuf>,
    /// The databases every action covers.
    pub databases: Vec<String>,
    pub push: Option<PushConfig>,
    pub sync: Option<SyncConfig>,
    pub snapshot: Option<SnapshotConfig>,
    pub copy: Option<CopyConfig>,
    /// Open a window after this many write commits since the last successful one (0: never).
    pub every_write_commits: u64,
    /// Open a window at most this long after the first write commit no backup holds yet (a
    /// write waits at most this for its backup; reads alone open none).
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// What triggered windows run; empty means every configured action.
    pub actions: Vec<Action>,
    /// Run a last window on graceful shutdown, once every session has ended, if anything was
    /// written since the last one.
    pub on_shutdown: bool,
    /// The longest each phase of an action may run: before the gate closes, while it is closed,
    /// and after it reopens.
    #[serde(with = "humantime_serde")]
    pub action_timeout: Duration,
    /// First wait after a failed triggered window; doubles up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            user: "postgres".into(),
            password: None,
            password_file: None,
            databases: vec!["postgres".into()],
            push: None,
            sync: None,
            snapshot: None,
            copy: None,
            every_write_commits: 0,
            interval: None,
            actions: Vec::new(),
            on_shutdown: true,
            action_timeout: Duration::from_secs(300),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// `[backup.push]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The Dolt remote to push to.
    pub remote: String,
    /// If set, the remote is added with this URL when missing; `{database}` is replaced by the
    /// database name (every scheme Doltgres supports: file://, aws://, gs://, https://...).
    pub url: Option<String>,
    #[serde(default = "default_branches")]
    pub branches: Vec<String>,
    /// Record a Dolt commit of the working set inside the window first, so the push carries
    /// what SQL COMMITs wrote.
    #[serde(default)]
    pub commit_working_set: bool,
}

fn default_branches() -> Vec<String> {
    vec!["main".into()]
}

/// `[backup.sync]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The backup's name (`dolt_backup('add', name, url)`).
    pub name: String,
    /// Added when missing; `{database}` is replaced by the database name.
    pub url: Option<String>,
}

/// `[backup.snapshot]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Program and arguments, run while quiesced. It sees `DOLTGRES_SIDECAR_WINDOW_ID`,
    /// `DOLTGRES_SIDECAR_ACTION` and `DOLTGRES_SIDECAR_UPSTREAM` in its environment.
    pub command: Vec<String>,
    #[serde(default = "default_snapshot_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `[backup.copy]`: stop-and-copy into a catalog of full-server copies.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// The catalog directory: one directory per complete entry.
    pub catalog: std::path::PathBuf,
    /// Keep at most this many entries (0: no limit). The newest good entry is never deleted.
    #[serde(default)]
    pub keep_last: usize,
    /// Delete entries older than this (never the newest good one).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Verify each new entry on a scratch Doltgres after the window.
    #[serde(default)]
    pub verify_after: bool,
    /// How long sessions may take to close their upstream connections before the stop.
    #[serde(default = "default_detach_timeout", with = "humantime_serde")]
    pub detach_timeout: Duration,
    /// How often the files of the entry new copies hard-link from are checked against their
    /// checksums again (bit rot, or a changed file, must not spread into every later entry);
    /// 0 turns it off.
    #[serde(default = "default_scrub_interval", with = "humantime_serde")]
    pub scrub_interval: Duration,
    /// Run `dolt_gc()` inside a copy window, with every session at a boundary (a GC fails the
    /// open transactions of other sessions), on each database whose chunk journal is larger than
    /// this many bytes; 0 never does. A GC holds traffic for seconds (6.7 s for a 161 MB journal
    /// here) and the next copy takes its new table file whole once; journals are stored in
    /// shared segments, so an entry costs the change without one.
    #[serde(default)]
    pub gc_journal_size: u64,
    /// `[backup.copy.offsite]`: replicate each entry to object storage after its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<crate::offsite::config::OffsiteConfig>,
}

impl CopyConfig {
    /// Copies into `catalog`, verified, the last ten kept.
    pub fn new(catalog: std::path::PathBuf) -> CopyConfig {
        CopyConfig {
            catalog,
            keep_last: 10,
            max_age: None,
            verify_after: true,
            detach_timeout: default_detach_timeout(),
            scrub_interval: default_scrub_interval(),
            gc_journal_size: 0,
            offsite: None,
        }
    }
}

fn default_scrub_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_detach_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_snapshot_timeout() -> Duration {
    Duration::from_secs(60)
}

impl BackupConfig {
    /// Whether `action` has its section configured.
    pub fn has(&self, action: Action) -> bool {
        match action {
            Action::Push => self.push.is_some(),
            Action::Sync => self.sync.is_some(),
            Action::Snapshot => self.snapshot.is_some(),
            Action::Copy => self.copy.is_some(),
        }
    }

    /// The actions triggered windows run.
    pub fn triggered_actions(&self) -> Vec<Action> {
        if !self.actions.is_empty() {
            return self.actions.clone();
        }
        Action::ALL.into_iter().filter(|a| self.has(*a)).collect()
    }

    /// Why `action` cannot run now, as a sentence that says what to set (it is not configured;
    /// for a copy under `external` control, that the server must be the sidecar's to stop).
    pub fn not_configured(&self, action: Action, control: ControlMode) -> Option<String> {
        if self.has(action) {
            return None;
        }
        Some(match action {
            Action::Copy if control == ControlMode::External => {
                "a copy stops and restarts the server, and this sidecar does not control it \
                 (server.control = \"external\"): run it with --control managed, so that it runs \
                 Doltgres itself (copies then go to backups/ beside --server-dir), or with \
                 --control command, --server-stop, --server-start and --backup-copy-catalog DIR \
                 for a server it stops and starts with your commands"
                    .to_string()
            }
            Action::Copy => "copy is not configured: set backup.copy.catalog \
                 (--backup-copy-catalog DIR), the directory copies go to"
                .to_string(),
            Action::Push => "push is not configured: set backup.push.remote \
                 (--backup-push-remote NAME) and, for the remote to be added, backup.push.url \
                 (--backup-push-url URL)"
                .to_string(),
            Action::Sync => "sync is not configured: set backup.sync.name \
                 (--backup-sync-name NAME) and backup.sync.url (--backup-sync-url URL)"
                .to_string(),
            Action::Snapshot => "snapshot is not configured: set backup.snapshot.command \
                 (--backup-snapshot-command PROGRAM,ARGUMENTS)"
                .to_string(),
        })
    }

    /// The password for the sidecar's own connections (validated present when an action that
    /// connects is configured).
    pub fn password(&self) -> &str {
        self.password.as_deref().unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), String> {
        if (self.push.is_some() || self.sync.is_some()) && self.password.is_none() {
            return Err(format!(
                "push and sync log in as {:?} and need its password: set backup.password, \
                 --backup-password, DOLTGRES_SIDECAR_BACKUP_PASSWORD or DOLTGRES_PASSWORD",
                self.user
            ));
        }
        for action in &self.actions {
            if !self.has(*action) {
                return Err(format!(
                    "actions names {} but [backup.{}] is missing",
                    action.as_str(),
                    action.as_str()
                ));
            }
        }
        if self.databases.is_empty() && (self.push.is_some() || self.sync.is_some()) {
            return Err("databases is empty".into());
        }
        if let Some(s) = &self.snapshot
            && s.command.is_empty()
        {
            return Err("snapshot.command is empty".into());
        }
        if let Some(offsite) = self.copy.as_ref().and_then(|c| c.offsite.as_ref()) {
            offsite.check()?;
        }
        if (self.every_write_commits > 0 || self.interval.is_some())
            && self.triggered_actions().is_empty()
        {
            return Err("triggers are set but no action is configured".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_section() {
        let c: BackupConfig = toml::from_str(
            r#"
            password = "pw"
            databases = ["db1", "db2"]
            every_write_commits = 100
            interval = "5m"
            [push]
            remote = "backup"
            url = "file:///backups/{database}"
            commit_working_set = true
            [sync]
            name = "nightly"
            url = "file:///sync/{database}"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.triggered_actions(), vec![Action::Push, Action::Sync]);
        assert_eq!(c.push.unwrap().branches, vec!["main"]);
        assert_eq!(c.interval, Some(Duration::from_secs(300)));
    }

    #[test]
    fn every_action_parses_from_its_name() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("restore"), None);
    }

    #[test]
    fn push_or_sync_without_a_password_is_rejected() {
        let c: BackupConfig = toml::from_str("[sync]\nname = \"b\"").unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.contains("password"), "{err}");
        let c: BackupConfig = toml::from_str("[snapshot]\ncommand = [\"true\"]").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn a_missing_action_says_what_to_set() {
        let c = BackupConfig::default();
        let copy = c
            .not_configured(Action::Copy, ControlMode::External)
            .unwrap();
        assert!(
            copy.contains("does not control it") && copy.contains("--control managed"),
            "{copy}"
        );
        let copy = c
            .not_configured(Action::Copy, ControlMode::Managed)
            .unwrap();
        assert!(copy.contains("--backup-copy-catalog"), "{copy}");
        for action in [Action::Push, Action::Sync, Action::Snapshot] {
            let text = c.not_configured(action, ControlMode::Managed).unwrap();
            assert!(
                text.starts_with(&format!(
                    "{} is not configured: set backup.",
                    action.as_str()
                )),
                "{text}"
            );
        }
        let c: BackupConfig = toml::from_str("[snapshot]\ncommand = [\"true\"]").unwrap();
        assert_eq!(
            c.not_configured(Action::Snapshot, ControlMode::External),
            None
        );
    }

    #[test]
    fn triggers_without_actions_are_rejected() {
        let c: BackupConfig = toml::from_str("every_write_commits = 10").unwrap();
        assert!(c.validate().is_err());
        let c: BackupConfig = toml::from_str("actions = [\"push\"]").unwrap();
        assert!(c.validate().unwrap_err().contains("push"));
    }
}
