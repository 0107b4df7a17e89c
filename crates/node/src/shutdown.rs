//! The graceful-shutdown signal of a node.

use tokio::sync::watch;

/// A cloneable handle that tells when the node must shut down.
///
/// Every task that accepts work holds one and stops accepting when [`Shutdown::wait`]
/// returns; in-flight work then finishes.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Fires the [`Shutdown`] signal; dropping it fires it too.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Waits until shutdown is triggered (at once if it already was).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the trigger was dropped, which also means shutdown.
        let _ = rx.wait_for(|fired| *fired).await;
    }

    /// Whether shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

impl ShutdownTrigger {
    /// Fires the signal. Idempotent.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Drop for ShutdownTrigger {
    fn drop(&mut self) {
        self.trigger();
    }
}
