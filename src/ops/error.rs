//! [`OpError`]: why an operator's request was not done. A leaf.

/// Why an operation was not done, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub kind: Refusal,
    pub message: String,
}

/// What kind of refusal an [`OpError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself is wrong (a malformed duration, an unknown entry).
    Invalid,
    /// Not now, or not with this configuration: another window is open, windows are held off,
    /// the action is not configured, nothing is held.
    Conflict,
    /// A changed key needs a restart.
    NeedsRestart,
    /// Sessions did not drain in time.
    Unavailable,
    /// The work failed (or panicked).
    Failed,
}

impl OpError {
    pub fn new(kind: Refusal, message: impl Into<String>) -> OpError {
        OpError {
            kind,
            message: message.into(),
        }
    }
}

/// An operator's work whose task panicked (`crate::state::work::Work::run`).
impl From<tokio::task::JoinError> for OpError {
    fn from(e: tokio::task::JoinError) -> OpError {
        tracing::error!(error = %e, "an operator's request failed");
        OpError::new(Refusal::Failed, "the request failed")
    }
}
