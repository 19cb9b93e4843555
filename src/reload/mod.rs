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

mod certificates;
mod keys;

use std::sync::Arc;

use tracing::{info, warn};

pub use crate::config::ConfigSource;
pub use crate::config::stamp::FileStamp;
use crate::config::{Config, ConfigError};
use crate::shared::Shared;
use crate::tls::{ClientTls, ClientTlsMode};
use crate::verifier_store::Verifiers;
pub use certificates::{poll_certificates, watch_certificates};
use keys::{AUTH_KEYS, TLS_KEYS};
pub use keys::{RESTART_ONLY, changed_keys, needs_restart};

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
    let tls = rebuilt(tls_keys_changed || renewed, || {
        ClientTls::for_config(&config)
    })?;
    if tls.is_some() && !tls_keys_changed {
        changed.push("tls_cert (file changed)".into());
    }

    let needed = config.needs_verifiers();
    let auth_files_changed = shared
        .auth()
        .is_some_and(|store| Verifiers::stamps_of(&config) != store.stamps);
    // Console users added to a configuration that had no store need one now.
    let missing = needed && shared.auth().is_none();
    let rebuild = needed && (auth_keys_changed || auth_files_changed || missing);
    let auth = rebuilt(rebuild, || Verifiers::load(&config))?;
    if auth.is_some() && !auth_keys_changed {
        changed.push("auth_file (file changed)".into());
    }
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
    shared.startups.set_max(config.max_startup_connections);
    if changed
        .iter()
        .any(|k| k == "max_client_connections" || k == "max_startup_connections")
    {
        // A connection before its startup packet holds one descriptor, a session two.
        crate::descriptors::plan(
            config.max_client_connections + config.max_startup_connections.div_ceil(2),
        );
    }
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

/// What `build` makes, when `rebuild`; its error fails the reload.
fn rebuilt<T, E: std::fmt::Display>(
    rebuild: bool,
    build: impl FnOnce() -> Result<T, E>,
) -> Result<Option<T>, ReloadError> {
    if !rebuild {
        return Ok(None);
    }
    build()
        .map(Some)
        .map_err(|e| ReloadError::Setup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn base() -> Config {
        Config::default()
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
            ["admin_token", "max_client_connections", "connect_timeout"]
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
}
