//! What `GET /backups` reports about each window.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

/// What opened a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `every_write_commits` reached.
    Commits,
    /// `interval` passed with at least one write commit.
    Interval,
    /// `POST /backups` or the CLI.
    Operator,
    /// Graceful shutdown.
    Shutdown,
}

impl Trigger {
    /// The name the JSON answers give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Commits => "commits",
            Trigger::Interval => "interval",
            Trigger::Operator => "operator",
            Trigger::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Sessions did not drain in time (policy `abort`) or the window was cancelled.
    Aborted,
    /// The action failed or timed out.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Aborted => "aborted",
            Outcome::Failed => "failed",
        }
    }
}

/// One finished window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WindowRecord {
    pub id: u64,
    pub action: String,
    pub trigger: Trigger,
    pub started_unix: f64,
    /// Time from the gate closing until every session was at a boundary.
    pub drain_ms: u64,
    /// Time the gate was closed: the longest any client could have been held.
    pub stall_ms: u64,
    pub duration_ms: u64,
    pub result: Outcome,
    pub error: Option<String>,
    /// What was captured: head hashes per database and branch, backup names, copy entries.
    #[schema(value_type = Option<Object>)]
    pub cut: Value,
    /// Where the window's time went, in order: the drain, each SQL step of the action (before the
    /// gate closed, while it was closed, after it reopened), and the reopening.
    pub steps: Vec<Step>,
}

/// When a step ran, relative to the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the gate closed: traffic flowing.
    Before,
    /// While the gate was closed: what clients may wait for.
    Held,
    /// After the gate reopened: traffic flowing.
    After,
}

/// One timed step of a window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Step {
    /// `drain`, `gate_closed` (the whole closed period), or the action's step: `connect`,
    /// `remotes`, `remote_add`, `branch`, `commit`, `head`, `push`, `backup_add`, `presync`,
    /// `sync`.
    pub step: String,
    /// The database the step ran on, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub phase: Phase,
    /// Milliseconds from the window's start to the step's start.
    pub at_ms: f64,
    /// How long the step took, in milliseconds.
    pub ms: f64,
}

/// The steps as one line for the log: `drain 12.1 · sync@postgres 30.2 · …` (ms), a `|` where
/// the gate reopens.
pub fn describe(steps: &[Step]) -> String {
    let mut out = String::new();
    let mut phase = None;
    for s in steps {
        if !out.is_empty() {
            out.push_str(if phase != Some(s.phase) {
                " | "
            } else {
                " · "
            });
        }
        phase = Some(s.phase);
        out.push_str(&s.step);
        if let Some(db) = &s.database {
            out.push('@');
            out.push_str(db);
        }
        out.push_str(&format!(" {:.1}", s.ms));
    }
    out
}

/// Collects a window's [`Step`]s against its start.
#[derive(Debug)]
pub struct Steps {
    origin: Instant,
    phase: Phase,
    list: Vec<Step>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

impl Steps {
    pub fn new(origin: Instant, phase: Phase) -> Steps {
        Steps {
            origin,
            phase,
            list: Vec::new(),
        }
    }

    /// The phase steps are recorded in from now on.
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Records a step that started at `start` and ends now.
    pub fn record(&mut self, step: &str, database: Option<&str>, start: Instant) {
        let now = Instant::now();
        self.list.push(Step {
            step: step.to_string(),
            database: database.map(str::to_string),
            phase: self.phase,
            at_ms: ms(start.saturating_duration_since(self.origin)),
            ms: ms(now.saturating_duration_since(start)),
        });
    }

    /// Runs `work` as a step.
    pub async fn time<T>(
        &mut self,
        step: &str,
        database: Option<&str>,
        work: impl Future<Output = T>,
    ) -> T {
        let start = Instant::now();
        let out = work.await;
        self.record(step, database, start);
        out
    }

    pub fn into_vec(self) -> Vec<Step> {
        self.list
    }
}

pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl WindowRecord {
    pub fn new(action: &str, trigger: Trigger) -> WindowRecord {
        WindowRecord {
            id: 0,
            action: action.to_string(),
            trigger,
            started_unix: unix(SystemTime::now()),
            drain_ms: 0,
            stall_ms: 0,
            duration_ms: 0,
            result: Outcome::Aborted,
            error: None,
            cut: Value::Null,
            steps: Vec::new(),
        }
    }

    pub fn finish(
        &mut self,
        result: Outcome,
        error: Option<String>,
        started: Instant,
        stall: Duration,
    ) {
        self.result = result;
        // A remote's URL with credentials may be in the SQL that failed.
        self.error = error.map(|e| crate::redact::urls_in(&e));
        self.duration_ms = started.elapsed().as_millis() as u64;
        self.stall_ms = stall.as_millis() as u64;
    }
}
