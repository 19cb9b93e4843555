//! Live configuration reload (`SIGHUP`, `POST /reload`, `doltgres-sidecar reload`) and client
//! certificate rotation from disk.
//!
//! A reload resolves the configuration again from the same source `run` used at start (the file,
//! then flags and environment; secret files read again), keeping what start settled (a managed
//! server's port chosen for `port = 0`). It compares the result with the running configuration
//! key by key, refuses the whole reload if a key that only a restart can change has changed
//! ([`needs_restart`]), builds every new part (the TLS acceptor, the verifier store) before it
//! changes anything, and then swaps them in. A reload that fails at any step changes nothing.
//!
//! What is running is read through [`Shared`]'s swappable values where each piece of work
//! starts: a session takes the configuration and the TLS acceptor when it opens and keeps them,
//! a window or a hold when it begins. The relay's per-message path reads none of them.
//!
//! [`watch_certificates`] polls `tls_cert` and `tls_key` (modification time, length, inode,
//! following symlinks, so a Kubernetes secret mount's `..data` swap is seen) and loads a renewed
//! pair for new handshakes; a pair that does not load (a certificate and key caught mid-update)
//! is logged and the old one kept until a later poll finds a usable pair.

use std::fmt::Debug;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::AuthMode;
use crate::auth::store::Verifiers;
use crate::config::{Config, ConfigError};
use crate::control::config::ServerConfig;
use crate::shared::Shared;
use crate::tls::{ClientTls, ClientTlsMode};
use crate::window::config::BackupConfig;

/// Where a reload reads the configuration: given the running configuration (for what start
/// settled), the new one, resolved and validated.
pub type ConfigSource = Box<dyn Fn(&Config) -> Result<Config, ConfigError> + Send + Sync>;

/// A reload that changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "this sidecar has no configuration source to reload from (it was not started by \
         `doltgres-sidecar run`)"
    )]
    NoSource,
    #[error("invalid configuration, nothing changed: {0}")]
    Invalid(#[from] ConfigError),
    #[error(
        "{} cannot change while the sidecar runs: restart it (or upgrade it) to apply; \
         nothing changed",
        .0.join(", ")
    )]
    Refused(Vec<String>),
    #[error("cannot use the new configuration, nothing changed: {0}")]
    Setup(String),
}

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
const AUTH_KEYS: &[&str] = &[
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
const TLS_KEYS: &[&str] = &["tls", "tls_cert", "tls_key"];

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

/// Everything a reload swaps in, built before anything changes.
struct Prepared {
    config: Config,
    /// `Some`: the new client TLS (`Some(None)`: TLS turned off).
    tls: Option<Option<ClientTls>>,
    auth: Option<Verifiers>,
    changed: Vec<String>,
}

/// Reloads the configuration; returns the keys that changed (a file whose content changed under
/// an unchanged key is named as `key (file changed)`).
pub async fn reload(shared: &Arc<Shared>) -> Result<Vec<String>, ReloadError> {
    if shared.config_source().is_none() {
        return Err(ReloadError::NoSource);
    }
    let _one_at_a_time = shared.reload_lock.lock().await;
    let building = shared.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&building))
        .await
        .map_err(|e| ReloadError::Setup(format!("the reload task failed: {e}")))??;
    Ok(apply(shared, prepared))
}

/// Resolves, compares and builds; changes nothing.
fn prepare(shared: &Shared) -> Result<Prepared, ReloadError> {
    let source = shared.config_source().ok_or(ReloadError::NoSource)?;
    let running = shared.config();
    let config = source(&running)?;
    let mut changed = changed_keys(&running, &config);
    let refused: Vec<String> = changed
        .iter()
        .filter(|k| needs_restart(k))
        .cloned()
        .collect();
    if !refused.is_empty() {
        return Err(ReloadError::Refused(refused));
    }
    let key_changed =
        |changed: &[String], keys: &[&str]| changed.iter().any(|k| keys.contains(&k.as_str()));
    let tls_keys_changed = key_changed(&changed, TLS_KEYS);
    let auth_keys_changed = key_changed(&changed, AUTH_KEYS);

    let current_tls = shared.client_tls();
    let renewed = match (&current_tls, config.tls, &config.tls_cert, &config.tls_key) {
        (Some(current), mode, Some(cert), Some(key)) if mode != ClientTlsMode::Disable => {
            ClientTls::stamps_of(cert, key) != current.stamps
        }
        _ => false,
    };
    let tls = if tls_keys_changed || renewed {
        let tls = ClientTls::for_config(&config).map_err(|e| ReloadError::Setup(e.to_string()))?;
        if !tls_keys_changed {
            changed.push("tls_cert (file changed)".into());
        }
        Some(tls)
    } else {
        None
    };

    let proxy_auth = config.auth_mode() == AuthMode::Proxy;
    let auth_files_changed = shared
        .auth()
        .is_some_and(|store| Verifiers::stamps_of(&config) != store.stamps);
    let auth = if proxy_auth && (auth_keys_changed || auth_files_changed) {
        let store = Verifiers::load(&config).map_err(|e| ReloadError::Setup(e.to_string()))?;
        if !auth_keys_changed {
            changed.push("auth_file (file changed)".into());
        }
        Some(store)
    } else {
        None
    };
    Ok(Prepared {
        config,
        tls,
        auth,
        changed,
    })
}

/// Swaps the prepared parts in; cannot fail.
fn apply(shared: &Shared, prepared: Prepared) -> Vec<String> {
    let Prepared {
        config,
        tls,
        auth,
        changed,
    } = prepared;
    if let Some(tls) = tls {
        shared.store_client_tls(tls);
    }
    if let Some(auth) = auth {
        shared.store_auth(auth);
    }
    shared.limiter.set_max(config.max_client_connections);
    shared.upstream.set_connect_timeout(config.connect_timeout);
    shared
        .control
        .set_login(&config.backup.user, config.backup.password());
    // The new filter first, so the lines below are logged (or not) at the new level. The
    // directives were validated with the rest of the file.
    if changed.iter().any(|k| k == "log_level")
        && let Some(logs) = shared.log_control()
        && let Err(e) = logs.set_level(&config.log_level)
    {
        warn!(error = %e, "cannot apply log_level");
    }
    shared.store_config(config);
    if changed.is_empty() {
        info!("configuration reloaded: nothing changed");
    }
    for key in &changed {
        // Names only: a secret's value is never logged.
        info!(%key, "configuration reloaded: changed");
    }
    changed
}

/// A file's identity and state, following symlinks: when any part differs the file was
/// rewritten, replaced, or a symlink on its path (a Kubernetes secret mount's `..data`) now
/// points elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// The stamp of `path` now; `None` if it cannot be read (missing mid-update, say).
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
            device: meta.dev(),
        })
    }
}

/// Checks `tls_cert`/`tls_key` every `tls_reload_interval` until `shutdown`; see the module docs.
pub async fn watch_certificates(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut failed = None;
    loop {
        let interval = shared.config().tls_reload_interval;
        // Off (0): look again later in case a reload turns it on.
        let pause = if interval.is_zero() {
            Duration::from_secs(1)
        } else {
            interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        if !interval.is_zero() {
            poll_certificates(&shared, &mut failed).await;
        }
    }
}

/// One check: loads the certificate and key if they changed since the running pair was read.
/// `failed` remembers the stamps of a pair that did not load, so it is warned about once.
/// Returns whether a new pair is now served.
pub async fn poll_certificates(
    shared: &Arc<Shared>,
    failed: &mut Option<[Option<FileStamp>; 2]>,
) -> bool {
    let changed = |tls: &ClientTls| ClientTls::stamps_of(&tls.cert, &tls.key) != tls.stamps;
    if !shared.client_tls().is_some_and(|tls| changed(&tls)) {
        *failed = None;
        return false;
    }
    let _one_at_a_time = shared.reload_lock.lock().await;
    // A reload may have loaded them meanwhile.
    let Some(current) = shared.client_tls().filter(|tls| changed(tls)) else {
        return false;
    };
    let (cert, key) = (current.cert.clone(), current.key.clone());
    let channel_binding = shared.config().auth_mode() == AuthMode::Proxy;
    let load = tokio::task::spawn_blocking(move || {
        let stamps = ClientTls::stamps_of(&cert, &key);
        (ClientTls::load(&cert, &key, channel_binding), stamps)
    });
    let Ok((loaded, stamps)) = load.await else {
        return false;
    };
    match loaded {
        Ok(tls) => {
            info!(cert = %tls.cert.display(), "TLS certificate renewed: new handshakes use it");
            shared.store_client_tls(Some(tls));
            *failed = None;
            true
        }
        Err(e) => {
            if failed.as_ref() != Some(&stamps) {
                warn!(
                    error = %e,
                    "the changed TLS certificate or key cannot be used (yet): keeping the one \
                     in use, trying again at the next check"
                );
            }
            *failed = Some(stamps);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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

    /// A `Shared` whose reload source returns whatever `next` holds.
    fn shared_with_source(
        running: Config,
    ) -> (Arc<Shared>, Arc<std::sync::Mutex<Result<Config, String>>>) {
        let shared = Shared::new(running.clone()).unwrap();
        let next = Arc::new(std::sync::Mutex::new(Ok(running)));
        let source = next.clone();
        shared.set_config_source(Box::new(move |_running| {
            source
                .lock()
                .unwrap()
                .clone()
                .map_err(|reason| ConfigError::Invalid {
                    name: "test",
                    reason,
                })
        }));
        (shared, next)
    }

    #[tokio::test]
    async fn live_keys_apply_and_refused_or_invalid_ones_change_nothing() {
        let (shared, next) = shared_with_source(base());
        assert!(reload(&shared).await.unwrap().is_empty());

        let mut live = base();
        live.admin_token = Some("new".into());
        live.max_client_connections = 5;
        live.connect_timeout = Duration::from_secs(2);
        *next.lock().unwrap() = Ok(live);
        let changed = reload(&shared).await.unwrap();
        assert_eq!(
            changed,
            ["max_client_connections", "connect_timeout", "admin_token"]
        );
        assert_eq!(shared.config().admin_token.as_deref(), Some("new"));
        assert_eq!(shared.limiter.max(), 5);
        assert_eq!(shared.upstream.connect_timeout(), Duration::from_secs(2));

        let mut refused = (*shared.config()).clone();
        refused.listen = "127.0.0.1:1".into();
        refused.worker_threads = 4;
        refused.hold_timeout = Duration::from_secs(1);
        *next.lock().unwrap() = Ok(refused);
        let err = reload(&shared).await.unwrap_err();
        assert!(
            matches!(&err, ReloadError::Refused(keys) if keys == &["listen", "worker_threads"])
        );
        assert!(err.to_string().contains("listen, worker_threads"), "{err}");
        assert_eq!(shared.config().hold_timeout, base().hold_timeout);

        *next.lock().unwrap() = Err("broken".into());
        let err = reload(&shared).await.unwrap_err();
        assert!(matches!(err, ReloadError::Invalid(_)), "{err}");
        assert_eq!(shared.config().admin_token.as_deref(), Some("new"));
    }

    #[tokio::test]
    async fn unusable_certificate_files_change_nothing() {
        let (shared, next) = shared_with_source(base());
        let mut tls = base();
        tls.tls = ClientTlsMode::Require;
        tls.tls_cert = Some("/nonexistent/cert.pem".into());
        tls.tls_key = Some("/nonexistent/key.pem".into());
        tls.admin_token = Some("x".into());
        *next.lock().unwrap() = Ok(tls);
        let err = reload(&shared).await.unwrap_err();
        assert!(matches!(err, ReloadError::Setup(_)), "{err}");
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
        assert_eq!(shared.config().tls, ClientTlsMode::Disable);
        assert_eq!(shared.config().admin_token, None);
        assert!(shared.client_tls().is_none());
    }

    #[tokio::test]
    async fn without_a_source_there_is_nothing_to_reload() {
        let shared = Shared::new(base()).unwrap();
        assert!(matches!(reload(&shared).await, Err(ReloadError::NoSource)));
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dgs-reload-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn stamps_see_rewrites_replacements_and_symlink_swaps() {
        let dir = temp_dir("stamps");
        let file = dir.join("cert.pem");
        std::fs::write(&file, "one").unwrap();
        let first = FileStamp::of(&file).unwrap();
        assert_eq!(FileStamp::of(&file), Some(first.clone()), "unchanged");

        // Rewritten in place with a different length.
        std::fs::write(&file, "three").unwrap();
        let second = FileStamp::of(&file).unwrap();
        assert_ne!(first, second);

        // Replaced by a rename with the same length (and maybe the same mtime): a new inode.
        let tmp = dir.join("cert.pem.tmp");
        std::fs::write(&tmp, "THREE").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_ne!(FileStamp::of(&file).unwrap(), second);

        // Kubernetes: cert.pem -> ..data/cert.pem, ..data -> a timestamped directory, swapped.
        let (v1, v2) = (dir.join("..v1"), dir.join("..v2"));
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v1.join("tls.crt"), "same").unwrap();
        std::fs::write(v2.join("tls.crt"), "same").unwrap();
        symlink("..v1", dir.join("..data")).unwrap();
        let mounted = dir.join("tls.crt");
        symlink("..data/tls.crt", &mounted).unwrap();
        let before = FileStamp::of(&mounted).unwrap();
        symlink("..v2", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        assert_ne!(FileStamp::of(&mounted).unwrap(), before);

        // Gone (mid-update): no stamp, which differs from any.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(FileStamp::of(&file), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
