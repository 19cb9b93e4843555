//! The PostgreSQL v3 wire protocol, as much of it as a relay needs: framing and a few peeks.
//!
//! Everything here is pure (no IO, no tokio): functions over byte slices and `BytesMut`, so that it
//! can be unit-tested with byte literals, benchmarked and fuzzed without sockets. Incomplete input is
//! `Ok(None)`, never an error; a length outside the allowed range is an error.

pub mod backend;
pub mod frame;
pub mod frontend;
pub mod notice;
pub mod startup;
pub mod tags;

pub use frame::{FrameError, Header, Message, Scanner};
