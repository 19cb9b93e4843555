//! `auth = "proxy"`: the proxy authenticates the client itself, then logs in upstream as the same
//! user with what the client's proof revealed (its ClientKey), or with a configured password.
//!
//! - [`authenticate_and_connect`] is the session's part: SCRAM with the client (nothing reaches
//!   the server as that user before the password checks out), the upstream connection (waiting
//!   while a window has the server down, as passthrough sessions do), [`upstream_login`], then
//!   AuthenticationSASLFinal and AuthenticationOk to the client. The server's messages after its
//!   own AuthenticationOk (ParameterStatus, BackendKeyData, ReadyForQuery) go to the relay, which
//!   forwards them (replacing the key's secret) as it does in passthrough mode.
//!
//! The login upstream itself, [`upstream_login`] with [`Credentials`], is
//! `crate::auth::upstream_login`'s: re-attaching a session after a server restart runs it too.

use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::auth::exchange::{auth_request, code};
use crate::auth::upstream_login::{
    Credentials, LoginError, LoginOutcome, ScramCredentials, upstream_login,
};
use crate::control::Attached;
use crate::protocol::notice::sqlstate;
use crate::registry::SessionInfo;
use crate::shared::Shared;
use crate::tls::MaybeTls;
use crate::verifier_store::Verifiers;

pub use super::password::AUTHENTICATION_TIMEOUT;
use super::password::{check_password, password_failed};

/// A session logged in by the proxy: its upstream connection, attached, the server's messages
/// for the client, and the credentials to log in again.
pub struct LoggedIn<'a> {
    pub server: MaybeTls,
    pub attached: Attached<'a>,
    pub outcome: LoginOutcome,
    pub credentials: Credentials,
}

/// The session's part of `auth = "proxy"` (see the module docs). `end_point`: the
/// channel-binding data of the certificate the client's TLS handshake used, if any. `None` once
/// the client has been answered (or left) and the session is over.
pub async fn authenticate_and_connect<'a>(
    shared: &'a Shared,
    info: &SessionInfo,
    client: &mut MaybeTls,
    startup: &[u8],
    end_point: Option<Vec<u8>>,
) -> Option<LoggedIn<'a>> {
    let store = shared.auth().expect("auth = proxy has a verifier store");
    let store = &*store;
    let user = info.user.as_str();
    if user.is_empty() {
        // PostgreSQL's answer to a StartupMessage without a user.
        let message = "no PostgreSQL user name specified in startup packet";
        super::farewell(client, sqlstate::INVALID_AUTHORIZATION, message).await;
        return None;
    }
    let (verified, verifier) = check_password(shared, store, client, user, end_point).await?;
    let credentials = Credentials {
        user: user.to_string(),
        scram: Some(ScramCredentials {
            client_key: verified.client_key,
            server_key: Zeroizing::new(verifier.server_key),
            salt: verifier.salt.clone(),
            iterations: verifier.iterations,
        }),
        password: store.password(user),
    };
    let (server, attached, outcome) = loop {
        let (mut server, attached) = super::connect_upstream(shared, info, client).await?;
        let login = tokio::time::timeout(
            AUTHENTICATION_TIMEOUT,
            upstream_login(&mut server, startup, &credentials),
        );
        let result = tokio::select! {
            result = login => Some(result),
            _ = attached.detached() => None,
        };
        match result {
            None => debug!("the server went down for a backup during login: waiting for it"),
            Some(Ok(Ok(outcome))) => break (server, attached, outcome),
            Some(Ok(Err(e))) => {
                refuse_after_upstream(store, client, &credentials, e).await;
                return None;
            }
            Some(Err(_)) => {
                warn!("the upstream server did not finish the login in time");
                let message = format!(
                    "the upstream server did not finish the login within {AUTHENTICATION_TIMEOUT:?}"
                );
                super::farewell(client, sqlstate::CONNECTION_FAILURE, &message).await;
                return None;
            }
        }
    };
    let mut reply = auth_request(code::SASL_FINAL, verified.server_final.as_bytes());
    reply.extend_from_slice(&auth_request(code::OK, &[]));
    if let Err(e) = client.write_all(&reply).await {
        debug!(error = %e, "client lost after authentication");
        return None;
    }
    debug!(%user, "client authenticated by the proxy and logged in upstream");
    Some(LoggedIn {
        server,
        attached,
        outcome,
        credentials,
    })
}

/// Tells the client why the login upstream failed, after its own exchange succeeded.
async fn refuse_after_upstream(
    store: &Verifiers,
    client: &mut MaybeTls,
    credentials: &Credentials,
    error: LoginError,
) {
    let user = credentials.user.as_str();
    match error {
        LoginError::Refused { response, sqlstate } => {
            info!(%user, sqlstate = sqlstate.as_deref().unwrap_or(""), "the upstream server refused the login");
            if sqlstate.as_deref() == Some(sqlstate::INVALID_PASSWORD) {
                // The server's verifier is not the cached one any more.
                store.invalidate(user);
            }
            let _ =
                tokio::time::timeout(super::FAREWELL_TIMEOUT, client.write_all(&response)).await;
        }
        LoginError::StaleVerifier => {
            info!(%user, "the user's verifier changed on the server: refused, cache refreshed");
            store.invalidate(user);
            password_failed(client, user).await;
        }
        LoginError::Unsupported(message) => {
            warn!(%user, %message, "cannot log in upstream");
            super::farewell(client, sqlstate::INVALID_AUTHORIZATION, &message).await;
        }
        e @ (LoginError::Io(_) | LoginError::Closed | LoginError::Server(_)) => {
            warn!(%user, error = %e, "upstream login failed");
            super::farewell(client, sqlstate::CONNECTION_FAILURE, &e.to_string()).await;
        }
    }
}
