//! The hook's configuration, read from the environment once.
//!
//! Parsing never fails the program: an invalid value is logged and the
//! default used, because a typo in an environment variable must not break a
//! training job that would run fine unshared.

use std::path::PathBuf;
use std::sync::OnceLock;

/// How device allocations are backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMode {
    /// VMM handles swapped to host memory in bulk (the default).
    Swap,
    /// Managed memory, prefetched on grant (the original nvshare's way).
    Uvm,
}

/// Whether the hook talks to a scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerMode {
    /// Connect, starting a per-user scheduler if none answers.
    Auto,
    /// Connect, but never start one.
    NoAutostart,
    /// Run unscheduled (`NVSHARE_SCHEDULER=off`).
    Off,
}

/// Everything the hook reads from the environment.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// `NVSHARE_MODE`: `swap` (default) or `uvm`.
    pub mode: MemoryMode,
    /// `NVSHARE_SCHEDULER`: `auto` (default), `external` (never start one), `off`.
    pub scheduler: SchedulerMode,
    /// The scheduler socket: `NVSHARE_SOCK`, else the per-user or system default.
    pub socket: PathBuf,
    /// The job name: `NVSHARE_NAME`, else the program's name.
    pub name: String,
    /// `NVSHARE_ENABLE_SINGLE_OVERSUB=1`: in uvm mode, allow one program to
    /// allocate beyond the capacity (as the original nvshare).
    pub single_oversub: bool,
    /// Milliseconds without GPU work after which a holder reports itself
    /// idle (`NVSHARE_IDLE_MS`, default [`DEFAULT_IDLE_MS`]).
    pub idle_after_ms: u64,
}

static CONFIG: OnceLock<HookConfig> = OnceLock::new();

/// The configuration, read on first use.
pub fn get() -> &'static HookConfig {
    CONFIG.get_or_init(HookConfig::from_env)
}

impl HookConfig {
    /// Reads the environment.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mode = match var("NVSHARE_MODE").as_deref() {
            None | Some("swap") => MemoryMode::Swap,
            Some("uvm") => MemoryMode::Uvm,
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "NVSHARE_MODE must be swap or uvm; using swap"
                );
                MemoryMode::Swap
            }
        };
        let scheduler = match var("NVSHARE_SCHEDULER").as_deref() {
            None | Some("auto") | Some("on") => SchedulerMode::Auto,
            Some("external") => SchedulerMode::NoAutostart,
            Some("off") => SchedulerMode::Off,
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "NVSHARE_SCHEDULER must be auto, external or off; using auto"
                );
                SchedulerMode::Auto
            }
        };
        let socket = var("NVSHARE_SOCK")
            .map(PathBuf::from)
            .unwrap_or_else(default_socket_path);
        let name = var("NVSHARE_NAME").unwrap_or_else(program_name);
        let single_oversub = var("NVSHARE_ENABLE_SINGLE_OVERSUB").as_deref() == Some("1");
        let idle_after_ms = var("NVSHARE_IDLE_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_IDLE_MS);
        HookConfig {
            mode,
            scheduler,
            socket,
            name,
            single_oversub,
            idle_after_ms,
        }
    }
}

/// A holder with no GPU work for this long tells the scheduler it is idle.
pub const DEFAULT_IDLE_MS: u64 = 1000;

/// The scheduler socket when `NVSHARE_SOCK` is unset: the rule the daemon
/// and `nvshare-ctl` use too.
pub fn default_socket_path() -> PathBuf {
    nvshare_proto::socket::default_socket_path(
        nix::unistd::geteuid().as_raw(),
        std::env::var_os("XDG_RUNTIME_DIR"),
    )
}

fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}
