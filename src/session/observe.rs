//! What each direction of a session watches for: the messages that drive the transaction tracker,
//! the quiesce gate on the client side, Terminate from the client, and the server's
//! BackendKeyData, whose secret the proxy replaces with one of its own (so cancel requests come to
//! the proxy and can be routed; the process id stays the upstream's).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::auth::exchange::MAX_AUTH_MESSAGE;
use crate::gate::{finish_batch, try_admit};
use crate::protocol::backend;
use crate::protocol::frame::{HEADER_LEN, Seen};
use crate::protocol::tags;
use crate::registry::{BackendKey, SessionInfo};
use crate::replay::SessionState;
use crate::shared::Shared;
use crate::txn::{Phase, Tally, Tracker};
use std::sync::Mutex;

use super::hold::{self, Hold, Rejecter};
use super::inject::Injector;
use super::pump::{Admit, Observer};

/// Watches client-to-server traffic, and holds it at the quiesce gate.
pub struct ClientSide<'a> {
    shared: &'a Shared,
    info: &'a SessionInfo,
    /// Messages to the client that the proxy originates (notices, answers to held requests).
    inject: Arc<Injector>,
    /// The client said goodbye (Terminate), so the server closing is expected.
    pub terminated: bool,
    /// The current batch was admitted by the gate and is marked in flight.
    admitted: bool,
    rejecter: Rejecter,
    /// The wait at the closed gate under way, if one is.
    holding: Option<Pin<Box<dyn Future<Output = Hold> + Send + 'a>>>,
    /// The session state to keep for a replay, when the session can survive a server restart.
    state: Option<&'a Mutex<SessionState>>,
    /// The login passes through the relay (`auth = "passthrough"`) and is not over: the
    /// client's messages are authentication messages, capped as PostgreSQL caps them, so that
    /// an unauthenticated client cannot make the proxy buffer `max_message_len` bytes.
    in_login: bool,
}

impl<'a> ClientSide<'a> {
    pub fn new(
        shared: &'a Shared,
        info: &'a SessionInfo,
        inject: Arc<Injector>,
        state: Option<&'a Mutex<SessionState>>,
        relayed_login: bool,
    ) -> ClientSide<'a> {
        ClientSide {
            shared,
            info,
            inject,
            terminated: false,
            admitted: false,
            rejecter: Rejecter::default(),
            holding: None,
            state,
            in_login: relayed_login,
        }
    }
}

impl ClientSide<'_> {
    /// Drops a wait at the gate under way: the relay stopped, and the next one asks again.
    pub fn stop_waiting(&mut self) {
        self.holding = None;
    }
}

impl Observer for ClientSide<'_> {
    fn poll_admit(&mut self, cx: &mut Context<'_>) -> Poll<Admit> {
        if self.holding.is_none() {
            if self.rejecter.active {
                return Poll::Ready(Admit::Discard);
            }
            // The gate is almost always open: admitted at once, without the waiting machinery,
            // which is boxed so that its state does not live in every session.
            if try_admit(&self.shared.gate, self.info) {
                self.admitted = true;
                return Poll::Ready(Admit::Forward);
            }
            let (shared, info, inject) = (self.shared, self.info, self.inject.clone());
            self.holding = Some(Box::pin(
                async move { hold::wait(shared, info, &inject).await },
            ));
        }
        let hold = ready!(self.holding.as_mut().expect("set above").as_mut().poll(cx));
        self.holding = None;
        Poll::Ready(match hold {
            Hold::Admitted => {
                self.admitted = true;
                Admit::Forward
            }
            Hold::TimedOut => {
                self.rejecter.start();
                Admit::Discard
            }
        })
    }

    fn max_len(&mut self) -> Option<u32> {
        if !self.in_login {
            return None;
        }
        if self.info.tracker.lock().unwrap().phase() == Phase::Startup {
            return Some(MAX_AUTH_MESSAGE);
        }
        self.in_login = false;
        Some(self.shared.config().max_message_len)
    }

    fn seen(&mut self, seen: Seen<'_>) {
        let Seen::Whole(m) = seen else { return };
        self.terminated |= m.tag == tags::TERMINATE;
        if self.rejecter.active {
            self.rejecter.message(m.tag, &self.inject);
            return;
        }
        if Tracker::wants_client(m.tag) {
            self.info
                .tracker
                .lock()
                .unwrap()
                .client_message(m.tag, m.body);
        }
        if let Some(state) = self.state {
            state.lock().unwrap().client_message(m.tag, m.body);
        }
    }

    fn finished(&mut self) {
        if self.rejecter.active {
            self.rejecter.batch_done();
        }
        if std::mem::take(&mut self.admitted) {
            finish_batch(&self.shared.gate, &self.info.tracker);
        }
    }
}

/// Watches server-to-client traffic.
pub struct ServerSide<'a> {
    shared: &'a Shared,
    info: &'a SessionInfo,
    /// Tag of the last message from the server: an ErrorResponse before a close explains it.
    pub last_tag: u8,
    /// A BackendKeyData in the current batch whose secret is to be replaced: its offset in the
    /// batch and the secret the client gets.
    key_patch: Option<(usize, crate::registry::Secret)>,
    /// The session state kept for a replay, if any (see [`ClientSide`]).
    state: Option<&'a Mutex<SessionState>>,
}

impl<'a> ServerSide<'a> {
    pub fn new(
        shared: &'a Shared,
        info: &'a SessionInfo,
        state: Option<&'a Mutex<SessionState>>,
    ) -> ServerSide<'a> {
        ServerSide {
            shared,
            info,
            last_tag: 0,
            key_patch: None,
            state,
        }
    }

    fn backend_key(&mut self, body: &[u8], offset: usize) {
        let startup = self.info.tracker.lock().unwrap().phase() == Phase::Startup;
        let Some((process_id, secret)) = backend::backend_key(body) else {
            return;
        };
        if !startup {
            return;
        }
        let upstream = BackendKey {
            process_id,
            secret_key: crate::registry::Secret::from_slice(secret),
        };
        if let Some(key) = self.shared.registry.issue_key(self.info, upstream) {
            self.key_patch = Some((offset, key.secret_key));
        }
    }
}

impl Observer for ServerSide<'_> {
    fn seen(&mut self, seen: Seen<'_>) {
        let m = match seen {
            Seen::Whole(m) => m,
            Seen::StreamStart { tag, .. } => {
                self.last_tag = tag;
                return;
            }
        };
        self.last_tag = m.tag;
        if let Some(state) = self.state {
            state.lock().unwrap().server_message(m.tag, m.body);
        }
        if m.tag == tags::BACKEND_KEY_DATA {
            self.backend_key(m.body, m.offset);
        } else if Tracker::wants_server(m.tag) {
            let mut tally = Tally::default();
            self.info
                .tracker
                .lock()
                .unwrap()
                .server_message(m.tag, m.body, &mut tally);
            if tally != Tally::default() {
                self.shared.metrics.add(tally);
            }
            if m.tag == tags::READY_FOR_QUERY {
                self.shared.gate.progress();
            }
        }
    }

    fn patch(&mut self, ready: &mut [u8]) {
        let Some((offset, secret)) = self.key_patch.take() else {
            return;
        };
        // The secret follows the 4-byte process id; the issued one has the same length.
        let start = offset + HEADER_LEN + 4;
        ready[start..start + secret.len()].copy_from_slice(&secret);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::session::pump::Pump;
    use prometheus_client::metrics::counter::Counter;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Relays `input` from the server side through a pump and returns what the client gets.
    async fn relay_from_server(shared: &Shared, info: &SessionInfo, input: &[u8]) -> Vec<u8> {
        let (mut server_w, mut server_r) = tokio::io::duplex(1 << 16);
        let (mut client_w, mut client_r) = tokio::io::duplex(1 << 16);
        server_w.write_all(input).await.unwrap();
        drop(server_w);
        let mut side = ServerSide::new(shared, info, None);
        let mut pump = Pump::new(4096, 1 << 20, Counter::default());
        pump.run(&mut server_r, &mut client_w, &mut side)
            .await
            .unwrap();
        drop(client_w);
        let mut out = Vec::new();
        client_r.read_to_end(&mut out).await.unwrap();
        out
    }

    fn key_data(pid: u32, secret: &[u8]) -> Vec<u8> {
        let mut m = vec![b'K'];
        m.extend_from_slice(&(8 + secret.len() as u32).to_be_bytes());
        m.extend_from_slice(&pid.to_be_bytes());
        m.extend_from_slice(secret);
        m
    }

    #[tokio::test]
    async fn long_protocol_3_2_secret_is_replaced_by_one_as_long() {
        let shared = crate::shared::Shared::new(Config::default()).unwrap();
        let info = Arc::new(SessionInfo::new(
            1,
            "127.0.0.1:1".parse().unwrap(),
            "u".into(),
            "d".into(),
            String::new(),
        ));
        shared.registry.insert(info.clone());
        let secret = [0xabu8; 32];
        let input = [key_data(777, &secret), b"Z\0\0\0\x05I".to_vec()].concat();
        let out = relay_from_server(&shared, &info, &input).await;
        assert_eq!(out.len(), input.len());
        assert_eq!(
            &out[..9],
            &input[..9],
            "tag, length and process id unchanged"
        );
        assert_eq!(&out[41..], &input[41..], "the rest unchanged");
        let issued = &out[9..41];
        assert_ne!(issued, secret);
        let found = shared.registry.by_cancel_key(777, issued).unwrap();
        assert_eq!(found.id, 1);
        let upstream = info.upstream_key.lock().unwrap().clone().unwrap();
        assert_eq!(&upstream.secret_key[..], &secret[..]);
    }
}
