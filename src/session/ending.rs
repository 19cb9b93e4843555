//! What happens when a session's relay stops: the server's last words forwarded, a lost upstream
//! connection replaced (a session that can be replayed goes on), the server told Terminate when the
//! proxy ends the session, and the client told why, when a direct client would have been.
//!
//! Run as a future of its own, boxed by the relay: a session pays for this state only when its
//! relay stops, not for as long as it is idle.

use std::sync::Mutex;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::control::Attached;
use crate::halves::{self, Reader, Writer};
use crate::protocol::notice::sqlstate;
use crate::protocol::tags;
use crate::registry::SessionInfo;
use crate::replay::{SessionState, plan};
use crate::shared::Shared;
use crate::tls::MaybeTls;
use crate::txn::Phase;

use super::observe::ServerSide;
use super::pump::{Pump, PumpError};
use super::readback;
use super::reattach::{Failure, Relogin, reattach};
use super::{FAREWELL_TIMEOUT, farewell, farewell_detailed};

/// How the relay ended.
pub enum Ending {
    Client(Result<(), PumpError>),
    Server(Result<(), PumpError>),
    /// The proxy is shutting down: at the session's boundary, or at `shutdown_timeout`.
    Stopped,
    /// A window's `terminate` policy ended the session.
    Terminated,
    /// A copy window stops the server: the upstream connection closes, the client waits.
    Detached,
}

/// What [`conclude`] works with: the session's parts that outlive one upstream connection.
pub struct Parts<'p, 's, 'c, 'o> {
    pub shared: &'s Shared,
    pub info: &'p SessionInfo,
    pub config: &'p Config,
    pub up: &'p mut Pump,
    pub down: &'p mut Pump,
    pub client_read: &'p mut Reader<'c>,
    pub client_write: &'p mut Writer<'c>,
    /// The client said goodbye (Terminate).
    pub client_terminated: bool,
    pub server_side: &'p mut ServerSide<'o>,
    /// Set when the session can log in again (`auth = "proxy"`), with the state to replay and
    /// the StartupMessage.
    pub relogin: Option<(&'p dyn Relogin, &'p Mutex<SessionState>, &'p [u8])>,
}

/// Ends the relay's round on `server`: a new upstream connection (attached) to go on with, or
/// `None` when the session is over.
pub async fn conclude<'s>(
    ending: Ending,
    mut server: MaybeTls,
    attached: Attached<'s>,
    parts: Parts<'_, 's, '_, '_>,
) -> Option<(MaybeTls, Attached<'s>)> {
    let Parts {
        shared,
        info,
        config,
        up,
        down,
        client_read,
        client_write,
        client_terminated,
        server_side,
        relogin,
    } = parts;
    // A write to the server fails when the server has closed the connection, and it may have
    // said why first (pg_terminate_backend's FATAL 57P01, say): those bytes still wait to be
    // read, and a direct client would read them. Forward them before deciding.
    if matches!(ending, Ending::Client(Err(PumpError::Write(_)))) {
        let (mut server_read, _) = halves::split(&mut server);
        let rest = down.run(&mut server_read, client_write, server_side);
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, rest).await;
    }
    // The server closing is explained already when it sent an error or the client said goodbye;
    // during login (PostgreSQL's authentication timeout, say) a direct client would see only the
    // close, so that is all it sees here too.
    let in_login = info.tracker.lock().unwrap().phase() == Phase::Startup;
    let expected_close =
        client_terminated || server_side.last_tag == tags::ERROR_RESPONSE || in_login;
    if let Some((relogin, state, startup)) = relogin
        && upstream_lost(&ending, expected_close)
        && info.tracker.lock().unwrap().at_boundary()
        && up.at_message_boundary()
        && down.at_message_boundary()
    {
        // A copy window detaches a session while the server is still up: its settings are read
        // on its connection first (the window waits, since it is still attached).
        if matches!(ending, Ending::Detached) {
            readback::before_detach(shared, &mut server, state).await;
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
                let again = reattach(shared, info, relogin, startup, &plan);
                // `None`: the client left while the session waited for the server.
                wait_watching_client(up, client_read, again).await?
            }
        };
        return match outcome {
            Ok(next) => {
                down.forget_input();
                Some(next)
            }
            Err(failure) => {
                info!(
                    reason = failure.reason,
                    "session ended: {}", failure.message
                );
                shared.metrics.session_ended(failure.reason);
                let detail = failure.detail.as_deref();
                farewell_detailed(client_write, failure.code, &failure.message, detail).await;
                None
            }
        };
    }
    // Only a session the proxy ends gets a Terminate from the proxy. A client that left without
    // one leaves the server to see the connection close, as it would directly (PostgreSQL then
    // logs an unexpected EOF, and says so when a transaction was open).
    let proxy_ends = matches!(
        ending,
        Ending::Stopped
            | Ending::Terminated
            | Ending::Detached
            | Ending::Client(Err(PumpError::Frame(_)))
    );
    if proxy_ends && up.at_message_boundary() {
        let (_, mut server_write) = halves::split(&mut server);
        let terminate = server_write.write_all(b"X\0\0\0\x04");
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, terminate).await;
    }
    drop(attached);
    let mut ending = ending;
    if matches!(ending, Ending::Detached) {
        // The client keeps its connection until the server is back, then learns why it ends,
        // unless it leaves first (a client that was closing anyway is not one the window ended).
        let limit = config.backup.action_timeout;
        let wait = shared.control.wait_available(limit);
        let boundary = up.at_message_boundary();
        if client_leaves_while(client_read, boundary, wait).await {
            ending = Ending::Client(Ok(()));
        }
    }
    if let Some(reason) = ended_by_proxy(&ending) {
        shared.metrics.session_ended(reason);
    }
    if let Some((code, message)) = explain(ending, expected_close)
        && down.at_message_boundary()
    {
        farewell(client_write, code, &message).await;
    }
    None
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
