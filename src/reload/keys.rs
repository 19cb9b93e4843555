//! Which keys a reload changed, and which of them only a restart can change.

use toml::{Table, Value};

use crate::config::Config;
use crate::config::keys::KEYS;

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

/// The keys whose values differ, top-level names and dotted ones inside `[backup]` and
/// `[server]` (`backup.interval`, `server.port`), in the order of the key list ([`KEYS`]). Both
/// configurations are written out as TOML (as `check-config` shows them, secrets unmasked) and
/// compared key by key, so a new setting is compared without being named here.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    differ("", &table(old), &table(new), &mut changed);
    // A key set on one side only comes last from `differ`: put each where the file has it.
    changed.sort_by_key(|changed| {
        let nested = format!("{changed}.");
        KEYS.iter()
            .position(|key| key.path == changed || key.path.starts_with(&nested))
            .unwrap_or(KEYS.len())
    });
    changed
}

/// The sections whose keys are named one by one.
const SECTIONS: &[&str] = &["backup", "server"];

fn table(config: &Config) -> Table {
    Table::try_from(config).expect("a configuration is written out as TOML")
}

fn differ(prefix: &str, old: &Table, new: &Table, changed: &mut Vec<String>) {
    let keys = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)));
    let empty = Table::new();
    for key in keys {
        let (a, b) = (old.get(key), new.get(key));
        if prefix.is_empty() && SECTIONS.contains(&key.as_str()) {
            let section = |v: Option<&Value>| v.and_then(Value::as_table).unwrap_or(&empty).clone();
            differ(&format!("{key}."), &section(a), &section(b), changed);
        } else if a != b {
            changed.push(format!("{prefix}{key}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::server::ServerControl;
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
        let mut old = base();
        old.server.control = ServerControl::Managed(Default::default());
        let mut new = old.clone();
        new.admin_token = Some("t".into());
        new.max_client_connections = 3;
        new.backup.interval = Some(Duration::from_secs(60));
        new.server.control.managed_mut().unwrap().port = 7000;
        new.listen = "127.0.0.1:1".into();
        new.tls_reload_interval = Duration::from_secs(1);
        assert_eq!(
            changed_keys(&old, &new),
            [
                "listen",
                "admin_token",
                "max_client_connections",
                "tls_reload_interval",
                "backup.interval",
                "server.port"
            ]
        );
    }

    #[test]
    fn a_nested_change_names_its_section_and_a_mode_change_its_keys() {
        let old = Config::from_toml("[backup.copy]\ncatalog = \"/c\"\nkeep_last = 3\n").unwrap();
        let new = Config::from_toml("[backup.copy]\ncatalog = \"/c\"\nkeep_last = 4\n").unwrap();
        assert_eq!(changed_keys(&old, &new), ["backup.copy"]);
        let mut managed = base();
        managed.server.control = ServerControl::Managed(Default::default());
        let changed = changed_keys(&base(), &managed);
        assert_eq!(changed[0], "server.control", "{changed:?}");
        assert!(changed.contains(&"server.dir".to_string()), "{changed:?}");
        assert!(changed.iter().all(|k| needs_restart(k)), "{changed:?}");
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
        let sockets = ["listen", "admin_listen"];
        let upstream = ["upstream", "upstream_tls", "upstream_tls_server_name"];
        let others = ["worker_threads", "auth", "log_format"];
        let server = ["server.control", "server.port", "server.binary"];
        for key in [sockets.as_slice(), &upstream, &others, &server].concat() {
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
