//! A future polled only when it has been woken: for the rare events a session's relay also waits
//! on (shutdown, a window ending the session or detaching its server). The relay's task wakes for
//! socket readiness many times per transaction; each wake-up would otherwise poll these too, and
//! polling a cancellation future takes locks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// Wraps a future so that it is polled only after its own waker fired (and once at first).
pub struct OnWake<'a, T> {
    inner: Pin<Box<dyn Future<Output = T> + Send + 'a>>,
    flag: Arc<Flag>,
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    outer: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.outer.wake();
    }
}

impl<'a, T> OnWake<'a, T> {
    pub fn new(inner: impl Future<Output = T> + Send + 'a) -> OnWake<'a, T> {
        let flag = Arc::new(Flag {
            // Polled once at first, so that the inner future can register its waker.
            woken: AtomicBool::new(true),
            outer: AtomicWaker::new(),
        });
        OnWake {
            inner: Box::pin(inner),
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl<T> Future for OnWake<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // Registered before the inner future is looked at: a wake-up from now on reaches the
        // task that polls this now.
        self.flag.outer.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `open` is set, waking whoever polled it then.
    struct Probe {
        polls: Arc<AtomicUsize>,
        open: Arc<std::sync::Mutex<(bool, Option<Waker>)>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock().unwrap();
            if open.0 {
                return Poll::Ready(());
            }
            open.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_inner_future_is_polled_only_when_it_was_woken() {
        let polls = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(std::sync::Mutex::new((false, None::<Waker>)));
        let probe = Probe {
            polls: polls.clone(),
            open: open.clone(),
        };
        let mut gated = std::pin::pin!(OnWake::new(probe));
        let outer = Arc::new(Count(AtomicUsize::new(0)));
        let outer_waker = Waker::from(outer.clone());
        let mut cx = Context::from_waker(&outer_waker);
        for _ in 0..10 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once, at first");
        // The event: the inner future's waker fires, which wakes the outer task.
        let inner_waker = {
            let mut open = open.lock().unwrap();
            open.0 = true;
            open.1.take().unwrap()
        };
        inner_waker.wake();
        assert_eq!(
            outer.0.load(Ordering::SeqCst),
            1,
            "the outer task was woken"
        );
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
