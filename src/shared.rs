//! The state every session, window and admin request shares, passed down in an `Arc`. It is a
//! leaf: it depends on the parts it holds, and nothing it holds depends on it being here, so the
//! accept loop, the sessions, the windows and the admin API can all import it without a cycle
//! through `server`.
//!
//! What a reload may change (the `reload` module) sits behind [`ArcSwap`]s: the configuration,
//! the client TLS acceptor with its channel-binding data, and the verifier store. Readers load
//! them where a session, a hold or a window starts, never per relayed message; a swap changes
//! what the next reader sees, while those already holding the old value keep it.

use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::config::Config;
use crate::config::ConfigSource;
use crate::control::Control;
use crate::gate::Gate;
use crate::limits::{Limiter, Startups};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::state::verifications::Verifications;
use crate::state::windows::Windows;
use crate::tls::{ClientTls, TlsError};
use crate::upstream::{Upstream, UpstreamError};
use crate::verifier_store::{AuthSetupError, Verifiers};

/// State every session shares. Passed down in an `Arc`; there are no globals, so several proxies
/// can run in one process (as the tests do).
pub struct Shared {
    /// The running configuration; see [`Shared::config`].
    config: ArcSwap<Config>,
    /// Client connections: one permit each, up to `max_client_connections`.
    pub limiter: Arc<Limiter>,
    /// Connections that have not sent their startup packet yet.
    pub startups: Arc<Startups>,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    pub gate: Arc<Gate>,
    pub windows: Windows,
    /// `verify_after`: the verifications running in the background.
    pub verifications: Arc<Verifications>,
    /// `[backup.copy.offsite]`: the uploads running in the background.
    pub uploads: crate::offsite::background::Uploads,
    /// Present when clients may use TLS: the acceptor and its channel-binding data, swapped as
    /// one so that a handshake and the SCRAM exchange after it see the same certificate.
    tls: ArcSwapOption<ClientTls>,
    /// The server, and every way of connecting to it.
    pub upstream: Arc<Upstream>,
    /// Whether the sidecar stops and starts the server, and whether it is up.
    pub control: Arc<Control>,
    /// `auth = "proxy"`: where verifiers come from.
    auth: ArcSwapOption<Verifiers>,
    /// Where a reload reads the configuration from (set by `doltgres-sidecar run`).
    source: OnceLock<ConfigSource>,
    /// The log filter a reload's `log_level` replaces (set by `doltgres-sidecar run`).
    logs: OnceLock<crate::logging::LogControl>,
    /// Serializes reloads and certificate rotations: each builds from what is running, then
    /// swaps.
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// Hand-over of the listeners to a successor process (an upgrade).
    pub handover: crate::state::handover::Handover,
    /// Cancelled when the sidecar shuts down gracefully (a signal, or an operator's `SHUTDOWN`):
    /// the accept loop (`server::run`) and this token cancel each other.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What operators' requests started (windows, holds, verifications asked for), from the
    /// admin API or the console; the admin API's stop waits for it.
    pub work: crate::state::work::Work,
}

/// Shared state that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
}

impl Shared {
    /// Builds the shared state; fails if the TLS or auth files cannot be used.
    pub fn new(config: Config) -> Result<Arc<Shared>, SetupError> {
        let tls = ClientTls::for_config(&config)?;
        let auth = config
            .needs_verifiers()
            .then(|| Verifiers::load(&config))
            .transpose()?;
        let upstream = Upstream::new(&config)?;
        let control = Control::new(
            &config.server,
            (&config.backup.user, config.backup.password()),
        );
        Ok(Arc::new(Shared {
            limiter: Arc::new(Limiter::new(config.max_client_connections)),
            startups: Arc::new(Startups::new(config.max_startup_connections)),
            metrics: Arc::new(Metrics::new()),
            registry: Registry::default(),
            gate: Arc::new(Gate::new()),
            windows: Windows::default(),
            verifications: Default::default(),
            uploads: Default::default(),
            tls: ArcSwapOption::from(tls.map(Arc::new)),
            upstream: Arc::new(upstream),
            control: Arc::new(control),
            auth: ArcSwapOption::from(auth.map(Arc::new)),
            source: OnceLock::new(),
            logs: OnceLock::new(),
            reload_lock: tokio::sync::Mutex::new(()),
            handover: Default::default(),
            shutdown: Default::default(),
            work: Default::default(),
            config: ArcSwap::from_pointee(config),
        }))
    }

    /// The running configuration. Load it where a session, a hold or a window starts and keep
    /// it for that piece of work; a reload swaps in a new one for the next.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The client TLS acceptor and its channel-binding data, when clients may use TLS.
    pub fn client_tls(&self) -> Option<Arc<ClientTls>> {
        self.tls.load_full()
    }

    /// `auth = "proxy"`: the verifier store.
    pub fn auth(&self) -> Option<Arc<Verifiers>> {
        self.auth.load_full()
    }

    /// Sets where reloads read the configuration from; once (false if already set).
    pub fn set_config_source(&self, source: ConfigSource) -> bool {
        self.source.set(source).is_ok()
    }

    /// Gives reloads the process's log filter (`log_level`); false if one was set already.
    pub fn set_log_control(&self, logs: crate::logging::LogControl) -> bool {
        self.logs.set(logs).is_ok()
    }

    pub(crate) fn log_control(&self) -> Option<&crate::logging::LogControl> {
        self.logs.get()
    }

    pub(crate) fn config_source(&self) -> Option<&ConfigSource> {
        self.source.get()
    }

    pub(crate) fn store_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    pub(crate) fn store_client_tls(&self, tls: Option<ClientTls>) {
        self.tls.store(tls.map(Arc::new));
    }

    pub(crate) fn store_auth(&self, auth: Verifiers) {
        self.auth.store(Some(Arc::new(auth)));
    }
}
