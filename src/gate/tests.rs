//! Gate transitions and races, on tokio's paused clock where time matters.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::registry::{EndReason, Registry, SessionInfo};
use crate::txn::{Tally, Tracker};

fn session(registry: &Registry, id: u64) -> Arc<SessionInfo> {
    let info = Arc::new(SessionInfo::new(
        id,
        "127.0.0.1:1".parse().unwrap(),
        "u".into(),
        "d".into(),
        String::new(),
    ));
    ready(&info.tracker);
    registry.insert(info.clone());
    info
}

fn ready(tracker: &std::sync::Mutex<Tracker>) {
    tracker
        .lock()
        .unwrap()
        .server_message(b'Z', b"I", &mut Tally::default());
}

/// Drives a session's tracker into an explicit transaction.
fn begin(info: &SessionInfo) {
    let mut t = info.tracker.lock().unwrap();
    t.client_message(b'Q', b"BEGIN\0");
    t.server_message(b'C', b"BEGIN\0", &mut Tally::default());
    t.server_message(b'Z', b"T", &mut Tally::default());
}

fn commit(info: &SessionInfo) {
    let mut t = info.tracker.lock().unwrap();
    t.client_message(b'Q', b"COMMIT\0");
    t.server_message(b'C', b"COMMIT\0", &mut Tally::default());
    t.server_message(b'Z', b"I", &mut Tally::default());
}

const DRAIN: Duration = Duration::from_secs(5);

/// Quiesces `gate` within [`DRAIN`] with `policy`, never cancelled.
async fn quiesce(
    gate: &Arc<Gate>,
    registry: &Registry,
    policy: DrainPolicy,
) -> Result<GateGuard, QuiesceError> {
    gate.quiesce(registry, DRAIN, policy, &CancellationToken::new())
        .await
}

#[tokio::test(start_paused = true)]
async fn quiesce_with_idle_sessions_is_immediate_and_guard_reopens() {
    let gate = Arc::new(Gate::new());
    let registry = Registry::default();
    session(&registry, 1);
    let guard = quiesce(&gate, &registry, DrainPolicy::Abort).await.unwrap();
    assert!(gate.is_closed());
    assert_eq!(gate.window(), Some(guard.id));
    drop(guard);
    assert!(!gate.is_closed());
}

#[tokio::test(start_paused = true)]
async fn one_window_at_a_time() {
    let gate = Arc::new(Gate::new());
    let _guard = gate.close().unwrap();
    assert_eq!(gate.close().unwrap_err(), QuiesceError::Busy);
}

#[tokio::test(start_paused = true)]
async fn quiesce_waits_for_the_transaction_to_end() {
    let gate = Arc::new(Gate::new());
    let registry = Arc::new(Registry::default());
    let s = session(&registry, 1);
    begin(&s);
    let task = {
        let (gate, registry) = (gate.clone(), registry.clone());
        tokio::spawn(async move { quiesce(&gate, &registry, DrainPolicy::Abort).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished(), "must wait while a transaction is open");
    assert!(gate.is_closed());
    // The transaction may go on: it is not at a boundary, so its batches are admitted.
    assert!(try_admit(&gate, &s));
    finish_batch(&gate, &s.tracker);
    commit(&s);
    gate.progress();
    let guard = task.await.unwrap().unwrap();
    // Now at a boundary: the next request holds.
    assert!(!try_admit(&gate, &s));
    drop(guard);
    assert!(try_admit(&gate, &s));
}

#[tokio::test(start_paused = true)]
async fn abort_policy_gives_up_at_the_deadline_and_reopens() {
    let gate = Arc::new(Gate::new());
    let registry = Registry::default();
    let s = session(&registry, 1);
    begin(&s);
    let started = Instant::now();
    let err = quiesce(&gate, &registry, DrainPolicy::Abort)
        .await
        .unwrap_err();
    assert_eq!(err, QuiesceError::Timeout { busy: 1 });
    assert!(started.elapsed() >= DRAIN);
    assert!(started.elapsed() < DRAIN + Duration::from_millis(100));
    assert!(!gate.is_closed());
    assert!(s.end_reason().is_none());
}

#[tokio::test(start_paused = true)]
async fn terminate_policy_ends_busy_sessions_and_proceeds() {
    let gate = Arc::new(Gate::new());
    let registry = Arc::new(Registry::default());
    let idle = session(&registry, 1);
    let busy = session(&registry, 2);
    begin(&busy);
    // Play the session task: when told to terminate, leave the registry.
    let reaper = {
        let (busy, registry, gate) = (busy.clone(), registry.clone(), gate.clone());
        tokio::spawn(async move {
            busy.ended().await;
            registry.remove(busy.id);
            gate.progress();
        })
    };
    let guard = quiesce(&gate, &registry, DrainPolicy::Terminate)
        .await
        .unwrap();
    reaper.await.unwrap();
    assert!(busy.end_reason().is_some());
    assert!(idle.end_reason().is_none());
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn cancel_during_drain_reopens() {
    let gate = Arc::new(Gate::new());
    let registry = Registry::default();
    let s = session(&registry, 1);
    begin(&s);
    let cancel = CancellationToken::new();
    let quiesce = gate.quiesce(&registry, DRAIN, DrainPolicy::Abort, &cancel);
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(quiesce, canceller);
    assert_eq!(result.unwrap_err(), QuiesceError::Cancelled);
    assert!(!gate.is_closed());
}

#[tokio::test]
async fn guard_reopens_on_panic() {
    let gate = Arc::new(Gate::new());
    let g = gate.clone();
    let task = tokio::spawn(async move {
        let _guard = g.close().unwrap();
        panic!("action failed hard");
    });
    assert!(task.await.is_err());
    assert!(!gate.is_closed());
}

#[tokio::test(start_paused = true)]
async fn held_session_resumes_when_the_gate_opens() {
    let gate = Arc::new(Gate::new());
    let guard = gate.close().unwrap();
    let waiter = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.opened().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished());
    drop(guard);
    waiter.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stale_guard_does_not_open_a_newer_window() {
    let gate = Arc::new(Gate::new());
    let first = gate.close().unwrap();
    let first_id = first.id;
    drop(first);
    let second = gate.close().unwrap();
    assert_ne!(second.id, first_id);
    gate.open(first_id);
    assert!(
        gate.is_closed(),
        "an old window's id must not reopen the new one"
    );
    drop(second);
}

/// Many sessions admit batches as fast as they can while windows open and close. Whenever a
/// quiesce succeeds, no batch may be in flight and none may be admitted until the guard drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_never_slips_past_a_quiesce() {
    let gate = Arc::new(Gate::new());
    let registry = Arc::new(Registry::default());
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for id in 0..4 {
        let s = session(&registry, id);
        let (gate, stop) = (gate.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                if try_admit(&gate, &s) {
                    {
                        let mut t = s.tracker.lock().unwrap();
                        t.client_message(b'Q', b"SELECT 1\0");
                    }
                    finish_batch(&gate, &s.tracker);
                    tokio::task::yield_now().await;
                    {
                        let mut t = s.tracker.lock().unwrap();
                        t.server_message(b'C', b"SELECT 1\0", &mut Tally::default());
                        t.server_message(b'Z', b"I", &mut Tally::default());
                    }
                    gate.progress();
                } else {
                    gate.opened().await;
                }
            }
        }));
    }
    for _ in 0..200 {
        let guard = gate
            .quiesce(
                &registry,
                Duration::from_secs(10),
                DrainPolicy::Abort,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        for s in registry.snapshot() {
            assert!(
                s.tracker.lock().unwrap().at_boundary(),
                "session {} not at a boundary",
                s.id
            );
            assert!(!try_admit(&gate, &s), "admitted while quiesced");
        }
        drop(guard);
        tokio::task::yield_now().await;
    }
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
}

/// A session that connected just now and has not run a request.
/// Quiesces `gate` within [`DRAIN`], aborting, letting joining sessions in for `grace`.
async fn quiesce_graced(
    gate: &Arc<Gate>,
    registry: &Registry,
    grace: Option<Duration>,
) -> Result<GateGuard, QuiesceError> {
    let cancel = CancellationToken::new();
    gate.quiesce_with(
        gate.reserve_id(),
        registry,
        DRAIN,
        DrainPolicy::Abort,
        &cancel,
        grace,
    )
    .await
}

fn joining_session(registry: &Registry, id: u64) -> Arc<SessionInfo> {
    let info = session(registry, id);
    info.mark_connected();
    info
}

#[tokio::test(start_paused = true)]
async fn a_window_with_a_join_grace_lets_a_joining_session_run_its_first_request() {
    let registry = Arc::new(Registry::default());
    let gate = Arc::new(Gate::new());
    let joining = joining_session(&registry, 1);
    let idle = session(&registry, 2);
    idle.tracker.lock().unwrap().set_in_flight(true);
    finish_batch(&gate, &idle.tracker); // ran a request: no longer joining
    let grace = Some(Duration::from_secs(1));
    let quiesce = tokio::spawn({
        let (gate, registry) = (gate.clone(), registry.clone());
        async move { quiesce_graced(&gate, &registry, grace).await }
    });
    tokio::task::yield_now().await;
    assert!(gate.is_closed());
    assert!(!try_admit(&gate, &idle), "an idle session is held");
    assert!(
        try_admit(&gate, &joining),
        "the joining session's first request goes through"
    );
    assert!(!quiesce.is_finished(), "the window waits for it");
    {
        let mut t = joining.tracker.lock().unwrap();
        t.client_message(b'Q', b"SELECT 1\0");
    }
    finish_batch(&gate, &joining.tracker);
    {
        let mut t = joining.tracker.lock().unwrap();
        t.server_message(b'C', b"SELECT 1\0", &mut Tally::default());
        t.server_message(b'Z', b"I", &mut Tally::default());
    }
    gate.progress();
    let guard = quiesce
        .await
        .unwrap()
        .expect("quiesced once the request ended");
    assert!(!try_admit(&gate, &joining), "its second request is held");
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn without_a_grace_or_past_it_a_joining_session_is_held_and_not_waited_for() {
    let registry = Registry::default();
    let gate = Arc::new(Gate::new());
    let joining = joining_session(&registry, 1);
    let guard = quiesce(&gate, &registry, DrainPolicy::Abort).await.unwrap();
    assert!(!try_admit(&gate, &joining));
    drop(guard);
    tokio::time::advance(Duration::from_secs(2)).await;
    let grace = Some(Duration::from_secs(1));
    let guard = quiesce_graced(&gate, &registry, grace)
        .await
        .expect("a session past its grace is not waited for");
    assert!(!try_admit(&gate, &joining));
    drop(guard);
}

/// Shutdown: an idle session is ended at once and admitted no more; one inside a transaction
/// goes on (its requests admitted) and is ended once it commits.
#[tokio::test(start_paused = true)]
async fn shutdown_ends_idle_sessions_at_once_and_busy_ones_at_their_boundary() {
    let gate = Arc::new(Gate::new());
    let registry = Arc::new(Registry::default());
    let idle = session(&registry, 1);
    let busy = session(&registry, 2);
    begin(&busy);
    let done = CancellationToken::new();
    let ending = tokio::spawn({
        let (gate, registry, done) = (gate.clone(), registry.clone(), done.clone());
        async move {
            gate.end_at_boundaries(&registry, done.cancelled_owned())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(gate.is_stopping());
    assert_eq!(idle.end_reason(), Some(EndReason::Shutdown));
    assert!(idle.end_reason().is_some());
    assert!(!try_admit(&gate, &idle), "no new request at a boundary");
    assert!(busy.end_reason().is_none(), "inside a transaction");
    assert!(try_admit(&gate, &busy), "its transaction goes on");
    finish_batch(&gate, &busy.tracker);
    commit(&busy);
    gate.progress();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(busy.end_reason(), Some(EndReason::Shutdown));
    assert!(!try_admit(&gate, &busy), "at its boundary now");
    done.cancel();
    ending.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_first_reason_to_end_a_session_is_the_one_kept() {
    let registry = Registry::default();
    let s = session(&registry, 1);
    assert_eq!(s.end_reason(), None);
    s.end(EndReason::WindowTerminate);
    s.end(EndReason::Shutdown);
    assert_eq!(s.end_reason(), Some(EndReason::WindowTerminate));
}

#[tokio::test(start_paused = true)]
async fn a_session_that_connects_after_the_gate_closed_is_held_not_joining() {
    // A stream of new connections must not keep a drain going: one that connected after the
    // gate closed waits at its first request, and the window does not wait for it.
    let registry = Arc::new(Registry::default());
    let gate = Arc::new(Gate::new());
    let guard = gate
        .close_with(gate.reserve_id(), Some(Duration::from_secs(1)))
        .unwrap();
    tokio::time::advance(Duration::from_millis(10)).await;
    let late = joining_session(&registry, 1);
    assert!(!try_admit(&gate, &late), "its first request is held");
    assert!(
        registry
            .busy(Some((Duration::from_secs(1), guard.closed_at)))
            .is_empty()
    );
}
