//! The sessions open right now: for `/status`, for routing cancel requests by the keys the proxy
//! handed out, and (later) for the quiesce gate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::protocol::backend::TxnStatus;
use tokio_util::sync::CancellationToken;

use crate::txn::{Phase, Tracker};

/// The BackendKeyData the upstream gave a session, used to forward cancels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamKey {
    pub process_id: u32,
    pub secret_key: Vec<u8>,
}

/// What the registry knows of one session.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: u64,
    pub peer: SocketAddr,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub started: SystemTime,
    pub started_at: Instant,
    /// The key the proxy gave the client in its own BackendKeyData.
    pub proxy_key: (u32, u32),
    pub upstream_key: Mutex<Option<UpstreamKey>>,
    /// The session's transaction state; the relay updates it, `/status` and the gate read it.
    pub tracker: Mutex<Tracker>,
    /// Cancelled to end the session with 57P01 (window policy `terminate`).
    pub terminate: CancellationToken,
}

impl SessionInfo {
    /// A new session with a fresh random cancel key.
    pub fn new(
        id: u64,
        peer: SocketAddr,
        user: String,
        database: String,
        application_name: String,
    ) -> SessionInfo {
        SessionInfo {
            id,
            peer,
            user,
            database,
            application_name,
            started: SystemTime::now(),
            started_at: Instant::now(),
            // The process id is the session id's low bits, unique among open sessions in
            // practice; the random secret makes a guessed id useless.
            proxy_key: (id as u32 & 0x7fff_ffff, rand::random()),
            upstream_key: Mutex::new(None),
            tracker: Mutex::new(Tracker::new()),
            terminate: CancellationToken::new(),
        }
    }

    /// A short word for the session's state, as `/status` shows it.
    pub fn state(&self) -> &'static str {
        let t = self.tracker.lock().unwrap();
        match (t.phase(), t.pending(), t.status()) {
            (Phase::Startup, _, _) => "startup",
            (_, _, TxnStatus::Failed) => "failed_transaction",
            (_, 0, TxnStatus::Idle) => "idle",
            (_, _, TxnStatus::Idle) => "active",
            (_, _, TxnStatus::InTransaction) => "in_transaction",
        }
    }
}

/// All open sessions, by session id.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<u64, Arc<SessionInfo>>>,
}

impl Registry {
    pub fn insert(&self, info: Arc<SessionInfo>) {
        self.sessions.lock().unwrap().insert(info.id, info);
    }

    pub fn remove(&self, id: u64) {
        self.sessions.lock().unwrap().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions a window must still wait for.
    pub fn busy(&self) -> Vec<Arc<SessionInfo>> {
        let sessions = self.sessions.lock().unwrap();
        sessions
            .values()
            .filter(|s| !s.tracker.lock().unwrap().quiescent())
            .cloned()
            .collect()
    }

    /// Every open session, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<SessionInfo>> {
        let mut all: Vec<_> = self.sessions.lock().unwrap().values().cloned().collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// The session that was handed this cancel key, compared in constant time.
    pub fn by_cancel_key(&self, process_id: u32, secret: &[u8]) -> Option<Arc<SessionInfo>> {
        let sessions = self.sessions.lock().unwrap();
        let found = sessions.values().find(|s| s.proxy_key.0 == process_id)?;
        let expected = found.proxy_key.1.to_be_bytes();
        let same = secret.len() == expected.len()
            && secret
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then(|| found.clone())
    }
}

/// Removes a session from the registry when its task ends, however it ends.
pub struct Registered<'a> {
    registry: &'a Registry,
    pub info: Arc<SessionInfo>,
}

impl<'a> Registered<'a> {
    pub fn new(registry: &'a Registry, info: Arc<SessionInfo>) -> Registered<'a> {
        registry.insert(info.clone());
        Registered { registry, info }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.remove(self.info.id);
    }
}
