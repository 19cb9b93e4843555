//! [`Verifications`]: the verifications running or waiting their turn, and the entries this
//! process wrote; held in `Shared`. What runs them is `verify/background.rs`.

use std::time::Duration;

use tokio_util::task::TaskTracker;

/// The verifications running or waiting their turn. One per proxy, in `Shared`.
#[derive(Debug, Default)]
pub struct Verifications {
    pub(crate) tasks: TaskTracker,
    /// Held by the verification under way.
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// Entries this process wrote (their checksums computed while it copied them): new copies
    /// may link from them before a verification has run, until a check of their files fails.
    pub(crate) written: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Verifications {
    /// Entry `id` was written by this process.
    pub fn mark_written(&self, id: &str) {
        self.written.lock().unwrap().insert(id.to_string());
    }

    /// Whether entry `id` was written by this process and no check of it has failed since.
    pub fn written(&self, id: &str) -> bool {
        self.written.lock().unwrap().contains(id)
    }

    /// Verifications running or waiting.
    pub fn pending(&self) -> usize {
        self.tasks.len()
    }

    /// Waits up to `within` for every verification started so far to end; false if some still
    /// run then.
    pub async fn wait(&self, within: Duration) -> bool {
        self.tasks.close();
        let done = tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok();
        self.tasks.reopen();
        done
    }
}
