//! Named background tasks that all stop on one shutdown signal and are awaited
//! with a deadline, so a stuck task is named in the log instead of hanging exit.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A handle a task polls to learn that shutdown has begun. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown has been requested (at once if it already was).
    pub async fn requested(mut self) {
        // An error means the sender is gone, which also means "stop".
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been requested, without waiting.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// The set of running tasks and the sender of their common shutdown signal.
pub struct Tasks {
    signal: watch::Sender<bool>,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Self {
        Self {
            signal: watch::channel(false).0,
            running: Vec::new(),
        }
    }

    /// A receiver of the shutdown signal for a task to watch.
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown(self.signal.subscribe())
    }

    /// Starts a named task; it must return soon after its [`Shutdown`] resolves.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        tracing::debug!(task = name, "starting");
        self.running.push((name, tokio::spawn(task)));
    }

    /// Asks every task to stop (idempotent).
    pub fn request_shutdown(&self) {
        self.signal.send_replace(true);
    }

    /// Signals shutdown and waits for every task until `deadline`; tasks still
    /// running then are aborted and their names returned.
    pub async fn stop(self, deadline: Duration) -> Vec<&'static str> {
        self.request_shutdown();
        let until = tokio::time::Instant::now() + deadline;
        let mut stuck = Vec::new();
        for (name, mut handle) in self.running {
            match tokio::time::timeout_at(until, &mut handle).await {
                Ok(Ok(())) => tracing::debug!(task = name, "stopped"),
                Ok(Err(e)) if e.is_panic() => tracing::error!(task = name, "task panicked"),
                Ok(Err(_)) => {}
                Err(_) => {
                    tracing::warn!(task = name, "did not stop within {deadline:?}; aborted");
                    handle.abort();
                    stuck.push(name);
                }
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn all_tasks_see_the_signal_and_stuck_ones_are_named() {
        let mut tasks = Tasks::new();
        let stopped = Arc::new(AtomicUsize::new(0));
        for name in ["one", "two"] {
            let signal = tasks.shutdown_signal();
            let stopped = stopped.clone();
            tasks.spawn(name, async move {
                signal.requested().await;
                stopped.fetch_add(1, Ordering::SeqCst);
            });
        }
        tasks.spawn("stuck", std::future::pending());
        let late = tasks.shutdown_signal();
        assert!(!late.is_requested());
        let stuck = tasks.stop(Duration::from_millis(200)).await;
        assert_eq!(stuck, ["stuck"]);
        assert_eq!(stopped.load(Ordering::SeqCst), 2);
        assert!(late.is_requested());
    }
}
