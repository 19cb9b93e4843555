//! [`Work`]: the tasks an operator's requests started, which a stop waits for; held in
//! `Shared`. What starts them is the `ops` module.

use tokio::task::JoinError;
use tokio_util::task::TaskTracker;

/// Work an operator's request started that runs to its end in its own task, whether or not the
/// connection that asked stays (a window, a hold); a stop waits for it.
#[derive(Clone, Default)]
pub struct Work(TaskTracker);

impl Work {
    /// Runs `work` in its own task and waits for its answer; the error is the task's panic.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, JoinError> {
        self.0.spawn(work).await
    }

    /// Stops taking work, and waits up to `within` for the work started; false if some still
    /// runs then.
    pub async fn finish(&self, within: std::time::Duration) -> bool {
        self.0.close();
        tokio::time::timeout(within, self.0.wait()).await.is_ok()
    }

    /// Whether no work is under way.
    pub fn is_idle(&self) -> bool {
        self.0.is_empty()
    }
}
