//! The counters that continue across an upgrade: the predecessor's totals are added to the
//! successor's, once when it takes over and once more (what it counted while draining) when its
//! last session ended, so `/metrics` and `/status` never go backwards and the write-commit
//! trigger keeps its place.

use serde::{Deserialize, Serialize};

use crate::metrics::{Direction, Metrics};

/// A process's transaction and byte counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub commits: u64,
    pub rollbacks: u64,
    pub write_commits: u64,
    pub write_commits_since_backup: i64,
    /// Bytes relayed from clients to the server.
    pub bytes_upstream: u64,
    /// Bytes relayed from the server to clients.
    pub bytes_downstream: u64,
}

impl Counts {
    /// The counters of `metrics` now.
    pub fn read(metrics: &Metrics) -> Counts {
        Counts {
            commits: metrics.commits.get(),
            rollbacks: metrics.rollbacks.get(),
            write_commits: metrics.write_commits.get(),
            write_commits_since_backup: metrics.write_commits_since_backup.get(),
            bytes_upstream: metrics.bytes_counter(Direction::Upstream).get(),
            bytes_downstream: metrics.bytes_counter(Direction::Downstream).get(),
        }
    }

    /// Adds these counts to `metrics`.
    pub fn add_to(&self, metrics: &Metrics) {
        metrics.commits.inc_by(self.commits);
        metrics.rollbacks.inc_by(self.rollbacks);
        metrics.write_commits.inc_by(self.write_commits);
        metrics
            .write_commits_since_backup
            .inc_by(self.write_commits_since_backup);
        metrics
            .bytes_counter(Direction::Upstream)
            .inc_by(self.bytes_upstream);
        metrics
            .bytes_counter(Direction::Downstream)
            .inc_by(self.bytes_downstream);
    }

    /// What was counted after `earlier` (never negative: a predecessor runs no windows after
    /// its offer, so nothing it counts goes down).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            commits: self.commits.saturating_sub(earlier.commits),
            rollbacks: self.rollbacks.saturating_sub(earlier.rollbacks),
            write_commits: self.write_commits.saturating_sub(earlier.write_commits),
            write_commits_since_backup: (self.write_commits_since_backup
                - earlier.write_commits_since_backup)
                .max(0),
            bytes_upstream: self.bytes_upstream.saturating_sub(earlier.bytes_upstream),
            bytes_downstream: self
                .bytes_downstream
                .saturating_sub(earlier.bytes_downstream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_then_final_adds_up_to_the_predecessors_totals() {
        let old = Metrics::new();
        old.commits.inc_by(10);
        old.write_commits.inc_by(4);
        old.write_commits_since_backup.inc_by(4);
        old.bytes_counter(Direction::Downstream).inc_by(500);
        let offered = Counts::read(&old);
        let new = Metrics::new();
        new.commits.inc_by(2);
        offered.add_to(&new);
        // The predecessor drains: three more commits, one a write.
        old.commits.inc_by(3);
        old.write_commits.inc();
        old.write_commits_since_backup.inc();
        Counts::read(&old).since(&offered).add_to(&new);
        let total = Counts::read(&new);
        assert_eq!(total.commits, 10 + 3 + 2);
        assert_eq!(total.write_commits, 5);
        assert_eq!(total.write_commits_since_backup, 5);
        assert_eq!(total.bytes_downstream, 500);
    }

    #[test]
    fn since_never_goes_negative() {
        let later = Counts::default();
        let earlier = Counts {
            commits: 5,
            write_commits_since_backup: 3,
            ..Counts::default()
        };
        assert_eq!(later.since(&earlier), Counts::default());
    }
}
