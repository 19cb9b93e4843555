//! `[server]`: whether and how the sidecar controls the Doltgres server.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who starts and stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlMode {
    /// The server is someone else's: no stop-and-copy.
    #[default]
    External,
    /// The sidecar runs Doltgres as its child process.
    Managed,
    /// Operator commands stop and start the server (Doltgres in another container).
    Command,
}

impl ControlMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlMode::External => "external",
            ControlMode::Managed => "managed",
            ControlMode::Command => "command",
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub control: ControlMode,
    /// Managed: the Doltgres binary, a path or a name on `PATH`.
    pub binary: PathBuf,
    /// Managed: where the server's files live: `data/` (the databases), `work/` (its working
    /// directory, which holds `auth.db`), `root/` (`DOLT_ROOT_PATH`, the global config) and the
    /// `config.yaml` the sidecar writes.
    pub dir: PathBuf,
    /// Managed: the loopback port Doltgres listens on; 0 picks a free one at start.
    pub port: u16,
    /// Managed: the superuser Doltgres creates (`DOLTGRES_USER`).
    pub user: String,
    /// Managed: its password (`DOLTGRES_PASSWORD`); also the default backup password.
    pub password: Option<String>,
    /// A file holding the password (as Kubernetes mounts secrets); read at start.
    pub password_file: Option<std::path::PathBuf>,
    /// Managed: send Doltgres' usage telemetry (off unless set).
    pub telemetry: bool,
    /// Managed: Doltgres' `log_level`.
    pub log_level: String,
    /// Command: the program and arguments that stop the server (must return once it is down).
    pub stop: Vec<String>,
    /// Command: the program and arguments that start it again.
    pub start: Vec<String>,
    /// Command: the server's data directory, as this container sees it (for copies).
    pub data_dir: Option<PathBuf>,
    /// Command: more files the server needs to come back identically (auth.db, config.yaml, the
    /// global config), copied into every entry beside the data directory.
    pub config_files: Vec<PathBuf>,
    /// How long stopping may take; a managed server is then killed.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// How long the server may take to accept a login after starting.
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// Managed: first wait before restarting a server that died; doubles up to `restart_max`.
    #[serde(with = "humantime_serde")]
    pub restart_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub restart_max: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            control: ControlMode::External,
            binary: PathBuf::from("doltgres"),
            dir: PathBuf::from("var/doltgres"),
            port: 0,
            user: "postgres".into(),
            password: None,
            password_file: None,
            telemetry: false,
            log_level: "info".into(),
            stop: Vec::new(),
            start: Vec::new(),
            data_dir: None,
            config_files: Vec::new(),
            stop_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(60),
            restart_initial: Duration::from_secs(1),
            restart_max: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        match self.control {
            ControlMode::External => Ok(()),
            ControlMode::Managed if self.password.is_none() => Err(
                "managed: set server.password or DOLTGRES_PASSWORD (the superuser's password)"
                    .into(),
            ),
            ControlMode::Managed => Ok(()),
            ControlMode::Command if self.stop.is_empty() || self.start.is_empty() => {
                Err("command: set server.stop and server.start".into())
            }
            ControlMode::Command if self.data_dir.is_none() => {
                Err("command: set server.data_dir (the server's data directory, for copies)".into())
            }
            ControlMode::Command => Ok(()),
        }
    }

    /// Managed: the databases' directory.
    pub fn managed_data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}
