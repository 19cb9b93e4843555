//! The console: the sidecar's own commands over the PostgreSQL protocol, on the proxy's port,
//! as PgBouncer's and PgDog's admin databases work (`psql -p 6432 -U admin doltgres_sidecar`,
//! then `SHOW STATS;`, `BACKUP;`).
//!
//! A StartupMessage naming `console_database` is never relayed: the session's startup phase
//! (encryption, limits) has run as for any client, then [`serve`] checks the user's password
//! with SCRAM-SHA-256 against the verifiers of `auth = "proxy"` (auth file or auth query,
//! whatever `auth` is), admits users in `admin_users` (every command) or `stats_users` (`SHOW`
//! only), and answers commands with `pgwire`'s server: [`handler`] for both query protocols,
//! [`command`] (the pure parser), [`table`] (each command's typed columns), [`answer`] (the
//! commands run through [`crate::ops`], the same code as the admin HTTP API).

pub mod answer;
pub mod command;
pub mod handler;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::error::ErrorInfo;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::auth::exchange::{auth_request, code};
use crate::protocol::notice::sqlstate;
use crate::session::farewell::{FAREWELL_TIMEOUT, farewell};
use crate::session::password::check_password;
use crate::shared::Shared;
use crate::tls::MaybeTls;
use answer::Role;
use handler::Handler;

/// Who connected, from the StartupMessage.
pub struct Visitor<'a> {
    pub peer: SocketAddr,
    pub user: &'a str,
    pub application_name: &'a str,
    /// The channel-binding data of the certificate the client's TLS handshake used, if any.
    pub end_point: Option<Vec<u8>>,
}

/// Serves a console session to its end: the login, then commands until the client leaves, the
/// proxy shuts down (`stop`), or `SHUTDOWN`.
pub async fn serve(
    shared: &Arc<Shared>,
    mut client: MaybeTls,
    visitor: Visitor<'_>,
    stop: &CancellationToken,
) {
    let Some(role) = login(shared, &mut client, &visitor).await else {
        return;
    };
    info!(user = %visitor.user, ?role, "console session started");
    let secure = crate::tls::is_tls(&client);
    let mut socket = Framed::new(
        client,
        PgWireMessageServerCodec::new(DefaultClient::new(visitor.peer, secure)),
    );
    socket.set_state(PgWireConnectionState::ReadyForQuery);
    if let Err(e) = welcome(&mut socket, visitor.application_name).await {
        return debug!(error = %e, "console client lost after its login");
    }
    let handler = Arc::new(Handler::new(shared.clone(), role, visitor.user.to_string()));
    let noop = Arc::new(NoopHandler);
    loop {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = stop.cancelled() => None,
            _ = shared.shutdown.cancelled() => None,
        };
        let message = match message {
            Some(Ok(PgWireFrontendMessage::Terminate(_))) => break,
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                info!(error = %e, "console session ended: unreadable message");
                let message = format!("invalid message: {e}");
                goodbye(&mut socket, sqlstate::PROTOCOL_VIOLATION, message).await;
                break;
            }
            None if stop.is_cancelled() || shared.shutdown.is_cancelled() => {
                let message = "terminating connection: the proxy is shutting down";
                goodbye(&mut socket, sqlstate::ADMIN_SHUTDOWN, message.into()).await;
                break;
            }
            None => break,
        };
        let extended = message.is_extended_query();
        let handled = process_message(
            message,
            &mut socket,
            noop.clone(),
            handler.clone(),
            handler.clone(),
            noop.clone(),
            noop.clone(),
        )
        .await;
        if let Err(e) = handled {
            let fatal = e.is_fatal();
            if process_error(&mut socket, e, extended).await.is_err() || fatal {
                break;
            }
        }
    }
    debug!("console session ended");
}

/// Ends the session with a FATAL ErrorResponse (no ReadyForQuery follows one), within
/// [`FAREWELL_TIMEOUT`].
async fn goodbye<S>(
    socket: &mut Framed<S, PgWireMessageServerCodec<Command>>,
    code: &str,
    message: String,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let info = ErrorInfo::new("FATAL".into(), code.into(), message);
    let send = socket.send(PgWireBackendMessage::ErrorResponse(info.into()));
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, send).await;
}

/// Checks the user's password and role; `None` once the client has been refused (or left).
async fn login(shared: &Arc<Shared>, client: &mut MaybeTls, visitor: &Visitor<'_>) -> Option<Role> {
    let config = shared.config();
    let user = visitor.user;
    let refuse = |message: String| async move {
        info!(%user, %message, "console login refused");
        message
    };
    if config.admin_users.is_empty() && config.stats_users.is_empty() {
        let message = refuse(format!(
            "the console ({}) has no users: set admin_users or stats_users",
            config.console_database
        ))
        .await;
        farewell(client, sqlstate::INVALID_AUTHORIZATION, &message).await;
        return None;
    }
    if user.is_empty() {
        let message = "no PostgreSQL user name specified in startup packet";
        farewell(client, sqlstate::INVALID_AUTHORIZATION, message).await;
        return None;
    }
    let Some(store) = shared.auth() else {
        let message = refuse("the console's verifier store is not set up".into()).await;
        farewell(client, sqlstate::INVALID_AUTHORIZATION, &message).await;
        return None;
    };
    let role = if config.admin_users.iter().any(|u| u == user) {
        Some(Role::Admin)
    } else if config.stats_users.iter().any(|u| u == user) {
        Some(Role::Stats)
    } else {
        None
    };
    // The password first, for every user: whether a user may use the console is told only to
    // someone who knows that user's password.
    let end_point = visitor.end_point.clone();
    let (verified, _) = check_password(shared, &store, client, user, end_point).await?;
    let Some(role) = role else {
        let message = refuse(format!(
            "user \"{user}\" may not use the console: it is in neither admin_users nor stats_users"
        ))
        .await;
        farewell(client, sqlstate::INVALID_AUTHORIZATION, &message).await;
        return None;
    };
    let mut reply = auth_request(code::SASL_FINAL, verified.server_final.as_bytes());
    reply.extend_from_slice(&auth_request(code::OK, &[]));
    match client.write_all(&reply).await {
        Ok(()) => Some(role),
        Err(e) => {
            debug!(error = %e, "console client lost after authentication");
            None
        }
    }
}

/// What a server sends after AuthenticationOk: its parameters, a key, ReadyForQuery. The key
/// cancels nothing (the console's commands are not cancelled); clients expect one.
async fn welcome<S>(
    socket: &mut Framed<S, PgWireMessageServerCodec<Command>>,
    application_name: &str,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let version = format!("15.0 (doltgres-sidecar {})", env!("CARGO_PKG_VERSION"));
    let parameters = [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", application_name),
    ];
    for (name, value) in parameters {
        let status = ParameterStatus::new(name.into(), value.into());
        socket
            .feed(PgWireBackendMessage::ParameterStatus(status))
            .await?;
    }
    let key = BackendKeyData::new(
        rand::random::<i32>() & i32::MAX,
        SecretKey::I32(rand::random()),
    );
    socket
        .feed(PgWireBackendMessage::BackendKeyData(key))
        .await?;
    let ready = ReadyForQuery::new(TransactionStatus::Idle);
    socket
        .send(PgWireBackendMessage::ReadyForQuery(ready))
        .await
}

use command::Command;
