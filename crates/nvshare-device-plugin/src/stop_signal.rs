//! Stop signals: a `watch::Receiver<bool>` that turns true once. Shutdown
//! and the end of one server generation both use it.

use tokio::sync::watch;

/// Returns once `signal` is true or its sender is gone.
pub async fn stopped(signal: &mut watch::Receiver<bool>) {
    // Only the wait matters; the guard `wait_for` returns is not Send, so
    // it must not outlive this function.
    let _ = signal.wait_for(|stop| *stop).await;
}
