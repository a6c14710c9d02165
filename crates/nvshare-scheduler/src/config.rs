//! The daemon's configuration, parsed once from the command line and the
//! environment into a plain [`Config`].

use crate::policy::PolicyConfig;
use clap::Parser;
use nvshare_proto::Policy;
use nvshare_proto::units::{parse_duration, parse_size};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The memory kept back on each GPU when `--memory-capacity` is not given:
/// room for the CUDA contexts (~300-500 MiB each on recent drivers) and
/// library workspaces, which the hook does not count as footprint.
pub const DEFAULT_MEMORY_RESERVE: &str = "512MiB";

/// Everything the daemon needs to know, resolved (no options left open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen.
    pub socket: PathBuf,
    /// The group to give the socket, so its members may connect.
    pub socket_group: Option<u32>,
    /// How to share GPUs.
    pub policy: PolicyConfig,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// The `tracing` filter (`info`, `debug`, `nvshare_scheduler=trace`, ...).
    pub log_filter: String,
    /// What connections are given before they prove useful.
    pub limits: crate::server::ConnectionLimits,
    /// Exit cleanly once no program has been connected for this long.
    pub exit_when_idle: Option<Duration>,
    /// Where NVML is loaded from to find the GPUs at start (`None`: do not
    /// look for them).
    pub nvml_library: Option<PathBuf>,
}

/// The command line of `nvshare-scheduler`.
#[derive(Debug, Parser)]
#[command(
    name = "nvshare-scheduler",
    version,
    about = "The nvshare scheduler: lets several CUDA programs share each GPU"
)]
pub struct Cli {
    /// The Unix socket to listen on. Default: /var/run/nvshare/scheduler.sock
    /// for root, else $XDG_RUNTIME_DIR/nvshare/scheduler.sock, else
    /// /tmp/nvshare-$UID/scheduler.sock.
    #[arg(long, env = nvshare_proto::env::SOCK, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Give the socket to this group (name or gid): with the socket's mode
    /// 0660, the group's members may connect.
    #[arg(long, env = "NVSHARE_SOCK_GROUP", value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// The memory shared out on every GPU (a virtual GPU smaller than the
    /// card), e.g. 16GiB. Default: each GPU's memory minus --memory-reserve.
    #[arg(long, env = "NVSHARE_MEMORY_CAPACITY", value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub memory_capacity: Option<u64>,

    /// Memory of each GPU kept back for CUDA contexts and library workspaces
    /// when --memory-capacity is not given.
    #[arg(long, env = "NVSHARE_MEMORY_RESERVE", value_name = "SIZE",
          default_value = DEFAULT_MEMORY_RESERVE, value_parser = parse_size, allow_hyphen_values = true)]
    pub memory_reserve: u64,

    /// The time-slice quantum: seconds (30, 0.5) or with a unit (200ms).
    #[arg(long, env = "NVSHARE_TQ", value_name = "DURATION", default_value = "30",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub quantum: Duration,

    /// How long a program asked to give a GPU back may take before the next
    /// program is let in beside it (where the GPU physically has room): a
    /// longer drain is stuck in work that waits for another program, such as
    /// an NCCL collective whose peer waits for its own GPU.
    #[arg(long, env = "NVSHARE_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "10",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub drain_timeout: Duration,

    /// After a restart (the last daemon's socket or lock file was left
    /// behind): how long nobody is granted a GPU, so that programs still
    /// running under the last daemon reconnect and say what they hold. Only
    /// within this time after the start are such claims believed.
    #[arg(long, env = "NVSHARE_RECOVERY_GRACE", value_name = "DURATION", default_value = "3",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub recovery_grace: Duration,

    /// Bring a waiting program's memory back ahead of its grant, into
    /// memory that is free (beside the holder, and as the holder's eviction
    /// frees it), so that a switch moves memory both ways at once: true or
    /// false.
    #[arg(long, env = "NVSHARE_RESTORE_AHEAD", value_name = "BOOL", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub restore_ahead: bool,

    /// How GPUs are shared: auto (co-run what fits, time-slice the rest),
    /// exclusive (one holder at a time) or off (no scheduling).
    #[arg(long, env = "NVSHARE_POLICY", default_value_t = Policy::Auto)]
    pub policy: Policy,

    /// A connection that has not said hello after this long is closed.
    #[arg(long, env = "NVSHARE_HELLO_TIMEOUT", value_name = "DURATION", default_value = "5",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub hello_timeout: Duration,

    /// Connections one user (uid) may hold open at once; more are closed as
    /// they come. Each program under the hook holds one.
    #[arg(long, env = "NVSHARE_MAX_CONNECTIONS_PER_UID", value_name = "COUNT",
          default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_uid: u32,

    /// Exit (cleanly, removing the socket) once no program has been
    /// connected for this long: 30, 0.5, 200ms. Off by default; a scheduler
    /// the hook starts on demand gets 30 s, so it ends with its programs.
    #[arg(long, env = nvshare_proto::env::EXIT_WHEN_IDLE, value_name = "DURATION",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub exit_when_idle: Option<Duration>,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).
    #[arg(long, env = "NVSHARE_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<SocketAddr>,

    /// Where to load NVML from to find the GPUs at start (so status lists
    /// them, with their capacity and settings, before any program
    /// attaches), or `none` to not look. Without NVML the GPUs are known as
    /// programs attach them.
    #[arg(long, env = "NVSHARE_NVML_LIBRARY", value_name = "PATH|none",
          default_value = nvshare_gpus::DEFAULT_LIBRARY)]
    pub nvml_library: PathBuf,

    /// Log filter in tracing's syntax (info, debug, nvshare_scheduler=trace).
    /// Default: info, or debug when NVSHARE_DEBUG=1.
    #[arg(long, env = nvshare_proto::env::LOG, value_name = "FILTER")]
    pub log: Option<String>,
}

/// A configuration value that parsed but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `--socket-group` names no group.
    #[error("unknown group {0:?} for --socket-group: give an existing group name or a numeric gid")]
    UnknownGroup(String),
    /// `--memory-capacity 0`.
    #[error("--memory-capacity must be more than 0 bytes")]
    ZeroCapacity,
}

impl Cli {
    /// Resolves defaults that depend on the process and its environment.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let socket = nvshare_proto::socket::resolve(self.socket);
        let socket_group = self.socket_group.map(|g| resolve_group(&g)).transpose()?;
        if self.memory_capacity == Some(0) {
            return Err(ConfigError::ZeroCapacity);
        }
        let log_filter = nvshare_proto::env::log_filter(self.log, "info");
        Ok(Config {
            socket,
            socket_group,
            policy: PolicyConfig {
                policy: self.policy,
                quantum: self.quantum,
                memory_capacity: self.memory_capacity,
                memory_reserve: self.memory_reserve,
                drain_timeout: self.drain_timeout,
                recovery_grace: self.recovery_grace,
                restore_ahead: self.restore_ahead,
            },
            metrics_addr: self.metrics_addr,
            log_filter,
            limits: crate::server::ConnectionLimits {
                hello_timeout: self.hello_timeout,
                per_uid: self.max_connections_per_uid as usize,
            },
            exit_when_idle: self.exit_when_idle,
            nvml_library: (self.nvml_library.as_os_str() != "none").then_some(self.nvml_library),
        })
    }
}

fn resolve_group(group: &str) -> Result<u32, ConfigError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        _ => Err(ConfigError::UnknownGroup(group.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("nvshare-scheduler").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn flags_parse_into_the_policy_config() {
        let config = parse(&[
            "--socket",
            "/tmp/x.sock",
            "--memory-capacity",
            "16GiB",
            "--quantum",
            "200ms",
            "--policy",
            "exclusive",
            "--metrics-addr",
            "127.0.0.1:9400",
            "--log",
            "trace",
            "--socket-group",
            "0",
            "--restore-ahead",
            "false",
        ])
        .into_config()
        .unwrap();
        assert_eq!(config.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(config.policy.memory_capacity, Some(16 << 30));
        assert_eq!(config.policy.memory_reserve, 512 << 20);
        assert_eq!(config.policy.quantum, Duration::from_millis(200));
        assert_eq!(config.policy.policy, Policy::Exclusive);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9400".parse().unwrap()));
        assert_eq!(config.log_filter, "trace");
        assert_eq!(config.socket_group, Some(0));
        assert!(!config.policy.restore_ahead);
        assert!(parse(&[]).into_config().unwrap().policy.restore_ahead);
    }

    #[test]
    fn bad_values_are_refused() {
        let parse_err = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("nvshare-scheduler").chain(args.iter().copied()))
                .unwrap_err()
                .to_string()
        };
        assert!(parse_err(&["--policy", "fair"]).contains("expected auto, exclusive or off"));
        assert!(parse_err(&["--memory-capacity", "lots"]).contains("e.g. 16GiB"));
        assert!(parse_err(&["--quantum", "0"]).contains("too short"));
        // Negative values are named as such, not taken for unknown flags.
        assert!(parse_err(&["--quantum", "-5"]).contains("\"-5\" is negative"));
        assert!(parse_err(&["--memory-capacity", "-1GiB"]).contains("\"-1GiB\" is negative"));
        assert!(parse_err(&["--drain-timeout", "-1"]).contains("is negative"));
        assert!(parse_err(&["--restore-ahead", "maybe"]).contains("true"));
        assert_eq!(
            parse(&["--memory-capacity", "0"]).into_config(),
            Err(ConfigError::ZeroCapacity)
        );
        assert_eq!(
            parse(&["--socket-group", "no-such-group-here"]).into_config(),
            Err(ConfigError::UnknownGroup("no-such-group-here".into()))
        );
    }
}
