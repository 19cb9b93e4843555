//! Window endpoints: `POST /quiesce?ttl=30s&timeout=5s`, `POST /resume`,
//! `POST /backups?action=push|sync|snapshot`, `GET /backups`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalog::{Catalog, Entry};
use crate::shared::Shared;
use crate::window::config::Action;
use crate::window::{self, HoldError, Outcome, Trigger};

#[derive(Debug, Deserialize)]
pub struct QuiesceParams {
    ttl: Option<String>,
    timeout: Option<String>,
}

/// A duration parameter, at most `max` and more than zero, or the text of a 400 answer.
fn bounded(text: Option<&str>, default: Duration, max: Duration) -> Result<Duration, String> {
    let value = match text {
        None => return Ok(default.min(max)),
        Some(t) => humantime::parse_duration(t).map_err(|e| format!("{t:?}: {e}"))?,
    };
    if value.is_zero() || value > max {
        return Err(format!(
            "{} is out of range: more than zero and at most max_hold_ttl ({})",
            humantime::format_duration(value),
            humantime::format_duration(max)
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_durations_are_bounded() {
        let max = Duration::from_secs(600);
        let default = Duration::from_secs(30);
        assert_eq!(bounded(None, default, max), Ok(default));
        assert_eq!(
            bounded(Some("2m"), default, max),
            Ok(Duration::from_secs(120))
        );
        assert!(
            bounded(Some("1day"), default, max)
                .unwrap_err()
                .contains("max_hold_ttl")
        );
        assert!(bounded(Some("0s"), default, max).is_err());
        assert!(bounded(Some("soon"), default, max).is_err());
        assert_eq!(bounded(None, Duration::from_secs(900), max), Ok(max));
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub async fn quiesce(
    State(shared): State<Arc<Shared>>,
    Query(p): Query<QuiesceParams>,
) -> Response {
    let max = shared.config.max_hold_ttl;
    let ttl = match bounded(p.ttl.as_deref(), Duration::from_secs(30), max) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let timeout = match bounded(p.timeout.as_deref(), shared.config.drain_timeout, max) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match window::hold(&shared, ttl, timeout).await {
        Ok(id) => {
            Json(json!({ "window_id": id, "ttl_seconds": ttl.as_secs_f64() })).into_response()
        }
        Err(HoldError::Busy) => error(StatusCode::CONFLICT, "another window is open"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub async fn resume(State(shared): State<Arc<Shared>>) -> Response {
    match window::resume(&shared) {
        Ok(id) => Json(json!({ "resumed": id })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
pub struct BackupParams {
    action: Option<String>,
}

pub async fn run_backup(
    State(shared): State<Arc<Shared>>,
    Query(p): Query<BackupParams>,
) -> Response {
    let name = p.action.as_deref().unwrap_or("sync");
    let Some(action) = Action::parse(name) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown action {name:?} (push, sync, snapshot)"),
        );
    };
    if !shared.config.backup.has(action) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("[backup.{name}] is not configured"),
        );
    }
    let record = window::run(&shared, action, Trigger::Operator).await;
    let status = match record.result {
        Outcome::Ok => StatusCode::OK,
        Outcome::Aborted => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Failed => StatusCode::BAD_GATEWAY,
    };
    (status, Json(record)).into_response()
}

pub async fn list_backups(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let copies: Vec<Value> = match &shared.config.backup.copy {
        Some(copy) => {
            let catalog = Catalog {
                dir: copy.catalog.clone(),
            };
            let entries = tokio::task::spawn_blocking(move || catalog.entries())
                .await
                .unwrap_or_default();
            entries.iter().rev().map(copy_json).collect()
        }
        None => Vec::new(),
    };
    Json(json!({ "windows": shared.windows.history(), "copies": copies }))
}

/// A copy entry as `/backups` lists it, with its verification result.
fn copy_json(entry: &Entry) -> Value {
    let m = &entry.manifest;
    let verify = entry.verify_record();
    json!({
        "id": entry.id,
        "created_unix": m.created_unix,
        "window_id": m.window_id,
        "databases": m.databases.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        "files": m.files.len(),
        "bytes": m.bytes(),
        "bytes_copied": m.bytes_copied,
        "verify": verify.as_ref().map(|v| if v.ok { "ok" } else { "failed" }),
        "verify_detail": verify.map(|v| v.detail),
    })
}
