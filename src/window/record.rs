//! What `GET /backups` reports about each window.

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
        self.error = error;
        self.duration_ms = started.elapsed().as_millis() as u64;
        self.stall_ms = stall.as_millis() as u64;
    }
}
