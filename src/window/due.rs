//! When the interval trigger is due: `interval` after the first write commit that no backup holds
//! yet, so a write waits at most `interval` for its backup, whatever came before it (a write
//! after an hour of quiet waits `interval` too, and is not backed up at once). A pure clock,
//! fed at every check of the trigger.

use std::time::Duration;

use tokio::time::Instant;

/// Since when writes wait for a backup.
#[derive(Debug, Default)]
pub struct Unbacked {
    /// When the oldest write commit no backup holds was first seen, if there is one.
    since: Option<Instant>,
    /// The number of the last successful cut taken into account.
    cuts_seen: u64,
}

impl Unbacked {
    /// Looks at the count of write commits no backup holds (`pending`) and at the last
    /// successful backup's cut (its number and when it was taken), at `now`.
    pub fn observe(&mut self, pending: i64, cut: Option<(u64, Instant)>, now: Instant) {
        if let Some((number, at)) = cut
            && number != self.cuts_seen
        {
            self.cuts_seen = number;
            // What is still pending was written after that cut: it waits since then at most.
            self.since = (pending > 0).then_some(at);
        }
        if pending <= 0 {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// Whether the oldest waiting write has waited `interval`.
    pub fn due(&self, interval: Duration, now: Instant) -> bool {
        self.since
            .is_some_and(|since| now.saturating_duration_since(since) >= interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_write_after_a_quiet_hour_waits_the_interval() {
        let start = Instant::now();
        let at = |minutes: u64| start + MINUTE * minutes as u32;
        let mut unbacked = Unbacked::default();
        for minute in 0..60 {
            unbacked.observe(0, None, at(minute));
            assert!(!unbacked.due(5 * MINUTE, at(minute)));
        }
        unbacked.observe(1, None, at(60));
        assert!(!unbacked.due(5 * MINUTE, at(60)), "not at once");
        unbacked.observe(7, None, at(64));
        assert!(
            !unbacked.due(5 * MINUTE, at(64)),
            "later writes do not move it"
        );
        unbacked.observe(9, None, at(65));
        assert!(
            unbacked.due(5 * MINUTE, at(65)),
            "5 minutes after the first"
        );
    }

    #[test]
    fn a_backup_starts_the_clock_again() {
        let start = Instant::now();
        let at = |minutes: u64| start + MINUTE * minutes as u32;
        let mut unbacked = Unbacked::default();
        unbacked.observe(3, None, at(0));
        // A backup whose cut held everything: nothing waits.
        unbacked.observe(0, Some((1, at(2))), at(2));
        assert!(!unbacked.due(MINUTE, at(10)));
        // One write after another backup's cut, counted before the cut was seen: it waits
        // since that cut, not since the write before it.
        unbacked.observe(2, None, at(11));
        unbacked.observe(1, Some((2, at(12))), at(12));
        assert!(!unbacked.due(5 * MINUTE, at(16)));
        assert!(unbacked.due(5 * MINUTE, at(17)));
        // The same cut seen again changes nothing.
        unbacked.observe(1, Some((2, at(12))), at(18));
        assert!(unbacked.due(5 * MINUTE, at(18)));
    }
}
