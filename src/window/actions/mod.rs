//! The actions a window runs, one file each, over the sidecar's own connections to the upstream
//! (not through the proxy, so they are never held by the gate). Each returns the cut it recorded.
//! An action runs in up to three parts: [`prepare`] before the gate closes (what needs no
//! quiescence: logging in, adding remotes, pre-syncing), [`run`] while it is closed (the cut),
//! [`transfer`] after it reopens (a push's `dolt_push`). [`prepare`] and [`run`] are the places
//! that list the actions: a new [`Action`] does not compile until it is handled there. [`prepare`]
//! alone looks up the action's section of the configuration; [`Prepared`] carries it on.

mod copy;
pub use copy::upload_offsite;
mod push;
mod snapshot;
mod sql;
mod sync;

use std::sync::Arc;

use serde_json::Value;

pub use push::Transfer;

use crate::config::backup::{Action, SnapshotConfig};
use crate::shared::Shared;
use crate::state::record::Steps;

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

/// An action made ready before the gate closes, with the section of the configuration it was
/// prepared with: the window runs as it began, whatever a reload changes meanwhile.
pub enum Prepared {
    Push(push::Prepared),
    Sync(sync::Prepared),
    /// Needs nothing before the gate closes.
    Snapshot(SnapshotConfig),
    /// The entry begun and the journals pre-copied before the gate closes.
    Copy(Box<copy::Prepared>),
}

/// Runs the part of `action` that needs no quiescence, before the gate closes (traffic flowing):
/// log in, add remotes and backups, pre-sync. A failure here fails the window without holding
/// anyone. The one place that looks up an action's section.
pub async fn prepare(
    shared: &Arc<Shared>,
    action: Action,
    window_id: u64,
    steps: &mut Steps,
) -> Result<Prepared, ActionError> {
    let config = shared.config();
    let backup = &config.backup;
    let missing = ActionError::NotConfigured(action.as_str());
    match action {
        Action::Push => {
            let cfg = backup.push.as_ref().ok_or(missing)?;
            Ok(Prepared::Push(push::prepare(shared, cfg, steps).await?))
        }
        Action::Sync => {
            let cfg = backup.sync.as_ref().ok_or(missing)?;
            Ok(Prepared::Sync(sync::prepare(shared, cfg, steps).await?))
        }
        Action::Snapshot => Ok(Prepared::Snapshot(backup.snapshot.clone().ok_or(missing)?)),
        Action::Copy => {
            let cfg = backup.copy.as_ref().ok_or(missing)?;
            let prepared = copy::prepare(shared, cfg, window_id, steps).await?;
            Ok(Prepared::Copy(Box::new(prepared)))
        }
    }
}

/// Runs the part of the action that needs traffic held, for window `window_id`; returns the cut
/// as JSON and, for a push, the transfer still to do.
pub async fn run(
    shared: &Arc<Shared>,
    prepared: Prepared,
    window_id: u64,
    steps: &mut Steps,
) -> Result<(Value, Option<Transfer>), ActionError> {
    match prepared {
        Prepared::Push(prepared) => {
            let (cut, transfer) = push::cut(prepared, window_id, steps).await?;
            Ok((cut, Some(transfer)))
        }
        Prepared::Sync(prepared) => Ok((sync::run(prepared, steps).await?, None)),
        Prepared::Snapshot(cfg) => Ok((snapshot::run(shared, &cfg, window_id).await?, None)),
        Prepared::Copy(prepared) => Ok((copy::run(shared, *prepared, steps).await?, None)),
    }
}

/// Pushes each branch once traffic flows again, and records in `cut` which head went out.
pub async fn transfer(
    work: Transfer,
    cut: &mut Value,
    steps: &mut Steps,
) -> Result<(), ActionError> {
    push::transfer(work, cut, steps).await
}
