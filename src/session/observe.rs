//! What each direction of a session watches for: the messages that drive the transaction tracker,
//! Terminate from the client, and the server's BackendKeyData, which the proxy replaces with the
//! session's own key (so cancel requests come to the proxy and can be routed).

use crate::metrics::Metrics;
use crate::protocol::backend;
use crate::protocol::frame::{HEADER_LEN, Seen};
use crate::protocol::tags;
use crate::registry::{SessionInfo, UpstreamKey};
use crate::txn::{Phase, Tally, Tracker};

use super::pump::Observer;

/// Watches client-to-server traffic.
pub struct ClientSide<'a> {
    pub info: &'a SessionInfo,
    /// The client said goodbye (Terminate), so the server closing is expected.
    pub terminated: bool,
}

impl Observer for ClientSide<'_> {
    fn seen(&mut self, seen: Seen<'_>) {
        let Seen::Whole(m) = seen else { return };
        if Tracker::wants_client(m.tag) {
            self.info
                .tracker
                .lock()
                .unwrap()
                .client_message(m.tag, m.body);
        } else if m.tag == tags::TERMINATE {
            self.terminated = true;
        }
    }
}

/// Watches server-to-client traffic.
pub struct ServerSide<'a> {
    pub info: &'a SessionInfo,
    pub metrics: &'a Metrics,
    /// Tag of the last message from the server: an ErrorResponse before a close explains it.
    pub last_tag: u8,
    /// Where in the current batch a BackendKeyData waits to be rewritten.
    key_at: Option<usize>,
}

impl<'a> ServerSide<'a> {
    pub fn new(info: &'a SessionInfo, metrics: &'a Metrics) -> ServerSide<'a> {
        ServerSide {
            info,
            metrics,
            last_tag: 0,
            key_at: None,
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
                self.metrics.add(tally);
            }
        }
    }

    fn patch(&mut self, ready: &mut [u8]) {
        let Some(offset) = self.key_at.take() else {
            return;
        };
        let (pid, secret) = self.info.proxy_key;
        let body = &mut ready[offset + HEADER_LEN..offset + HEADER_LEN + 8];
        body[..4].copy_from_slice(&pid.to_be_bytes());
        body[4..].copy_from_slice(&secret.to_be_bytes());
    }
}

impl ServerSide<'_> {
    fn backend_key(&mut self, body: &[u8], offset: usize) {
        let startup = self.info.tracker.lock().unwrap().phase() == Phase::Startup;
        let Some((process_id, secret)) = backend::backend_key(body) else {
            return;
        };
        if !startup {
            return;
        }
        *self.info.upstream_key.lock().unwrap() = Some(UpstreamKey {
            process_id,
            secret_key: secret.to_vec(),
        });
        // Protocol 3.0 keys are 4 bytes; longer (3.2) keys pass through unchanged.
        if secret.len() == 4 {
            self.key_at = Some(offset);
        }
    }
}
