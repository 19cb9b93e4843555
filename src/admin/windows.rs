//! Window endpoints: `POST /quiesce?ttl=30s&timeout=5s`, `POST /resume`,
//! `POST /backups[?action=push|sync|snapshot|copy]`, `GET /backups`. Each answer is a typed struct,
//! so the OpenAPI document (`/openapi.json`) is generated from the same types.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Work;
use crate::catalog::{Catalog, Entry};
use crate::shared::Shared;
use crate::window::config::Action;
use crate::window::{self, HoldError, Outcome, Trigger};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuiesceParams {
    /// Resume by itself after this long (a whole number and a unit: `500ms`, `30s`, `5m`, `1h`;
    /// capped at `max_hold_ttl`).
    #[param(required = false, value_type = String, pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h)$")]
    ttl: Option<String>,
    /// Give up if sessions are still inside transactions after this long [default:
    /// `drain_timeout`; same form, capped at `max_hold_ttl`].
    #[param(required = false, value_type = String, pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h)$")]
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

/// A duration parameter (a whole number of 1 to 6 digits and a unit), capped at `max`; or the
/// text of a 400 answer.
fn bounded(text: Option<&str>, default: Duration, max: Duration) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(default.min(max));
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let unit = &text[digits..];
    let well_formed = (1..=6).contains(&digits)
        && !text.starts_with('0')
        && matches!(unit, "ms" | "s" | "m" | "h");
    if !well_formed {
        return Err(format!(
            "{text:?}: use a whole number and a unit, e.g. 500ms, 30s, 5m or 1h"
        ));
    }
    let value = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(value.min(max))
}

/// The fuzz target's body (`fuzz/fuzz_targets/admin_query.rs`): a query string extracted as axum
/// extracts it for `POST /quiesce` and `POST /backups`. A duration is accepted exactly when it
/// matches the pattern the OpenAPI document states, and is then more than zero and at most the
/// cap; an action is accepted exactly when it is one of the four names. Panics otherwise.
#[cfg(any(test, feature = "test-support"))]
pub fn exercise_query(query: &[u8]) {
    let Ok(text) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(uri) = format!("/quiesce?{text}").parse::<axum::http::Uri>() else {
        return;
    };
    let max = Duration::from_secs(600);
    if let Ok(Query(p)) = Query::<QuiesceParams>::try_from_uri(&uri) {
        for value in [p.ttl.as_deref(), p.timeout.as_deref()] {
            let result = bounded(value, Duration::from_secs(30), max);
            if let Some(value) = value {
                assert_eq!(result.is_ok(), documented_duration(value), "{value:?}");
            }
            if let Ok(d) = result {
                assert!(!d.is_zero() && d <= max, "{value:?} gave {d:?}");
            }
        }
    }
    if let Ok(Query(p)) = Query::<BackupParams>::try_from_uri(&uri)
        && let Some(name) = p.action.as_deref()
    {
        let documented = ["push", "sync", "snapshot", "copy"].contains(&name);
        assert_eq!(Action::parse(name).is_some(), documented, "{name:?}");
    }
}

/// `^[1-9][0-9]{0,5}(ms|s|m|h)$`, the pattern `/openapi.json` gives for durations, written out.
#[cfg(any(test, feature = "test-support"))]
fn documented_duration(text: &str) -> bool {
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[number.len()..];
    !number.is_empty()
        && number.len() <= 6
        && number.bytes().all(|b| b.is_ascii_digit())
        && !number.starts_with('0')
        && ["ms", "s", "m", "h"].contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_checks_hold_on_edge_inputs() {
        for query in [
            "ttl=30s",
            "ttl=0s&timeout=1h",
            "ttl=%31%30s",
            "ttl=999999h",
            "ttl=1000000h",
            "ttl=1%C3%A9s",
            "action=copy",
            "action=COPY",
            "action=copy%00",
            "ttl&timeout=",
        ] {
            exercise_query(query.as_bytes());
        }
        assert!(documented_duration("500ms") && !documented_duration("5m0s"));
    }

    #[test]
    fn hold_durations_are_well_formed_and_capped() {
        let max = Duration::from_secs(600);
        let default = Duration::from_secs(30);
        assert_eq!(bounded(None, default, max), Ok(default));
        assert_eq!(
            bounded(Some("2m"), default, max),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            bounded(Some("500ms"), default, max),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(bounded(Some("999999h"), default, max), Ok(max), "capped");
        assert_eq!(bounded(None, Duration::from_secs(900), max), Ok(max));
        for bad in ["1day", "0s", "05s", "soon", "", "1m30s", "1234567s", "-1s"] {
            assert!(
                bounded(Some(bad), default, max).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}

/// The answer while windows are held off (an upgrade hand-over).
fn held_off(reason: &str) -> String {
    format!("backup windows are held off: {reason}; try again when it ends")
}

/// Query parameters, read as axum's `Query` reads them; a query string that does not read as
/// them (a parameter given twice, say) is answered `400` with the documented JSON error rather
/// than axum's plain text.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(params)) => Ok(Params(params)),
            Err(rejection) => Err(error(StatusCode::BAD_REQUEST, rejection.body_text())),
        }
    }
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ApiError {
        error: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Hold every session at its next transaction boundary (for an external backup tool).
#[utoipa::path(post, path = "/quiesce", params(QuiesceParams), security(("bearer" = [])),
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),
        (status = 200, description = "every session is held", body = Held),
        (status = 400, description = "ttl or timeout not a whole number and a unit, or given twice", body = ApiError),
        (status = 409, description = "another window is open, or windows are held off during an upgrade", body = ApiError),
        (status = 503, description = "sessions did not drain in time", body = ApiError),
    ))]
pub async fn quiesce(
    State(shared): State<Arc<Shared>>,
    Extension(work): Extension<Work>,
    Params(p): Params<QuiesceParams>,
) -> Response {
    if let Some(reason) = shared.windows.paused() {
        return error(StatusCode::CONFLICT, held_off(&reason));
    }
    let max = shared.config().max_hold_ttl;
    let ttl = match bounded(p.ttl.as_deref(), Duration::from_secs(30), max) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let timeout = match bounded(p.timeout.as_deref(), shared.config().drain_timeout, max) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // In its own task: a client that goes away during the drain does not leave the hold
    // half-made.
    let held = work.run(async move { window::hold(&shared, ttl, timeout).await });
    match held.await {
        Ok(Ok(id)) => Json(Held {
            window_id: id,
            ttl_seconds: ttl.as_secs_f64(),
        })
        .into_response(),
        Ok(Err(HoldError::Busy)) => error(StatusCode::CONFLICT, "another window is open"),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => failed(e),
    }
}

/// The answer when the task doing a request's work panicked.
fn failed(e: tokio::task::JoinError) -> Response {
    tracing::error!(error = %e, "admin request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "the request failed")
}

/// End the operator hold (or its drain).
#[utoipa::path(post, path = "/resume", security(("bearer" = [])),
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),
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
#[into_params(parameter_in = Query)]
pub struct BackupParams {
    /// `push`, `sync`, `snapshot` or `copy` [default: the action triggered windows run, when
    /// there is one (`backup_actions` in `GET /status`); `409` naming them when there are
    /// several, or none].
    #[param(required = false, value_type = String, pattern = "^(push|sync|snapshot|copy)$")]
    action: Option<String>,
}

/// The action `POST /backups` runs: the one asked for, else the one triggered windows run; or
/// the status and text of the refusal.
fn chosen_action(
    asked: Option<&str>,
    config: &crate::config::Config,
) -> Result<Action, (StatusCode, String)> {
    let backup = &config.backup;
    let action = match asked {
        Some(name) => Action::parse(name).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("unknown action {name:?} (push, sync, snapshot, copy)"),
            )
        })?,
        None => match backup.triggered_actions().as_slice() {
            [one] => *one,
            [] => {
                return Err((
                    StatusCode::CONFLICT,
                    "no backup action is configured: set one of [backup.push], [backup.sync], \
                     [backup.snapshot] or [backup.copy] (`doltgres-sidecar run --help` lists \
                     their flags)"
                        .to_string(),
                ));
            }
            several => {
                let names: Vec<&str> = several.iter().map(|a| a.as_str()).collect();
                return Err((
                    StatusCode::CONFLICT,
                    format!(
                        "several backup actions are configured ({}): name one with action=",
                        names.join(", ")
                    ),
                ));
            }
        },
    };
    match backup.not_configured(action, config.server.control) {
        Some(why) => Err((StatusCode::CONFLICT, why)),
        None => Ok(action),
    }
}

/// Run a backup window now and return its record.
#[utoipa::path(post, path = "/backups", params(BackupParams), security(("bearer" = [])),
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),
        (status = 200, description = "the window succeeded", body = crate::window::WindowRecord),
        (status = 400, description = "unknown action, or action given twice", body = ApiError),
        (status = 409, description = "the action is not configured (or, without action, not exactly one is), another window is open, or windows are held off during an upgrade", body = ApiError),
        (status = 502, description = "the action failed", body = crate::window::WindowRecord),
        (status = 503, description = "sessions did not drain in time", body = crate::window::WindowRecord),
    ))]
pub async fn run_backup(
    State(shared): State<Arc<Shared>>,
    Extension(work): Extension<Work>,
    Params(p): Params<BackupParams>,
) -> Response {
    let chosen = chosen_action(p.action.as_deref(), &shared.config());
    if let Err((StatusCode::BAD_REQUEST, why)) = chosen {
        return error(StatusCode::BAD_REQUEST, why);
    }
    if let Some(reason) = shared.windows.paused() {
        return error(StatusCode::CONFLICT, held_off(&reason));
    }
    let action = match chosen {
        Ok(action) => action,
        Err((status, why)) => return error(status, why),
    };
    // An operator's request does not queue behind another window (an operator hold may last
    // minutes); triggered windows do.
    // In its own task: the window runs to its end even if the client goes away or the admin
    // API stops (a stop waits for it).
    let run = work.run(async move { window::try_run(&shared, action, Trigger::Operator).await });
    let record = match run.await {
        Ok(Some(record)) => record,
        Ok(None) => return error(StatusCode::CONFLICT, "another window is open"),
        Err(e) => return failed(e),
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
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),(status = 200, description = "newest first", body = Backups)))]
pub async fn list_backups(State(shared): State<Arc<Shared>>) -> Json<Backups> {
    let copies = match &shared.config().backup.copy {
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
