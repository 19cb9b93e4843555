//! Session state, tracked and replayed: what a client set on its connection (SET, USE, a Dolt
//! branch, prepared statements), so that when the upstream connection has to be replaced (the
//! server restarted) a new one can be given the same state before the client's next request.
//!
//! - [`sql`]: splitting and classifying statements (pure);
//! - [`state`]: the tracker fed by both directions (pure);
//! - [`plan`]: the messages that rebuild the state on a new connection (pure).
//!
//! State that cannot be rebuilt (temporary tables, WITH HOLD cursors, LISTEN, session-level
//! advisory locks) is recorded too, so the session can be ended with a message that names it.

pub mod plan;
pub mod sql;
pub mod state;
#[cfg(test)]
mod tests;

pub use plan::Plan;
pub use sql::Unreplayable;
pub use state::{Replayable, SessionState};
