//! Messages the proxy itself sends to a client (notices, answers to held requests), queued by
//! the client side of a session and written by the server-to-client pump between messages.
//!
//! A queue of its own rather than a channel: an idle session's queue is empty and allocates
//! nothing, where a channel allocates a block of slots when it is made.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::Bytes;

/// The queue of one session's own messages to its client.
#[derive(Debug, Default)]
pub struct Injector {
    queue: Mutex<VecDeque<Bytes>>,
    /// Messages queued: waiting on an empty queue, polled on every wake-up of the session, reads
    /// this instead of taking the lock.
    queued: AtomicUsize,
    waiter: AtomicWaker,
}

impl Injector {
    /// Queues a message; it is written at the next message boundary of the client's stream.
    pub fn send(&self, message: Bytes) {
        self.queue.lock().unwrap().push_back(message);
        self.queued.fetch_add(1, Ordering::Release);
        self.waiter.wake();
    }

    /// The next queued message, waiting for one. Cancel-safe: a message is taken only when it is
    /// returned.
    pub async fn recv(&self) -> Bytes {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next queued message, or `Pending` with the task registered to be woken by the next
    /// [`Injector::send`].
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Bytes> {
        if let Some(message) = self.try_recv() {
            return Poll::Ready(message);
        }
        self.waiter.register(cx.waker());
        // A message queued between the first look and the registration.
        match self.try_recv() {
            Some(message) => Poll::Ready(message),
            None => Poll::Pending,
        }
    }

    /// The next queued message, if there is one.
    pub fn try_recv(&self) -> Option<Bytes> {
        if self.queued.load(Ordering::Acquire) == 0 {
            return None;
        }
        let message = self.queue.lock().unwrap().pop_front()?;
        self.queued.fetch_sub(1, Ordering::Release);
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn messages_come_out_in_order_and_a_waiting_receiver_is_woken() {
        let injector = Arc::new(Injector::default());
        injector.send(Bytes::from_static(b"a"));
        injector.send(Bytes::from_static(b"b"));
        assert_eq!(injector.recv().await, "a");
        assert_eq!(injector.recv().await, "b");
        let waiting = tokio::spawn({
            let injector = injector.clone();
            async move { injector.recv().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing queued yet");
        injector.send(Bytes::from_static(b"c"));
        assert_eq!(waiting.await.unwrap(), "c");
        assert_eq!(injector.try_recv(), None);
    }

    #[tokio::test]
    async fn a_message_sent_between_the_check_and_the_wait_is_not_missed() {
        let injector = Injector::default();
        injector.send(Bytes::from_static(b"x"));
        assert_eq!(injector.try_recv().as_deref(), Some(&b"x"[..]));
        injector.send(Bytes::from_static(b"y"));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), injector.recv())
            .await
            .expect("the queued message is returned");
        assert_eq!(got, "y");
    }
}
