//! The TLS modes of the configuration: towards clients (`tls`) and towards the upstream
//! (`upstream_tls`). Pure; `crate::tls` acts on them.

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
