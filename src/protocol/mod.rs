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

/// Values as Bind and DataRow carry them: each its length (4 bytes, -1 for NULL), then its bytes.
/// For the tests that build such messages.
#[cfg(test)]
pub(crate) fn values(values: &[Option<&str>]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out
}
