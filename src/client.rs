//! The CLI's side of the admin API: `status`, `reload`, `backup`, `quiesce`, `resume`, `backups list` call
//! a running sidecar over HTTP and print human-readable text (or the JSON with `--json`).

use std::fmt::Write as _;

use serde_json::Value;

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
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
    /// Sends `method path` and returns the JSON answer, or an error carrying the server's message.
    pub fn call(&self, method: &str, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
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
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let json: Result<Value, _> = serde_json::from_str(&text);
        if status >= 400 {
            let message = match &json {
                Ok(v) => v["error"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
                Err(_) => text.trim().to_string(),
            };
            // A failed window still carries its record: show it.
            let message = match (&json, message.as_str()) {
                (Ok(v), _) if v.get("result").is_some() => window_line(v),
                _ => message,
            };
            return Err(ClientError::Refused { status, message });
        }
        json.map_err(|_| ClientError::NotJson(text))
    }
}

/// One line for a window record.
pub fn window_line(w: &Value) -> String {
    let mut line = format!(
        "window {} {} ({}): {} in {} ms, clients held at most {} ms",
        w["id"],
        w["action"].as_str().unwrap_or("?"),
        w["trigger"].as_str().unwrap_or("?"),
        w["result"].as_str().unwrap_or("?"),
        w["duration_ms"],
        w["stall_ms"],
    );
    if let Some(e) = w["error"].as_str() {
        let _ = write!(line, " — {e}");
    }
    line
}

/// Text for `GET /status`.
pub fn status_text(s: &Value) -> String {
    let c = &s["counters"];
    let sessions = s["sessions"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "doltgres-sidecar {} (pid {}) → upstream {}\n{} session(s) · commits {} · rollbacks {} · write commits {} ({} since the last backup)\n",
        s["version"].as_str().unwrap_or("?"),
        s["pid"],
        s["upstream"].as_str().unwrap_or("?"),
        sessions.len(),
        c["commits"],
        c["rollbacks"],
        c["write_commits"],
        c["write_commits_since_backup"],
    );
    if let Some(reason) = s["windows_held_off"].as_str() {
        let _ = writeln!(out, "backup windows held off: {reason}");
    }
    if !sessions.is_empty() {
        let _ = writeln!(
            out,
            "{:>6}  {:<22} {:<12} {:<12} {:<20} {:>8}",
            "id", "peer", "user", "database", "state", "age"
        );
        for x in sessions {
            let _ = writeln!(
                out,
                "{:>6}  {:<22} {:<12} {:<12} {:<20} {:>7.0}s",
                x["id"].as_u64().unwrap_or(0),
                x["peer"].as_str().unwrap_or(""),
                x["user"].as_str().unwrap_or(""),
                x["database"].as_str().unwrap_or(""),
                x["state"].as_str().unwrap_or(""),
                x["age_seconds"].as_f64().unwrap_or(0.0),
            );
        }
    }
    out
}

/// Text for `POST /reload`.
pub fn reload_text(r: &Value) -> String {
    let changed: Vec<&str> = r["changed"]
        .as_array()
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if changed.is_empty() {
        "configuration reloaded: nothing changed\n".to_string()
    } else {
        format!("configuration reloaded; changed: {}\n", changed.join(", "))
    }
}

/// Text for `GET /backups`.
pub fn backups_text(b: &Value) -> String {
    let windows = b["windows"].as_array().cloned().unwrap_or_default();
    let mut out = if windows.is_empty() {
        "no windows yet\n".to_string()
    } else {
        windows.iter().map(|w| window_line(w) + "\n").collect()
    };
    let copies = b["copies"].as_array().cloned().unwrap_or_default();
    if !copies.is_empty() {
        out.push_str("copies (newest first):\n");
        for c in copies {
            out.push_str(&format!(
                "  {}  {} files, {} bytes ({} copied)  verify: {}\n",
                c["id"].as_str().unwrap_or("?"),
                c["files"],
                c["bytes"],
                c["bytes_copied"],
                c["verify"].as_str().unwrap_or("not yet")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn window_lines_name_the_essentials() {
        let w = json!({"id": 3, "action": "sync", "trigger": "commits", "result": "failed",
                       "duration_ms": 40, "stall_ms": 38, "error": "database postgres: boom"});
        let line = window_line(&w);
        assert!(
            line.contains("window 3 sync (commits): failed in 40 ms"),
            "{line}"
        );
        assert!(line.ends_with("boom"), "{line}");
    }

    #[test]
    fn status_lists_sessions() {
        let s = json!({"version": "0.1.0", "upstream": "db:5432",
            "counters": {"commits": 5, "rollbacks": 1, "write_commits": 2, "write_commits_since_backup": 2},
            "sessions": [{"id": 1, "peer": "127.0.0.1:5000", "user": "u", "database": "d", "state": "idle", "age_seconds": 3.2}]});
        let text = status_text(&s);
        assert!(text.contains("1 session(s) · commits 5"), "{text}");
        assert!(text.contains("idle"), "{text}");
        assert!(!text.contains("held off"), "{text}");
        let s = json!({"version": "0.1.0", "pid": 42, "upstream": "db:5432",
            "windows_held_off": "the previous process (7) is still letting its sessions finish",
            "counters": {}, "sessions": []});
        let text = status_text(&s);
        assert!(text.contains("(pid 42)"), "{text}");
        assert!(
            text.contains("backup windows held off: the previous process (7)"),
            "{text}"
        );
    }
}
