//! The actions a window runs, one file each, over the sidecar's own connections to the upstream
//! (not through the proxy, so they are never held by the gate). Each returns the cut it recorded.
//! [`run`] is the one place that lists them: a new [`Action`] does not compile until it is
//! handled here.

mod copy;
mod push;
mod snapshot;
mod sql;
mod sync;

use std::sync::Arc;

use serde_json::Value;

pub use push::Transfer;

use super::config::Action;
use crate::shared::Shared;

/// An action that failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("database {database}: {message}")]
    Sql { database: String, message: String },
    #[error("[backup.{0}] is not configured")]
    NotConfigured(&'static str),
    #[error("snapshot command: {0}")]
    Command(String),
    #[error("copy: {0}")]
    Copy(String),
}

/// Runs the part of `action` that needs traffic held, for window `window_id`; returns the cut as
/// JSON and, for a push, the transfer still to do.
pub async fn run(
    shared: &Arc<Shared>,
    action: Action,
    window_id: u64,
) -> Result<(Value, Option<Transfer>), ActionError> {
    let backup = &shared.config.backup;
    let missing = ActionError::NotConfigured(action.as_str());
    match action {
        Action::Push => {
            let cfg = backup.push.as_ref().ok_or(missing)?;
            let (cut, transfer) = push::cut(shared, cfg, window_id).await?;
            Ok((cut, Some(transfer)))
        }
        Action::Sync => {
            let cfg = backup.sync.as_ref().ok_or(missing)?;
            Ok((sync::run(shared, cfg).await?, None))
        }
        Action::Snapshot => {
            let cfg = backup.snapshot.as_ref().ok_or(missing)?;
            Ok((snapshot::run(shared, cfg, window_id).await?, None))
        }
        Action::Copy => {
            let cfg = backup.copy.as_ref().ok_or(missing)?;
            Ok((copy::run(shared, cfg, window_id).await?, None))
        }
    }
}

/// Pushes each branch once traffic flows again, and records in `cut` which head went out.
pub async fn transfer(shared: &Shared, work: Transfer, cut: &mut Value) -> Result<(), ActionError> {
    let cfg = shared
        .config
        .backup
        .push
        .as_ref()
        .ok_or(ActionError::NotConfigured("push"))?;
    push::transfer(cfg, work, cut).await
}
