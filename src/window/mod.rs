//! Windows: quiesced periods with a purpose and a deadline. One runs at a time; each first does
//! what needs no quiescence with traffic flowing (logging in, adding remotes, a sync's
//! pre-syncs), then quiesces through the gate, runs the part of its action that needs traffic
//! held (a push only takes its cut there: working-set commit and head hashes; the transfer follows
//! after traffic resumes), and always resumes traffic (the gate guard is dropped on every path).
//! A record of each window, with the time of each step, is kept for `GET /backups`.
//!
//! An operator may also hold a window open for an external tool (`POST /quiesce?ttl=…`); it ends
//! at `POST /resume` or when its ttl runs out, whichever comes first.

pub mod actions;
pub mod after;
pub mod due;
pub mod trigger;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::config::auth::AuthMode;
use crate::config::backup::Action;
use crate::gate::QuiesceError;
use crate::shared::Shared;
use crate::state::record::{self, Steps};
pub use crate::state::record::{Outcome, Phase, Step, Trigger, WindowRecord};
use crate::state::windows::Held;
pub use crate::state::windows::{HISTORY, Pause, Windows};
use actions::{After, Context};

/// How long after connecting a session's first request still gets through a window that stops
/// the server (and the window waits for it): a client that connects to run one transaction is
/// not cut off between its login and its query.
const JOIN_GRACE: Duration = Duration::from_secs(1);

/// Why an operator hold could not start or end.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("another window is open")]
    Busy,
    #[error(transparent)]
    Quiesce(#[from] QuiesceError),
    #[error("no window is held")]
    NotHeld,
}

/// Runs one window for `action`: quiesce, act, resume. Never leaves traffic held. Waits for a
/// window already open to end.
pub async fn run(shared: &Arc<Shared>, action: Action, trigger: Trigger) -> WindowRecord {
    let slot = shared.windows.slot.clone().lock_owned().await;
    run_in_slot(shared, action, trigger, slot).await
}

/// [`run`], waiting at most `wait` for a window already open to end (`None` if it did not).
pub async fn run_within(
    shared: &Arc<Shared>,
    action: Action,
    trigger: Trigger,
    wait: Duration,
) -> Option<WindowRecord> {
    let slot = shared.windows.slot.clone().lock_owned();
    let slot = tokio::time::timeout(wait, slot).await.ok()?;
    Some(run_in_slot(shared, action, trigger, slot).await)
}

/// [`run`], or `None` at once if another window is open.
pub async fn try_run(
    shared: &Arc<Shared>,
    action: Action,
    trigger: Trigger,
) -> Option<WindowRecord> {
    let slot = shared.windows.slot.clone().try_lock_owned().ok()?;
    Some(run_in_slot(shared, action, trigger, slot).await)
}

async fn run_in_slot(
    shared: &Arc<Shared>,
    action: Action,
    trigger: Trigger,
    _slot: OwnedMutexGuard<()>,
) -> WindowRecord {
    let windows = &shared.windows;
    let started = Instant::now();
    let mut record = WindowRecord::new(action.as_str(), trigger);
    // Numbered now: a window that fails before it holds traffic, or aborts, has its own id.
    let id = shared.gate.reserve_id();
    record.id = id;
    let mut steps = Steps::new(started, Phase::Before);
    let config = shared.config();
    let timeout = config.backup.action_timeout;
    let ctx = context(shared, &config);
    // What needs no quiescence runs first, with traffic flowing: logging in, remotes, pre-syncs.
    let prepared =
        match tokio::time::timeout(timeout, actions::prepare(&ctx, action, id, &mut steps)).await {
            Ok(Ok(prepared)) => prepared,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("action did not finish within action_timeout ({timeout:?})"),
                };
                record.steps = steps.into_vec();
                record.finish(Outcome::Failed, Some(error), started, Duration::ZERO);
                return windows.remember(&shared.metrics, record);
            }
        };
    // A copy stops the server. With auth = "passthrough" a session cannot log in again after
    // the restart, so connections arriving from now on wait before they log in, instead of
    // logging in, being held, and losing their server. With "proxy" they log in while the
    // server is still up and are held at their first request (they log in again after the
    // restart): a client that connects while others of its own are inside transactions (one
    // thread serving several connections) is not blocked in its connect, and the drain ends.
    // The server is marked unavailable when the copy detaches the sessions.
    let stops_server = action.stops_server() && shared.control.copy_sources().is_some();
    let wait_before_login = stops_server && config.auth_mode() == AuthMode::Passthrough;
    if wait_before_login {
        shared.control.set_available(false);
    }
    steps.set_phase(Phase::Held);
    let closing = Instant::now();
    let quiesced = shared
        .gate
        .quiesce_with(
            id,
            &shared.registry,
            config.drain_timeout,
            config.drain_policy,
            &CancellationToken::new(),
            stops_server.then_some(JOIN_GRACE),
        )
        .await;
    steps.record("drain", None, closing);
    let guard = match quiesced {
        Ok(guard) => guard,
        Err(e) => {
            if wait_before_login {
                shared.control.set_available(true);
            }
            record.drain_ms = closing.elapsed().as_millis() as u64;
            record.steps = steps.into_vec();
            record.finish(
                Outcome::Aborted,
                Some(e.to_string()),
                started,
                closing.elapsed(),
            );
            return windows.remember(&shared.metrics, record);
        }
    };
    record.drain_ms = closing.elapsed().as_millis() as u64;
    let since_at_cut = shared.metrics.write_commits_since_backup.get();
    let cut_at = tokio::time::Instant::now();
    let held =
        tokio::time::timeout(timeout, actions::run(&ctx, prepared, guard.id, &mut steps)).await;
    let stall = guard.closed_at.elapsed();
    let closed_at = guard.closed_at.into_std();
    drop(guard);
    steps.record("gate_closed", None, closed_at);
    steps.set_phase(Phase::After);
    // Traffic flows again; a push's transfer runs now.
    let result = match held {
        Ok(Ok((mut cut, After::Transfer(transfer)))) => {
            let transfer = actions::transfer(transfer, &mut cut, &mut steps);
            match tokio::time::timeout(timeout, transfer).await {
                Ok(Ok(())) => Ok(Ok(cut)),
                Ok(Err(e)) => Ok(Err(e)),
                Err(elapsed) => Err(elapsed),
            }
        }
        Ok(Ok((cut, After::Entry { id, verify }))) => {
            after::entry_written(shared, id, verify);
            Ok(Ok(cut))
        }
        Ok(Ok((cut, After::Nothing))) => Ok(Ok(cut)),
        Ok(Err(e)) => Ok(Err(e)),
        Err(elapsed) => Err(elapsed),
    };
    record.steps = steps.into_vec();
    match result {
        Ok(Ok(cut)) => {
            record.cut = cut;
            shared
                .metrics
                .write_commits_since_backup
                .dec_by(since_at_cut);
            windows.note_cut(cut_at);
            record.finish(Outcome::Ok, None, started, stall);
        }
        Ok(Err(e)) => record.finish(Outcome::Failed, Some(e.to_string()), started, stall),
        Err(_) => {
            let error = format!("action did not finish within action_timeout ({timeout:?})");
            record.finish(Outcome::Failed, Some(error), started, stall);
        }
    }
    windows.remember(&shared.metrics, record)
}

/// What a window's actions read: the configuration it began with, and the parts they use.
fn context(shared: &Shared, config: &Arc<Config>) -> Context {
    Context {
        config: config.clone(),
        upstream: shared.upstream.clone(),
        control: shared.control.clone(),
        metrics: shared.metrics.clone(),
        verifications: shared.verifications.clone(),
    }
}

/// Starts an operator-held window: drains within `timeout`, then holds until [`resume`] or
/// `ttl`. Returns the window id.
pub async fn hold(
    shared: &Arc<Shared>,
    ttl: Duration,
    timeout: Duration,
) -> Result<u64, HoldError> {
    let windows = &shared.windows;
    let slot = windows
        .slot
        .clone()
        .try_lock_owned()
        .map_err(|_| HoldError::Busy)?;
    let cancel = CancellationToken::new();
    let id = shared.gate.reserve_id();
    {
        let mut held = windows.held.lock().unwrap();
        *held = Some(Held {
            id,
            started: Instant::now(),
            started_unix: SystemTime::now(),
            cancel: cancel.clone(),
            guard: None,
            _slot: slot,
        });
    }
    let quiesced = shared
        .gate
        .quiesce_with(
            id,
            &shared.registry,
            timeout,
            shared.config().drain_policy,
            &cancel,
            None,
        )
        .await;
    let mut held = windows.held.lock().unwrap();
    let failure = match quiesced {
        Ok(guard) if !cancel.is_cancelled() => Ok(guard),
        Ok(_) => Err(QuiesceError::Cancelled),
        Err(e) => Err(e),
    };
    let guard = match failure {
        Ok(guard) => guard,
        Err(e) => {
            // A resume during the drain already ended and recorded the hold.
            if let Some(h) = held.take() {
                drop(held);
                let mut record = WindowRecord::new("hold", Trigger::Operator);
                record.id = h.id;
                record.finish(
                    Outcome::Aborted,
                    Some(e.to_string()),
                    h.started,
                    Duration::ZERO,
                );
                windows.remember(&shared.metrics, record);
            }
            return Err(e.into());
        }
    };
    if let Some(h) = held.as_mut() {
        h.guard = Some(guard);
    }
    drop(held);
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(ttl) => {
                info!(window = id, ?ttl, "operator window reached its ttl: resuming");
                let _ = end_hold(&shared, Some(id), "ttl expired");
            }
            _ = cancel.cancelled() => {}
        }
    });
    info!(window = id, ?ttl, "operator window held");
    Ok(id)
}

/// Ends the operator-held window (or cancels its drain). Returns its id.
pub fn resume(shared: &Shared) -> Result<u64, HoldError> {
    end_hold(shared, None, "resumed")
}

fn end_hold(shared: &Shared, only: Option<u64>, why: &str) -> Result<u64, HoldError> {
    let windows = &shared.windows;
    let ended = {
        let mut held = windows.held.lock().unwrap();
        match held.as_ref() {
            Some(h) if only.is_none_or(|id| id == h.id) => held.take(),
            _ => None,
        }
    };
    let mut h = ended.ok_or(HoldError::NotHeld)?;
    h.cancel.cancel();
    // Dropping the guard reopens the gate; without one the drain was still under way.
    let mut record = WindowRecord::new("hold", Trigger::Operator);
    record.id = h.id;
    record.started_unix = record::unix(h.started_unix);
    match h.guard.take() {
        Some(guard) => {
            let stall = guard.closed_at.elapsed();
            drop(guard);
            record.finish(Outcome::Ok, None, h.started, stall);
        }
        None => record.finish(
            Outcome::Aborted,
            Some(why.to_string()),
            h.started,
            Duration::ZERO,
        ),
    }
    let id = h.id;
    drop(h);
    windows.remember(&shared.metrics, record);
    Ok(id)
}
