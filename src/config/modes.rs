//! The configuration's choices: the TLS modes towards clients (`tls`) and the upstream
//! (`upstream_tls`), the drain policy, the log format. Pure; the `tls`, `gate` and `logging`
//! modules act on them.

use serde::{Deserialize, Serialize};

/// Whether clients may or must use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// SSLRequest is answered `N`.
    #[default]
    Disable,
    /// TLS when the client asks for it; plain text otherwise.
    Allow,
    /// Plain-text sessions are refused (`28000`).
    Require,
}

/// How the proxy connects to its upstream, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    #[default]
    Disable,
    /// TLS if the server offers it, without checking its certificate.
    Prefer,
    /// TLS or fail, without checking the certificate.
    Require,
    /// TLS, the certificate checked against the CA file and the host name.
    VerifyFull,
}

/// What to do with sessions still inside a transaction at the drain deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainPolicy {
    /// Give up this window and resume traffic; the caller retries later.
    #[default]
    Abort,
    /// End those sessions with 57P01 and proceed.
    Terminate,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the current span and the list of spans it is in.
    Json,
}
