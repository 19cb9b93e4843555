//! The windows' own state, held in `Shared`: one window at a time (the slot), the operator's
//! hold, windows held off during an upgrade, the history and the last cut. What runs windows is
//! the `window` module.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::record::{self, Outcome, WindowRecord};
use crate::gate::GateGuard;
use crate::metrics::{ActionLabel, Metrics, WindowLabels};

/// How many finished windows `GET /backups` remembers.
pub const HISTORY: usize = 200;

/// The windows' own state: one at a time, the operator's hold, the history. One per proxy, in
/// `Shared`; the `window` module's `run`, `hold` and `resume` orchestrate with the rest of it.
#[derive(Debug, Default)]
pub struct Windows {
    /// Held for the whole of a window: one at a time.
    pub(crate) slot: Arc<tokio::sync::Mutex<()>>,
    history: Mutex<VecDeque<WindowRecord>>,
    pub(crate) held: Mutex<Option<Held>>,
    /// Why windows are held off, while a [`Pause`] lives.
    paused: Arc<Mutex<Option<String>>>,
    /// How many windows succeeded, and when the last one took its cut: what the interval
    /// trigger's clock starts from (`window::due::Unbacked`).
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

    pub(crate) fn note_cut(&self, at: tokio::time::Instant) {
        let mut cuts = self.cuts.lock().unwrap();
        let number = cuts.map_or(0, |(n, _)| n) + 1;
        *cuts = Some((number, at));
    }
}

/// An operator-held window.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) id: u64,
    pub(crate) started: Instant,
    pub(crate) started_unix: SystemTime,
    /// Cancels the drain while it is still under way, or ends the hold (ttl task).
    pub(crate) cancel: CancellationToken,
    pub(crate) guard: Option<GateGuard>,
    pub(crate) _slot: OwnedMutexGuard<()>,
}

impl Windows {
    /// Counts a finished window in the metrics and keeps its record.
    pub(crate) fn remember(&self, m: &Metrics, record: WindowRecord) -> WindowRecord {
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
