//! What an accept loop does when `accept` fails, as PgBouncer does: never exit, never spin.
//!
//! - A connection that went away before it was accepted (reset, aborted) is skipped at once.
//! - Anything else — out of descriptors (`EMFILE`, `ENFILE`), out of buffer memory — pauses
//!   accepting, 10 ms at first and twice as long after each failure in a row, up to 1 s; the
//!   connections meanwhile wait in the listen queue. The first failure of a run is logged, then
//!   one line every 30 s while it lasts, and its end with the count.

use std::io;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The first pause after a failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How often a run of failures is logged while it lasts.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// One accept loop's failures in a row.
#[derive(Debug)]
pub struct AcceptErrors {
    /// Which listener, for the log: `"proxy"`, `"admin API"`.
    listener: &'static str,
    failures: u64,
    pause: Duration,
    since: Option<Instant>,
    logged: Option<Instant>,
}

impl AcceptErrors {
    pub fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors {
            listener,
            failures: 0,
            pause: FIRST_PAUSE,
            since: None,
            logged: None,
        }
    }

    /// After a failed accept: how long to wait before the next one (zero for a connection that
    /// went away by itself).
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        if gone_before_accepted(error) {
            debug!(listener = self.listener, %error, "a connection went away before it was accepted");
            return Duration::ZERO;
        }
        let now = Instant::now();
        self.failures += 1;
        let since = *self.since.get_or_insert(now);
        if self.logged.is_none_or(|at| now >= at + LOG_EVERY) {
            self.logged = Some(now);
            warn!(
                listener = self.listener,
                %error,
                failures = self.failures,
                for_ms = now.duration_since(since).as_millis() as u64,
                "cannot accept connections: pausing and retrying (they wait in the listen queue)"
            );
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        pause
    }

    /// After a successful accept: ends a run of failures.
    pub fn accepted(&mut self) {
        if let Some(since) = self.since.take() {
            info!(
                listener = self.listener,
                failures = self.failures,
                for_ms = since.elapsed().as_millis() as u64,
                "accepting connections again"
            );
            self.failures = 0;
            self.pause = FIRST_PAUSE;
            self.logged = None;
        }
    }
}

/// A connection reset or aborted before `accept` returned it: nothing to wait for.
fn gone_before_accepted(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(nix::libc::EMFILE)
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_to_a_second_and_start_over_after_an_accept() {
        let mut errors = AcceptErrors::new("test");
        let pauses: Vec<u64> = (0..10)
            .map(|_| errors.failed(&emfile()).as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000],
            "never spinning, never longer than a second"
        );
        errors.accepted();
        assert_eq!(errors.failed(&emfile()), FIRST_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_gone_before_it_was_accepted_is_skipped() {
        let mut errors = AcceptErrors::new("test");
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(errors.failed(&aborted), Duration::ZERO);
        assert_eq!(
            errors.failed(&emfile()),
            FIRST_PAUSE,
            "not a run of failures"
        );
    }
}
