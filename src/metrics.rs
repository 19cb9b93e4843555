//! Counters and gauges the proxy exports at `GET /metrics` (prefix `doltgres_sidecar_`), and the
//! transaction counters the trigger policy reads. One `Metrics` per proxy, shared in an `Arc`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::txn::Tally;

/// Which way bytes went.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Upstream,
    /// Server to client.
    Downstream,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    pub action: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Every metric of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub sessions: Gauge,
    /// Sessions whose next request is waiting at the closed gate now.
    pub held_sessions: Gauge,
    pub commits: Counter,
    pub rollbacks: Counter,
    pub write_commits: Counter,
    /// Write commits since the last successful backup; reset by the window orchestrator.
    pub write_commits_since_backup: Gauge,
    pub bytes: Family<DirectionLabel, Counter>,
    pub windows: Family<WindowLabels, Counter>,
    /// How long clients were held in each window.
    pub window_stall_seconds: Histogram,
    pub backup_duration_seconds: Family<ActionLabel, Histogram>,
    pub last_backup_success_timestamp_seconds: Family<ActionLabel, Gauge<f64, AtomicU64>>,
    /// Sessions the proxy ended, by reason (`window_terminate`, `restart_without_replay`,
    /// `shutdown`).
    pub sessions_ended: Family<ReasonLabel, Counter>,
    /// Restarts of a managed or command-controlled server, by cause (`copy`, `crash`).
    pub server_restarts: Family<CauseLabel, Counter>,
    /// Verifications of copy entries, by result (`ok`, `failed`).
    pub verify: Family<ResultLabel, Counter>,
    pub last_verify_success_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// Copy entries not yet complete in the off-site repository.
    pub offsite_pending_entries: Gauge,
    pub offsite_pending_bytes: Gauge,
    pub offsite_verify: Family<ResultLabel, Counter>,
    pub last_offsite_verify_success_timestamp_seconds: Gauge<f64, AtomicU64>,
    pub last_offsite_success_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// Bytes sent to the off-site repository (compressed).
    pub offsite_uploaded_bytes: Counter,
    /// Bytes of objects an upload found already in the repository (uncompressed).
    pub offsite_deduplicated_bytes: Counter,
    /// Bytes allocated and not yet freed ([`crate::heap::in_use`]), set at each render.
    heap_bytes: Gauge,
}

fn duration_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("doltgres_sidecar");
        let m = Metrics {
            registry: Registry::default(),
            sessions: Gauge::default(),
            held_sessions: Gauge::default(),
            commits: Counter::default(),
            rollbacks: Counter::default(),
            write_commits: Counter::default(),
            write_commits_since_backup: Gauge::default(),
            bytes: Family::default(),
            windows: Family::default(),
            window_stall_seconds: Histogram::new(duration_buckets()),
            backup_duration_seconds: Family::new_with_constructor(|| {
                Histogram::new(duration_buckets())
            }),
            last_backup_success_timestamp_seconds: Family::default(),
            sessions_ended: Family::default(),
            server_restarts: Family::default(),
            verify: Family::default(),
            last_verify_success_timestamp_seconds: Gauge::default(),
            offsite_pending_entries: Gauge::default(),
            offsite_pending_bytes: Gauge::default(),
            offsite_verify: Family::default(),
            last_offsite_verify_success_timestamp_seconds: Gauge::default(),
            last_offsite_success_timestamp_seconds: Gauge::default(),
            offsite_uploaded_bytes: Counter::default(),
            offsite_deduplicated_bytes: Counter::default(),
            heap_bytes: Gauge::default(),
        };
        registry.register("sessions", "Client sessions open now", m.sessions.clone());
        registry.register(
            "held_sessions",
            "Sessions whose next request is held by a window now",
            m.held_sessions.clone(),
        );
        registry.register("commits", "Committed transactions", m.commits.clone());
        registry.register(
            "rollbacks",
            "Rolled back or failed transactions",
            m.rollbacks.clone(),
        );
        registry.register(
            "write_commits",
            "Committed transactions that changed data or schema",
            m.write_commits.clone(),
        );
        registry.register(
            "write_commits_since_backup",
            "Write commits since the last successful backup",
            m.write_commits_since_backup.clone(),
        );
        registry.register("bytes", "Bytes relayed", m.bytes.clone());
        registry.register(
            "windows",
            "Quiesce windows by action and result",
            m.windows.clone(),
        );
        registry.register(
            "window_stall_seconds",
            "How long clients were held in a window",
            m.window_stall_seconds.clone(),
        );
        registry.register(
            "backup_duration_seconds",
            "Duration of backup actions",
            m.backup_duration_seconds.clone(),
        );
        registry.register(
            "last_backup_success_timestamp_seconds",
            "Unix time of the last successful backup by action",
            m.last_backup_success_timestamp_seconds.clone(),
        );
        registry.register(
            "sessions_ended",
            "Sessions the proxy ended, by reason",
            m.sessions_ended.clone(),
        );
        registry.register(
            "server_restarts",
            "Restarts of the controlled server, by cause",
            m.server_restarts.clone(),
        );
        registry.register(
            "verify",
            "Verifications of backups, by result",
            m.verify.clone(),
        );
        registry.register(
            "last_verify_success_timestamp_seconds",
            "Unix time of the last successful verification",
            m.last_verify_success_timestamp_seconds.clone(),
        );
        registry.register(
            "offsite_pending_entries",
            "Copy entries not yet complete in the off-site repository",
            m.offsite_pending_entries.clone(),
        );
        registry.register(
            "offsite_pending_bytes",
            "Bytes of the copy entries not yet complete in the off-site repository",
            m.offsite_pending_bytes.clone(),
        );
        registry.register(
            "offsite_verify",
            "Verifications of entries downloaded from the off-site repository, by result",
            m.offsite_verify.clone(),
        );
        registry.register(
            "last_offsite_verify_success_timestamp_seconds",
            "Unix time of the last successful verification of an off-site entry",
            m.last_offsite_verify_success_timestamp_seconds.clone(),
        );
        registry.register(
            "last_offsite_success_timestamp_seconds",
            "Unix time the last copy entry became complete off-site",
            m.last_offsite_success_timestamp_seconds.clone(),
        );
        registry.register(
            "offsite_uploaded_bytes",
            "Bytes sent to the off-site repository, compressed",
            m.offsite_uploaded_bytes.clone(),
        );
        registry.register(
            "offsite_deduplicated_bytes",
            "Bytes an upload found already in the off-site repository, uncompressed",
            m.offsite_deduplicated_bytes.clone(),
        );
        if crate::heap::in_use().is_some() {
            registry.register(
                "heap_bytes",
                "Bytes the process has allocated and not yet freed (glibc's count)",
                m.heap_bytes.clone(),
            );
        }
        // Exported from the start, so that a rule on the failures sees a 0 before the first.
        for result in ["ok", "failed"] {
            let _ = m.offsite_verify.get_or_create(&ResultLabel {
                result: result.into(),
            });
        }
        Metrics { registry, ..m }
    }

    /// Counts a session the proxy ended.
    pub fn session_ended(&self, reason: &str) {
        self.sessions_ended
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a restart of the controlled server.
    pub fn server_restarted(&self, cause: &str) {
        self.server_restarts
            .get_or_create(&CauseLabel {
                cause: cause.to_string(),
            })
            .inc();
    }

    /// Restarts of the controlled server so far for `cause`.
    pub fn server_restarts_by(&self, cause: &str) -> u64 {
        self.server_restarts
            .get_or_create(&CauseLabel {
                cause: cause.to_string(),
            })
            .get()
    }

    /// Adds what a session's tracker counted.
    pub fn add(&self, tally: Tally) {
        if tally.commits > 0 {
            self.commits.inc_by(tally.commits);
        }
        if tally.rollbacks > 0 {
            self.rollbacks.inc_by(tally.rollbacks);
        }
        if tally.write_commits > 0 {
            self.write_commits.inc_by(tally.write_commits);
            self.write_commits_since_backup
                .inc_by(tally.write_commits as i64);
        }
    }

    /// The counter of bytes relayed in one direction.
    pub fn bytes_counter(&self, direction: Direction) -> Counter {
        self.bytes
            .get_or_create(&DirectionLabel {
                direction: direction.label().to_string(),
            })
            .clone()
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(bytes) = crate::heap::in_use() {
            self.heap_bytes.set(bytes as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let m = Metrics::new();
        m.add(Tally {
            commits: 3,
            rollbacks: 1,
            write_commits: 2,
        });
        m.bytes_counter(Direction::Upstream).inc_by(10);
        let text = m.render();
        for line in [
            "doltgres_sidecar_commits_total 3",
            "doltgres_sidecar_rollbacks_total 1",
            "doltgres_sidecar_write_commits_total 2",
            "doltgres_sidecar_write_commits_since_backup 2",
            "doltgres_sidecar_sessions 0",
            "doltgres_sidecar_bytes_total{direction=\"upstream\"} 10",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE doltgres_sidecar_window_stall_seconds histogram"),
            "{text}"
        );
        // The heap in use is read when rendering: a process running this test has some.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let heap = text
                .lines()
                .find_map(|l| l.strip_prefix("doltgres_sidecar_heap_bytes "))
                .unwrap_or_else(|| panic!("no heap_bytes in\n{text}"));
            assert!(heap.parse::<u64>().unwrap() > 0, "{heap}");
        }
    }
}
