//! The sessions open right now: for `/status`, for the quiesce gate, and for routing cancel
//! requests by the keys the proxy handed out.
//!
//! A client sees its upstream's process id unchanged (so `pg_backend_pid()`, NOTIFY and
//! `pg_stat_activity` agree with what its driver reports, and `pg_terminate_backend` of that id ends
//! exactly this session), but a secret of the proxy's own: random, as long as the upstream's, and
//! unique among open sessions. The pair (process id, secret) therefore names one session even where
//! the upstream gives every connection the same key (Doltgres), and a CancelRequest carrying it can
//! be routed to that session's upstream connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::protocol::backend::TxnStatus;
use atomic_waker::AtomicWaker;
use std::task::{Context, Poll};

use crate::txn::{Phase, Tracker};

/// The contents of a BackendKeyData: a process id and a secret (4 bytes in protocol 3.0, up to 256
/// in 3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub process_id: u32,
    pub secret_key: Secret,
}

/// A BackendKeyData secret: 4 bytes in protocol 3.0, held inline (a session keeps three: its
/// upstream's, its client's and the registry's copy), longer ones (3.2) on the heap.
pub type Secret = smallvec::SmallVec<[u8; 8]>;

/// How many random secrets [`Registry::issue_key`] tries before it gives up on a unique one (only
/// conceivable with a secret of one or two bytes).
const KEY_ATTEMPTS: usize = 64;

/// Why the proxy ends a session of its own accord.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A window's `terminate` policy could not wait for its transaction.
    WindowTerminate,
    /// The proxy is shutting down and the session is at a boundary (or its time is up).
    Shutdown,
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
    /// The key the client was given: the upstream's process id with the proxy's own secret.
    pub client_key: Mutex<Option<BackendKey>>,
    /// The key the upstream gave this session's connection, used to forward cancels.
    pub upstream_key: Mutex<Option<BackendKey>>,
    /// The session's transaction state; the relay updates it, `/status` and the gate read it.
    pub tracker: Mutex<Tracker>,
    /// Why the session is to end with 57P01, once [`SessionInfo::end`] said so.
    ending: OnceLock<EndReason>,
    /// The session's task, woken by [`SessionInfo::end`].
    watcher: AtomicWaker,
    /// When its upstream connection was made (a session waiting for the server has none).
    connected_at: OnceLock<tokio::time::Instant>,
    /// While a window holds its next request: since when, in milliseconds since the Unix epoch
    /// (0: not held).
    held_since_ms: AtomicU64,
}

impl SessionInfo {
    /// A new session; its keys arrive with the upstream's BackendKeyData.
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
            client_key: Mutex::new(None),
            upstream_key: Mutex::new(None),
            tracker: Mutex::new(Tracker::new()),
            ending: OnceLock::new(),
            watcher: AtomicWaker::new(),
            connected_at: OnceLock::new(),
            held_since_ms: AtomicU64::new(0),
        }
    }

    /// Marks the session held at a closed gate from now (`true`) or no longer (`false`).
    pub fn set_held(&self, held: bool) {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis().max(1) as u64);
        self.held_since_ms
            .store(if held { now } else { 0 }, Ordering::Relaxed);
    }

    /// Since when a window holds the session's next request, if one does.
    pub fn held_since(&self) -> Option<SystemTime> {
        match self.held_since_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// Ends the session with 57P01 for `reason` (the first reason given is the one it is told).
    pub fn end(&self, reason: EndReason) {
        let _ = self.ending.set(reason);
        self.watcher.wake();
    }

    /// Ready with the reason once the session is to end; registers the task to be woken by
    /// [`SessionInfo::end`] (one task watches: the session's).
    pub fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<EndReason> {
        if let Some(reason) = self.end_reason() {
            return Poll::Ready(reason);
        }
        self.watcher.register(cx.waker());
        match self.end_reason() {
            Some(reason) => Poll::Ready(reason),
            None => Poll::Pending,
        }
    }

    /// Resolves once the session is to end, with the reason.
    pub async fn ended(&self) -> EndReason {
        std::future::poll_fn(|cx| self.poll_ended(cx)).await
    }

    /// Why the session is being ended, once [`SessionInfo::end`] was called.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.ending.get().copied()
    }

    /// Records that the upstream connection is made.
    pub fn mark_connected(&self) {
        let _ = self.connected_at.set(tokio::time::Instant::now());
    }

    /// Joining a window whose gate closed at `closed_at`: connected less than `grace` ago but
    /// before the gate closed, and no request run yet (`tracker` is this session's, locked by
    /// the caller). A session that connected after the gate closed is not joining: it is held at
    /// its first request, so a stream of new connections cannot keep a drain from ending.
    pub fn joining(
        &self,
        tracker: &Tracker,
        grace: Duration,
        closed_at: tokio::time::Instant,
    ) -> bool {
        !tracker.ran_a_request()
            && self
                .connected_at
                .get()
                .is_some_and(|at| *at <= closed_at && at.elapsed() < grace)
    }

    /// The upstream's process id for this session, once the upstream has sent its key.
    pub fn backend_pid(&self) -> Option<u32> {
        self.upstream_key
            .lock()
            .unwrap()
            .as_ref()
            .map(|k| k.process_id)
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

/// All open sessions, by session id, and the client keys they were issued.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<u64, Arc<SessionInfo>>,
    /// Client key to session id; a key is in here exactly while its session is.
    keys: HashMap<BackendKey, u64>,
}

impl Registry {
    pub fn insert(&self, info: Arc<SessionInfo>) {
        self.inner.lock().unwrap().sessions.insert(info.id, info);
    }

    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(info) = inner.sessions.remove(&id)
            && let Some(key) = info.client_key.lock().unwrap().take()
        {
            inner.keys.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions a window must still wait for: those not quiescent, and with a join grace (and
    /// the gate's closing time) those still joining.
    pub fn busy(&self, join: Option<(Duration, tokio::time::Instant)>) -> Vec<Arc<SessionInfo>> {
        let inner = self.inner.lock().unwrap();
        inner
            .sessions
            .values()
            .filter(|s| {
                let t = s.tracker.lock().unwrap();
                !t.quiescent()
                    || join.is_some_and(|(grace, closed_at)| s.joining(&t, grace, closed_at))
            })
            .cloned()
            .collect()
    }

    /// Every open session, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<SessionInfo>> {
        let mut all: Vec<_> = self
            .inner
            .lock()
            .unwrap()
            .sessions
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Records the upstream's key for a registered session and issues the key its client sees:
    /// the same process id, and a random secret of the same length that no other open session
    /// holds. Returns `None` (the client then gets the upstream's key unchanged, and cancels for it
    /// cannot be routed) only if no unique secret of that length was found.
    pub fn issue_key(&self, info: &SessionInfo, upstream: BackendKey) -> Option<BackendKey> {
        let mut inner = self.inner.lock().unwrap();
        let len = upstream.secret_key.len();
        *info.upstream_key.lock().unwrap() = Some(upstream.clone());
        let mut client_key = info.client_key.lock().unwrap();
        if let Some(old) = client_key.take() {
            inner.keys.remove(&old);
        }
        let key = (0..KEY_ATTEMPTS)
            .map(|_| BackendKey {
                process_id: upstream.process_id,
                secret_key: (0..len).map(|_| rand::random::<u8>()).collect(),
            })
            .find(|key| key.secret_key != upstream.secret_key && !inner.keys.contains_key(key))?;
        inner.keys.insert(key.clone(), info.id);
        *client_key = Some(key.clone());
        Some(key)
    }

    /// The session whose client was handed this key. The lookup hashes the key with a random
    /// per-process seed, so its timing says nothing about how close a guessed secret is.
    pub fn by_cancel_key(&self, process_id: u32, secret: &[u8]) -> Option<Arc<SessionInfo>> {
        let inner = self.inner.lock().unwrap();
        let key = BackendKey {
            process_id,
            secret_key: Secret::from_slice(secret),
        };
        let id = inner.keys.get(&key)?;
        inner.sessions.get(id).cloned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(registry: &Registry, id: u64) -> Arc<SessionInfo> {
        let peer = "127.0.0.1:1".parse().unwrap();
        let info = Arc::new(SessionInfo::new(
            id,
            peer,
            "u".into(),
            "d".into(),
            "".into(),
        ));
        registry.insert(info.clone());
        info
    }

    fn upstream(pid: u32, secret: &[u8]) -> BackendKey {
        BackendKey {
            process_id: pid,
            secret_key: Secret::from_slice(secret),
        }
    }

    #[test]
    fn issued_key_keeps_the_process_id_and_the_secret_length() {
        let registry = Registry::default();
        let a = session(&registry, 1);
        let long = [7u8; 32];
        for secret in [&[1u8, 2, 3, 4][..], &long[..]] {
            let key = registry.issue_key(&a, upstream(4242, secret)).unwrap();
            assert_eq!(key.process_id, 4242);
            assert_eq!(key.secret_key.len(), secret.len());
            assert_ne!(&key.secret_key[..], secret);
            assert_eq!(a.backend_pid(), Some(4242));
            let found = registry.by_cancel_key(4242, &key.secret_key).unwrap();
            assert_eq!(found.id, 1);
        }
    }

    #[test]
    fn sessions_sharing_an_upstream_key_get_distinct_keys() {
        // Doltgres gives every connection the server's pid and secret 0.
        let registry = Registry::default();
        let sessions: Vec<_> = (1..=200).map(|id| session(&registry, id)).collect();
        let keys: Vec<_> = sessions
            .iter()
            .map(|s| registry.issue_key(s, upstream(99, &[0; 4])).unwrap())
            .collect();
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        for (s, key) in sessions.iter().zip(&keys) {
            assert_eq!(
                registry.by_cancel_key(99, &key.secret_key).unwrap().id,
                s.id
            );
        }
    }

    #[test]
    fn unique_secrets_even_when_only_a_few_exist() {
        // A one-byte secret has 256 values: the registry must never hand one out twice.
        let registry = Registry::default();
        let mut issued = std::collections::HashSet::new();
        for id in 1..=100 {
            let s = session(&registry, id);
            if let Some(key) = registry.issue_key(&s, upstream(5, &[0])) {
                assert!(issued.insert(key.secret_key), "secret issued twice");
            }
        }
        assert!(issued.len() > 50, "gave up too early: {}", issued.len());
    }

    #[test]
    fn wrong_secret_or_pid_and_removed_sessions_find_nothing() {
        let registry = Registry::default();
        let a = session(&registry, 1);
        let key = registry.issue_key(&a, upstream(10, &[1, 2, 3, 4])).unwrap();
        let mut wrong = key.secret_key.clone();
        wrong[0] ^= 1;
        assert!(registry.by_cancel_key(10, &wrong).is_none());
        assert!(registry.by_cancel_key(11, &key.secret_key).is_none());
        assert!(registry.by_cancel_key(10, &key.secret_key[..3]).is_none());
        registry.remove(1);
        assert!(registry.by_cancel_key(10, &key.secret_key).is_none());
        assert!(registry.inner.lock().unwrap().keys.is_empty());
    }
}
