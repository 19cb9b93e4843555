//! What an operator can ask of a running sidecar, whatever the transport: the admin HTTP API
//! (the `admin` module) and the console on the PostgreSQL port (`session::console`) both call
//! these functions and only translate their answers (JSON and HTTP statuses; rows and
//! SQLSTATEs).
//!
//! - [`status`]: the open sessions, counters, and where the server and copies are;
//!   [`backups`]: recent windows and copy entries.
//! - [`windows`]: an operator hold and its end, a backup window now.
//! - [`maintenance`]: reload the configuration, verify a copy entry, shut down.
//!
//! A refusal is an [`OpError`], whose [`Refusal`] kind each transport maps to its own answer.

pub mod backups;
pub mod error;
pub mod maintenance;
pub mod status;
pub mod windows;

pub use error::{OpError, Refusal};
