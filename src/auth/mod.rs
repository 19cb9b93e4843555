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
//! (tls-server-end-point channel binding). IO: [`store`] (where verifiers come from, with a TTL
//! cache), [`exchange`] (the exchange with a client), [`upstream_login`] (the login upstream as the
//! client's user), and `session::login` (a session's whole login).

pub mod channel;
pub mod exchange;
pub mod scram;
pub mod store;
pub mod upstream_login;
pub mod userlist;
pub mod verifier;

use serde::{Deserialize, Serialize};

/// Who checks a client's password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// The server: the relay carries its authentication exchange untouched.
    Passthrough,
    /// The proxy: SCRAM with the client, then a login upstream with the client's ClientKey.
    Proxy,
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "passthrough" => Ok(AuthMode::Passthrough),
            "proxy" => Ok(AuthMode::Proxy),
            other => Err(format!("{other:?}: use passthrough or proxy")),
        }
    }
}

/// The auth query used when none is configured: PostgreSQL's catalog, which Doltgres v1.2.0
/// answers with `SCRAM-SHA-256$…` verifiers and a parameter in the WHERE clause
/// (`doltgres_auth_facts.rs`).
pub const DEFAULT_AUTH_QUERY: &str =
    "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1";

/// Passwords per user for the login upstream, when the server asks for a cleartext or MD5
/// password, or its SCRAM salt differs from the verifier's. Shows user names only.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Passwords(pub std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}
