//! `GET /status`: [`crate::ops::status`] as JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::ops::status::Status;
use crate::shared::Shared;

/// Open sessions (with their server pid and state), the transaction counters, and where the
/// sidecar's server, binary and copies are.
#[utoipa::path(get, path = "/status", security(("bearer" = [])),
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),(status = 200, description = "sessions and counters", body = Status)))]
pub async fn status(State(shared): State<Arc<Shared>>) -> Json<Status> {
    Json(crate::ops::status::status(&shared))
}
