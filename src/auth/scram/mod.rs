//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the messages of both sides, parsed
//! and built, and the key arithmetic.
//!
//! Pure: no IO, no clock. Every parser is total: any byte string gives a value or a
//! [`ScramError`], never a panic (the unit tests feed them garbage). Nonces come from the caller,
//! so exchanges are reproducible in tests.
//!
//! The two sides:
//! - [`ServerExchange`]: the proxy authenticating a client against a [`ScramVerifier`](crate::auth::verifier::ScramVerifier). A client
//!   whose proof matches yields its ClientKey (`ClientProof XOR HMAC(StoredKey, AuthMessage)`,
//!   checked by `H(ClientKey) == StoredKey` in constant time: that comparison is the password
//!   check).
//! - [`ClientExchange`]: the proxy logging in upstream with a ClientKey (or keys derived from a
//!   password) and checking the server's signature with the ServerKey.
//!
//! Error texts follow PostgreSQL 15's, so a client sees what PostgreSQL would have said.

mod client;
mod keys;
mod messages;
mod server;

pub use client::{ClientExchange, ClientKeys};
pub use keys::*;
pub use messages::*;
pub use server::{ServerExchange, Verified};

use crate::protocol::notice::sqlstate;

/// The mechanism without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel-binding type PostgreSQL supports (RFC 5929).
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";
/// Length of every SCRAM-SHA-256 key, signature and proof.
pub const KEY_LEN: usize = 32;
/// A key, signature or proof.
pub type Key = [u8; KEY_LEN];
/// PostgreSQL's default iteration count (`scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// PostgreSQL's salt length.
pub const SALT_LEN: usize = 16;
/// Random bytes in a nonce (PostgreSQL's length; 24 characters in base64).
pub const NONCE_BYTES: usize = 18;

/// A SCRAM exchange that cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// The proof does not match the verifier (a wrong password, or no verifier at all): the
    /// client is told "password authentication failed".
    Rejected,
    /// A message broke the rules: reported with this SQLSTATE, message and detail.
    Protocol {
        code: &'static str,
        message: &'static str,
        detail: Option<String>,
    },
}

impl std::fmt::Display for ScramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramError::Rejected => write!(f, "the SCRAM proof does not match"),
            ScramError::Protocol {
                message,
                detail: Some(detail),
                ..
            } => write!(f, "{message}: {detail}"),
            ScramError::Protocol { message, .. } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for ScramError {}

pub(super) fn malformed(detail: impl Into<String>) -> ScramError {
    ScramError::Protocol {
        code: sqlstate::PROTOCOL_VIOLATION,
        message: "malformed SCRAM message",
        detail: Some(detail.into()),
    }
}

pub(super) fn violation(message: &'static str, detail: Option<String>) -> ScramError {
    ScramError::Protocol {
        code: sqlstate::PROTOCOL_VIOLATION,
        message,
        detail,
    }
}

pub(super) fn unsupported(message: &'static str) -> ScramError {
    ScramError::Protocol {
        code: sqlstate::FEATURE_NOT_SUPPORTED,
        message,
        detail: None,
    }
}

#[cfg(test)]
mod tests;
