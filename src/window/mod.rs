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
pub mod config;
pub mod due;
pub mod record;
pub mod trigger;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::AuthMode;
use crate::gate::{GateGuard, QuiesceError};
use crate::metrics::{ActionLabel, Metrics, WindowLabels};
use crate::shared::Shared;
use config::Action;
use record::Steps;
pub use record::{Outcome, Phase, Step, Trigger, WindowRecord};

/// How long after connecting a session's first request still gets through a window that stops
/// the server (and the window waits for it): a client that connects to run one transaction is
/// not cut off between its login and its query.
const JOIN_GRACE: Duration = Duration::from_secs(1);

/// How many finished windows `GET /backups` remembers.
pub const HISTORY: usize = 200;

/// The windows' own state: one at a time, the operator's hold, the history. One per proxy, in
/// `Shared`; [`run`], [`hold`] and [`resume`] orchestrate with the rest of it.
#[derive(Debug, Default)]
pub struct Windows {
    /// Held for the whole of a window: one at a time.
    slot: Arc<tokio::sync::Mutex<()>>,
    history: Mutex<VecDeque<WindowRecord>>,
    held: Mutex<Option<Held>>,
    /// Why windows are held off, while a [`Pause`] lives.
    paused: Arc<Mutex<Option<String>>>,
    /// How many windows succeeded, and when the last one took its cut: what the interval
    /// trigger's clock starts from ([`due::Unbacked`]).
    cuts: Mutex<Option<(u64, tokio::time::Instant)>>,
}

/// Windows held off: none starts while this lives (an upgrade hand-over in progress). It holds
/// the one-at-a-time slot, so it waits for an open window to end before it begins.
#[derive(Debug)]
pub struct Pause {
    _slot: OwnedMutexGuard<()>,
    reason: Arc<Mutex<Option<String>>>,
}

impl Drop for Pause {
    fn drop(&mut self) {
        *self.reason.lock().unwrap() = None;
    }
}

impl Windows {
    /// Holds windows off for `reason`, once any open window has ended (at most `wait`; `None`
    /// if one is still open then).
    pub async fn pause(&self, reason: String, wait: Duration) -> Option<Pause> {
        let slot = tokio::time::timeout(wait, self.slot.clone().lock_owned())
            .await
            .ok()?;
        *self.paused.lock().unwrap() = Some(reason);
        Some(Pause {
            _slot: slot,
            reason: self.paused.clone(),
        })
    }

    /// Why windows are held off, if they are.
    pub fn paused(&self) -> Option<String> {
        self.paused.lock().unwrap().clone()
    }

    /// The number of successful windows so far and when the last one took its cut.
    pub fn last_cut(&self) -> Option<(u64, tokio::time::Instant)> {
        *self.cuts.lock().unwrap()
    }

    fn note_cut(&self, at: tokio::time::Instant) {
        let mut cuts = self.cuts.lock().unwrap();
        let number = cuts.map_or(0, |(n, _)| n) + 1;
        *cuts = Some((number, at));
    }
}

/// An operator-held window.
#[derive(Debug)]
struct Held {
    id: u64,
    started: Instant,
    started_unix: SystemTime,
    /// Cancels the drain while it is still under way, or ends the hold (ttl task).
    cancel: CancellationToken,
    guard: Option<GateGuard>,
    _slot: OwnedMutexGuard<()>,
}

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
    // What needs no quiescence runs first, with traffic flowing: logging in, remotes, pre-syncs.
    let prepared =
        match tokio::time::timeout(timeout, actions::prepare(shared, action, id, &mut steps)).await
        {
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
    let held = tokio::time::timeout(
        timeout,
        actions::run(shared, prepared, guard.id, &mut steps),
    )
    .await;
    let stall = guard.closed_at.elapsed();
    let closed_at = guard.closed_at.into_std();
    drop(guard);
    steps.record("gate_closed", None, closed_at);
    steps.set_phase(Phase::After);
    // Traffic flows again; a push's transfer runs now.
    let result = match held {
        Ok(Ok((mut cut, Some(transfer)))) => {
            let transfer = actions::transfer(shared, transfer, &mut cut, &mut steps);
            match tokio::time::timeout(timeout, transfer).await {
                Ok(Ok(())) => Ok(Ok(cut)),
                Ok(Err(e)) => Ok(Err(e)),
                Err(elapsed) => Err(elapsed),
            }
        }
        Ok(Ok((cut, None))) => Ok(Ok(cut)),
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

impl Windows {
    /// Counts a finished window in the metrics and keeps its record.
    fn remember(&self, m: &Metrics, record: WindowRecord) -> WindowRecord {
        m.windows
            .get_or_create(&WindowLabels {
                action: record.action.clone(),
                result: record.result.as_str().to_string(),
            })
            .inc();
        let action = ActionLabel {
            action: record.action.clone(),
        };
        if record.result == Outcome::Ok {
            m.backup_duration_seconds
                .get_or_create(&action)
                .observe(record.duration_ms as f64 / 1000.0);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            m.last_backup_success_timestamp_seconds
                .get_or_create(&action)
                .set(now.as_secs_f64());
            info!(window = record.id, action = %record.action, stall_ms = record.stall_ms, duration_ms = record.duration_ms, steps = %record::describe(&record.steps), "window done");
        } else {
            warn!(window = record.id, action = %record.action, result = record.result.as_str(), error = ?record.error, steps = %record::describe(&record.steps), "window did not complete");
        }
        let mut history = self.history.lock().unwrap();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(record.clone());
        record
    }

    /// Finished windows, newest first.
    pub fn history(&self) -> Vec<WindowRecord> {
        self.history.lock().unwrap().iter().rev().cloned().collect()
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
