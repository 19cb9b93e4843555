//! [`Handover`]: one proxy's side of a hand-over to a successor, held in `Shared`. What runs
//! the hand-over is the `handover` module.

use std::sync::Mutex;

use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::windows::Pause;

/// One proxy's side of a hand-over to a successor (in `Shared`).
#[derive(Debug, Default)]
pub struct Handover {
    /// Cancelled once a successor accepts on this process's listeners.
    handed_over: CancellationToken,
    /// The successor's connection and pid, for the final counters.
    successor: Mutex<Option<(UnixStream, u32)>>,
    /// Windows held off until this process exits: the successor runs them.
    pause: Mutex<Option<Pause>>,
}

impl Handover {
    /// Whether a successor took over the listeners.
    pub fn is_handed_over(&self) -> bool {
        self.handed_over.is_cancelled()
    }

    /// Resolves once a successor took over the listeners.
    pub async fn handed_over(&self) {
        self.handed_over.cancelled().await
    }

    /// A successor took over the listeners: windows stay held off by `pause` until this
    /// process exits.
    pub fn complete(&self, stream: UnixStream, pid: u32, pause: Pause) {
        *self.pause.lock().unwrap() = Some(pause);
        *self.successor.lock().unwrap() = Some((stream, pid));
        self.handed_over.cancel();
    }

    /// The successor's connection and pid, once: for the final counters.
    pub fn take_successor(&self) -> Option<(UnixStream, u32)> {
        self.successor.lock().unwrap().take()
    }
}
