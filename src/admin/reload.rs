//! `POST /reload`: reloads the configuration as `SIGHUP` does (see [`crate::reload`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::windows::{ApiError, error};
use crate::reload::{self, ReloadError};
use crate::shared::Shared;

/// A reload that was applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// The keys whose values changed (`backup.interval`, `admin_token`; never a value), and
    /// `tls_cert (file changed)` / `auth_file (file changed)` for files re-read under unchanged
    /// keys. Empty when nothing changed.
    pub changed: Vec<String>,
}

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
    match reload::reload(&shared).await {
        Ok(changed) => Json(Reloaded { changed }).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reload failed: the running configuration is unchanged");
            let status = match e {
                ReloadError::NoSource => StatusCode::CONFLICT,
                ReloadError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ReloadError::Invalid(_) | ReloadError::Setup(_) => StatusCode::BAD_REQUEST,
            };
            error(status, e.to_string())
        }
    }
}
