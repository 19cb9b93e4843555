//! The proxy under test, running in-process on a free port in front of a server.

use std::sync::Arc;

use doltgres_sidecar::config::Config;
use doltgres_sidecar::server;
use doltgres_sidecar::shared::Shared;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running proxy. Dropping it shuts it down.
pub struct TestProxy {
    pub addr: String,
    /// Base URL of the admin API, e.g. `http://127.0.0.1:PORT`.
    pub admin_url: String,
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
        TestProxy::start_config(config).await
    }

    /// Starts a proxy with exactly this configuration; a managed server is started first (and
    /// supervised), as `doltgres-sidecar run` does.
    pub async fn start_config(mut config: Config) -> TestProxy {
        config.settle_managed().expect("no free port");
        config.validate().expect("invalid test config");
        let listener = tokio::net::TcpListener::bind(&config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Shared::new(config).expect("invalid TLS files");
        let shutdown = CancellationToken::new();
        if shared.control.managed().is_some() {
            shared
                .control
                .start(&shared.upstream)
                .await
                .expect("the managed Doltgres did not start");
            tokio::spawn(doltgres_sidecar::supervise::supervise(
                shared.clone(),
                shutdown.clone(),
            ));
        }
        let admin = tokio::net::TcpListener::bind(&shared.config().admin_listen)
            .await
            .unwrap();
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        tokio::spawn(doltgres_sidecar::admin::serve(
            admin,
            shared.clone(),
            shutdown.clone(),
        ));
        let task = tokio::spawn(server::run(listener, shared.clone(), shutdown.clone()));
        TestProxy {
            addr,
            admin_url,
            shared,
            shutdown,
            task: Some(task),
        }
    }

    /// `GET` on the admin API; returns status code and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        self.admin("GET", path).await
    }

    async fn admin(&self, method: &str, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.admin_url);
        let token = self.shared.config().admin_token.clone();
        let (code, body) = crate::http::request(method, url, token.as_deref()).await;
        assert_ne!(code, 0, "admin API unreachable: {body}");
        (code, body)
    }

    /// `POST` on the admin API; returns status code and body.
    pub async fn admin_post(&self, path: &str) -> (u16, String) {
        self.admin("POST", path).await
    }

    /// A series of `/metrics` (`name` or `name{labels}`; their sum), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        crate::process::metric_sum(&text, series).unwrap_or(0.0)
    }

    /// `GET /status`, parsed.
    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = self.admin_get("/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The transaction counters from `/status`: (commits, rollbacks, write_commits).
    pub async fn counters(&self) -> (u64, u64, u64) {
        let status = self.status().await;
        let c = &status["counters"];
        (
            c["commits"].as_u64().unwrap(),
            c["rollbacks"].as_u64().unwrap(),
            c["write_commits"].as_u64().unwrap(),
        )
    }

    /// Shuts the proxy down gracefully and waits until it has stopped (and its managed server,
    /// if any).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("proxy task panicked")
                .expect("proxy failed");
        }
        if let Some(managed) = self.shared.control.managed() {
            managed.stop().await.expect("managed Doltgres did not stop");
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
