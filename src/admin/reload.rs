//! `POST /reload`: reloads the configuration as `SIGHUP` does (see [`crate::reload`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::windows::{ApiError, refused};
use crate::ops;
use crate::ops::maintenance::Reloaded;
use crate::shared::Shared;

/// Reload the configuration: the file again, then flags and environment, secret files re-read.
/// All or nothing: a file that does not parse or validate, a certificate that does not load, or a
/// changed key that needs a restart changes nothing.
#[utoipa::path(post, path = "/reload", security(("bearer" = [])),
    responses(
        (status = 401, description = "missing or wrong bearer token", body = String, content_type = "text/plain"),
        (status = 200, description = "applied; the keys that changed", body = Reloaded),
        (status = 400, description = "the new configuration is invalid or its files cannot be used; nothing changed", body = ApiError),
        (status = 422, description = "a changed key needs a restart (named in the error); nothing changed", body = ApiError),
        (status = 409, description = "no configuration source to reload from (not started by `doltgres-sidecar run`)", body = ApiError),
    ))]
pub async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    match ops::maintenance::reload(&shared).await {
        Ok(reloaded) => Json(reloaded).into_response(),
        Err(e) => refused(e),
    }
}
