//! The relay proper: two [`Pump`]s, one per direction, polled together in the session's task, so
//! a full socket on one side never stops the other. When either ends, [`conclude`] decides what
//! follows: a new upstream connection, or the end of the session.
//!
//! The task of an idle session keeps this future for as long as the session lasts, so it holds
//! only what relaying needs; the rest (the state kept for a replay, the credentials, what happens
//! once the relay stops) is boxed.

use std::sync::Mutex;
use std::task::Poll;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::control::Attached;
use crate::halves;
use crate::metrics::Direction;
use crate::protocol::notice::sqlstate;
use crate::registry::{EndReason, SessionInfo};
use crate::replay::SessionState;
use crate::shared::Shared;
use crate::tls::MaybeTls;

use super::ending::{Ending, Parts, conclude};
use super::farewell;
use super::inject::Injector;
use super::observe::{ClientSide, ServerSide};
use super::pump::Pump;
use super::reattach::{CredentialLogin, Relogin};
use crate::auth::upstream_login::Credentials;

/// How the session's login goes.
pub enum Login {
    /// `auth = "passthrough"`: the relay sends the client's StartupMessage, and the server's
    /// authentication exchange with the client passes through it.
    Relayed { startup: BytesMut },
    /// `auth = "proxy"`: the proxy has logged the session in already. `after_auth` holds what the
    /// server sent after its AuthenticationOk (through ReadyForQuery); the relay forwards it
    /// first. What the session needs to log in again stays with it for as long as it runs, and
    /// then the session survives the loss of its upstream connection (see [`super::reattach`]).
    Done {
        after_auth: BytesMut,
        replayable: Box<Replayable>,
    },
}

/// What a session that can log in again keeps: its StartupMessage and credentials, and the
/// state to replay.
pub struct Replayable {
    startup: BytesMut,
    relogin: CredentialLogin,
    state: Mutex<SessionState>,
}

impl Replayable {
    pub fn new(startup: BytesMut, credentials: Credentials) -> Box<Replayable> {
        Box::new(Replayable {
            startup,
            relogin: CredentialLogin { credentials },
            state: Mutex::new(SessionState::new()),
        })
    }
}

/// Relays between `client` and the upstream connection (`upstream`, attached) until the session
/// ends. The session's parts are borrowed, not moved in, so that the session's future holds them
/// once.
pub async fn relay<'s>(
    client: &mut MaybeTls,
    upstream: &mut Option<(MaybeTls, Attached<'s>)>,
    login: &mut Login,
    shared: &'s Shared,
    info: &SessionInfo,
) {
    let config = shared.config();
    let Some((mut server, mut attached)) = upstream.take() else {
        return;
    };
    if let Login::Relayed { startup } = login {
        if let Err(e) = server.write_all(startup).await {
            let message = format!("lost the upstream connection: {e}");
            let goodbye = farewell(client, sqlstate::CONNECTION_FAILURE, &message);
            return Box::pin(goodbye).await;
        }
        // Sent once: a session whose login passes through cannot log in again.
        *startup = BytesMut::new();
    }
    let (mut client_read, mut client_write) = halves::split(client);
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
    if let Login::Done { after_auth, .. } = login {
        down.preload(after_auth);
        *after_auth = BytesMut::new();
    }
    let replayable = match &*login {
        Login::Done { replayable, .. } => Some(&**replayable),
        Login::Relayed { .. } => None,
    };
    let state = replayable.map(|r| &r.state);
    let relayed_login = replayable.is_none();
    let mut client_side = ClientSide::new(shared, info, inject, state, relayed_login);
    loop {
        let mut server_side = ServerSide::new(shared, info, state);
        let ending = {
            let (mut server_read, mut server_write) = halves::split(&mut server);
            // Both directions and the rare events (shutdown, a window's terminate or detach)
            // from one future: each wake-up polls the pumps, which look at their sockets'
            // readiness and go on where they were, then two atomic loads for the rare events,
            // whose wakers are registered once.
            let mut watching = false;
            let ending = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) =
                    up.poll_run(cx, &mut client_read, &mut server_write, &mut client_side)
                {
                    return Poll::Ready(Ending::Client(r));
                }
                if let Poll::Ready(r) =
                    down.poll_run(cx, &mut server_read, &mut client_write, &mut server_side)
                {
                    return Poll::Ready(Ending::Server(r));
                }
                if !std::mem::replace(&mut watching, true) {
                    let _ = info.poll_ended(cx);
                    let _ = attached.poll_detached(cx);
                }
                match info.end_reason() {
                    Some(EndReason::Shutdown) => return Poll::Ready(Ending::Stopped),
                    Some(EndReason::WindowTerminate) => return Poll::Ready(Ending::Terminated),
                    None => {}
                }
                if attached.is_detached() {
                    return Poll::Ready(Ending::Detached);
                }
                Poll::Pending
            })
            .await;
            client_side.stop_waiting();
            ending
        };
        let parts = Parts {
            shared,
            info,
            config: &config,
            up: &mut up,
            down: &mut down,
            client_read: &mut client_read,
            client_write: &mut client_write,
            client_terminated: client_side.terminated,
            server_side: &mut server_side,
            relogin: replayable.map(|r| (&r.relogin as &dyn Relogin, &r.state, &r.startup[..])),
        };
        // Boxed: what follows the relay's end is state an idle session's task need not carry.
        match Box::pin(conclude(ending, server, attached, parts)).await {
            Some((next_server, next_attached)) => {
                server = next_server;
                attached = next_attached;
            }
            None => return,
        }
    }
}
