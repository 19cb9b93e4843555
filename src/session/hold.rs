//! Holding a client at a boundary while the gate is closed: the wait itself (with a notice after
//! `hold_notice_after` and a 57P03 answer after `hold_timeout`), and answering the held batch
//! without forwarding it when the hold times out.

use bytes::Bytes;
use tokio::time::Instant;

use crate::gate::try_admit;
use crate::protocol::notice::{self, Severity, sqlstate};
use crate::protocol::tags;
use crate::registry::SessionInfo;
use crate::shared::Shared;

use super::inject::Injector;

/// ReadyForQuery, idle: what a rejected request ends with.
const READY_IDLE: &[u8] = b"Z\0\0\0\x05I";

/// Outcome of waiting at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The batch may be forwarded (it is marked in flight).
    Admitted,
    /// The hold deadline passed: answer the batch with 57P03.
    TimedOut,
}

/// Waits until the gate admits the session's next batch.
pub async fn wait(shared: &Shared, info: &SessionInfo, inject: &Injector) -> Hold {
    // Watching from before the first try: a window that ends and another that closes the gate
    // again a moment later must still wake this session, whose first request the second one
    // may let through (its join grace).
    let mut changes = shared.gate.watch();
    if try_admit(&shared.gate, info) {
        return Hold::Admitted;
    }
    let config = shared.config();
    let started = Instant::now();
    let notice_at = started + config.hold_notice_after;
    let deadline = started + config.hold_timeout;
    let mut noticed = false;
    shared.metrics.held_sessions.inc();
    info.set_held(true);
    let _held = HeldGuard(shared, info);
    let outcome = loop {
        tokio::select! {
            _ = changes.changed() => {
                if try_admit(&shared.gate, info) {
                    break Hold::Admitted;
                }
            }
            _ = tokio::time::sleep_until(notice_at), if !noticed => {
                noticed = true;
                let text = "a backup window is in progress; this request will run when it ends";
                let msg = notice::build(Severity::Notice, "01000", text).freeze();
                inject.send(msg);
            }
            _ = tokio::time::sleep_until(deadline) => break Hold::TimedOut,
        }
    };
    shared
        .metrics
        .window_stall_seconds
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(held = ?started.elapsed(), ?outcome, "session was held");
    outcome
}

/// Counts the session out of `held_sessions`, and marks it no longer held, however its wait ends
/// (the client may leave, which drops the wait).
struct HeldGuard<'a>(&'a Shared, &'a SessionInfo);

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.metrics.held_sessions.dec();
        self.1.set_held(false);
    }
}

/// Answers a held batch that timed out, message by message, as the server would answer a failed
/// request: ErrorResponse 57P03 once per request, ReadyForQuery at each Query or Sync.
#[derive(Debug, Default)]
pub struct Rejecter {
    /// Answering a request whose ErrorResponse was sent and whose Sync has not come yet.
    in_request: bool,
    /// A rejection is under way (it may span reads until the Sync arrives).
    pub active: bool,
}

impl Rejecter {
    pub fn start(&mut self) {
        self.active = true;
    }

    /// Handles one client message of a rejected batch.
    pub fn message(&mut self, tag: u8, inject: &Injector) {
        let error = || {
            let text = "the server cannot accept requests now: a backup window did not end within hold_timeout";
            notice::build(Severity::Error, sqlstate::CANNOT_CONNECT_NOW, text).freeze()
        };
        match tag {
            tags::QUERY => {
                inject.send(error());
                inject.send(Bytes::from_static(READY_IDLE));
                self.in_request = false;
            }
            tags::SYNC => {
                if !self.in_request {
                    inject.send(error());
                }
                inject.send(Bytes::from_static(READY_IDLE));
                self.in_request = false;
            }
            tags::TERMINATE => {}
            _ => {
                if !self.in_request {
                    inject.send(error());
                    self.in_request = true;
                }
            }
        }
    }

    /// After a rejected batch: the rejection ends once no request is half answered.
    pub fn batch_done(&mut self) {
        if !self.in_request {
            self.active = false;
        }
    }
}

#[cfg(test)]
mod tests {

    /// A request held by one window, when that window ends and another closes the gate again
    /// at once, is looked at again: the second window's join grace lets a session that has just
    /// connected run it (before, the hold waited for an opening that never came).
    #[tokio::test(start_paused = true)]
    async fn a_held_first_request_is_let_through_by_the_next_windows_join_grace() {
        use std::sync::Arc;
        use std::time::Duration;
        let shared = crate::shared::Shared::new(crate::config::Config::default()).unwrap();
        let info = Arc::new(SessionInfo::new(
            1,
            "127.0.0.1:1".parse().unwrap(),
            "u".into(),
            "d".into(),
            String::new(),
        ));
        info.tracker
            .lock()
            .unwrap()
            .server_message(b'Z', b"I", &mut crate::txn::Tally::default());
        info.mark_connected();
        shared.registry.insert(info.clone());
        let first = shared.gate.close().unwrap();
        let tx = Injector::default();
        let waiting = tokio::spawn({
            let (shared, info) = (shared.clone(), info.clone());
            async move { wait(&shared, &info, &tx).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "held by the first window");
        drop(first);
        let second = shared
            .gate
            .close_with(shared.gate.reserve_id(), Some(Duration::from_secs(1)))
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_millis(500), waiting)
            .await
            .expect("still held: the second window's join grace was not applied")
            .unwrap();
        assert_eq!(outcome, Hold::Admitted);
        drop(second);
    }
    use super::*;

    fn drain(rx: &Injector) -> Vec<u8> {
        let mut tags = Vec::new();
        while let Some(m) = rx.try_recv() {
            tags.push(m[0]);
        }
        tags
    }

    /// A started rejecter and where it writes.
    fn rejecting() -> (Injector, Rejecter) {
        let mut r = Rejecter::default();
        r.start();
        (Injector::default(), r)
    }

    #[test]
    fn simple_queries_get_error_then_ready() {
        let (tx, mut r) = rejecting();
        let rx = &tx;
        r.message(b'Q', &tx);
        r.message(b'Q', &tx);
        r.batch_done();
        assert_eq!(drain(rx), b"EZEZ");
        assert!(!r.active);
    }

    #[test]
    fn extended_batch_gets_one_error_and_ready_at_sync_even_across_reads() {
        let (tx, mut r) = rejecting();
        let rx = &tx;
        for tag in [b'P', b'B', b'D', b'E'] {
            r.message(tag, &tx);
        }
        r.batch_done();
        assert!(r.active, "the Sync has not arrived yet");
        r.message(b'S', &tx);
        r.batch_done();
        assert_eq!(drain(rx), b"EZ");
        assert!(!r.active);
    }
}
