//! The client's SCRAM exchange against a user's verifier, for `auth = "proxy"` sessions and the
//! console alike: where the verifier comes from, the exchange, and PostgreSQL's answers when it
//! fails.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use super::farewell::{FAREWELL_TIMEOUT, farewell};
use crate::auth::exchange::{self, ExchangeFailure};
use crate::auth::scram::{ServerExchange, Verified};
use crate::auth::verifier::ScramVerifier;
use crate::protocol::notice::{self, sqlstate};
use crate::shared::Shared;
use crate::tls::MaybeTls;
use crate::verifier_store::Verifiers;

/// PostgreSQL's `authentication_timeout`: the client's exchange, and the login upstream, must
/// finish within it; a client that takes longer is closed in silence, as PostgreSQL closes it.
pub const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs SCRAM with the client against `user`'s verifier (from the auth file, the cache or the
/// auth query, waiting for a server a window has down when the query needs it). `None` once the
/// client has been refused (or left); else what the proof gave and the verifier it matched.
pub async fn check_password(
    shared: &Shared,
    store: &Verifiers,
    client: &mut MaybeTls,
    user: &str,
    end_point: Option<Vec<u8>>,
) -> Option<(Verified, ScramVerifier)> {
    // The auth query needs the server: wait for it as a connection does.
    if store.needs_query(user) && !shared.control.is_available() && !server_up(shared, client).await
    {
        return None;
    }
    let verifier = match store.lookup(user, &shared.upstream).await {
        Ok(verifier) => verifier,
        Err(reason) => {
            warn!(%user, %reason, "cannot look up the user's verifier");
            let message = format!("could not look up the password of user \"{user}\": {reason}");
            farewell(client, sqlstate::CONNECTION_FAILURE, &message).await;
            return None;
        }
    };
    let verified = client_exchange(store, client, user, verifier.clone(), end_point).await?;
    let verifier = verifier.expect("only a real verifier verifies");
    Some((verified, verifier))
}

/// Waits up to `hold_timeout` for a server a window has down; false once the client has been
/// told (`57P03`) that it still is.
pub async fn server_up(shared: &Shared, client: &mut MaybeTls) -> bool {
    let up = shared
        .control
        .wait_available(shared.config().hold_timeout)
        .await;
    if !up {
        info!("connection refused: the server is still down for a backup");
        let message = "the database server is restarting for a backup; try again shortly";
        farewell(client, sqlstate::CANNOT_CONNECT_NOW, message).await;
    }
    up
}

/// SCRAM with the client against `verifier` (a mock one when `None`). `None` once the client has
/// been refused (or left).
async fn client_exchange(
    store: &Verifiers,
    client: &mut MaybeTls,
    user: &str,
    verifier: Option<ScramVerifier>,
    end_point: Option<Vec<u8>>,
) -> Option<Verified> {
    let mut exchange = ServerExchange::new(verifier, store.mock(user), end_point);
    let run = exchange::authenticate(client, &mut exchange);
    let failure = match tokio::time::timeout(AUTHENTICATION_TIMEOUT, run).await {
        Ok(Ok(verified)) => return Some(verified),
        Ok(Err(failure)) => failure,
        Err(_) => ExchangeFailure::Gone("authentication timeout".into()),
    };
    match failure {
        ExchangeFailure::Gone(reason) => {
            debug!(%reason, "client left during authentication");
        }
        ExchangeFailure::Rejected => {
            info!(%user, "password authentication failed");
            password_failed(client, user).await;
        }
        ExchangeFailure::Refused {
            code,
            message,
            detail,
        } => {
            info!(%user, %message, "SCRAM exchange refused");
            let reply = notice::fatal(code, &message, detail.as_deref());
            let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.write_all(&reply)).await;
        }
    }
    None
}

/// PostgreSQL's answer to a wrong password, an unknown user, or a user without a usable
/// verifier alike.
pub(super) async fn password_failed(client: &mut MaybeTls, user: &str) {
    let message = format!("password authentication failed for user \"{user}\"");
    farewell(client, sqlstate::INVALID_PASSWORD, &message).await;
}
