//! Reload the configuration, verify a copy entry now, shut down.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::{OpError, Refusal};
use crate::catalog::Catalog;
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

/// Reloads the configuration as `SIGHUP` does (see [`crate::reload`]): all or nothing.
pub async fn reload(shared: &Arc<Shared>) -> Result<Reloaded, OpError> {
    match reload::reload(shared).await {
        Ok(changed) => Ok(Reloaded { changed }),
        Err(e) => {
            tracing::error!(error = %e, "reload failed: the running configuration is unchanged");
            let kind = match e {
                ReloadError::NoSource => Refusal::Conflict,
                ReloadError::Refused(_) => Refusal::NeedsRestart,
                ReloadError::Invalid(_) | ReloadError::Setup(_) => Refusal::Invalid,
            };
            Err(OpError::new(kind, e.to_string()))
        }
    }
}

/// A verification that ran.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    pub entry: String,
    /// `ok` or `failed`.
    pub verify: String,
    pub detail: String,
}

/// Verifies copy entry `id` (`latest`: the newest) now, as `verify_after` does, and records the
/// result beside it and in the metrics. A failed verification is an answer, not an error.
pub async fn verify(shared: &Arc<Shared>, id: &str) -> Result<Verified, OpError> {
    let config = shared.config();
    let Some(copy) = &config.backup.copy else {
        return Err(OpError::new(
            Refusal::Conflict,
            "there are no copies to verify: [backup.copy] is not configured",
        ));
    };
    let catalog = Catalog {
        dir: copy.catalog.clone(),
    };
    let asked = id.to_string();
    // The entry must be one the catalog lists (not a typo counted as a failed verification).
    let found = tokio::task::spawn_blocking(move || {
        let mut entries = catalog.entries();
        match asked.as_str() {
            "latest" => entries.pop().map(|e| e.id),
            _ => entries.into_iter().map(|e| e.id).find(|id| *id == asked),
        }
    })
    .await
    .ok()
    .flatten();
    let id = found.ok_or_else(|| match id {
        "latest" => OpError::new(Refusal::Conflict, "the catalog has no entry yet"),
        _ => OpError::new(Refusal::Invalid, format!("there is no entry {id:?}")),
    })?;
    let result = crate::verify::background::verify_requested(shared, id.clone())
        .await
        .ok_or_else(|| OpError::new(Refusal::Invalid, format!("there is no entry {id:?}")))?;
    let (verify, detail) = match result {
        Ok(detail) => ("ok", detail),
        Err(detail) => ("failed", detail),
    };
    Ok(Verified {
        entry: id,
        verify: verify.to_string(),
        detail,
    })
}

/// Starts a graceful shutdown, as `SIGTERM` does: sessions end at their boundary, then the
/// final backup.
pub fn shutdown(shared: &Shared) -> Result<(), OpError> {
    tracing::info!("shutdown asked by an operator");
    shared.shutdown.cancel();
    Ok(())
}
