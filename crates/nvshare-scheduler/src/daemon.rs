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
use nvshare_proto::units::Bytes;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

/// Runs the daemon until SIGTERM or SIGINT (or, with `--exit-when-idle`,
/// until no program has used it for that long). `Ok` is a clean shutdown.
pub fn run(config: Config) -> Result<(), ServerError> {
    let started = Instant::now();
    raise_descriptor_limit();
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
            || format!("GPU memory - {}", Bytes(policy.memory_reserve)),
            |capacity| Bytes(capacity).to_string(),
        ),
        "nvshare-scheduler listening"
    );
    let mut scheduler = Scheduler::new(config.policy.clone());
    let inventory =
        crate::inventory::discover(config.nvml_library.as_deref(), &mut scheduler, &metrics);
    if listener.predecessor() {
        info!(
            grace_ms = policy.recovery_grace.as_millis() as u64,
            "the last scheduler on this socket left its files (it crashed, or stopped with programs connected): \
             no GPU is granted during the recovery grace, while its programs reconnect and say what they hold"
        );
        scheduler.recover();
    }
    let mut server = Server::new(
        listener,
        signals,
        scheduler,
        Observer::new(metrics.clone()),
        started,
        config.limits,
    )?
    .exit_when_idle(config.exit_when_idle)
    .mirror_state(config.metrics_addr.is_some())
    .inventory(inventory);
    notify("READY=1");
    server.run()?;
    Ok(())
}

/// Raises the soft limit on open files to the hard one: every program under
/// the hook holds a connection, and the usual soft limit (1024) is far below
/// what a busy node needs.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!(from = soft, to = hard, "raised the open-file limit"),
            Err(err) => tracing::warn!(%err, soft, hard, "could not raise the open-file limit"),
        },
        Ok(_) => {}
        Err(err) => tracing::warn!(%err, "could not read the open-file limit"),
    }
}
