//! Starting the daemon in the right order: signals blocked before any thread
//! exists, the socket bound, metrics served, the service manager told, then
//! the event loop.

use crate::config::Config;
use crate::error::ServerError;
use crate::metrics::{Metrics, http};
use crate::notify::notify;
use crate::observe::Observer;
use crate::policy::Scheduler;
use crate::server::Server;
use crate::server::listener::SocketListener;
use crate::signals::ShutdownSignals;
use crate::units::format_bytes;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

/// Runs the daemon until SIGTERM or SIGINT. `Ok` is a clean shutdown.
pub fn run(config: Config) -> Result<(), ServerError> {
    let started = Instant::now();
    let signals =
        ShutdownSignals::install().map_err(ServerError::system("blocking SIGTERM and SIGINT"))?;
    let listener = SocketListener::bind(&config.socket, config.socket_group)?;
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = config.metrics_addr {
        let bound = http::serve(addr, metrics.clone())
            .map_err(|source| ServerError::Metrics { addr, source })?;
        info!(addr = %bound, "serving metrics at /metrics");
    }
    let policy = &config.policy;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        socket = %config.socket.display(),
        policy = %policy.policy,
        quantum_ms = policy.quantum.as_millis() as u64,
        capacity = %policy.memory_capacity.map_or_else(
            || format!("GPU memory - {}", format_bytes(policy.memory_reserve)),
            format_bytes,
        ),
        "nvshare-scheduler listening"
    );
    let scheduler = Scheduler::new(config.policy.clone());
    let mut server = Server::new(
        listener,
        signals,
        scheduler,
        Observer::new(metrics),
        started,
    )?;
    notify("READY=1");
    server.run()?;
    Ok(())
}
