//! Every key of the configuration file, with the `run` flag and the environment variable that
//! set it: one list, from which the command line is built ([`super::flags`]) and against which
//! the configuration reference is tested. A key `a.b_c` is `--a-b-c` and `DOLTGRES_SIDECAR_A_B_C`,
//! except where a shorter flag was the contract first (`--control`, `--doltgres`,
//! `--server-dir`).

/// How a flag's text becomes the key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string: addresses, paths, durations (`30s`), modes, SQL.
    Text,
    /// A whole number.
    Number,
    /// `true` or `false`.
    Switch,
    /// A list: `a,b,c`, or a TOML array (`["a", "b,c"]`) when an item holds a comma.
    List,
    /// A TOML inline table: `{ alice = "pw" }`.
    Table,
    /// One of these names (a `clap::ValueEnum`'s, which a test holds equal): `--help` lists
    /// them and the command line refuses any other.
    Choice(&'static [&'static str]),
}

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    /// Its dotted path in the config file.
    pub path: &'static str,
    /// The flag's long name; the environment variable is derived from it ([`Key::env`]).
    pub flag: &'static str,
    pub kind: Kind,
    /// Its value is a secret: `--help` does not show the variable's value.
    pub secret: bool,
    /// The placeholder `--help` shows.
    pub value_name: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
}

impl Key {
    /// The environment variable: `DOLTGRES_SIDECAR_` and the flag in capitals, `_` for `-`.
    pub fn env(&self) -> String {
        format!(
            "DOLTGRES_SIDECAR_{}",
            self.flag.replace('-', "_").to_ascii_uppercase()
        )
    }

    /// The `--help` section it is listed under: its config file section.
    pub fn section(&self) -> &'static str {
        match self.path.rsplit_once('.') {
            None => "Settings (config file keys, top level)",
            Some(("backup", _)) => "[backup]",
            Some(("backup.push", _)) => "[backup.push]",
            Some(("backup.sync", _)) => "[backup.sync]",
            Some(("backup.snapshot", _)) => "[backup.snapshot]",
            Some(("backup.copy", _)) => "[backup.copy]",
            Some(("backup.copy.offsite", _)) => "[backup.copy.offsite]",
            Some(("server", _)) => "[server]",
            Some((other, _)) => unreachable!("no section {other} in the key list"),
        }
    }
}

/// The key with this dotted path.
pub fn key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

const fn k(
    path: &'static str,
    flag: &'static str,
    kind: Kind,
    value_name: &'static str,
    help: &'static str,
) -> Key {
    Key {
        path,
        flag,
        kind,
        secret: false,
        value_name,
        help,
    }
}

const fn secret(path: &'static str, flag: &'static str, help: &'static str) -> Key {
    Key {
        path,
        flag,
        kind: Kind::Text,
        secret: true,
        value_name: "SECRET",
        help,
    }
}

use Kind::{Choice, List, Number, Switch, Table, Text};

/// `server.control`'s names ([`super::server::ControlMode`]).
pub const CONTROL_MODES: &[&str] = &["external", "managed", "command"];
/// `log_format`'s names ([`super::modes::LogFormat`]).
pub const LOG_FORMATS: &[&str] = &["text", "json"];

/// Every key, in the order `--help` lists them.
#[rustfmt::skip]
pub static KEYS: &[Key] = &[
    k("listen", "listen", Text, "ADDR", "Address clients connect to [default: 127.0.0.1:6432]"),
    k("upstream", "upstream", Text, "ADDR", "The Doltgres server, host:port [default: 127.0.0.1:5432]"),
    k("admin_listen", "admin-listen", Text, "ADDR", "Address of the admin HTTP API [default: 127.0.0.1:9187]"),
    secret("admin_token", "admin-token", "Bearer token the admin API's control endpoints require (required off loopback)"),
    k("admin_token_file", "admin-token-file", Text, "FILE", "A file holding admin_token"),
    k("max_message_len", "max-message-len", Number, "BYTES", "Largest protocol message from either side [default: 1073741824]"),
    k("max_startup_len", "max-startup-len", Number, "BYTES", "Largest startup packet, without its length word [default: 10000]"),
    k("max_client_connections", "max-client-connections", Number, "N", "More clients get 53300 [default: 1000]"),
    k("max_startup_connections", "max-startup-connections", Number, "N", "Connections not yet past their startup packet; more close the oldest [default: 256]"),
    k("startup_timeout", "startup-timeout", Text, "DURATION", "Time a client has to send its startup packet [default: 15s]"),
    k("connect_timeout", "connect-timeout", Text, "DURATION", "Time to connect to the upstream [default: 5s]"),
    k("shutdown_timeout", "shutdown-timeout", Text, "DURATION", "Grace period for open transactions on SIGTERM [default: 30s]"),
    k("read_buffer_size", "read-buffer-size", Number, "BYTES", "Read buffer per direction and session [default: 16384]"),
    k("worker_threads", "worker-threads", Number, "N", "Threads running sessions (0: one per core) [default: 1]"),
    k("handover_socket", "handover-socket", Text, "PATH", "The Unix socket upgrades hand the listeners over through [default: doltgres-sidecar-<listen port>.sock in $XDG_RUNTIME_DIR or the temporary directory]"),
    k("tls", "tls", Text, "MODE", "TLS to clients: disable, allow, require [default: disable]"),
    k("tls_cert", "tls-cert", Text, "FILE", "PEM certificate chain shown to clients"),
    k("tls_key", "tls-key", Text, "FILE", "PEM private key of --tls-cert"),
    k("tls_reload_interval", "tls-reload-interval", Text, "DURATION", "How often the certificate files are checked for a renewal (0s: never) [default: 10s]"),
    k("upstream_tls", "upstream-tls", Text, "MODE", "TLS to the upstream: disable, prefer, require, verify-full [default: disable]"),
    k("upstream_tls_ca", "upstream-tls-ca", Text, "FILE", "PEM CA certificates for verify-full"),
    k("upstream_tls_server_name", "upstream-tls-server-name", Text, "NAME", "The name verify-full checks instead of the upstream's host"),
    k("drain_timeout", "drain-timeout", Text, "DURATION", "How long a window waits for open transactions [default: 5s]"),
    k("drain_policy", "drain-policy", Text, "POLICY", "Sessions still in a transaction then: abort (the window) or terminate (them) [default: abort]"),
    k("hold_notice_after", "hold-notice-after", Text, "DURATION", "A held client gets a notice after this long [default: 1s]"),
    k("hold_timeout", "hold-timeout", Text, "DURATION", "A held request is answered 57P03 after this long [default: 30s]"),
    k("max_hold_ttl", "max-hold-ttl", Text, "DURATION", "The longest ttl and timeout POST /quiesce may ask for [default: 10m]"),
    k("auth", "auth", Text, "MODE", "Who checks client passwords: passthrough (the server) or proxy (the sidecar) [default: passthrough; proxy in managed mode]"),
    k("auth_file", "auth-file", Text, "FILE", "auth = proxy: verifiers (or plain passwords) per user, in PgBouncer's userlist.txt format"),
    k("auth_query", "auth-query", Text, "SQL", "auth = proxy: the query that reads a user's verifier as the backup user, the user name as $1 [default without an auth file: SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1]"),
    k("auth_cache_ttl", "auth-cache-ttl", Text, "DURATION", "auth = proxy: how long an auth query's answer is reused [default: 30s]"),
    Key { kind: Table, value_name: "TABLE", ..secret("auth_passwords", "auth-passwords", "auth = proxy: passwords per user, as a TOML table ({ alice = \"pw\" })") },
    k("auth_passwords_file", "auth-passwords-file", Text, "FILE", "auth = proxy: passwords per user, in a userlist file"),
    k("console_database", "console-database", Text, "NAME", "The console's virtual database on the proxy's port [default: doltgres_sidecar]"),
    k("admin_users", "admin-users", List, "LIST", "Users who may run every console command (SCRAM against the auth file or auth query)"),
    k("stats_users", "stats-users", List, "LIST", "Users who may run the console's SHOW commands"),
    k("log_format", "log-format", Choice(LOG_FORMATS), "FORMAT", "text, or json (one object per line) [default: text]"),
    k("log_level", "log-level", Text, "DIRECTIVES", "What is logged: info, warn,doltgres_sidecar=debug, ...; RUST_LOG, when set, wins [default: info]"),
    k("backup.user", "backup-user", Text, "USER", "The superuser of the sidecar's own connections [default: postgres]"),
    secret("backup.password", "backup-password", "Its password; push, sync and the auth query need it [default: DOLTGRES_PASSWORD]"),
    k("backup.password_file", "backup-password-file", Text, "FILE", "A file holding backup.password"),
    k("backup.databases", "backup-databases", List, "LIST", "The databases push and sync cover [default: postgres]"),
    k("backup.every_write_commits", "backup-every-write-commits", Number, "N", "Open a window after this many write commits (0: off) [default: 0]"),
    k("backup.interval", "backup-interval", Text, "DURATION", "Open a window at most this long after the first write commit not yet backed up"),
    k("backup.actions", "backup-actions", List, "LIST", "What triggered windows run: push, sync, snapshot, copy [default: every configured action]"),
    k("backup.on_shutdown", "backup-on-shutdown", Switch, "BOOL", "Run a last window on SIGTERM/SIGINT, after the sessions [default: true]"),
    k("backup.action_timeout", "backup-action-timeout", Text, "DURATION", "The longest each phase of a window may take [default: 5m]"),
    k("backup.retry_initial", "backup-retry-initial", Text, "DURATION", "First wait after a failed triggered window [default: 1s]"),
    k("backup.retry_max", "backup-retry-max", Text, "DURATION", "The wait doubles up to this [default: 1m]"),
    k("backup.push.remote", "backup-push-remote", Text, "NAME", "Push: the Dolt remote's name (setting any backup.push key turns push on)"),
    k("backup.push.url", "backup-push-url", Text, "URL", "Push: the remote's URL, added when missing ({database} is the database's name)"),
    k("backup.push.branches", "backup-push-branches", List, "LIST", "Push: the branches pushed [default: main]"),
    k("backup.push.commit_working_set", "backup-push-commit-working-set", Switch, "BOOL", "Push: Dolt-commit the working set inside the window first [default: false]"),
    k("backup.sync.name", "backup-sync-name", Text, "NAME", "Sync: the backup's name (setting any backup.sync key turns sync on)"),
    k("backup.sync.url", "backup-sync-url", Text, "URL", "Sync: the backup's URL, added when missing ({database} is the database's name)"),
    k("backup.snapshot.command", "backup-snapshot-command", List, "LIST", "Snapshot: the program and its arguments, run while traffic is held"),
    k("backup.snapshot.timeout", "backup-snapshot-timeout", Text, "DURATION", "Snapshot: the longest it may run [default: 60s]"),
    k("backup.copy.catalog", "backup-copy-catalog", Text, "DIR", "Copy: the catalog directory (setting any backup.copy key turns copy on)"),
    k("backup.copy.keep_last", "backup-copy-keep-last", Number, "N", "Copy: keep at most this many entries (0: no limit) [default: 0]"),
    k("backup.copy.max_age", "backup-copy-max-age", Text, "DURATION", "Copy: delete entries older than this"),
    k("backup.copy.verify_after", "backup-copy-verify-after", Switch, "BOOL", "Copy: verify each new entry on a scratch Doltgres [default: false]"),
    k("backup.copy.scrub_interval", "backup-copy-scrub-interval", Text, "DURATION", "Copy: how often the files new copies link from are checked again (0s: never) [default: 1d]"),
    k("backup.copy.gc_journal_size", "backup-copy-gc-journal-size", Number, "BYTES", "Copy: dolt_gc() inside the window for a journal larger than this (0: never) [default: 0]"),
    k("backup.copy.offsite.url", "backup-copy-offsite-url", Text, "S3_URL", "Copy: replicate each entry to this off-site repository (s3://bucket/prefix)"),
    k("backup.copy.offsite.endpoint", "backup-copy-offsite-endpoint", Text, "URL", "Off-site: the S3 endpoint [default: AWS_ENDPOINT_URL, else AWS's for the region]"),
    k("backup.copy.offsite.region", "backup-copy-offsite-region", Text, "REGION", "Off-site: the region [default: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1]"),
    k("backup.copy.offsite.access_key_id", "backup-copy-offsite-access-key-id", Text, "KEY", "Off-site: the access key id [default: AWS_ACCESS_KEY_ID]"),
    k("backup.copy.offsite.secret_access_key_file", "backup-copy-offsite-secret-access-key-file", Text, "FILE", "Off-site: a file holding the secret access key, read at each upload [default: AWS_SECRET_ACCESS_KEY]"),
    k("backup.copy.offsite.allow_http", "backup-copy-offsite-allow-http", Switch, "BOOL", "Off-site: accept a plain http:// endpoint [default: AWS_ALLOW_HTTP, else false]"),
    k("backup.copy.offsite.keep_last", "backup-copy-offsite-keep-last", Number, "N", "Off-site: keep at most this many entries in the repository, never the newest (0: no limit) [default: 0]"),
    k("backup.copy.offsite.max_age", "backup-copy-offsite-max-age", Text, "DURATION", "Off-site: delete entries older than this from the repository, never the newest"),
    k("backup.copy.offsite.part_size", "backup-copy-offsite-part-size", Number, "BYTES", "Off-site: larger objects go up in parts of this size and come down in ranges of it [default: 8388608]"),
    k("backup.copy.offsite.prune_grace", "backup-copy-offsite-prune-grace", Text, "DURATION", "Off-site: retention deletes an unnamed object only once it is older than this [default: 15m]"),
    k("backup.copy.offsite.recipients", "backup-copy-offsite-recipients", List, "LIST", "Off-site: encrypt objects and manifests to these age public keys (age1...); the sidecar cannot read them back"),
    k("backup.copy.offsite.recipients_file", "backup-copy-offsite-recipients-file", Text, "FILE", "Off-site: a file of age recipients, one per line, added to recipients"),
    k("backup.copy.offsite.identity_file", "backup-copy-offsite-identity-file", Text, "FILE", "Off-site: the age identity that decrypts the repository, for verify_after and verify_interval"),
    k("backup.copy.offsite.verify_after", "backup-copy-offsite-verify-after", Switch, "BOOL", "Off-site: download each uploaded entry and verify it on a scratch Doltgres [default: false]"),
    k("backup.copy.offsite.verify_interval", "backup-copy-offsite-verify-interval", Text, "DURATION", "Off-site: every interval, download a random older entry and verify it (bit rot)"),
    k("backup.copy.detach_timeout", "backup-copy-detach-timeout", Text, "DURATION", "Copy: how long sessions may take to close their upstream connections [default: 5s]"),
    k("server.control", "control", Choice(CONTROL_MODES), "MODE", "Server control: external, managed (the sidecar runs Doltgres) or command [default: external]"),
    k("server.binary", "doltgres", Text, "PATH", "The Doltgres binary: the managed server's, and the scratch servers' that verify [default: doltgres on PATH]"),
    k("server.dir", "server-dir", Text, "DIR", "Managed: the directory for the server's files [default: var/doltgres]"),
    k("server.port", "server-port", Number, "PORT", "Managed: the loopback port Doltgres listens on (0: a free one) [default: 0]"),
    k("server.user", "server-user", Text, "USER", "The superuser (managed: the one Doltgres creates) [default: postgres]"),
    secret("server.password", "server-password", "Managed: its password [default: DOLTGRES_PASSWORD, else Doltgres' default]"),
    k("server.password_file", "server-password-file", Text, "FILE", "A file holding server.password"),
    k("server.telemetry", "server-telemetry", Switch, "BOOL", "Managed: let Doltgres send usage telemetry [default: false]"),
    k("server.log_level", "server-log-level", Text, "LEVEL", "Managed: Doltgres' log level [default: info]"),
    k("server.stop", "server-stop", List, "LIST", "Command: the program and arguments that stop the server"),
    k("server.start", "server-start", List, "LIST", "Command: the program and arguments that start it"),
    k("server.data_dir", "server-data-dir", Text, "DIR", "Command: the server's data directory as this container sees it"),
    k("server.config_files", "server-config-files", List, "LIST", "Command: more files a copy takes (auth.db, config.yaml, ...)"),
    k("server.stop_timeout", "server-stop-timeout", Text, "DURATION", "How long stopping may take [default: 30s]"),
    k("server.ready_timeout", "server-ready-timeout", Text, "DURATION", "How long the server may take to accept a login after starting [default: 60s]"),
    k("server.restart_initial", "server-restart-initial", Text, "DURATION", "Managed: first wait before restarting a server that died [default: 1s]"),
    k("server.restart_max", "server-restart-max", Text, "DURATION", "Managed: the wait doubles up to this [default: 30s]"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn flags_and_variables_are_unique() {
        let flags: BTreeSet<_> = KEYS.iter().map(|k| k.flag).collect();
        assert_eq!(flags.len(), KEYS.len());
        let paths: BTreeSet<_> = KEYS.iter().map(|k| k.path).collect();
        assert_eq!(paths.len(), KEYS.len());
        for key in KEYS {
            assert!(!key.help.is_empty(), "{}", key.path);
            key.section();
        }
    }

    #[test]
    fn variables_follow_flags() {
        assert_eq!(key("tls_cert").unwrap().env(), "DOLTGRES_SIDECAR_TLS_CERT");
        assert_eq!(
            key("backup.copy.keep_last").unwrap().env(),
            "DOLTGRES_SIDECAR_BACKUP_COPY_KEEP_LAST"
        );
        assert_eq!(
            key("server.binary").unwrap().env(),
            "DOLTGRES_SIDECAR_DOLTGRES"
        );
    }

    /// The names a choice offers are its type's, in the file and on the command line.
    #[test]
    fn choices_are_their_types_names() {
        fn names<T: clap::ValueEnum>() -> Vec<String> {
            T::value_variants()
                .iter()
                .map(|v| v.to_possible_value().unwrap().get_name().to_string())
                .collect()
        }
        assert_eq!(CONTROL_MODES, names::<super::super::server::ControlMode>());
        assert_eq!(LOG_FORMATS, names::<super::super::modes::LogFormat>());
        for (path, names) in [
            ("server.control", CONTROL_MODES),
            ("log_format", LOG_FORMATS),
        ] {
            assert_eq!(key(path).unwrap().kind, Choice(names));
        }
    }
}
