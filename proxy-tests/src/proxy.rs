//! The proxy under test, running in-process on a free port in front of a server.

use std::sync::Arc;

use doltgres_sidecar::config::Config;
use doltgres_sidecar::server::{self, Shared};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running proxy. Dropping it shuts it down.
pub struct TestProxy {
    pub addr: String,
    pub shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestProxy {
    /// Starts a proxy relaying to `upstream` with default settings.
    pub async fn start(upstream: &str) -> TestProxy {
        TestProxy::start_with(upstream, |_| {}).await
    }

    /// Starts a proxy relaying to `upstream`, after `adjust` has changed the defaults.
    pub async fn start_with(upstream: &str, adjust: impl FnOnce(&mut Config)) -> TestProxy {
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            upstream: upstream.into(),
            admin_listen: "127.0.0.1:0".into(),
            ..Config::default()
        };
        adjust(&mut config);
        config.validate().expect("invalid test config");
        let listener = tokio::net::TcpListener::bind(&config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Shared::new(config);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::run(listener, shared.clone(), shutdown.clone()));
        TestProxy {
            addr,
            shared,
            shutdown,
            task: Some(task),
        }
    }

    /// Shuts the proxy down gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("proxy task panicked")
                .expect("proxy failed");
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
