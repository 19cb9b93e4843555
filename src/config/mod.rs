//! Runtime configuration: defaults, the TOML file, then command-line flags and environment
//! variables on top ([`flags`]; every key of the file has both, listed in [`keys`]). `validate`
//! rejects combinations that cannot work before any socket is opened.

pub mod auth;
pub mod backup;
pub mod flags;
pub mod keys;
pub mod log_filter;
pub mod modes;
pub mod resolve;
pub mod secrets;
pub mod server;
pub mod stamp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::backup::{Action, BackupConfig, CopyConfig};
use crate::config::server::{ServerConfig, ServerControl};
use auth::{AuthMode, DEFAULT_AUTH_QUERY, Passwords};
pub use modes::{ClientTlsMode, DrainPolicy, LogFormat, UpstreamTlsMode};

/// Everything the proxy needs to run. Field docs say why each knob exists.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where clients connect.
    pub listen: String,
    /// The Doltgres (or PostgreSQL) server every session is relayed to, as `host:port`.
    pub upstream: String,
    /// Where the admin HTTP API listens.
    pub admin_listen: String,
    /// Largest protocol message accepted from either side, in bytes. Larger lengths are treated as
    /// a protocol violation (`08P01`) so a corrupt or hostile length cannot make the proxy wait
    /// for gigabytes.
    pub max_message_len: u32,
    /// Largest startup packet accepted from a client, in bytes, not counting its 4-byte length
    /// word (PostgreSQL's limit is 10,000 counted the same way). Larger ones are closed silently.
    pub max_startup_len: u32,
    /// Most client connections at once; more get `53300`. A connection counts once it has sent
    /// its StartupMessage.
    pub max_client_connections: usize,
    /// Most connections at once that have not sent their startup packet yet (TLS handshake
    /// included). A new one arriving at a full pool closes the one that has waited longest, so
    /// silent sockets cannot lock out clients that log in.
    pub max_startup_connections: usize,
    /// How long a client may take to send its startup packet.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// How long to wait for the upstream to accept a TCP connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// On SIGTERM/SIGINT: how long a session inside a transaction may run on to its boundary
    /// (one at a boundary is ended at once); after handing over to a successor: how long
    /// sessions may run on. Then the proxy closes them with `57P01`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Size of each read buffer, per direction and session.
    pub read_buffer_size: usize,
    /// Threads that run sessions: 1 runs everything on one thread (the fewest wake-ups and
    /// context switches per transaction); more spread sessions over that many worker threads;
    /// 0 uses one per CPU core.
    pub worker_threads: usize,
    /// The Unix socket a successor process (`run --upgrade`) takes the listeners over through.
    /// Unset: `doltgres-sidecar-<listen port>.sock` in `$XDG_RUNTIME_DIR`, else the temporary
    /// directory.
    pub handover_socket: Option<PathBuf>,
    /// TLS towards clients: `disable` (SSLRequest answered `N`), `allow`, `require`.
    pub tls: ClientTlsMode,
    /// PEM certificate chain presented to clients.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How often `tls_cert` and `tls_key` are checked for a renewed certificate (modification
    /// time, length and inode, following symlinks); a changed pair is loaded for new handshakes.
    /// 0 turns the check off (a reload still reads them).
    #[serde(with = "humantime_serde")]
    pub tls_reload_interval: Duration,
    /// TLS towards the upstream: `disable`, `prefer`, `require`, `verify-full` (libpq meanings).
    pub upstream_tls: UpstreamTlsMode,
    /// PEM CA certificates that sign the upstream's certificate (for `verify-full`).
    pub upstream_tls_ca: Option<PathBuf>,
    /// Host name to verify instead of the upstream address's host.
    pub upstream_tls_server_name: Option<String>,
    /// How long a window waits for sessions inside a transaction to reach a boundary.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// What happens to sessions still inside a transaction at the drain deadline: `abort` the
    /// window (retry later) or `terminate` those sessions with 57P01.
    pub drain_policy: DrainPolicy,
    /// A held client is sent a NoticeResponse after this long.
    #[serde(with = "humantime_serde")]
    pub hold_notice_after: Duration,
    /// A held request is answered with 57P03 after this long instead of waiting on.
    #[serde(with = "humantime_serde")]
    pub hold_timeout: Duration,
    /// The longest `ttl` and `timeout` an operator hold (`POST /quiesce`) may ask for, so that a
    /// mistyped or hostile request cannot hold traffic for a day.
    #[serde(with = "humantime_serde")]
    pub max_hold_ttl: Duration,
    /// Bearer token for the admin API's `/status`, `/quiesce`, `/resume` and `/backups`;
    /// required when `admin_listen` is not a loopback address. Also `DOLTGRES_SIDECAR_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// A file holding `admin_token` (as Kubernetes mounts secrets); read at start and on reload.
    pub admin_token_file: Option<PathBuf>,
    /// Who checks client passwords: `passthrough` (the server, its exchange relayed) or `proxy`
    /// (the proxy runs SCRAM-SHA-256 itself and logs in upstream with the client's ClientKey).
    /// Unset: `passthrough`, or `proxy` in managed mode.
    pub auth: Option<AuthMode>,
    /// `auth = "proxy"`: verifiers (or plain passwords) per user, in PgBouncer's `userlist.txt`
    /// format.
    pub auth_file: Option<PathBuf>,
    /// `auth = "proxy"`: the query that reads a user's verifier from the server, run as the
    /// backup user with the user name as `$1`; its second column is the verifier. Used for users
    /// the auth file lacks when set, and by default (with [`DEFAULT_AUTH_QUERY`]) when there is
    /// no auth file.
    pub auth_query: Option<String>,
    /// How long an auth query's answer (a verifier, or that there is none) is reused.
    #[serde(with = "humantime_serde")]
    pub auth_cache_ttl: Duration,
    /// `auth = "proxy"`: passwords per user for the login upstream, needed when the server asks
    /// for a cleartext or MD5 password, and used for SCRAM when its salt differs from the
    /// verifier's.
    pub auth_passwords: Passwords,
    /// The same in a file (userlist format with plain passwords).
    pub auth_passwords_file: Option<PathBuf>,
    /// The name of the console's virtual database: a client connecting to it on the proxy's
    /// port is served by the sidecar itself (`SHOW STATS`, `BACKUP`, ...), never relayed.
    pub console_database: String,
    /// Users who may log in to the console and run every command, checked with SCRAM-SHA-256
    /// against the same verifiers as `auth = "proxy"` (auth file or auth query), whatever `auth`
    /// is. Empty: the console refuses every login.
    pub admin_users: Vec<String>,
    /// Users who may log in to the console and run its read-only commands (`SHOW ...`).
    pub stats_users: Vec<String>,
    /// Backups: actions, credentials and triggers.
    pub backup: BackupConfig,
    /// Whether and how the sidecar controls the server.
    pub server: ServerConfig,
    /// How log lines are written: `text` for people, `json` (one object per line) for log
    /// collectors.
    pub log_format: LogFormat,
    /// What is logged, as `EnvFilter` directives (`info`, `warn,doltgres_sidecar=debug`).
    /// `RUST_LOG`, when set, wins at start.
    pub log_level: String,
}

/// Where a reload reads the configuration: given the running configuration (for what start
/// settled), the new one, resolved and validated.
pub type ConfigSource = Box<dyn Fn(&Config) -> Result<Config, ConfigError> + Send + Sync>;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6432".into(),
            upstream: "127.0.0.1:5432".into(),
            admin_listen: "127.0.0.1:9187".into(),
            max_message_len: 1 << 30,
            max_startup_len: 10_000,
            max_client_connections: 1000,
            max_startup_connections: 256,
            startup_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            read_buffer_size: 16 * 1024,
            worker_threads: 1,
            handover_socket: None,
            tls: ClientTlsMode::Disable,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: Duration::from_secs(10),
            upstream_tls: UpstreamTlsMode::Disable,
            upstream_tls_ca: None,
            upstream_tls_server_name: None,
            drain_timeout: Duration::from_secs(5),
            drain_policy: DrainPolicy::Abort,
            hold_notice_after: Duration::from_secs(1),
            hold_timeout: Duration::from_secs(30),
            max_hold_ttl: Duration::from_secs(600),
            admin_token: None,
            admin_token_file: None,
            auth: None,
            auth_file: None,
            auth_query: None,
            auth_cache_ttl: Duration::from_secs(30),
            auth_passwords: Passwords::default(),
            auth_passwords_file: None,
            console_database: "doltgres_sidecar".into(),
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            backup: BackupConfig::default(),
            server: ServerConfig::default(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

/// The shortest `admin_token` accepted when the admin API listens off loopback: a token anyone
/// on the network may try guesses at.
pub const MIN_PUBLIC_TOKEN: usize = 16;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The position and the parser's message, never the text of the line: the line may hold a
    /// secret (`admin_token = "…`), and this error is logged (on SIGHUP) and printed.
    #[error("invalid config file {path}, line {line}, column {column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Reads a TOML file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Config::load_file(path).map(|(config, _)| config)
    }

    /// Reads a TOML file as a configuration and as the table flags are laid over
    /// ([`flags::Overrides::over`]).
    pub fn load_file(path: &Path) -> Result<(Config, toml::Table), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let parse_error = |e: toml::de::Error| {
            let at = e.span().map_or(0, |span| span.start).min(text.len());
            let before = &text[..at];
            ConfigError::Parse {
                path: path.display().to_string(),
                line: before.matches('\n').count() + 1,
                column: before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
                message: e.message().trim().to_string(),
            }
        };
        let config = Config::from_toml(&text).map_err(parse_error)?;
        let table = toml::from_str(&text).map_err(parse_error)?;
        Ok((config, table))
    }

    /// Parses TOML text; missing keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reads a parsed TOML table; missing keys keep their defaults.
    ///
    /// In managed mode a `[backup.copy]` without `catalog` (say, only its `offsite` section, or
    /// `DOLTGRES_SIDECAR_BACKUP_COPY_OFFSITE_URL` alone) completes managed mode's default copies:
    /// the default catalog (settled by [`Config::settle_default_backups`]), ten kept, verified,
    /// unless the section says otherwise.
    pub fn deserialize_table(mut table: toml::Table) -> Result<Config, toml::de::Error> {
        let managed = table
            .get("server")
            .and_then(|s| s.get("control"))
            .and_then(|c| c.as_str())
            == Some("managed");
        if managed
            && let Some(copy) = table
                .get_mut("backup")
                .and_then(|b| b.get_mut("copy"))
                .and_then(|c| c.as_table_mut())
            && !copy.contains_key("catalog")
        {
            copy.insert("catalog".into(), "".into());
            copy.entry("keep_last").or_insert(10.into());
            copy.entry("verify_after").or_insert(true.into());
        }
        Config::deserialize(table)
    }

    /// Who checks client passwords.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.unwrap_or(AuthMode::Passthrough)
    }

    /// The auth query `auth = "proxy"` runs: the configured one, or the default when there is
    /// no auth file.
    pub fn effective_auth_query(&self) -> Option<&str> {
        match (&self.auth_query, &self.auth_file) {
            (Some(query), _) => Some(query),
            (None, None) => Some(DEFAULT_AUTH_QUERY),
            (None, Some(_)) => None,
        }
    }

    /// Whether the verifier store is needed: `auth = "proxy"`, or console users to check.
    pub fn needs_verifiers(&self) -> bool {
        self.auth_mode() == AuthMode::Proxy
            || !self.admin_users.is_empty()
            || !self.stats_users.is_empty()
    }

    /// Settles what managed mode decides: the server's port (a free one when 0), the upstream
    /// address (that port on loopback), the backup login (the managed superuser's password
    /// when none is set), and `auth = "proxy"` when `auth` is unset (verifiers from the server).
    pub fn settle_managed(&mut self) -> std::io::Result<()> {
        let Some(managed) = self.server.control.managed_mut() else {
            return Ok(());
        };
        if managed.port == 0 {
            managed.port = crate::ports::free_port()?;
        }
        self.upstream = format!("127.0.0.1:{}", managed.port);
        self.auth.get_or_insert(AuthMode::Proxy);
        if self.backup.password.is_none() && self.backup.user == self.server.user {
            self.backup.password = self.server.password.clone();
        }
        self.settle_default_backups();
        Ok(())
    }

    /// Managed mode's backups when no action is configured: copies into
    /// [`Config::default_catalog`], verified, the last ten kept, after 1,000 write commits or at
    /// most 5 minutes after the first write not yet backed up, and on shutdown.
    /// A `[backup.copy]` left without a catalog (see [`Config::deserialize_table`]) gets the
    /// default catalog and, when no other action is configured, the default triggers.
    pub fn settle_default_backups(&mut self) {
        let Some(managed) = self.server.control.managed() else {
            return;
        };
        let beside = managed
            .dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("backups");
        let implicit = match &mut self.backup.copy {
            Some(copy) if copy.catalog.as_os_str().is_empty() => {
                copy.catalog = beside.clone();
                true
            }
            _ => false,
        };
        let others = [Action::Push, Action::Sync, Action::Snapshot]
            .into_iter()
            .any(|action| self.backup.has(action));
        if others || (self.backup.copy.is_some() && !implicit) {
            return;
        }
        let backup = &mut self.backup;
        backup.copy.get_or_insert_with(|| CopyConfig::new(beside));
        if backup.every_write_commits == 0 && backup.interval.is_none() {
            backup.every_write_commits = 1000;
            backup.interval = Some(Duration::from_secs(300));
        }
    }

    /// The copy catalog: `[backup.copy] catalog`, else managed mode's default, `backups/` beside
    /// `server.dir` (`var/backups` by default).
    pub fn default_catalog(&self) -> PathBuf {
        match &self.backup.copy {
            Some(copy) => copy.catalog.clone(),
            None => {
                let dir = match self.server.control.managed() {
                    Some(managed) => managed.dir.clone(),
                    None => crate::config::server::Managed::default().dir,
                };
                dir.parent().unwrap_or(Path::new(".")).join("backups")
            }
        }
    }

    /// Checks settings that would only fail later, at the first connection.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                name,
                reason: reason.into(),
            }
        }
        self.listen.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "listen",
                format!("{:?} is not an address: {e}", self.listen),
            )
        })?;
        let admin: SocketAddr = self.admin_listen.parse().map_err(|e| {
            invalid(
                "admin_listen",
                format!("{:?} is not an address: {e}", self.admin_listen),
            )
        })?;
        match &self.admin_token {
            Some(token) if token.trim().is_empty() => {
                return Err(invalid(
                    "admin_token",
                    "is empty: set a token, or leave the key out",
                ));
            }
            Some(token) if !admin.ip().is_loopback() && token.len() < MIN_PUBLIC_TOKEN => {
                return Err(invalid(
                    "admin_token",
                    format!(
                        "with admin_listen off loopback the token must have at least \
                         {MIN_PUBLIC_TOKEN} characters (e.g. `openssl rand -hex 24`)"
                    ),
                ));
            }
            None if !admin.ip().is_loopback() => {
                return Err(invalid(
                    "admin_token",
                    "required when admin_listen is not a loopback address",
                ));
            }
            _ => {}
        }
        self.backup
            .validate()
            .map_err(|reason| invalid("backup", reason))?;
        self.server
            .validate()
            .map_err(|reason| invalid("server", reason))?;
        if self.backup.copy.is_some() && self.server.control == ServerControl::External {
            return Err(invalid(
                "backup.copy",
                "a copy stops the server: set server.control to \"managed\" or \"command\"",
            ));
        }
        if self
            .upstream
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(invalid(
                "upstream",
                format!("{:?} is not host:port", self.upstream),
            ));
        }
        if self.max_message_len < 1024 {
            return Err(invalid("max_message_len", "must be at least 1024 bytes"));
        }
        if self.max_startup_len < 64 {
            return Err(invalid("max_startup_len", "must be at least 64 bytes"));
        }
        if self.max_client_connections == 0 {
            return Err(invalid("max_client_connections", "must be at least 1"));
        }
        if self.max_startup_connections == 0 {
            return Err(invalid("max_startup_connections", "must be at least 1"));
        }
        if self.read_buffer_size < 512 {
            return Err(invalid("read_buffer_size", "must be at least 512 bytes"));
        }
        if self.tls != ClientTlsMode::Disable && (self.tls_cert.is_none() || self.tls_key.is_none())
        {
            return Err(invalid(
                "tls",
                "allow and require need tls_cert and tls_key",
            ));
        }
        if self.needs_verifiers()
            && self.effective_auth_query().is_some()
            && self.backup.password().is_empty()
        {
            return Err(invalid(
                "auth",
                if self.auth_file.is_none() {
                    "auth = \"proxy\" (and the console's admin_users and stats_users) has no \
                     source of verifiers: set auth_file, or the backup user's password \
                     (backup.password, DOLTGRES_SIDECAR_BACKUP_PASSWORD or DOLTGRES_PASSWORD) \
                     for the auth query"
                } else {
                    "auth_query runs as the backup user: set its password (backup.password, \
                     DOLTGRES_SIDECAR_BACKUP_PASSWORD or DOLTGRES_PASSWORD)"
                },
            ));
        }
        if !self.needs_verifiers()
            && (self.auth_file.is_some()
                || self.auth_query.is_some()
                || self.auth_passwords_file.is_some()
                || !self.auth_passwords.0.is_empty())
        {
            return Err(invalid(
                "auth",
                "auth_file, auth_query and auth_passwords need auth = \"proxy\" (or console \
                 users: admin_users, stats_users)",
            ));
        }
        if self.upstream_tls == UpstreamTlsMode::VerifyFull && self.upstream_tls_ca.is_none() {
            return Err(invalid("upstream_tls", "verify-full needs upstream_tls_ca"));
        }
        log_filter::filter(&self.log_level).map_err(|reason| invalid("log_level", reason))?;
        for (name, value) in [
            ("startup_timeout", self.startup_timeout),
            ("connect_timeout", self.connect_timeout),
            ("drain_timeout", self.drain_timeout),
            ("hold_timeout", self.hold_timeout),
            ("max_hold_ttl", self.max_hold_ttl),
        ] {
            if value.is_zero() {
                return Err(invalid(name, "must be more than zero"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
