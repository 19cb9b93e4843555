//! `[server]`: whether and how the sidecar controls the Doltgres server. The control mode is a
//! type with the settings of that mode alone ([`ServerControl`]); in the file they are keys of
//! the one `[server]` table, and a key of another mode than `control` names is refused.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The name of a control mode: the value of `control` in the file and of `--control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
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

/// Who starts and stops the server, with what only that mode uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ServerControl {
    /// The server is someone else's.
    #[default]
    External,
    /// Doltgres as the sidecar's child process.
    Managed(Managed),
    /// Doltgres stopped and started by the operator's commands.
    Command(Commands),
}

impl ServerControl {
    pub fn mode(&self) -> ControlMode {
        match self {
            ServerControl::External => ControlMode::External,
            ServerControl::Managed(_) => ControlMode::Managed,
            ServerControl::Command(_) => ControlMode::Command,
        }
    }

    /// Managed mode's settings.
    pub fn managed(&self) -> Option<&Managed> {
        match self {
            ServerControl::Managed(m) => Some(m),
            _ => None,
        }
    }

    pub fn managed_mut(&mut self) -> Option<&mut Managed> {
        match self {
            ServerControl::Managed(m) => Some(m),
            _ => None,
        }
    }
}

/// `control = "managed"`: the server's files, port and restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    /// Where the server's files live: `data/` (the databases), `work/` (its working directory,
    /// which holds `auth.db`), `root/` (`DOLT_ROOT_PATH`, the global config) and the
    /// `config.yaml` the sidecar writes.
    pub dir: PathBuf,
    /// The loopback port Doltgres listens on; 0 picks a free one at start.
    pub port: u16,
    /// Send Doltgres' usage telemetry (off unless set).
    pub telemetry: bool,
    /// Doltgres' `log_level`.
    pub log_level: String,
    /// First wait before restarting a server that died; doubles up to `restart_max`.
    pub restart_initial: Duration,
    pub restart_max: Duration,
}

impl Default for Managed {
    fn default() -> Self {
        Managed {
            dir: PathBuf::from("var/doltgres"),
            port: 0,
            telemetry: false,
            log_level: "info".into(),
            restart_initial: Duration::from_secs(1),
            restart_max: Duration::from_secs(30),
        }
    }
}

impl Managed {
    /// The databases' directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// `control = "command"`: the commands, and what a copy takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Commands {
    /// The program and arguments that stop the server (must return once it is down).
    pub stop: Vec<String>,
    /// The program and arguments that start it again.
    pub start: Vec<String>,
    /// The server's data directory, as this container sees it (for copies).
    pub data_dir: PathBuf,
    /// More files the server needs to come back identically (auth.db, config.yaml, the global
    /// config), copied into every entry beside the data directory.
    pub config_files: Vec<PathBuf>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "ServerTable", into = "ServerTable")]
pub struct ServerConfig {
    pub control: ServerControl,
    /// The Doltgres binary, a path or a name on `PATH`: the managed server's, and the scratch
    /// servers' that verify backups in every mode.
    pub binary: PathBuf,
    /// The superuser (managed: the one Doltgres creates, `DOLTGRES_USER`); scratch servers'.
    pub user: String,
    /// Its password (managed: `DOLTGRES_PASSWORD`); also the default backup password.
    pub password: Option<String>,
    /// A file holding the password (as Kubernetes mounts secrets); read at start.
    pub password_file: Option<PathBuf>,
    /// How long stopping may take; a managed server is then killed.
    pub stop_timeout: Duration,
    /// How long the server may take to accept a login after starting.
    pub ready_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            control: ServerControl::External,
            binary: PathBuf::from("doltgres"),
            user: "postgres".into(),
            password: None,
            password_file: None,
            stop_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

impl ServerConfig {
    /// What the types cannot say: managed mode needs the superuser's password (which may come
    /// from `DOLTGRES_PASSWORD` after the file is read).
    pub fn validate(&self) -> Result<(), String> {
        match self.control {
            ServerControl::Managed(_) if self.password.is_none() => Err(
                "managed: set server.password or DOLTGRES_PASSWORD (the superuser's password)"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

/// `[server]` as the file has it: one table, the keys of every mode.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct ServerTable {
    control: ControlMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_file: Option<PathBuf>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    ready_timeout: Option<Duration>,
    // managed
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    telemetry: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    restart_initial: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    restart_max: Option<Duration>,
    // command
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_files: Option<Vec<PathBuf>>,
}

impl ServerTable {
    /// The keys of managed mode that are set.
    fn managed_keys(&self) -> Vec<&'static str> {
        [
            ("dir", self.dir.is_some()),
            ("port", self.port.is_some()),
            ("telemetry", self.telemetry.is_some()),
            ("log_level", self.log_level.is_some()),
            ("restart_initial", self.restart_initial.is_some()),
            ("restart_max", self.restart_max.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// The keys of command mode that are set.
    fn command_keys(&self) -> Vec<&'static str> {
        [
            ("stop", self.stop.is_some()),
            ("start", self.start.is_some()),
            ("data_dir", self.data_dir.is_some()),
            ("config_files", self.config_files.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

/// A key of `mode` set while `control` is another mode.
fn foreign(control: ControlMode, mode: ControlMode, keys: &[&str]) -> Result<(), String> {
    match keys {
        [] => Ok(()),
        keys => Err(format!(
            "server.{} {} a setting of control = \"{}\", and control is \"{}\"",
            keys.join(", server."),
            if keys.len() == 1 { "is" } else { "are" },
            mode.as_str(),
            control.as_str(),
        )),
    }
}

impl TryFrom<ServerTable> for ServerConfig {
    type Error = String;

    fn try_from(t: ServerTable) -> Result<ServerConfig, String> {
        let control = match t.control {
            ControlMode::External => {
                foreign(t.control, ControlMode::Managed, &t.managed_keys())?;
                foreign(t.control, ControlMode::Command, &t.command_keys())?;
                ServerControl::External
            }
            ControlMode::Managed => {
                foreign(t.control, ControlMode::Command, &t.command_keys())?;
                let d = Managed::default();
                ServerControl::Managed(Managed {
                    dir: t.dir.clone().unwrap_or(d.dir),
                    port: t.port.unwrap_or(d.port),
                    telemetry: t.telemetry.unwrap_or(d.telemetry),
                    log_level: t.log_level.clone().unwrap_or(d.log_level),
                    restart_initial: t.restart_initial.unwrap_or(d.restart_initial),
                    restart_max: t.restart_max.unwrap_or(d.restart_max),
                })
            }
            ControlMode::Command => {
                foreign(t.control, ControlMode::Managed, &t.managed_keys())?;
                let (stop, start) = (t.stop.clone(), t.start.clone());
                let (Some(stop), Some(start)) = (stop, start) else {
                    return Err("command: set server.stop and server.start".into());
                };
                if stop.is_empty() || start.is_empty() {
                    return Err("command: set server.stop and server.start".into());
                }
                let Some(data_dir) = t.data_dir.clone() else {
                    return Err(
                        "command: set server.data_dir (the server's data directory, for copies)"
                            .into(),
                    );
                };
                ServerControl::Command(Commands {
                    stop,
                    start,
                    data_dir,
                    config_files: t.config_files.clone().unwrap_or_default(),
                })
            }
        };
        let d = ServerConfig::default();
        Ok(ServerConfig {
            control,
            binary: t.binary.unwrap_or(d.binary),
            user: t.user.unwrap_or(d.user),
            password: t.password,
            password_file: t.password_file,
            stop_timeout: t.stop_timeout.unwrap_or(d.stop_timeout),
            ready_timeout: t.ready_timeout.unwrap_or(d.ready_timeout),
        })
    }
}

impl From<ServerConfig> for ServerTable {
    fn from(c: ServerConfig) -> ServerTable {
        let mut t = ServerTable {
            control: c.control.mode(),
            binary: Some(c.binary),
            user: Some(c.user),
            password: c.password,
            password_file: c.password_file,
            stop_timeout: Some(c.stop_timeout),
            ready_timeout: Some(c.ready_timeout),
            ..ServerTable::default()
        };
        match c.control {
            ServerControl::External => {}
            ServerControl::Managed(m) => {
                t.dir = Some(m.dir);
                t.port = Some(m.port);
                t.telemetry = Some(m.telemetry);
                t.log_level = Some(m.log_level);
                t.restart_initial = Some(m.restart_initial);
                t.restart_max = Some(m.restart_max);
            }
            ServerControl::Command(c) => {
                t.stop = Some(c.stop);
                t.start = Some(c.start);
                t.data_dir = Some(c.data_dir);
                t.config_files = Some(c.config_files);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, String> {
        toml::from_str::<ServerConfig>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn each_mode_reads_its_own_keys_with_defaults_for_the_rest() {
        let managed = parse("control = \"managed\"\nport = 7000\nrestart_max = \"2m\"\n").unwrap();
        let ServerControl::Managed(m) = &managed.control else {
            panic!("{managed:?}")
        };
        assert_eq!((m.port, m.restart_max), (7000, Duration::from_secs(120)));
        assert_eq!(m.dir, PathBuf::from("var/doltgres"));
        let command = parse(
            "control = \"command\"\nstop = [\"s\"]\nstart = [\"t\"]\ndata_dir = \"/d\"\n\
             stop_timeout = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(
            command.control,
            ServerControl::Command(Commands {
                stop: vec!["s".into()],
                start: vec!["t".into()],
                data_dir: "/d".into(),
                config_files: vec![],
            })
        );
        assert_eq!(command.stop_timeout, Duration::from_secs(5));
        assert_eq!(parse("").unwrap(), ServerConfig::default());
    }

    #[test]
    fn a_key_of_another_mode_is_refused_by_name() {
        for (text, named) in [
            (
                "port = 7000\n",
                "server.port is a setting of control = \"managed\", and control is \"external\"",
            ),
            (
                "stop = [\"x\"]\ndir = \"/d\"\n",
                "server.dir is a setting of control = \"managed\"",
            ),
            (
                "control = \"managed\"\ndata_dir = \"/d\"\nconfig_files = []\n",
                "server.data_dir, server.config_files are a setting of control = \"command\", and control is \"managed\"",
            ),
            (
                "control = \"command\"\nstop = [\"s\"]\nstart = [\"t\"]\ndata_dir = \"/d\"\ntelemetry = true\n",
                "server.telemetry is a setting of control = \"managed\", and control is \"command\"",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(named), "{text}: {err}");
        }
    }

    #[test]
    fn command_mode_needs_its_commands_and_data_directory() {
        for (text, says) in [
            (
                "control = \"command\"\ndata_dir = \"/d\"\n",
                "set server.stop and server.start",
            ),
            (
                "control = \"command\"\nstop = []\nstart = [\"t\"]\ndata_dir = \"/d\"\n",
                "set server.stop",
            ),
            (
                "control = \"command\"\nstop = [\"s\"]\nstart = [\"t\"]\n",
                "set server.data_dir",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn written_out_and_read_back_it_is_the_same() {
        let mut managed = ServerConfig {
            control: ServerControl::Managed(Managed::default()),
            password: Some("pw".into()),
            ..ServerConfig::default()
        };
        managed.control.managed_mut().unwrap().port = 5433;
        let command = ServerConfig {
            control: ServerControl::Command(Commands {
                stop: vec!["s".into()],
                start: vec!["t".into()],
                data_dir: "/d".into(),
                config_files: vec!["/a".into()],
            }),
            ..ServerConfig::default()
        };
        for config in [ServerConfig::default(), managed, command] {
            let text = toml::to_string(&config).unwrap();
            assert_eq!(parse(&text).unwrap(), config, "{text}");
        }
    }

    #[test]
    fn the_mode_names_are_the_same_in_the_file_and_on_the_command_line() {
        use clap::ValueEnum;
        for mode in ControlMode::value_variants() {
            let flag = mode.to_possible_value().unwrap();
            assert_eq!(flag.get_name(), mode.as_str());
            let file: ControlMode = toml::Value::String(mode.as_str().into())
                .try_into()
                .unwrap();
            assert_eq!(file, *mode);
        }
    }
}
