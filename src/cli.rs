//! Command line of the `doltgres-sidecar` binary. Every flag can also be set through
//! `DOLTGRES_SIDECAR_<NAME>` in the environment; flags and environment override the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::flags::Overrides;
use crate::config::{Config, ConfigError, resolve};
use crate::logging::LogFormat;

/// The version `--version` shows: the package's, and the commit it was built from
/// (`0.1.0 (commit 1a2b3c4d5e6f, 2026-11-26)`; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("DOLTGRES_SIDECAR_BUILD"),
    ")"
);

/// A PostgreSQL-wire proxy for Doltgres that counts committed transactions and quiesces traffic
/// at transaction boundaries so backups are consistent.
#[derive(Debug, Parser)]
#[command(name = "doltgres-sidecar", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy: accept clients on --listen and relay each to --upstream.
    ///
    /// SIGTERM or SIGINT stops accepting and ends each session with SQLSTATE 57P01 at its next
    /// transaction boundary (an idle one at once), the rest at `shutdown_timeout` (default 30s);
    /// then the final backup runs (and is verified, with verify_after). A second signal exits at
    /// once. SIGHUP reloads the configuration (see `reload`).
    ///
    /// With --upgrade, takes the listening sockets over from the sidecar running with the same
    /// config: new clients come here at once, the old process lets its sessions finish and
    /// exits.
    Run(RunArgs),
    /// Resolve and validate the configuration as `run` would, and print it as TOML with every
    /// secret masked (exit 1 with the error if it is invalid).
    ///
    /// Takes `run`'s config file, flags and environment variables; nothing is started.
    CheckConfig(ConfigArgs),
    /// Show a running sidecar: its process and the server's, the open sessions (with their server
    /// process id) and the transaction counters.
    Status(ClientArgs),
    /// Make a running sidecar reload its configuration (as SIGHUP does) and print what changed.
    ///
    /// All or nothing: an invalid file, a certificate that does not load, or a changed key that
    /// needs a restart (listen, admin_listen, upstream, upstream_tls*, worker_threads, auth,
    /// [server]) changes nothing and is reported.
    Reload(ClientArgs),
    /// Run a backup window now and print its result (exit 1 if it did not succeed).
    ///
    /// Without --action, runs what triggered windows run, one window per action: the actions
    /// configured in [backup] (copy, in managed mode without any).
    Backup {
        #[command(flatten)]
        client: ClientArgs,
        /// push, sync, snapshot or copy (configured in [backup]) [default: every configured
        /// action]
        #[arg(long)]
        action: Option<String>,
    },
    /// Hold every session at its next transaction boundary, for an external backup tool.
    ///
    /// Returns once all sessions are held (or fails after --timeout). Traffic resumes with
    /// `doltgres-sidecar resume` or by itself after --ttl.
    Quiesce {
        #[command(flatten)]
        client: ClientArgs,
        /// Resume by itself after this long.
        #[arg(long, default_value = "30s")]
        ttl: String,
        /// Give up if sessions are still inside transactions after this long [default: drain_timeout].
        #[arg(long)]
        timeout: Option<String>,
    },
    /// End the window held by `quiesce`.
    Resume(ClientArgs),
    /// Past backup windows, and the copies in the catalog.
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// Restore a backup into a directory a Doltgres can start on (local; no sidecar needed).
    ///
    /// From a copy entry (its id in the catalog, or `latest`): the server's files, checked
    /// against the manifest's checksums, laid out as managed mode runs them (data/, work/,
    /// root/). From a sync backup or push remote URL: restored through a scratch Doltgres started
    /// on the target.
    ///
    /// The catalog and the Doltgres binary: --catalog and --doltgres, else those of --config,
    /// else those of the sidecar answering at --admin-url, else the built-in defaults (said on
    /// stderr).
    Restore(RestoreArgs),
    /// Verify a backup on a scratch Doltgres (local): a copy entry's checksums, HEAD and
    /// working-set hashes and row counts must match its manifest; a URL must restore and read.
    ///
    /// The catalog and the Doltgres binary are found as for `restore`.
    Verify(VerifyArgs),
    /// Make an age key pair for an encrypted off-site repository: the identity file goes to
    /// --out (or stdout), the public key (for backup.copy.offsite.recipients) to stderr.
    ///
    /// Keep the identity off the server: the sidecar needs only the public key to write
    /// backups; `restore` and `verify` need the identity to read them.
    Keygen {
        /// Write the identity to this new file (mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print a shell completion script (e.g. `doltgres-sidecar completions bash
    /// >/etc/bash_completion.d/doltgres-sidecar`).
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the manual (roff, every command in one page: `doltgres-sidecar man | man -l -`), or
    /// write one page per command into --dir.
    Man {
        /// Write doltgres-sidecar.1, doltgres-sidecar-run.1, ... into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// How the CLI reaches a running sidecar's admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Base URL of the sidecar's admin API.
    #[arg(
        long,
        env = "DOLTGRES_SIDECAR_ADMIN_URL",
        default_value = "http://127.0.0.1:9187"
    )]
    pub admin_url: String,
    /// Bearer token, when the sidecar has admin_token set.
    #[arg(long, env = "DOLTGRES_SIDECAR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where local commands find backups and the Doltgres to check them with.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The sidecar's config file: its [backup.copy] catalog and [server] binary and credentials
    /// [default: ask the running sidecar].
    #[arg(long, env = "DOLTGRES_SIDECAR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The catalog of copy entries [default: the running sidecar's, else var/backups].
    #[arg(long, value_name = "DIR")]
    pub catalog: Option<PathBuf>,
    /// The Doltgres binary for scratch servers [default: the running sidecar's, else doltgres
    /// on PATH].
    #[arg(long, env = "DOLTGRES_SIDECAR_DOLTGRES", value_name = "PATH")]
    pub doltgres: Option<PathBuf>,
    /// Asked for its catalog and Doltgres binary when neither --config nor --catalog says.
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A copy entry's id or `latest` (the newest copy), an off-site entry
    /// (s3://bucket/prefix/ENTRY or s3://bucket/prefix/latest; endpoint and credentials from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP), or
    /// a sync backup / push remote URL (e.g. file:///backups/sync/db).
    #[arg(long, value_name = "ID|latest|URL")]
    pub from: String,
    /// The directory to restore into.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Replace whatever the target directory holds.
    #[arg(long, conflicts_with = "if_empty")]
    pub force: bool,
    /// Succeed without doing anything if the target is not empty (for init containers).
    #[arg(long)]
    pub if_empty: bool,
    /// Succeed without doing anything if there is nothing to restore yet: `latest` of an empty
    /// catalog or repository (an init container's first start).
    #[arg(long)]
    pub missing_ok: bool,
    /// From a URL: the database name to restore as [default: the URL's last path segment].
    #[arg(long)]
    pub database: Option<String>,
    #[command(flatten)]
    pub offsite: OffsiteArgs,
    #[command(flatten)]
    pub local: LocalArgs,
}

/// How local commands read an encrypted off-site repository.
#[derive(Debug, Args)]
pub struct OffsiteArgs {
    /// From an encrypted off-site repository: the age identity file that decrypts it
    /// (AGE-SECRET-KEY-1… lines, as `doltgres-sidecar keygen` writes).
    #[arg(
        long,
        env = "DOLTGRES_SIDECAR_BACKUP_COPY_OFFSITE_IDENTITY_FILE",
        value_name = "FILE"
    )]
    pub identity: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A copy entry's id or `latest` (the newest copy), an off-site entry
    /// (s3://bucket/prefix/ENTRY or …/latest, found with the AWS variables), or a sync backup /
    /// push remote URL.
    #[arg(value_name = "ID|latest|URL")]
    pub target: String,
    #[command(flatten)]
    pub offsite: OffsiteArgs,
    #[command(flatten)]
    pub local: LocalArgs,
}

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// List recent windows, newest first (action, trigger, result, stall, duration, error), and
    /// the copy entries with their verification; with --repo, the entries of an off-site
    /// repository instead.
    List(ListArgs),
}

/// `backups list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// List the complete entries of this off-site repository (s3://bucket/prefix), oldest
    /// first, found with the AWS variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP), instead of asking the sidecar.
    #[arg(long, value_name = "S3_URL")]
    pub repo: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A client command's connection to the admin API, and its output.
#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the configuration comes from, as `run` reads it: a file, then every key as a flag and an
/// environment variable over it.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML config file; flags and environment variables override its values.
    #[arg(long, env = "DOLTGRES_SIDECAR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Every key of the config file, as a flag and an environment variable.
    #[command(flatten)]
    pub settings: Overrides,
}

/// `run`: the configuration, and whether to take the listeners over from a running sidecar.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: ConfigArgs,
    /// Take over the listening sockets of the sidecar running with this config (an upgrade
    /// without dropping clients), instead of binding them.
    #[arg(long)]
    pub upgrade: bool,
}

impl ConfigArgs {
    /// The log format and filter directives `run` starts its log with (see
    /// [`resolve::log_settings`]).
    pub fn log_settings(&self) -> (LogFormat, String) {
        resolve::log_settings(self.config.as_deref(), &self.settings)
    }

    /// The effective configuration: defaults, then the file, then flags/environment.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        resolve::resolve(self.config.as_deref(), &self.settings, None)
    }

    /// The configuration again, for a reload while `running` runs (see [`resolve::resolve`]).
    pub fn resolve_again(&self, running: &Config) -> Result<Config, ConfigError> {
        resolve::resolve(self.config.as_deref(), &self.settings, Some(running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `doltgres-sidecar run ARGV`'s configuration sources.
    fn run_args(argv: &[&str]) -> ConfigArgs {
        let argv = ["doltgres-sidecar", "run"].iter().chain(argv);
        let Command::Run(RunArgs { source: args, .. }) = Cli::try_parse_from(argv).unwrap().command
        else {
            panic!("not run")
        };
        args
    }

    /// A configuration file holding `text`, in a directory removed when the first value drops.
    fn config_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap().to_string();
        (dir, file)
    }

    #[test]
    fn flags_override_file() {
        let (_dir, file) = config_file("listen = \"127.0.0.1:7000\"\nupstream = \"db:1\"\n");
        let config = run_args(&["--config", &file, "--upstream", "db:2"])
            .resolve()
            .unwrap();
        assert_eq!(config.listen, "127.0.0.1:7000");
        assert_eq!(config.upstream, "db:2");
    }

    #[test]
    fn admin_token_flag_satisfies_a_public_admin_listen() {
        let args = run_args(&[
            "--admin-listen",
            "0.0.0.0:9187",
            "--admin-token",
            "s3cret-s3cret-s3cret",
        ]);
        assert_eq!(
            args.resolve().unwrap().admin_token.as_deref(),
            Some("s3cret-s3cret-s3cret")
        );
    }

    #[test]
    fn sync_without_a_password_is_a_clear_error() {
        let (_dir, file) = config_file("[backup.sync]\nname = \"b\"\n");
        // DOLTGRES_PASSWORD is not set in the test environment (scripts/test runs without it).
        if std::env::var_os("DOLTGRES_PASSWORD").is_none() {
            let err = run_args(&["--config", &file]).resolve().unwrap_err();
            let err = err.to_string();
            assert!(err.contains("DOLTGRES_SIDECAR_BACKUP_PASSWORD"), "{err}");
        }
        let config = run_args(&["--config", &file, "--backup-password", "pw"])
            .resolve()
            .unwrap();
        assert_eq!(config.backup.password.as_deref(), Some("pw"));
    }

    #[test]
    fn auth_flags() {
        let auth = [
            "--auth",
            "proxy",
            "--auth-file",
            "/etc/sidecar/userlist.txt",
        ];
        let config = run_args(&[&auth[..], &["--auth-cache-ttl", "5s"]].concat())
            .resolve()
            .unwrap();
        assert_eq!(config.auth_mode(), crate::config::auth::AuthMode::Proxy);
        assert_eq!(
            config.auth_file.as_deref(),
            Some(std::path::Path::new("/etc/sidecar/userlist.txt"))
        );
        assert_eq!(config.auth_cache_ttl, std::time::Duration::from_secs(5));
        let err = run_args(&["--auth", "trust"]).resolve().unwrap_err();
        assert!(err.to_string().contains("auth"), "{err}");
    }

    #[test]
    fn log_settings_come_from_flags_then_the_file() {
        let (_dir, file) = config_file("log_format = \"json\"\nlog_level = \"debug\"\n");
        let args = run_args(&["--config", &file]);
        assert_eq!(args.log_settings(), (LogFormat::Json, "debug".into()));
        let config = args.resolve().unwrap();
        assert_eq!(
            (config.log_format, config.log_level.as_str()),
            (LogFormat::Json, "debug")
        );
        let flags = ["--log-format", "text", "--log-level", "warn"];
        let args = run_args(&[&["--config", file.as_str()][..], &flags].concat());
        assert_eq!(args.log_settings(), (LogFormat::Text, "warn".into()));
        let config = args.resolve().unwrap();
        assert_eq!(
            (config.log_format, config.log_level.as_str()),
            (LogFormat::Text, "warn")
        );
        assert_eq!(
            run_args(&[]).log_settings(),
            (LogFormat::Text, "info".into())
        );
        let err = run_args(&["--log-level", "doltgres_sidecar=loud"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("log_level"), "{err}");
        // A choice the command line does not offer is refused there, naming the choices.
        let argv = ["doltgres-sidecar", "run", "--log-format", "xml"];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(
            err.contains("--log-format") && err.contains("json"),
            "{err}"
        );
    }

    #[test]
    fn check_config_takes_runs_flags() {
        let argv = ["--upstream", "db:7", "--log-format", "json"];
        let cli = Cli::try_parse_from(["doltgres-sidecar", "check-config"].iter().chain(&argv));
        let Command::CheckConfig(args) = cli.unwrap().command else {
            panic!("not check-config")
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.upstream, "db:7");
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn a_reload_keeps_the_managed_port_chosen_at_start() {
        let (_dir, file) = config_file("[server]\ncontrol = \"managed\"\npassword = \"pw\"\n");
        let args = run_args(&["--config", &file]);
        let running = args.resolve().unwrap();
        let port = |c: &Config| c.server.control.managed().unwrap().port;
        assert_ne!(port(&running), 0);
        let again = args.resolve_again(&running).unwrap();
        assert_eq!(port(&again), port(&running));
        assert_eq!(again.upstream, running.upstream);
        assert!(crate::reload::changed_keys(&running, &again).is_empty());
    }

    #[test]
    fn invalid_flag_value_is_reported() {
        let err = run_args(&["--listen", "nope"]).resolve().unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }
}
