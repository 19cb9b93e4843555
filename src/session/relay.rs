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
use tokio_util::sync::CancellationToken;

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
use super::on_wake::OnWake;
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
    /// first. The StartupMessage and credentials stay with the session for as long as it runs,
    /// so that it can log in again, and then the session survives the loss of its upstream
    /// connection (see [`super::reattach`]).
    Done {
        startup: BytesMut,
        credentials: Box<Credentials>,
        after_auth: BytesMut,
    },
}

/// What a session that can log in again keeps: its credentials and the state to replay.
struct Replayable {
    relogin: CredentialLogin,
    state: Mutex<SessionState>,
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
    let config = shared.config();
    let mut client = client;
    let (mut client_read, mut client_write) = halves::split(&mut client);
    let (mut startup, replayable, after_auth) = match login {
        Login::Relayed { startup } => (startup, None, None),
        Login::Done {
            startup,
            credentials,
            after_auth,
        } => {
            let replayable = Box::new(Replayable {
                relogin: CredentialLogin {
                    credentials: *credentials,
                },
                state: Mutex::new(SessionState::new()),
            });
            (startup, Some(replayable), Some(after_auth))
        }
    };
    let state = replayable.as_deref().map(|r| &r.state);
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
    if let Some(after_auth) = after_auth {
        down.preload(&after_auth);
    }
    let relayed_login = replayable.is_none();
    let mut client_side = ClientSide::new(shared, info, inject, state, relayed_login);
    let (mut server, mut attached) = (server, attached);
    loop {
        let mut server_side = ServerSide::new(shared, info, state);
        let ending = {
            let (mut server_read, mut server_write) = halves::split(&mut server);
            if relayed_login && !startup.is_empty() {
                if let Err(e) = server_write.write_all(&startup).await {
                    let message = format!("lost the upstream connection: {e}");
                    let goodbye =
                        farewell(&mut client_write, sqlstate::CONNECTION_FAILURE, &message);
                    return Box::pin(goodbye).await;
                }
                // Sent once: a session whose login passes through cannot log in again.
                startup = BytesMut::new();
            }
            // Shutdown, a window's terminate and its detach are rare: polled only when one of
            // them woke the task, not on every wake-up for the sockets.
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
            let mut rare = std::pin::pin!(rare);
            // Both directions and the rare events from one future: each wake-up polls the
            // pumps, which look at their sockets' readiness and go on where they were.
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
                rare.as_mut().poll(cx)
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
            relogin: replayable
                .as_deref()
                .map(|r| (&r.relogin as &dyn Relogin, &r.state)),
            startup: &startup,
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
