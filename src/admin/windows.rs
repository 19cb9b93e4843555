//! Window endpoints: `POST /quiesce?ttl=30s&timeout=5s`, `POST /resume`,
//! `POST /backups?action=push|sync|snapshot|copy`, `GET /backups`. Each answer is a typed struct,
//! so the OpenAPI document (`/openapi.json`) is generated from the same types.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::catalog::{Catalog, Entry};
use crate::shared::Shared;
use crate::window::config::Action;
use crate::window::{self, HoldError, Outcome, Trigger};

#[derive(Debug, Deserialize, IntoParams)]
pub struct QuiesceParams {
    /// Resume by itself after this long (e.g. `30s`; at most `max_hold_ttl`).
    ttl: Option<String>,
    /// Give up if sessions are still inside transactions after this long [default:
    /// `drain_timeout`; at most `max_hold_ttl`].
    timeout: Option<String>,
}

/// An operator hold that started.
#[derive(Debug, Serialize, ToSchema)]
pub struct Held {
    pub window_id: u64,
    pub ttl_seconds: f64,
}

/// An operator hold that ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resumed {
    pub resumed: u64,
}

/// Why a request was not done.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

/// Recent windows and the copy entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backups {
    /// Newest first.
    pub windows: Vec<crate::window::WindowRecord>,
    /// Newest first; empty without `[backup.copy]`.
    pub copies: Vec<CopySummary>,
}

/// A copy entry, with its verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct CopySummary {
    pub id: String,
    pub created_unix: f64,
    pub window_id: u64,
    pub databases: Vec<String>,
    pub files: usize,
    pub bytes: u64,
    pub bytes_copied: u64,
    /// `ok`, `failed`, or absent when not verified yet.
    pub verify: Option<String>,
    pub verify_detail: Option<String>,
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
    let body = ApiError {
        error: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Hold every session at its next transaction boundary (for an external backup tool).
#[utoipa::path(post, path = "/quiesce", params(QuiesceParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "every session is held", body = Held),
        (status = 400, description = "ttl or timeout invalid or out of range", body = ApiError),
        (status = 409, description = "another window is open", body = ApiError),
        (status = 503, description = "sessions did not drain in time", body = ApiError),
    ))]
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
        Ok(id) => Json(Held {
            window_id: id,
            ttl_seconds: ttl.as_secs_f64(),
        })
        .into_response(),
        Err(HoldError::Busy) => error(StatusCode::CONFLICT, "another window is open"),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// End the operator hold (or its drain).
#[utoipa::path(post, path = "/resume", security(("bearer" = [])),
    responses(
        (status = 200, description = "traffic flows", body = Resumed),
        (status = 409, description = "no window is held", body = ApiError),
    ))]
pub async fn resume(State(shared): State<Arc<Shared>>) -> Response {
    match window::resume(&shared) {
        Ok(id) => Json(Resumed { resumed: id }).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct BackupParams {
    /// `push`, `sync`, `snapshot` or `copy` [default: `sync`].
    action: Option<String>,
}

/// Run a backup window now and return its record.
#[utoipa::path(post, path = "/backups", params(BackupParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "the window succeeded", body = crate::window::WindowRecord),
        (status = 400, description = "unknown or unconfigured action", body = ApiError),
        (status = 409, description = "another window is open", body = ApiError),
        (status = 502, description = "the action failed", body = crate::window::WindowRecord),
        (status = 503, description = "sessions did not drain in time", body = crate::window::WindowRecord),
    ))]
pub async fn run_backup(
    State(shared): State<Arc<Shared>>,
    Query(p): Query<BackupParams>,
) -> Response {
    let name = p.action.as_deref().unwrap_or("sync");
    let Some(action) = Action::parse(name) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown action {name:?} (push, sync, snapshot, copy)"),
        );
    };
    if !shared.config.backup.has(action) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("[backup.{name}] is not configured"),
        );
    }
    // An operator's request does not queue behind another window (an operator hold may last
    // minutes); triggered windows do.
    let Some(record) = window::try_run(&shared, action, Trigger::Operator).await else {
        return error(StatusCode::CONFLICT, "another window is open");
    };
    let status = match record.result {
        Outcome::Ok => StatusCode::OK,
        Outcome::Aborted => StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Failed => StatusCode::BAD_GATEWAY,
    };
    (status, Json(record)).into_response()
}

/// Recent windows, and the copy entries with their verification.
#[utoipa::path(get, path = "/backups", security(("bearer" = [])),
    responses((status = 200, description = "newest first", body = Backups)))]
pub async fn list_backups(State(shared): State<Arc<Shared>>) -> Json<Backups> {
    let copies = match &shared.config.backup.copy {
        Some(copy) => {
            let catalog = Catalog {
                dir: copy.catalog.clone(),
            };
            let entries = tokio::task::spawn_blocking(move || catalog.entries())
                .await
                .unwrap_or_default();
            entries.iter().rev().map(copy_summary).collect()
        }
        None => Vec::new(),
    };
    Json(Backups {
        windows: shared.windows.history(),
        copies,
    })
}

fn copy_summary(entry: &Entry) -> CopySummary {
    let m = &entry.manifest;
    let verify = entry.verify_record();
    CopySummary {
        id: entry.id.clone(),
        created_unix: m.created_unix,
        window_id: m.window_id,
        databases: m.databases.iter().map(|d| d.name.clone()).collect(),
        files: m.files.len(),
        bytes: m.bytes(),
        bytes_copied: m.bytes_copied,
        verify: verify
            .as_ref()
            .map(|v| if v.ok { "ok" } else { "failed" }.to_string()),
        verify_detail: verify.map(|v| v.detail),
    }
}
