//! Backup windows on an operator's request: a hold (traffic held at transaction boundaries for
//! an external backup tool) and its end, and a backup window now.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::{OpError, Refusal};
use crate::config::Config;
use crate::config::backup::Action;
use crate::shared::Shared;
use crate::state::work::Work;
use crate::window::{self, HoldError, Outcome, Trigger, WindowRecord};

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

/// How long a hold lasts when the operator does not say.
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(30);

/// A duration an operator gave (a whole number of 1 to 6 digits and a unit: `500ms`, `30s`,
/// `5m`, `1h`), capped at `max`; `default` (capped too) when none was given.
pub fn bounded(text: Option<&str>, default: Duration, max: Duration) -> Result<Duration, String> {
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

/// The answer while windows are held off (an upgrade hand-over).
fn held_off(reason: &str) -> OpError {
    OpError::new(
        Refusal::Conflict,
        format!("backup windows are held off: {reason}; try again when it ends"),
    )
}

/// Holds every session at its next transaction boundary for `ttl` (default 30 s), giving up if
/// they are still inside transactions after `timeout` (default `drain_timeout`); both capped at
/// `max_hold_ttl`. Returns once every session is held.
pub async fn hold(
    shared: &Arc<Shared>,
    work: &Work,
    ttl: Option<&str>,
    timeout: Option<&str>,
) -> Result<Held, OpError> {
    if let Some(reason) = shared.windows.paused() {
        return Err(held_off(&reason));
    }
    let config = shared.config();
    let max = config.max_hold_ttl;
    let invalid = |e| OpError::new(Refusal::Invalid, e);
    let ttl = bounded(ttl, DEFAULT_HOLD_TTL, max).map_err(invalid)?;
    let timeout = bounded(timeout, config.drain_timeout, max).map_err(invalid)?;
    // In its own task: a client that goes away during the drain does not leave the hold
    // half-made.
    let shared = shared.clone();
    match work
        .run(async move { window::hold(&shared, ttl, timeout).await })
        .await?
    {
        Ok(id) => Ok(Held {
            window_id: id,
            ttl_seconds: ttl.as_secs_f64(),
        }),
        Err(HoldError::Busy) => Err(OpError::new(Refusal::Conflict, "another window is open")),
        Err(e) => Err(OpError::new(Refusal::Unavailable, e.to_string())),
    }
}

/// Ends the operator hold (or its drain).
pub fn resume(shared: &Shared) -> Result<Resumed, OpError> {
    window::resume(shared)
        .map(|id| Resumed { resumed: id })
        .map_err(|e| OpError::new(Refusal::Conflict, e.to_string()))
}

/// The action a window on request runs: the one asked for, else the one triggered windows run.
pub fn chosen_action(asked: Option<Action>, config: &Config) -> Result<Action, OpError> {
    let backup = &config.backup;
    let action = match asked {
        Some(action) => action,
        None => match backup.triggered_actions().as_slice() {
            [one] => *one,
            [] => {
                return Err(OpError::new(
                    Refusal::Conflict,
                    "no backup action is configured: set one of [backup.push], [backup.sync], \
                     [backup.snapshot] or [backup.copy] (`doltgres-sidecar run --help` lists \
                     their flags)",
                ));
            }
            several => {
                let names: Vec<&str> = several.iter().map(|a| a.as_str()).collect();
                return Err(OpError::new(
                    Refusal::Conflict,
                    format!(
                        "several backup actions are configured ({}): name one",
                        names.join(", ")
                    ),
                ));
            }
        },
    };
    match backup.not_configured(action, config.server.control.mode()) {
        Some(why) => Err(OpError::new(Refusal::Conflict, why)),
        None => Ok(action),
    }
}

/// Runs a backup window for `action` (see [`chosen_action`]) now and returns its record,
/// whatever its outcome (see [`failure`]). It does not queue behind another window: an operator
/// hold may last minutes.
pub async fn backup(
    shared: &Arc<Shared>,
    work: &Work,
    action: Option<Action>,
) -> Result<WindowRecord, OpError> {
    if let Some(reason) = shared.windows.paused() {
        return Err(held_off(&reason));
    }
    let action = chosen_action(action, &shared.config())?;
    // In its own task: the window runs to its end even if whoever asked goes away (a stop waits
    // for it).
    let shared = shared.clone();
    let run = work.run(async move { window::try_run(&shared, action, Trigger::Operator).await });
    run.await?
        .ok_or_else(|| OpError::new(Refusal::Conflict, "another window is open"))
}

/// How a window that ran did not succeed, if it did not.
pub fn failure(record: &WindowRecord) -> Option<Refusal> {
    match record.result {
        Outcome::Ok => None,
        Outcome::Aborted => Some(Refusal::Unavailable),
        Outcome::Failed => Some(Refusal::Failed),
    }
}
