//! Client authentication by the proxy itself (`auth = "proxy"`).
//!
//! The proxy runs SCRAM-SHA-256 with the client against a verifier (from an auth file in
//! PgBouncer's `userlist.txt` format, or read from the server by an auth query run as the backup
//! user), recovers the client's ClientKey from its proof, and logs in upstream as the same user
//! with that key: the password is never known, stored or sent. With `auth = "passthrough"` (the
//! default outside managed mode) the relay carries the server's own exchange instead.
//!
//! Pure parts, unit-tested and total over any input: [`scram`] (messages and key arithmetic of
//! both sides), [`verifier`] (the `pg_authid` form), [`userlist`] (auth files), [`channel`]
//! (tls-server-end-point channel binding). IO: the `verifier_store` module (where verifiers come from, with a TTL
//! cache), [`exchange`] (the exchange with a client), [`upstream_login`] (the login upstream as the
//! client's user), and `session::login` (a session's whole login).

pub mod channel;
pub mod exchange;
pub mod scram;
pub mod upstream_login;
pub mod userlist;
pub mod verifier;

pub use crate::config::auth::{AuthMode, DEFAULT_AUTH_QUERY, Passwords};
