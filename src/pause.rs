//! The pause between two rounds of a background loop whose interval a reload may change: the
//! certificate watcher, the scrubber, the off-site verifications.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Sleeps for `interval`, or for `when_off` when the interval is zero (the loop is off: it looks
/// at its setting again then). False when `stop` is cancelled first.
pub async fn pause(stop: &CancellationToken, interval: Duration, when_off: Duration) -> bool {
    let wait = if interval.is_zero() {
        when_off
    } else {
        interval
    };
    stop.run_until_cancelled(tokio::time::sleep(wait))
        .await
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_interval_of_zero_waits_the_off_time_and_a_stop_ends_the_wait() {
        let stop = CancellationToken::new();
        let started = tokio::time::Instant::now();
        assert!(pause(&stop, Duration::ZERO, Duration::from_secs(7)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(7));
        assert!(pause(&stop, Duration::from_secs(3), Duration::from_secs(7)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        stop.cancel();
        assert!(!pause(&stop, Duration::from_secs(3), Duration::ZERO).await);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
