//! The environment variables nvshare reads, named once: the hook, the
//! daemon, `nvshare-ctl` and the device plugin (which sets some of them in
//! every container) all take the names from here.

/// The scheduler's socket path (see [`crate::socket`]).
pub const SOCK: &str = "NVSHARE_SOCK";
/// A `tracing` filter for every nvshare program's log.
pub const LOG: &str = "NVSHARE_LOG";
/// `1` means a `debug` log (the original nvshare's switch).
pub const DEBUG: &str = "NVSHARE_DEBUG";
/// The hook's scheduler use: `auto` (start one if none runs), `external`
/// (a node's daemon only), `off` (run unshared).
pub const SCHEDULER: &str = "NVSHARE_SCHEDULER";
/// The job name the hook reports to the scheduler.
pub const NAME: &str = "NVSHARE_NAME";
/// The hook's memory mode: `swap` or `uvm`.
pub const MODE: &str = "NVSHARE_MODE";
/// The gang a program belongs to (ranks of one job are granted together).
pub const GROUP: &str = "NVSHARE_GROUP";
/// The most host memory the hook's swap shadows may take (a size).
pub const HOST_LIMIT: &str = "NVSHARE_HOST_LIMIT";
/// The most GPU memory one program may hold on each GPU (a size): what it
/// sees as the GPU's memory, and past it allocations fail.
pub const MEMORY_LIMIT: &str = "NVSHARE_MEMORY_LIMIT";
/// A job's priority in the scheduler's line (an integer; higher first).
pub const PRIORITY: &str = "NVSHARE_PRIORITY";
/// A job's weight: its time slice in quanta (1 to 100).
pub const WEIGHT: &str = "NVSHARE_WEIGHT";
/// Milliseconds without GPU work after which the hook releases the lock.
pub const IDLE_MS: &str = "NVSHARE_IDLE_MS";
/// `1` lets one program alone oversubscribe the GPU.
pub const ENABLE_SINGLE_OVERSUB: &str = "NVSHARE_ENABLE_SINGLE_OVERSUB";
/// The swap engine's copy chunk in MiB.
pub const SWAP_CHUNK_MIB: &str = "NVSHARE_SWAP_CHUNK_MIB";
/// The swap engine's copy streams.
pub const SWAP_STREAMS: &str = "NVSHARE_SWAP_STREAMS";
/// The swap engine's segment size in MiB.
pub const SWAP_SEGMENT_MIB: &str = "NVSHARE_SWAP_SEGMENT_MIB";
/// Daemon: exit after this long with no program attached (a daemon the hook
/// started on demand gets it, so that it ends with its programs).
pub const EXIT_WHEN_IDLE: &str = "NVSHARE_EXIT_WHEN_IDLE";

/// The log filter every nvshare program uses: `explicit` (a `--log` flag or
/// [`LOG`]) if given and not empty, else `debug` when [`DEBUG`] is `1`,
/// else `default`.
pub fn log_filter(explicit: Option<String>, default: &str) -> String {
    log_filter_from(explicit, std::env::var(DEBUG).ok().as_deref(), default)
}

/// [`log_filter`] with the value of [`DEBUG`] given.
pub fn log_filter_from(explicit: Option<String>, debug: Option<&str>, default: &str) -> String {
    match (explicit.filter(|filter| !filter.is_empty()), debug) {
        (Some(filter), _) => filter,
        (None, Some("1")) => "debug".to_owned(),
        (None, _) => default.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_filter_wins_then_debug_then_the_default() {
        assert_eq!(
            log_filter_from(Some("trace".into()), Some("1"), "warn"),
            "trace"
        );
        assert_eq!(
            log_filter_from(Some(String::new()), Some("1"), "warn"),
            "debug"
        );
        assert_eq!(log_filter_from(None, Some("1"), "warn"), "debug");
        assert_eq!(log_filter_from(None, Some("0"), "info"), "info");
        assert_eq!(log_filter_from(None, None, "warn"), "warn");
    }
}
