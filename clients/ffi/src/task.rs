//! [`TaskHandle`]: a background task started for the foreign side (a sync loop, a listener's feed), stopped by
//! `cancel()` or when the handle is dropped.

use tokio::task::JoinHandle;

/// A running background task; dropping the handle stops it, like `cancel()`.
#[derive(uniffi::Object)]
pub struct TaskHandle {
    handle: JoinHandle<()>,
}

impl TaskHandle {
    pub(crate) fn new(handle: JoinHandle<()>) -> Self {
        Self { handle }
    }
}

#[uniffi::export]
impl TaskHandle {
    /// Stops the task.
    pub fn cancel(&self) {
        self.handle.abort();
    }

    /// Whether the task has ended (cancelled, or stopped on its own).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
