//! The state every session, window and admin request shares, passed down in an `Arc`. It is a
//! leaf: it depends on the parts it holds, and nothing it holds depends on it being here, so the
//! accept loop, the sessions, the windows and the admin API can all import it without a cycle
//! through `server`.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::auth::AuthMode;
use crate::auth::store::{AuthSetupError, Verifiers};
use crate::config::Config;
use crate::control::Control;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::tls::{self, ClientTlsMode, TlsError};
use crate::upstream::{Upstream, UpstreamError};
use crate::window::Windows;

/// State every session shares. Passed down in an `Arc`; there are no globals, so several proxies
/// can run in one process (as the tests do).
pub struct Shared {
    pub config: Config,
    /// One permit per client connection.
    pub limiter: Arc<Semaphore>,
    pub metrics: Metrics,
    pub registry: Registry,
    pub gate: Arc<Gate>,
    pub windows: Windows,
    /// Present when clients may use TLS.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// The server, and every way of connecting to it.
    pub upstream: Upstream,
    /// Whether the sidecar stops and starts the server, and whether it is up.
    pub control: Control,
    /// `auth = "proxy"`: where verifiers come from.
    pub auth: Option<Verifiers>,
    /// `auth = "proxy"` with client TLS: the tls-server-end-point data of the proxy's
    /// certificate, offered as SCRAM-SHA-256-PLUS channel binding (`None`: not offered).
    pub tls_end_point: Option<Vec<u8>>,
    /// Hand-over of the listeners to a successor process (an upgrade).
    pub handover: crate::handover::Handover,
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
        let tls_acceptor = match (config.tls, &config.tls_cert, &config.tls_key) {
            (ClientTlsMode::Disable, _, _) => None,
            (_, Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => return Err(TlsError::NoCertificate("tls_cert".into()).into()),
        };
        let proxy_auth = config.auth_mode() == AuthMode::Proxy;
        let auth = proxy_auth.then(|| Verifiers::load(&config)).transpose()?;
        let tls_end_point = match (&tls_acceptor, &config.tls_cert) {
            (Some(_), Some(cert)) if proxy_auth => tls::server_end_point(cert)?,
            _ => None,
        };
        let upstream = Upstream::new(&config)?;
        let control = Control::new(
            &config.server,
            (&config.backup.user, config.backup.password()),
        );
        Ok(Arc::new(Shared {
            limiter: Arc::new(Semaphore::new(config.max_client_connections)),
            metrics: Metrics::new(),
            registry: Registry::default(),
            gate: Arc::new(Gate::new()),
            windows: Windows::default(),
            tls_acceptor,
            upstream,
            control,
            auth,
            tls_end_point,
            handover: Default::default(),
            config,
        }))
    }
}
