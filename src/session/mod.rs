//! One session: a client connection and the upstream connection made for it.
//!
//! The startup phase is handled here (encryption requests answered, cancel requests routed,
//! limits applied), then [`relay`] moves bytes both ways until either side ends.

pub mod buffers;
pub mod cancel;
pub mod console;
pub mod converse;
#[cfg(debug_assertions)]
pub mod debug_leak;
pub mod ending;
pub mod farewell;
mod footprint;
pub mod hold;
pub mod inject;
pub mod login;
pub mod observe;
pub mod password;
pub mod pump;
pub mod readback;
pub mod reattach;
pub mod relay;
pub mod startup;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::config::auth::AuthMode;
use crate::protocol::notice::sqlstate;
use crate::protocol::startup::{Negotiation, StartupPacket, param, parse as parse_startup};
use crate::registry::{EndReason, Registered, SessionInfo};
use crate::shared::Shared;
use crate::tls::{self, ClientTls, ClientTlsMode, MaybeTls};
use startup::{Opening, StartupFailure};

pub use farewell::{FAREWELL_TIMEOUT, farewell, farewell_detailed};

/// Serves one client connection to its end.
pub async fn serve(
    id: u64,
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    // The phases before the relay are boxed: their state is freed when they end, and the
    // session's task, which lives as long as the session, keeps only the relay's.
    let Some(mut opened) = Box::pin(open_session(id, tcp, peer, &shared, &stop)).await else {
        return;
    };
    let Opened {
        client,
        upstream,
        login,
        registered,
        ..
    } = &mut opened;
    relay::relay(client, upstream, login, &shared, &registered.info).await;
    drop(opened);
    shared.gate.progress();
}

/// A session past its startup and login, ready to relay.
/// The relay borrows its parts from here: moved in as arguments, they would be stored twice in
/// the session's future.
struct Opened<'a> {
    client: MaybeTls,
    upstream: Option<(MaybeTls, crate::control::Attached<'a>)>,
    login: relay::Login,
    registered: Registered<'a>,
    _counted: Counted<'a>,
    _permit: crate::limits::Permit,
}

/// Counts an open session in the `sessions` gauge for as long as it lives.
struct Counted<'a>(&'a Shared);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.metrics.sessions.dec();
    }
}

/// Everything before the relay: encryption, the startup packet (or a cancel request, or the
/// console), limits, the registry entry and the login. `None` once the connection was served
/// otherwise or refused.
async fn open_session<'a>(
    id: u64,
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &'a Arc<Shared>,
    stop: &CancellationToken,
) -> Option<Opened<'a>> {
    let config = shared.config();
    let _ = tcp.set_nodelay(true);
    let slot = shared.startups.enter();
    let (client, opening, tls) = tokio::select! {
        opened = open(tcp, shared, &config) => opened,
        _ = slot.evicted.cancelled() => {
            info!(
                max = config.max_startup_connections,
                "connection closed before its startup packet: newer connections needed its place"
            );
            return None;
        }
    };
    drop(slot);
    // A client connection counts once it has sent its startup packet.
    let permit = shared.limiter.try_acquire();
    let Some(mut client) = client else {
        match opening {
            Err(e) if e.is_notable() => info!(error = %e, "startup refused"),
            _ => debug!("client lost during the TLS handshake"),
        };
        return None;
    };
    let startup = match opening {
        Ok(Opening::Startup(bytes)) => bytes,
        Ok(Opening::Cancel {
            process_id,
            secret_key,
        }) => {
            cancel::forward(shared, process_id, &secret_key).await;
            return None;
        }
        Ok(Opening::TlsRequested { .. }) => unreachable!("open() handles TLS requests"),
        Err(e) => {
            refuse(&mut client, e).await;
            return None;
        }
    };
    if config.tls == ClientTlsMode::Require && !tls::is_tls(&client) {
        info!("plain-text client refused: tls = require");
        let message = "TLS is required: connect with sslmode=require or stronger";
        farewell(&mut client, sqlstate::INVALID_AUTHORIZATION, message).await;
        return None;
    }
    let Some(permit) = permit else {
        info!(
            max = config.max_client_connections,
            "connection refused: too many clients"
        );
        let message = format!(
            "too many client connections (max_client_connections = {})",
            config.max_client_connections
        );
        farewell(&mut client, sqlstate::TOO_MANY_CONNECTIONS, &message).await;
        return None;
    };
    let info = session_info(id, peer, &startup);
    if info.database == config.console_database {
        let end_point = tls
            .and_then(|tls| tls.end_point.clone())
            .filter(|_| tls::is_tls(&client));
        let visitor = crate::session::console::Visitor {
            peer,
            user: &info.user,
            application_name: &info.application_name,
            end_point,
        };
        Box::pin(crate::session::console::serve(
            shared, client, visitor, stop,
        ))
        .await;
        return None;
    }
    #[cfg(debug_assertions)]
    debug_leak::per_session();
    let info = Arc::new(info);
    debug!(user = %info.user, database = %info.database, tls = tls::is_tls(&client), "session starting");
    let registered = Registered::new(&shared.registry, info);
    // The shutdown ends the registered sessions at `shutdown_timeout` (after cancelling `stop`):
    // one registered after it looked is ended here.
    if stop.is_cancelled() {
        registered.info.end(EndReason::Shutdown);
    }
    shared.metrics.sessions.inc();
    let counted = Counted(shared);
    let (upstream, login) = match config.auth_mode() {
        AuthMode::Passthrough => {
            let upstream = connect_upstream(shared, &registered.info, &mut client).await?;
            (upstream, relay::Login::Relayed { startup })
        }
        AuthMode::Proxy => {
            // The channel-binding data of the certificate this client's handshake used.
            let end_point = tls
                .and_then(|tls| tls.end_point.clone())
                .filter(|_| tls::is_tls(&client));
            let login = login::authenticate_and_connect(
                shared,
                &registered.info,
                &mut client,
                &startup,
                end_point,
            );
            let outcome = tokio::select! {
                done = login => Ok(done),
                _ = stop.cancelled() => Err(()),
                _ = registered.info.ended() => Err(()),
            };
            let done = match outcome {
                Ok(Some(done)) => done,
                Ok(None) => return None,
                Err(()) => {
                    info!("session closed by proxy shutdown during login");
                    let message = "terminating connection: the proxy is shutting down";
                    farewell(&mut client, sqlstate::ADMIN_SHUTDOWN, message).await;
                    return None;
                }
            };
            let login = relay::Login::Done {
                after_auth: done.outcome.after_auth,
                replayable: relay::Replayable::new(startup, done.credentials),
            };
            ((done.server, done.attached), login)
        }
    };
    Some(Opened {
        client,
        upstream: Some(upstream),
        login,
        registered,
        _counted: counted,
        _permit: permit,
    })
}

/// Connects upstream once the server is available (waiting up to `hold_timeout` while a window
/// has it down) and attaches the connection; a server that went down while connecting is waited
/// for again. `None` once the client has been told why not.
async fn connect_upstream<'a>(
    shared: &'a Shared,
    info: &SessionInfo,
    client: &mut MaybeTls,
) -> Option<(MaybeTls, crate::control::Attached<'a>)> {
    loop {
        if !password::server_up(shared, client).await {
            return None;
        }
        let server = match shared.upstream.connect_relay().await {
            Ok(server) => server,
            Err(message) => {
                warn!(upstream = %shared.upstream.addr, %message, "upstream connection failed");
                farewell(client, sqlstate::CONNECTION_FAILURE, &message).await;
                return None;
            }
        };
        if let Some(attached) = shared.control.attach() {
            info.mark_connected();
            return Some((server, attached));
        }
        debug!("the server went down for a backup while connecting: waiting for it");
    }
}

/// The startup phase: encryption negotiation (TLS handshake if offered and asked for) and the
/// first real packet, all within `startup_timeout`. Returns the stream unless the handshake
/// consumed it, and the client TLS in use when the session opened (a renewed certificate
/// swapped in later is for later sessions).
async fn open(
    tcp: TcpStream,
    shared: &Shared,
    config: &Config,
) -> (
    Option<MaybeTls>,
    Result<Opening, StartupFailure>,
    Option<Arc<ClientTls>>,
) {
    let tls = shared.client_tls();
    let deadline = Instant::now() + config.startup_timeout;
    let mut stream = tls::plain(tcp);
    let mut negotiation = Negotiation::default();
    loop {
        let offer_tls = tls.is_some() && !tls::is_tls(&stream);
        let max_len = config.max_startup_len;
        let opening =
            startup::negotiate(&mut stream, max_len, offer_tls, &mut negotiation, deadline).await;
        let (Ok(Opening::TlsRequested { unencrypted_data }), Some(acceptor), Either::Left(_)) =
            (&opening, &tls, &stream)
        else {
            return (Some(stream), opening, tls);
        };
        let unencrypted_data = *unencrypted_data;
        if let Err(e) = stream.write_all(b"S").await {
            return (Some(stream), Err(StartupFailure::Io(e)), tls);
        }
        let Either::Left(tcp) = stream else {
            unreachable!()
        };
        match tokio::time::timeout_at(deadline, acceptor.acceptor.accept(tcp)).await {
            Ok(Ok(accepted)) => stream = tls::encrypted(accepted),
            Ok(Err(e)) => return (None, Err(StartupFailure::Handshake(e)), tls),
            Err(_) => return (None, Err(StartupFailure::Timeout), tls),
        }
        if unencrypted_data {
            // As PostgreSQL does: the refusal comes after the handshake, encrypted.
            return (
                Some(stream),
                Err(StartupFailure::UnencryptedData("SSL")),
                tls,
            );
        }
    }
}

/// Ends a startup phase that failed: with PostgreSQL's answer where it gives one, else in
/// silence, logged where PostgreSQL logs it.
async fn refuse(client: &mut MaybeTls, failure: StartupFailure) {
    if failure.is_notable() {
        info!(error = %failure, "startup refused");
    } else {
        debug!(error = %failure, "startup ended");
    }
    if let Some(reply) = failure.reply() {
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, client.write_all(&reply)).await;
    }
}

/// Builds the registry entry from the StartupMessage.
fn session_info(id: u64, peer: SocketAddr, startup: &[u8]) -> SessionInfo {
    let params = match parse_startup(startup) {
        StartupPacket::Startup { params, .. } => params,
        _ => &[],
    };
    let user = param(params, "user").unwrap_or_default().to_string();
    let database = param(params, "database")
        .map(str::to_string)
        .unwrap_or_else(|| user.clone());
    let application_name = param(params, "application_name")
        .unwrap_or_default()
        .to_string();
    SessionInfo::new(id, peer, user, database, application_name)
}
