//! The CLI's side of the admin API: `status`, `reload`, `backup`, `quiesce`, `resume`,
//! `backups list` call a running sidecar over HTTP and print human-readable text ([`text`]), or
//! the JSON with `--json`. What goes wrong is said as a sentence: what the sidecar answered, or
//! why no sidecar answered.

pub mod text;

use std::time::Duration;

use serde_json::Value;

pub use text::{backups_text, reload_text, status_text, window_line};

/// How long connecting to the admin API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `GET` may take in all.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a `POST` may take in all: a backup window runs while the request waits, and each of
/// its phases may take up to `action_timeout` (5 minutes by default).
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no sidecar answers at {url}: {reason} (is it running? --admin-url or \
         DOLTGRES_SIDECAR_ADMIN_URL names its admin_listen address)"
    )]
    Unreachable { url: String, reason: String },
    /// The sidecar refused or the work failed; `message` is the sidecar's own sentence.
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("the admin API answered something that is not JSON: {0}")]
    NotJson(String),
}

/// Where and how to reach a running sidecar.
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub base: String,
    pub token: Option<String>,
}

impl AdminClient {
    pub fn new(args: &crate::cli::AdminArgs) -> AdminClient {
        AdminClient {
            base: args.admin_url.clone(),
            token: args.token.clone(),
        }
    }

    /// Sends `method path` and returns the JSON answer, or an error carrying the server's message.
    pub fn call(&self, method: &str, path: &str) -> Result<Value, ClientError> {
        let timeout = if method == "POST" {
            RUN_TIMEOUT
        } else {
            READ_TIMEOUT
        };
        self.call_within(method, path, timeout)
    }

    /// [`AdminClient::call`], giving up after `timeout`.
    pub fn call_within(
        &self,
        method: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
            .timeout_global(Some(timeout))
            .build()
            .new_agent();
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match method {
            "POST" => {
                let mut r = agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_empty()
            }
            _ => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
        };
        let mut response = response.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: unreachable_reason(&e, timeout),
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let json: Result<Value, _> = serde_json::from_str(&text);
        if status >= 400 {
            return Err(ClientError::Refused {
                status,
                message: refusal(status, &json, &text, path),
            });
        }
        json.map_err(|_| ClientError::NotJson(text))
    }
}

/// Why a request got no answer, in words.
fn unreachable_reason(e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing listens there".to_string()
        }
        ureq::Error::Timeout(_) => format!("no answer within {}s", timeout.as_secs()),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// The sentence for an answer of `status`: the sidecar's own (`{"error": ...}`), the line of a
/// window that did not succeed, or what the status means.
fn refusal(status: u16, json: &Result<Value, serde_json::Error>, text: &str, path: &str) -> String {
    match json {
        // A window that did not succeed still carries its record.
        Ok(v) if v.get("result").is_some() => window_line(v),
        Ok(v) if v["error"].is_string() => v["error"].as_str().unwrap_or_default().to_string(),
        _ => match status {
            401 => "the sidecar wants its admin token: give it with --token or \
                    DOLTGRES_SIDECAR_ADMIN_TOKEN"
                .to_string(),
            404 => format!(
                "the admin API has no {}: is --admin-url a doltgres-sidecar of this version?",
                path.split('?').next().unwrap_or(path)
            ),
            _ if text.trim().is_empty() => format!("the sidecar answered status {status}"),
            _ => text.trim().to_string(),
        },
    }
}

/// `backup` without `--action`: one window for each action the sidecar's triggered windows run
/// (`backup_actions` in `GET /status`), in order. The text of every window, or the first
/// refusal; `Err` also when a window did not succeed (its line is in the error, the lines of
/// those before it too).
pub fn backup_configured(admin: &AdminClient) -> Result<Vec<Value>, ClientError> {
    let status = admin.call("GET", "/status")?;
    let actions: Vec<String> = status["backup_actions"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if actions.is_empty() {
        // The sidecar says what to configure.
        return admin.call("POST", "/backups").map(|record| vec![record]);
    }
    let mut done = Vec::new();
    for action in actions {
        match admin.call("POST", &format!("/backups?action={action}")) {
            Ok(record) => done.push(record),
            Err(ClientError::Refused { status, message }) => {
                let mut lines: Vec<String> = done.iter().map(window_line).collect();
                lines.push(message);
                return Err(ClientError::Refused {
                    status,
                    message: lines.join("\n"),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_read_as_sentences() {
        let body = json!({"error": "sync is not configured: set backup.sync.name"});
        let text = refusal(409, &Ok(body), "", "/backups?action=sync");
        assert_eq!(text, "sync is not configured: set backup.sync.name");
        let text = refusal(401, &serde_json::from_str("x"), "", "/status");
        assert!(text.contains("--token"), "{text}");
        let text = refusal(404, &serde_json::from_str("x"), "", "/status?x=1");
        assert!(text.contains("no /status:"), "{text}");
        let failed = json!({"id": 4, "action": "copy", "trigger": "operator", "result": "failed",
                            "duration_ms": 9, "stall_ms": 3, "error": "disk full"});
        let text = refusal(502, &Ok(failed), "", "/backups");
        assert!(
            text.starts_with("window 4 copy (operator): failed"),
            "{text}"
        );
        let shown = ClientError::Refused {
            status: 409,
            message: "another window is open".into(),
        }
        .to_string();
        assert_eq!(shown, "another window is open", "no status code");
    }

    #[test]
    fn an_unreachable_sidecar_is_named_with_the_reason() {
        let admin = AdminClient {
            base: format!("http://127.0.0.1:{}", closed_port()),
            token: None,
        };
        let err = admin
            .call_within("GET", "/status", Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no sidecar answers at http://127.0.0.1:")
                && err.contains("nothing listens there"),
            "{err}"
        );
    }

    /// A loopback port nothing listens on (bound, then closed).
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
