//! Session state, tracked and replayed: what a client set on its connection (SET, USE, a Dolt
//! branch, prepared statements), so that when the upstream connection has to be replaced (the
//! server restarted) a new one can be given the same state before the client's next request.
//!
//! - [`sql`]: splitting and classifying statements (pure);
//! - [`set_config`]: the `set_config` calls in a statement (pure);
//! - [`state`]: the tracker fed by both directions (pure), with [`doubt`], the settings changed
//!   where it cannot follow;
//! - [`readback`]: reading a session's settings from its own connection before a copy window
//!   detaches it (pure: the query, its rows, the statements that set the values again);
//! - [`plan`]: the messages that rebuild the state on a new connection (pure).
//!
//! State that cannot be rebuilt (temporary tables, WITH HOLD cursors, LISTEN, session-level
//! advisory locks) is recorded too, so the session can be ended with a message that names it;
//! so are settings in doubt that could not be read back.

pub mod doubt;
pub mod plan;
pub mod readback;
pub mod set_config;
pub mod sql;
pub mod state;
#[cfg(test)]
mod tests;

pub use doubt::Doubt;
pub use plan::Plan;
pub use sql::Unreplayable;
pub use state::{Replayable, SessionState};
