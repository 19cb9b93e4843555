//! Which keys a reload changed, and which of them only a restart can change.

use std::fmt::Debug;

use crate::config::Config;
use crate::config::backup::BackupConfig;
use crate::config::server::ServerConfig;

/// Keys only a restart (or an upgrade) can change: the sockets, the upstream and how it is
/// reached, the runtime's threads, who checks passwords (open sessions log in again the way they
/// first did), and the whole `[server]` section (the managed server runs with it).
pub const RESTART_ONLY: &[&str] = &[
    "listen",
    "admin_listen",
    "upstream",
    "upstream_tls",
    "upstream_tls_ca",
    "upstream_tls_server_name",
    "worker_threads",
    "auth",
    "log_format",
    "handover_socket",
];

/// Whether `key` (as [`changed_keys`] names it) needs a restart.
pub fn needs_restart(key: &str) -> bool {
    RESTART_ONLY.contains(&key) || key.starts_with("server.")
}

/// Keys whose change rebuilds the verifier store.
pub(super) const AUTH_KEYS: &[&str] = &[
    "auth_file",
    "auth_query",
    "auth_cache_ttl",
    "auth_passwords",
    "auth_passwords_file",
    "backup.user",
    "backup.password",
    "backup.password_file",
];

/// Keys whose change rebuilds the client TLS acceptor.
pub(super) const TLS_KEYS: &[&str] = &["tls", "tls_cert", "tls_key"];

fn differ<T: Debug>(a: &T, b: &T) -> bool {
    // Debug, not PartialEq: not every section type has it, and Debug shows every value that
    // matters here (Passwords, whose Debug hides values, is compared with ==).
    format!("{a:?}") != format!("{b:?}")
}

/// The keys whose values differ, top-level names and dotted ones inside `[backup]` and
/// `[server]` (`backup.interval`, `server.port`). Every field is named, so a new one cannot be
/// forgotten: the destructuring stops compiling.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let Config {
        listen,
        upstream,
        admin_listen,
        max_message_len,
        max_startup_len,
        max_client_connections,
        max_startup_connections,
        startup_timeout,
        connect_timeout,
        shutdown_timeout,
        read_buffer_size,
        worker_threads,
        handover_socket,
        log_format,
        log_level,
        tls,
        tls_cert,
        tls_key,
        tls_reload_interval,
        upstream_tls,
        upstream_tls_ca,
        upstream_tls_server_name,
        drain_timeout,
        drain_policy,
        hold_notice_after,
        hold_timeout,
        max_hold_ttl,
        admin_token,
        admin_token_file,
        auth,
        auth_file,
        auth_query,
        auth_cache_ttl,
        auth_passwords,
        auth_passwords_file,
        console_database,
        admin_users,
        stats_users,
        backup,
        server,
    } = old;
    macro_rules! compare {
        ($prefix:literal, $new:expr, $($field:ident),* $(,)?) => {
            $(if differ($field, &$new.$field) {
                changed.push(format!("{}{}", $prefix, stringify!($field)));
            })*
        };
    }
    compare!(
        "",
        new,
        listen,
        upstream,
        admin_listen,
        max_message_len,
        max_startup_len,
        max_client_connections,
        max_startup_connections,
        startup_timeout,
        connect_timeout,
        shutdown_timeout,
        read_buffer_size,
        worker_threads,
        handover_socket,
        log_format,
        log_level,
        tls,
        tls_cert,
        tls_key,
        tls_reload_interval,
        upstream_tls,
        upstream_tls_ca,
        upstream_tls_server_name,
        drain_timeout,
        drain_policy,
        hold_notice_after,
        hold_timeout,
        max_hold_ttl,
        admin_token,
        admin_token_file,
        auth,
        auth_file,
        auth_query,
        auth_cache_ttl,
        console_database,
        admin_users,
        stats_users,
    );
    if *auth_passwords != new.auth_passwords {
        changed.push("auth_passwords".into());
    }
    compare!("", new, auth_passwords_file);
    let BackupConfig {
        user,
        password,
        password_file,
        databases,
        push,
        sync,
        snapshot,
        copy,
        every_write_commits,
        interval,
        actions,
        on_shutdown,
        action_timeout,
        retry_initial,
        retry_max,
    } = backup;
    compare!(
        "backup.",
        new.backup,
        user,
        password,
        password_file,
        databases,
        push,
        sync,
        snapshot,
        copy,
        every_write_commits,
        interval,
        actions,
        on_shutdown,
        action_timeout,
        retry_initial,
        retry_max,
    );
    let ServerConfig {
        control,
        binary,
        dir,
        port,
        user,
        password,
        password_file,
        telemetry,
        log_level,
        stop,
        start,
        data_dir,
        config_files,
        stop_timeout,
        ready_timeout,
        restart_initial,
        restart_max,
    } = server;
    compare!(
        "server.",
        new.server,
        control,
        binary,
        dir,
        port,
        user,
        password,
        password_file,
        telemetry,
        log_level,
        stop,
        start,
        data_dir,
        config_files,
        stop_timeout,
        ready_timeout,
        restart_initial,
        restart_max,
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn base() -> Config {
        Config::default()
    }

    #[test]
    fn nothing_changed_is_an_empty_list() {
        assert!(changed_keys(&base(), &base()).is_empty());
    }

    #[test]
    fn changed_keys_are_named_with_their_sections() {
        let mut new = base();
        new.admin_token = Some("t".into());
        new.max_client_connections = 3;
        new.backup.interval = Some(Duration::from_secs(60));
        new.server.port = 7000;
        new.listen = "127.0.0.1:1".into();
        new.tls_reload_interval = Duration::from_secs(1);
        assert_eq!(
            changed_keys(&base(), &new),
            [
                "listen",
                "max_client_connections",
                "tls_reload_interval",
                "admin_token",
                "backup.interval",
                "server.port"
            ]
        );
    }

    #[test]
    fn a_changed_password_is_seen_though_debug_hides_it() {
        let mut old = base();
        old.auth_passwords.0.insert("alice".into(), "one".into());
        let mut new = old.clone();
        new.auth_passwords.0.insert("alice".into(), "two".into());
        assert_eq!(
            format!("{:?}", old.auth_passwords),
            format!("{:?}", new.auth_passwords)
        );
        assert_eq!(changed_keys(&old, &new), ["auth_passwords"]);
    }

    #[test]
    fn sockets_upstream_threads_auth_mode_and_server_need_a_restart() {
        for key in [
            "listen",
            "admin_listen",
            "upstream",
            "upstream_tls",
            "upstream_tls_ca",
            "upstream_tls_server_name",
            "worker_threads",
            "auth",
            "server.control",
            "server.port",
            "server.binary",
        ] {
            assert!(needs_restart(key), "{key}");
        }
        for key in [
            "admin_token",
            "max_client_connections",
            "max_message_len",
            "tls",
            "tls_cert",
            "tls_key",
            "tls_reload_interval",
            "auth_file",
            "auth_cache_ttl",
            "hold_timeout",
            "drain_policy",
            "backup.interval",
            "backup.sync",
            "backup.password",
        ] {
            assert!(!needs_restart(key), "{key}");
        }
    }
}
