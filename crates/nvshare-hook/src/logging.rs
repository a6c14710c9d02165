//! Logging to stderr, started once at the hook's first CUDA call (never from
//! `dlsym`). `NVSHARE_LOG` takes a `tracing` filter (`debug`,
//! `nvshare=trace`, ...); `NVSHARE_DEBUG=1`, the original nvshare's switch,
//! means `debug`; the default shows warnings and errors.

use nvshare_proto::env;
use std::io::IsTerminal;
use std::sync::Once;
use tracing_subscriber::EnvFilter;

/// Starts logging unless it already runs.
pub fn init() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let directive = env::log_filter(std::env::var(env::LOG).ok(), "warn");
        let (filter, invalid) = match EnvFilter::try_new(&directive) {
            Ok(filter) => (filter, None),
            Err(err) => (EnvFilter::new("warn"), Some(err)),
        };
        // A program that installed its own subscriber keeps it; ours then
        // stays silent rather than fail the program.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
        if let Some(err) = invalid {
            tracing::warn!(%err, value = directive, "NVSHARE_LOG is not a valid filter; using warn");
        }
    });
}
