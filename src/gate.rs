//! The quiesce gate: hold every session at its next transaction boundary.
//!
//! Closing the gate stops sessions that are at a boundary from starting a new request; sessions
//! inside a transaction run on until they reach one. [`Gate::quiesce`] returns a [`GateGuard`]
//! once every session is quiescent, or fails at its deadline. The guard reopens the gate when
//! dropped — on success, error, panic or timeout — so a window always ends.
//!
//! Race freedom: a session decides to forward a batch while holding its tracker lock, after
//! reading the gate state, and marks the batch in flight under the same lock; `quiesce` closes the
//! gate first and only then reads each tracker under its lock. So either the session saw the gate
//! closed and holds, or quiesce sees the batch in flight and waits for it.
//!
//! Joining sessions: a window that stops the server ([`Gate::quiesce_with`] with a join grace)
//! also waits for sessions that connected less than the grace ago and have not run a request yet,
//! and lets their first request through: a client that connects to run one transaction is not
//! caught between its login and its query. The grace is part of the closed state, so a session
//! reads it with the same borrow that tells it the gate is closed.
//!
//! Shutdown ([`Gate::end_at_boundaries`]): from the moment it begins no session at a boundary is
//! admitted again, whether or not a window is open, and every session found at a boundary is
//! ended. The same ordering makes this race-free: the flag is set before the trackers are read
//! under their locks, so a session either saw it (and holds until it is ended) or is seen busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::registry::{EndReason, Registry, SessionInfo};

pub use crate::config::modes::DrainPolicy;

/// Why a quiesce did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuiesceError {
    #[error("another window is open")]
    Busy,
    #[error("{busy} session(s) still inside a transaction at the drain deadline")]
    Timeout { busy: usize },
    #[error("cancelled before the sessions drained")]
    Cancelled,
}

/// A closed gate: its window, and how long after connecting a session counts as joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Closed {
    id: u64,
    join_grace: Option<Duration>,
    /// When it closed: sessions connected after that are not joining.
    closed_at: Instant,
}

/// The gate. One per proxy.
#[derive(Debug)]
pub struct Gate {
    /// `Some` while closed.
    state: watch::Sender<Option<Closed>>,
    /// `state` is `Some`, mirrored for the sessions' per-request look (one atomic load instead of
    /// the channel's lock); changed under the channel's lock together with `state`.
    closed: AtomicBool,
    /// Woken whenever a session may have reached a boundary while the gate is closed.
    progress: Notify,
    next_id: AtomicU64,
    /// The proxy is shutting down: sessions at a boundary are not admitted again.
    stopping: AtomicBool,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            state: watch::Sender::new(None),
            closed: AtomicBool::new(false),
            progress: Notify::new(),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
        }
    }

    /// True while a window holds traffic.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The open window's id, if any.
    pub fn window(&self) -> Option<u64> {
        self.state.borrow().map(|c| c.id)
    }

    /// Tells a waiting `quiesce` (or shutdown) that a session may have reached a boundary or gone
    /// away.
    pub fn progress(&self) {
        if self.is_closed() || self.is_stopping() {
            self.progress.notify_waiters();
        }
    }

    /// True once the proxy is shutting down (see [`Gate::end_at_boundaries`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Shutdown: admits no request of a session at a boundary from now on, and ends with 57P01
    /// every session found at a boundary (or still logging in), now or as soon as it reaches
    /// one, until `done` resolves. Sessions inside a transaction, or with a request running,
    /// run on until then.
    pub async fn end_at_boundaries(&self, registry: &Registry, done: impl Future<Output = ()>) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut done = std::pin::pin!(done);
        loop {
            let progress = self.progress.notified();
            for session in registry.snapshot() {
                let quiescent = session.tracker.lock().unwrap().quiescent();
                if quiescent && session.end_reason().is_none() {
                    tracing::debug!(
                        session = session.id,
                        "shutdown: ending a session at a boundary"
                    );
                    session.end(EndReason::Shutdown);
                }
            }
            tokio::select! {
                _ = &mut done => return,
                _ = progress => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Waits until the gate is open.
    pub async fn opened(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.is_none()).await;
    }

    /// A watch on the gate's state from now on: [`GateWatch::changed`] resolves at the next
    /// change, including a reopening immediately followed by another window's closing, which
    /// [`Gate::opened`] would not see.
    pub fn watch(&self) -> GateWatch {
        GateWatch(self.state.subscribe())
    }

    /// A window id no other window has had: taken when a window starts, so that every window
    /// is numbered, whether or not it ever closes the gate.
    pub fn reserve_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Closes the gate, or fails if it is closed already (one window at a time).
    pub fn close(self: &Arc<Self>) -> Result<GateGuard, QuiesceError> {
        self.close_with(self.reserve_id(), None)
    }

    /// [`Gate::close`] for window `id` (from [`Gate::reserve_id`]), letting joining sessions'
    /// first request through (see the module doc).
    pub fn close_with(
        self: &Arc<Self>,
        id: u64,
        join_grace: Option<Duration>,
    ) -> Result<GateGuard, QuiesceError> {
        let mut closed = false;
        let closed_at = Instant::now();
        self.state.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(Closed {
                    id,
                    join_grace,
                    closed_at,
                });
                self.closed.store(true, Ordering::SeqCst);
                closed = true;
            }
            closed
        });
        if !closed {
            return Err(QuiesceError::Busy);
        }
        Ok(GateGuard {
            gate: self.clone(),
            id,
            closed_at: Instant::now(),
        })
    }

    /// Closes the gate and waits until every session in `registry` is quiescent. At `deadline`,
    /// `policy` decides: abort (error, gate reopened) or terminate the busy sessions and go on.
    /// `cancel` aborts the wait (e.g. an operator's resume arriving first).
    pub async fn quiesce(
        self: &Arc<Self>,
        registry: &Registry,
        drain_timeout: Duration,
        policy: DrainPolicy,
        cancel: &CancellationToken,
    ) -> Result<GateGuard, QuiesceError> {
        let id = self.reserve_id();
        self.quiesce_with(id, registry, drain_timeout, policy, cancel, None)
            .await
    }

    /// [`Gate::quiesce`] for window `id` (from [`Gate::reserve_id`]), also waiting for joining
    /// sessions (see the module doc).
    pub async fn quiesce_with(
        self: &Arc<Self>,
        id: u64,
        registry: &Registry,
        drain_timeout: Duration,
        policy: DrainPolicy,
        cancel: &CancellationToken,
        join_grace: Option<Duration>,
    ) -> Result<GateGuard, QuiesceError> {
        let guard = self.close_with(id, join_grace)?;
        let deadline = Instant::now() + drain_timeout;
        let mut terminated = false;
        loop {
            let progress = self.progress.notified();
            let busy = registry.busy(join_grace.map(|grace| (grace, guard.closed_at)));
            if busy.is_empty() {
                return Ok(guard);
            }
            if Instant::now() >= deadline && !terminated {
                match policy {
                    DrainPolicy::Abort => return Err(QuiesceError::Timeout { busy: busy.len() }),
                    DrainPolicy::Terminate => {
                        for session in &busy {
                            session.end(EndReason::WindowTerminate);
                        }
                        terminated = true;
                    }
                }
            }
            if terminated && Instant::now() >= deadline + TERMINATE_GRACE {
                return Err(QuiesceError::Timeout { busy: busy.len() });
            }
            tokio::select! {
                _ = progress => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = cancel.cancelled() => return Err(QuiesceError::Cancelled),
            }
        }
    }

    fn open(&self, id: u64) {
        self.state.send_if_modified(|s| {
            let mine = s.is_some_and(|c| c.id == id);
            if mine {
                *s = None;
                self.closed.store(false, Ordering::SeqCst);
            }
            mine
        });
    }
}

/// Changes of a gate's state, seen from when the watch was made.
#[derive(Debug)]
pub struct GateWatch(watch::Receiver<Option<Closed>>);

impl GateWatch {
    /// Resolves at the gate's next change (pending forever if the gate is gone).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Admission of a client batch: `true` if it may be forwarded now (the batch is then marked in
/// flight until [`finish_batch`]), `false` if the session is at a boundary while the gate is
/// closed and must hold.
pub fn try_admit(gate: &Gate, session: &SessionInfo) -> bool {
    let mut t = session.tracker.lock().unwrap();
    if t.at_boundary() {
        if gate.is_stopping() {
            return false;
        }
        // Open, as almost always: no look into the channel. A window closing the gate sets the
        // flag before it looks at this session's tracker (under the lock held here), so either
        // this sees it closed or the window sees this request in flight.
        let closed = if gate.is_closed() {
            *gate.state.borrow()
        } else {
            None
        };
        let held = match closed {
            None => false,
            Some(Closed {
                join_grace: Some(grace),
                closed_at,
                ..
            }) => !session.joining(&t, grace, closed_at),
            Some(_) => true,
        };
        if held {
            return false;
        }
    }
    t.set_in_flight(true);
    true
}

/// Ends an admitted batch: the session may be at a boundary again.
pub fn finish_batch(gate: &Gate, tracker: &std::sync::Mutex<crate::txn::Tracker>) {
    tracker.lock().unwrap().set_in_flight(false);
    gate.progress();
}

/// Fallback poll interval while draining (progress notifications make it rarely matter).
const POLL: Duration = Duration::from_millis(20);
/// How long terminated sessions get to go away.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Holds the gate closed; reopens it when dropped.
#[derive(Debug)]
pub struct GateGuard {
    gate: Arc<Gate>,
    pub id: u64,
    pub closed_at: Instant,
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.gate.open(self.id);
    }
}

#[cfg(test)]
mod tests;
