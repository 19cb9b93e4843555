//! The admin HTTP API (JSON): health, readiness, status, Prometheus metrics, backup windows and
//! operator holds, configuration reload, and its own OpenAPI document. It listens on loopback by default (see
//! `Config::admin_listen`), guards the control endpoints with the bearer token when one is set,
//! and refuses request targets and bodies larger than any endpoint needs. [`serve`] bounds its
//! connections: how many, how long a request may take to arrive, how long one may stay idle,
//! and how they close on shutdown.

mod openapi;
mod reload;
mod serve;
mod status;
mod windows;

#[cfg(any(test, feature = "test-support"))]
pub(crate) use windows::exercise_query;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::shared::Shared;
pub use serve::{BODY_TIMEOUT, HEADER_TIMEOUT, STOP_GRACE, serve};

/// `/healthz`, `/readyz`, `/metrics` and `/openapi.json` are open; the rest need the bearer token
/// when `admin_token` is set. Windows and holds run in `Shared::work`'s tasks.
pub fn router(shared: Arc<Shared>) -> Router {
    let guarded = Router::new()
        .route("/status", get(status::status))
        .route("/quiesce", post(windows::quiesce))
        .route("/resume", post(windows::resume))
        .route(
            "/backups",
            post(windows::run_backup).get(windows::list_backups),
        )
        .route("/reload", post(reload::reload))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(guarded)
        .layer(middleware::from_fn(limit_request))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// No endpoint takes a body; a little is tolerated, more is refused (413).
const MAX_BODY: usize = 1024;
/// The longest request target (path and query) accepted (414 beyond).
const MAX_TARGET: usize = 1024;

/// Refuses request targets longer than [`MAX_TARGET`] and bodies declared longer than
/// [`MAX_BODY`] before any handler runs.
async fn limit_request(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target > MAX_TARGET {
        return (StatusCode::URI_TOO_LONG, "request target too long\n").into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    }
    next.run(request).await
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = admin_token(&shared) else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| token_matches(g, &token)) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n").into_response()
    }
}

/// Compares a presented token with the configured one in constant time (`subtle`): the answer's
/// timing does not say how much of a guess was right (only, as any compare, the token's length).
pub(crate) fn token_matches(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// The admin token (config file, `--admin-token` or `DOLTGRES_SIDECAR_ADMIN_TOKEN`, resolved
/// with the rest of the configuration).
fn admin_token(shared: &Shared) -> Option<String> {
    shared.config().admin_token.clone()
}

/// The process is up.
#[utoipa::path(get, path = "/healthz",
    responses((status = 200, description = "up", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The admin API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    use utoipa::OpenApi;
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::ApiDoc::openapi().to_json().unwrap_or_default(),
    )
}

/// Ready when the upstream accepts TCP connections. An off-site repository that cannot be used
/// is said in the body, without making the sidecar unready: clients are served all the same.
#[utoipa::path(get, path = "/readyz",
    responses(
        (status = 200, description = "the upstream accepts connections (and, on a second line, why off-site uploads fail, if they do)", body = String, content_type = "text/plain"),
        (status = 503, description = "the upstream is unreachable", body = String, content_type = "text/plain"),
    ))]
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.upstream.reachable().await {
        Ok(()) => match shared.uploads.failing() {
            None => (StatusCode::OK, "ready\n".to_string()),
            Some(why) => (
                StatusCode::OK,
                format!("ready\noff-site uploads failing: {why}\n"),
            ),
        },
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "every metric", body = String,
               content_type = "application/openmetrics-text")))]
async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}
