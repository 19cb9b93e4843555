//! Limits on client connections: [`Limiter`] counts sessions (connections that sent their
//! StartupMessage) against `max_client_connections`; [`Startups`] bounds the connections that
//! have not yet sent it (TLS handshake included) at `max_startup_connections`, and when a new one
//! arrives at a full pool the one that has waited longest is closed: sockets that never speak
//! cannot keep clients that do from logging in, however many there are.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The client connection limit: a count of open connections against a maximum a reload may
/// change. Lowering it closes nothing; new connections are refused until the count is below.
#[derive(Debug)]
pub struct Limiter {
    active: AtomicUsize,
    max: AtomicUsize,
}

/// One client connection's place under the limit, given back when dropped.
#[derive(Debug)]
pub struct Permit(Arc<Limiter>);

impl Limiter {
    pub fn new(max: usize) -> Limiter {
        Limiter {
            active: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
        }
    }

    /// A permit, unless `max` connections hold one already.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max.load(Ordering::Relaxed);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(self.clone()))
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Connections holding a permit now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connections still in their startup phase, oldest first, each with the token that closes it.
#[derive(Debug)]
pub struct Startups {
    waiting: Mutex<VecDeque<(u64, CancellationToken)>>,
    max: AtomicUsize,
    next: AtomicU64,
}

/// One connection's place among the startups, left when dropped; `evicted` fires when a newer
/// connection needed the place.
#[derive(Debug)]
pub struct StartupSlot {
    startups: Arc<Startups>,
    id: u64,
    pub evicted: CancellationToken,
}

impl Startups {
    pub fn new(max: usize) -> Startups {
        Startups {
            waiting: Mutex::default(),
            max: AtomicUsize::new(max),
            next: AtomicU64::new(0),
        }
    }

    /// A place for a new connection, closing the oldest waiting ones while the pool is full.
    pub fn enter(self: &Arc<Self>) -> StartupSlot {
        let evicted = CancellationToken::new();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let max = self.max.load(Ordering::Relaxed).max(1);
        let mut waiting = self.waiting.lock().unwrap();
        while waiting.len() >= max {
            if let Some((_, oldest)) = waiting.pop_front() {
                oldest.cancel();
            }
        }
        waiting.push_back((id, evicted.clone()));
        StartupSlot {
            startups: self.clone(),
            id,
            evicted,
        }
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Connections in their startup phase now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap().len()
    }
}

impl Drop for StartupSlot {
    fn drop(&mut self) {
        let mut waiting = self.startups.waiting.lock().unwrap();
        if let Some(at) = waiting.iter().position(|(id, _)| *id == self.id) {
            waiting.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_can_be_lowered_and_raised() {
        let limiter = Arc::new(Limiter::new(2));
        let a = limiter.try_acquire().unwrap();
        let b = limiter.try_acquire().unwrap();
        assert!(limiter.try_acquire().is_none());
        limiter.set_max(1);
        drop(a);
        assert!(limiter.try_acquire().is_none(), "still one open, max 1");
        drop(b);
        let c = limiter.try_acquire().unwrap();
        limiter.set_max(3);
        let _d = limiter.try_acquire().unwrap();
        let _e = limiter.try_acquire().unwrap();
        assert!(limiter.try_acquire().is_none());
        assert_eq!(limiter.active(), 3);
        drop(c);
        assert_eq!(limiter.active(), 2);
    }

    #[test]
    fn a_full_startup_pool_closes_its_oldest_connection() {
        let startups = Arc::new(Startups::new(2));
        let a = startups.enter();
        let b = startups.enter();
        assert_eq!(startups.waiting(), 2);
        let c = startups.enter();
        assert!(a.evicted.is_cancelled(), "the oldest made room");
        assert!(!b.evicted.is_cancelled() && !c.evicted.is_cancelled());
        drop(b);
        assert_eq!(startups.waiting(), 1);
        let d = startups.enter();
        assert!(!c.evicted.is_cancelled(), "there was room");
        drop((a, c, d));
        assert_eq!(startups.waiting(), 0);
    }
}
