//! Window endpoints: `POST /quiesce?ttl=30s&timeout=5s`, `POST /resume`,
//! `POST /backups[?action=push|sync|snapshot|copy]`, `GET /backups`. Each answer is a typed struct,
//! so the OpenAPI document (`/openapi.json`) is generated from the same types.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use crate::config::backup::Action;
use crate::ops::backups::Backups;
use crate::ops::windows::{Held, Resumed};
use crate::ops::{self, OpError, Refusal};
use crate::shared::Shared;

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

/// Why a request was not done.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

/// The fuzz target's body (`fuzz/fuzz_targets/admin_query.rs`): a query string extracted as axum
/// extracts it for `POST /quiesce` and `POST /backups`. A duration is accepted exactly when it
/// matches the pattern the OpenAPI document states, and is then more than zero and at most the
/// cap; an action is accepted exactly when it is one of the four names. Panics otherwise.
#[cfg(any(test, feature = "test-support"))]
pub fn exercise_query(query: &[u8]) {
    use crate::ops::windows::bounded;
    use std::time::Duration;
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
    // An action is read exactly when the value is one of the four names.
    let given = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.into_owned())
    });
    let read = Query::<BackupParams>::try_from_uri(&uri).map(|Query(p)| p.action);
    if let (Some(name), Ok(action)) = (&given, &read) {
        let documented = ["push", "sync", "snapshot", "copy"].contains(&name.as_str());
        assert_eq!(action.map(Action::as_str), Some(name.as_str()), "{name:?}");
        assert!(documented, "{name:?}");
    }
    if let (Some(name), Err(_)) = (&given, &read) {
        let repeated = uri.query().is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == "action")
                .count()
                > 1
        });
        assert!(
            repeated || Action::parse(name).is_none(),
            "{name:?} refused"
        );
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
    use crate::ops::windows::bounded;
    use std::time::Duration;

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
    Params(p): Params<QuiesceParams>,
) -> Response {
    let held = ops::windows::hold(
        &shared,
        &shared.work,
        p.ttl.as_deref(),
        p.timeout.as_deref(),
    );
    match held.await {
        Ok(held) => Json(held).into_response(),
        Err(e) => refused(e),
    }
}

/// The answer to a refused request: its status, and the reason as the documented JSON error.
pub(super) fn refused(e: OpError) -> Response {
    let status = match e.kind {
        Refusal::Invalid => StatusCode::BAD_REQUEST,
        Refusal::Conflict => StatusCode::CONFLICT,
        Refusal::NeedsRestart => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.message)
}

/// End the operator hold (or its drain).
#[utoipa::path(post, path = "/resume", security(("bearer" = [])),
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),
        (status = 200, description = "traffic flows", body = Resumed),
        (status = 409, description = "no window is held", body = ApiError),
    ))]
pub async fn resume(State(shared): State<Arc<Shared>>) -> Response {
    match ops::windows::resume(&shared) {
        Ok(resumed) => Json(resumed).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupParams {
    /// `push`, `sync`, `snapshot` or `copy` [default: the action triggered windows run, when
    /// there is one (`backup_actions` in `GET /status`); `409` naming them when there are
    /// several, or none].
    #[param(required = false, inline)]
    action: Option<Action>,
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
    Params(p): Params<BackupParams>,
) -> Response {
    let record = match ops::windows::backup(&shared, &shared.work, p.action).await {
        Ok(record) => record,
        Err(e) => return refused(e),
    };
    let status = match ops::windows::failure(&record) {
        None => StatusCode::OK,
        Some(Refusal::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(_) => StatusCode::BAD_GATEWAY,
    };
    (status, Json(record)).into_response()
}

/// Recent windows, and the copy entries with their verification.
#[utoipa::path(get, path = "/backups", security(("bearer" = [])),
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),(status = 200, description = "newest first", body = Backups)))]
pub async fn list_backups(State(shared): State<Arc<Shared>>) -> Json<Backups> {
    Json(ops::backups::backups(&shared).await)
}
