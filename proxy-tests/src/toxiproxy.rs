//! A real TCP fault proxy between the sidecar and its server: toxiproxy (built from the Go module
//! proxy by `scripts/ensure-toxiproxy.sh`), started on free loopback ports, driven through its
//! HTTP API. Toxics add latency, cut bandwidth, slice the stream into tiny pieces, reset
//! connections or stop all data.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::free_port;
use crate::install::run_script;

/// The toxiproxy binary at the pinned version, built on first use.
fn binary() -> &'static std::path::Path {
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| run_script("ensure-toxiproxy.sh"))
}

/// A toxiproxy server with one proxy, `listen` → `upstream`. Killed when dropped.
pub struct Toxiproxy {
    child: Child,
    api: String,
    /// Where the sidecar connects instead of the server.
    pub listen: String,
}

impl Toxiproxy {
    /// Starts toxiproxy and a proxy to `upstream`.
    pub async fn start(upstream: &str) -> Toxiproxy {
        let port = free_port();
        let child = Command::new(binary())
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start toxiproxy");
        let proxy = Toxiproxy {
            child,
            api: format!("http://127.0.0.1:{port}"),
            listen: format!("127.0.0.1:{}", free_port()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while proxy.call("GET", "/version", None).await.is_none() {
            assert!(Instant::now() < deadline, "toxiproxy did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let body = json!({"name": "upstream", "listen": proxy.listen, "upstream": upstream});
        proxy
            .call("POST", "/proxies", Some(body))
            .await
            .expect("creating the proxy");
        proxy
    }

    /// Adds a toxic (`type` with `attributes`) in `stream` (`upstream`: towards the server,
    /// `downstream`: towards the sidecar); returns its name.
    pub async fn add(&self, name: &str, kind: &str, stream: &str, attributes: Value) -> String {
        let body = json!({"name": name, "type": kind, "stream": stream, "toxicity": 1.0,
                          "attributes": attributes});
        self.call("POST", "/proxies/upstream/toxics", Some(body))
            .await
            .unwrap_or_else(|| panic!("adding toxic {name}"));
        name.to_string()
    }

    /// Removes a toxic.
    pub async fn remove(&self, name: &str) {
        self.call("DELETE", &format!("/proxies/upstream/toxics/{name}"), None)
            .await
            .unwrap_or_else(|| panic!("removing toxic {name}"));
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let url = format!("{}{path}", self.api);
        let method = method.to_string();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let response = match (method.as_str(), body) {
                ("POST", Some(body)) => agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .send(body.to_string().as_bytes()),
                ("DELETE", _) => agent.delete(&url).call(),
                _ => agent.get(&url).call(),
            };
            let mut response = response.ok()?;
            let text = response.body_mut().read_to_string().ok()?;
            Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
        .await
        .unwrap()
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
