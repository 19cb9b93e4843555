//! The actions a window runs, one file each, over the sidecar's own connections to the upstream
//! (not through the proxy, so they are never held by the gate). Each returns the cut it recorded.
//! An action runs in up to three parts: [`prepare`] before the gate closes (what needs no
//! quiescence: logging in, adding remotes, pre-syncing), [`run`] while it is closed (the cut),
//! [`transfer`] after it reopens (a push's `dolt_push`). [`prepare`] and [`run`] are the places
//! that list the actions: a new [`Action`] does not compile until it is handled there. [`prepare`]
//! alone looks up the action's section of the configuration; [`Prepared`] carries it on.
//!
//! The actions read what a [`Context`] hands them (the configuration the window began with, the
//! upstream, the server control, the metrics, the verifications' record of written entries),
//! never the whole shared state. What a finished action leaves to do in the background (verify
//! and upload a new copy) is named by [`After`], and started by the window.

mod copy;
mod push;
mod snapshot;
mod sql;
mod sync;

use std::sync::Arc;

use serde_json::Value;

pub use push::Transfer;

use crate::config::Config;
use crate::config::backup::{Action, SnapshotConfig};
use crate::control::Control;
use crate::metrics::Metrics;
use crate::state::record::Steps;
use crate::state::verifications::Verifications;
use crate::upstream::Upstream;

/// What an action reads, owned: a copy's task outlives the window's future (see `copy`).
#[derive(Clone)]
pub struct Context {
    /// The configuration the window began with.
    pub config: Arc<Config>,
    /// The actions' own connections to the server.
    pub upstream: Arc<Upstream>,
    /// Stopping, starting and detaching around a copy.
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
    /// Which entries this process wrote: a copy links from them, and adds the one it writes.
    pub verifications: Arc<Verifications>,
}

/// What a window leaves for after traffic resumes.
pub enum After {
    Nothing,
    /// A push's transfer.
    Transfer(Transfer),
    /// A copy's new catalog entry: to verify (with `verify_after`) and to upload off-site.
    Entry {
        id: String,
        verify: bool,
    },
}

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
    ctx: &Context,
    action: Action,
    window_id: u64,
    steps: &mut Steps,
) -> Result<Prepared, ActionError> {
    let backup = &ctx.config.backup;
    let missing = ActionError::NotConfigured(action.as_str());
    match action {
        Action::Push => {
            let cfg = backup.push.as_ref().ok_or(missing)?;
            Ok(Prepared::Push(push::prepare(ctx, cfg, steps).await?))
        }
        Action::Sync => {
            let cfg = backup.sync.as_ref().ok_or(missing)?;
            Ok(Prepared::Sync(sync::prepare(ctx, cfg, steps).await?))
        }
        Action::Snapshot => Ok(Prepared::Snapshot(backup.snapshot.clone().ok_or(missing)?)),
        Action::Copy => {
            let cfg = backup.copy.as_ref().ok_or(missing)?;
            let prepared = copy::prepare(ctx, cfg, window_id, steps).await?;
            Ok(Prepared::Copy(Box::new(prepared)))
        }
    }
}

/// Runs the part of the action that needs traffic held, for window `window_id`; returns the cut
/// as JSON and what is left to do once traffic resumes.
pub async fn run(
    ctx: &Context,
    prepared: Prepared,
    window_id: u64,
    steps: &mut Steps,
) -> Result<(Value, After), ActionError> {
    match prepared {
        Prepared::Push(prepared) => {
            let (cut, transfer) = push::cut(prepared, window_id, steps).await?;
            Ok((cut, After::Transfer(transfer)))
        }
        Prepared::Sync(prepared) => Ok((sync::run(prepared, steps).await?, After::Nothing)),
        Prepared::Snapshot(cfg) => {
            let upstream = &ctx.upstream.addr;
            let cut = snapshot::run(upstream, &cfg, window_id).await?;
            Ok((cut, After::Nothing))
        }
        Prepared::Copy(prepared) => copy::run(ctx, *prepared, steps).await,
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
