//! The types of the `auth*` settings: who checks a client's password, the default auth query,
//! and the passwords for the login upstream. What acts on them is the `auth` module.

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
