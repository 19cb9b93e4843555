//! [`Work`]: the tasks an operator's requests started, which a stop waits for. A leaf, so that
//! [`crate::shared::Shared`] can hold it.

use tokio_util::task::TaskTracker;

use super::error::{OpError, Refusal};

/// Work an operator's request started that runs to its end in its own task, whether or not the
/// connection that asked stays (a window, a hold); a stop waits for it.
#[derive(Clone, Default)]
pub struct Work(TaskTracker);

impl Work {
    /// Runs `work` in its own task and waits for its answer; a task that panicked is a
    /// [`Refusal::Failed`].
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, OpError> {
        self.0.spawn(work).await.map_err(|e| {
            tracing::error!(error = %e, "an operator's request failed");
            OpError::new(Refusal::Failed, "the request failed")
        })
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
