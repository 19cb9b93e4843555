//! The relay proper: two [`Pump`]s, one per direction, polled together in the session's task, so
//! a full socket on one side never stops the other. When either ends, the session ends; if the
//! client is still there and its stream is at a message boundary, it is told why.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::control::Attached;
use crate::halves;
use crate::metrics::Direction;
use crate::protocol::notice::sqlstate;
use crate::protocol::tags;
use crate::registry::{EndReason, SessionInfo};
use crate::replay::{SessionState, plan};
use crate::shared::Shared;
use crate::tls::MaybeTls;
use crate::txn::Phase;
use std::sync::Mutex;

use super::inject::Injector;
use super::observe::{ClientSide, ServerSide};
use super::on_wake::OnWake;
use super::pump::{Pump, PumpError};
use super::readback;
use super::reattach::{CredentialLogin, Failure, Relogin, reattach};
use super::{FAREWELL_TIMEOUT, farewell, farewell_detailed};
use crate::auth::upstream_login::Credentials;

/// How the relay ended.
enum Ending {
    Client(Result<(), PumpError>),
    Server(Result<(), PumpError>),
    /// The proxy is shutting down: at the session's boundary, or at `shutdown_timeout`.
    Stopped,
    /// A window's `terminate` policy ended the session.
    Terminated,
    /// A copy window stops the server: the upstream connection closes, the client waits.
    Detached,
}

/// How the session's login goes.
pub enum Login {
    /// `auth = "passthrough"`: the relay sends the client's StartupMessage, and the server's
    /// authentication exchange with the client passes through it.
    Relayed { startup: BytesMut },
    /// `auth = "proxy"`: the proxy has logged the session in already. `after_auth` holds what the
    /// server sent after its AuthenticationOk (through ReadyForQuery); the relay forwards it
    /// first. The StartupMessage and credentials stay with the session for as long as it runs,
    /// so that it can log in again, and then the session survives the loss of its upstream
    /// connection (see [`super::reattach`]).
    Done {
        startup: BytesMut,
        credentials: Credentials,
        after_auth: BytesMut,
    },
}

/// Relays between `client` and the upstream connection (`server`, attached) until the session
/// ends.
pub async fn relay(
    client: MaybeTls,
    (server, attached): (MaybeTls, Attached<'_>),
    login: Login,
    shared: &Shared,
    info: &SessionInfo,
    stop: &CancellationToken,
) {
    let mut pending_after_auth = None;
    let config = shared.config();
    let mut client = client;
    let (mut client_read, mut client_write) = halves::split(&mut client);
    let (startup, relogin, state) = match login {
        Login::Relayed { startup } => (startup, None, None),
        Login::Done {
            startup,
            credentials,
            after_auth,
        } => {
            pending_after_auth = Some(after_auth);
            let relogin = CredentialLogin { credentials };
            (
                startup,
                Some(relogin),
                Some(Mutex::new(SessionState::new())),
            )
        }
    };
    let relogin = relogin.as_ref().map(|r| r as &dyn Relogin);
    let metrics = &shared.metrics;
    let inject = std::sync::Arc::new(Injector::default());
    let mut up = Pump::new(
        config.read_buffer_size,
        config.max_message_len,
        metrics.bytes_counter(Direction::Upstream),
    );
    let down = Pump::new(
        config.read_buffer_size,
        config.max_message_len,
        metrics.bytes_counter(Direction::Downstream),
    );
    let mut down = down.with_injection(inject.clone());
    if let Some(after_auth) = pending_after_auth.take() {
        down.preload(&after_auth);
    }
    let relayed_login = relogin.is_none();
    let mut client_side = ClientSide::new(shared, info, inject, state.as_ref(), relayed_login);
    let (mut server, mut attached) = (server, attached);
    let mut send_startup = relogin.is_none();
    loop {
        let (mut server_read, mut server_write) = halves::split(&mut server);
        if std::mem::take(&mut send_startup)
            && let Err(e) = server_write.write_all(&startup).await
        {
            let message = format!("lost the upstream connection: {e}");
            return Box::pin(farewell(
                &mut client_write,
                sqlstate::CONNECTION_FAILURE,
                &message,
            ))
            .await;
        }
        let mut server_side = ServerSide::new(shared, info, state.as_ref());
        // Shutdown, a window's terminate and its detach are rare: polled only when one of them
        // woke the task, not on every wake-up for the sockets.
        let rare = OnWake::new(async {
            tokio::select! {
                biased;
                _ = stop.cancelled() => Ending::Stopped,
                _ = info.terminate.cancelled() => match info.end_reason() {
                    Some(EndReason::Shutdown) => Ending::Stopped,
                    _ => Ending::Terminated,
                },
                _ = attached.detached() => Ending::Detached,
            }
        });
        let ending = tokio::select! {
            biased;
            r = up.run(&mut client_read, &mut server_write, &mut client_side) => Ending::Client(r),
            r = down.run(&mut server_read, &mut client_write, &mut server_side) => Ending::Server(r),
            ending = rare => ending,
        };
        // A write to the server fails when the server has closed the connection, and it may
        // have said why first (pg_terminate_backend's FATAL 57P01, say): those bytes still wait
        // to be read, and a direct client would read them. Forward them before deciding.
        if matches!(ending, Ending::Client(Err(PumpError::Write(_)))) && down.can_resume() {
            let rest = down.run(&mut server_read, &mut client_write, &mut server_side);
            let _ = Box::pin(tokio::time::timeout(FAREWELL_TIMEOUT, rest)).await;
        }
        // The server closing is explained already when it sent an error or the client said
        // goodbye; during login (PostgreSQL's authentication timeout, say) a direct client would
        // see only the close, so that is all it sees here too.
        let in_login = info.tracker.lock().unwrap().phase() == Phase::Startup;
        let expected_close =
            client_side.terminated || server_side.last_tag == tags::ERROR_RESPONSE || in_login;
        if let (Some(relogin), Some(state)) = (relogin, &state)
            && upstream_lost(&ending, expected_close)
            && info.tracker.lock().unwrap().at_boundary()
            && up.at_message_boundary()
            && down.at_message_boundary()
        {
            drop((server_read, server_write));
            // A copy window detaches a session while the server is still up: its settings are
            // read on its connection first (the window waits, since it is still attached).
            if matches!(ending, Ending::Detached) {
                Box::pin(readback::before_detach(shared, &mut server, state)).await;
            }
            drop(attached);
            let (plan, obstacle) = {
                let state = state.lock().unwrap();
                let obstacle = match (state.unreplayable(), state.doubt()) {
                    (Some(kind), _) => Some(Failure::unreplayable(kind)),
                    (None, Some(doubt)) => Some(Failure::settings_in_doubt(doubt)),
                    (None, None) => None,
                };
                (plan::build(state.replayable()), obstacle)
            };
            let outcome = match obstacle {
                Some(failure) => Err(failure),
                None => {
                    // Boxed, like every path taken only when the session ends or moves: an idle
                    // session's task then holds only what the relay itself needs.
                    let again = Box::pin(reattach(shared, info, relogin, &startup, &plan));
                    match wait_watching_client(&mut up, &mut client_read, again).await {
                        Some(outcome) => outcome,
                        // The client left while the session waited for the server.
                        None => return,
                    }
                }
            };
            match outcome {
                Ok((new_server, new_attached)) => {
                    down.forget_input();
                    server = new_server;
                    attached = new_attached;
                    continue;
                }
                Err(failure) => {
                    info!(
                        reason = failure.reason,
                        "session ended: {}", failure.message
                    );
                    shared.metrics.session_ended(failure.reason);
                    let detail = failure.detail.as_deref();
                    let goodbye = farewell_detailed(
                        &mut client_write,
                        failure.code,
                        &failure.message,
                        detail,
                    );
                    return Box::pin(goodbye).await;
                }
            }
        }
        // Only a session the proxy ends gets a Terminate from the proxy. A client that left
        // without one leaves the server to see the connection close, as it would directly
        // (PostgreSQL then logs an unexpected EOF, and says so when a transaction was open).
        let proxy_ends = matches!(
            ending,
            Ending::Stopped
                | Ending::Terminated
                | Ending::Detached
                | Ending::Client(Err(PumpError::Frame(_)))
        );
        if proxy_ends && up.at_message_boundary() {
            let terminate = server_write.write_all(b"X\0\0\0\x04");
            let _ = Box::pin(tokio::time::timeout(FAREWELL_TIMEOUT, terminate)).await;
        }
        drop((server_read, server_write, attached));
        let mut ending = ending;
        if matches!(ending, Ending::Detached) {
            // The client keeps its connection until the server is back, then learns why it ends,
            // unless it leaves first (a client that was closing anyway is not one the window
            // ended).
            let limit = config.backup.action_timeout;
            let wait = shared.control.wait_available(limit);
            let boundary = up.at_message_boundary();
            if Box::pin(client_leaves_while(&mut client_read, boundary, wait)).await {
                ending = Ending::Client(Ok(()));
            }
        }
        if let Some(reason) = ended_by_proxy(&ending) {
            shared.metrics.session_ended(reason);
        }
        if let Some((code, message)) = explain(ending, expected_close)
            && down.at_message_boundary()
        {
            Box::pin(farewell(&mut client_write, code, &message)).await;
        }
        return;
    }
}

/// The session's upstream connection is gone (or must go, for a copy window) without the server
/// having said why: a session idle now could go on on a new one.
fn upstream_lost(ending: &Ending, expected_close: bool) -> bool {
    match ending {
        Ending::Detached => true,
        Ending::Server(Ok(())) | Ending::Server(Err(PumpError::Read(_))) => !expected_close,
        Ending::Client(Err(PumpError::Write(_))) => !expected_close,
        _ => false,
    }
}

/// Runs `work` while reading what the client sends into its pump (kept for after, up to one
/// read buffer); `None` if the client closed meanwhile.
async fn wait_watching_client<T, R: AsyncRead + Unpin>(
    up: &mut Pump,
    client: &mut R,
    work: impl Future<Output = T>,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            read = up.fill(client), if !up.is_full() => match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
        }
    }
}

/// Runs `wait` while watching the client: true if it closed or said Terminate meanwhile (a
/// Terminate is recognised only when its stream is at a message boundary). Anything else it sends
/// is dropped: the session ends either way.
async fn client_leaves_while<R: AsyncRead + Unpin>(
    client: &mut R,
    at_boundary: bool,
    wait: impl Future<Output = bool>,
) -> bool {
    let mut wait = std::pin::pin!(wait);
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            _ = &mut wait => return false,
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) if at_boundary && buf[0] == tags::TERMINATE => return true,
                Ok(_) => {}
            },
        }
    }
}

/// The reason a session the proxy ended is counted under, if it did.
fn ended_by_proxy(ending: &Ending) -> Option<&'static str> {
    match ending {
        Ending::Stopped => Some("shutdown"),
        Ending::Terminated => Some("window_terminate"),
        Ending::Detached => Some("restart_without_replay"),
        _ => None,
    }
}

/// Logs how the relay ended and returns what to tell the client, if anything.
fn explain(ending: Ending, expected_close: bool) -> Option<(&'static str, String)> {
    match ending {
        Ending::Client(Ok(())) => None,
        Ending::Client(Err(PumpError::Read(e))) | Ending::Server(Err(PumpError::Write(e))) => {
            debug!(error = %e, "client connection lost");
            None
        }
        Ending::Client(Err(PumpError::Frame(e))) => {
            info!(error = %e, "client broke the protocol");
            Some((
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid message from client: {e}"),
            ))
        }
        Ending::Client(Err(PumpError::Write(e))) | Ending::Server(Err(PumpError::Read(e)))
            if expected_close =>
        {
            // The server said why it closed (its ErrorResponse was forwarded) and then reset
            // the connection: directly, the client would see that error and the close, nothing
            // more.
            debug!(error = %e, "upstream connection lost after the server's error");
            None
        }
        Ending::Client(Err(PumpError::Write(e))) | Ending::Server(Err(PumpError::Read(e))) => {
            warn!(error = %e, "upstream connection lost");
            Some((
                sqlstate::CONNECTION_FAILURE,
                format!("lost the upstream connection: {e}"),
            ))
        }
        Ending::Server(Ok(())) if expected_close => None,
        Ending::Server(Ok(())) => {
            warn!("upstream closed the connection");
            Some((
                sqlstate::CONNECTION_FAILURE,
                "the upstream server closed the connection unexpectedly".into(),
            ))
        }
        Ending::Server(Err(PumpError::Frame(e))) => {
            warn!(error = %e, "upstream broke the protocol");
            Some((
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid message from the upstream server: {e}"),
            ))
        }
        Ending::Terminated => {
            info!("session terminated: a backup window could not wait for its transaction");
            let message =
                "terminating connection: a backup window could not wait for this transaction";
            Some((sqlstate::ADMIN_SHUTDOWN, message.into()))
        }
        Ending::Detached => {
            info!("session ended: the server restarted for a backup copy");
            let message = "terminating connection: the server restarted for a backup (stop-and-copy); \
                           reconnect to continue";
            Some((sqlstate::ADMIN_SHUTDOWN, message.into()))
        }
        Ending::Stopped => {
            info!("session closed by proxy shutdown");
            Some((
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection: the proxy is shutting down".into(),
            ))
        }
    }
}
