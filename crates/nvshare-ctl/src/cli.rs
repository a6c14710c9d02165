//! The command line: `nvshare-ctl`'s subcommands, and the original
//! nvsharectl's `-T`/`-S` flags, turned into the requests to send.

use clap::{Parser, Subcommand, ValueEnum};
use nvshare_proto::units::parse_duration;
use nvshare_proto::{ControlRequest, GpuSelector, Policy};
use std::path::PathBuf;
use std::time::Duration;

/// Operator tool for the nvshare scheduler.
///
/// Without a command it shows the status. nvsharectl's flags are accepted:
/// `-T/--set-tq=N` sets the time quantum to N seconds, `-S/--anti-thrash=on`
/// selects the exclusive policy (one program on a GPU at a time) and `off`
/// lets every program run at once.
#[derive(Debug, Parser)]
#[command(name = "nvshare-ctl", version)]
pub struct Cli {
    /// The scheduler's socket [default: /var/run/nvshare/scheduler.sock for
    /// root, else $XDG_RUNTIME_DIR/nvshare/scheduler.sock, else
    /// /tmp/nvshare-<uid>/scheduler.sock]
    #[arg(long, global = true, env = nvshare_proto::env::SOCK, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Set the time quantum to SECONDS (nvsharectl compatible).
    #[arg(short = 'T', long = "set-tq", value_name = "SECONDS", value_parser = parse_duration, allow_hyphen_values = true)]
    pub set_tq: Option<Duration>,

    /// on: one program per GPU at a time (the exclusive policy); off: no
    /// time-slicing (nvsharectl compatible).
    #[arg(short = 'S', long = "anti-thrash", value_name = "on|off")]
    pub anti_thrash: Option<Switch>,

    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `nvshare-ctl`'s subcommands.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Show every GPU and the programs using it.
    Status {
        /// Print JSON for scripts instead of tables.
        #[arg(long)]
        json: bool,
        /// Refresh every DURATION (default 2 s; 0.5, 500ms) until
        /// interrupted: tables redrawn in place on a terminal, one JSON
        /// document per line with --json.
        #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "2",
              value_parser = parse_duration, allow_hyphen_values = true)]
        watch: Option<Duration>,
        /// With --watch: stop after this many refreshes.
        #[arg(long, value_name = "COUNT", requires = "watch",
              value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
    },
    /// A live view: the status tables, redrawn every 2 s (status --watch).
    Top {
        /// Refresh every DURATION.
        #[arg(long, value_name = "DURATION", default_value = "2",
              value_parser = parse_duration, allow_hyphen_values = true)]
        every: Duration,
    },
    /// Set the time quantum GPUs are sliced with (every GPU, or one).
    #[command(name = "set-tq")]
    SetTq {
        /// The quantum: seconds (30, 0.5) or a number with ms, s or m
        /// (200ms), as the daemon's --quantum; at least 1ms.
        #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
        seconds: Duration,
        /// Only this GPU: its index (as nvidia-smi numbers them) or UUID.
        /// Without it every GPU, including those set one by one before.
        #[arg(long, value_name = "INDEX|UUID", value_parser = parse_gpu)]
        gpu: Option<GpuSelector>,
    },
    /// Set the scheduling policy (every GPU, or one).
    #[command(name = "set-policy")]
    SetPolicy {
        /// auto: run together what fits, time-slice the rest; exclusive: one
        /// program at a time; off: no scheduling.
        #[arg(value_parser = parse_policy)]
        policy: Policy,
        /// Only this GPU, as for set-tq.
        #[arg(long, value_name = "INDEX|UUID", value_parser = parse_gpu)]
        gpu: Option<GpuSelector>,
    },
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// What a command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Show the status, as tables or as JSON.
    Status {
        /// JSON instead of tables.
        json: bool,
    },
    /// Show the status again and again.
    Watch {
        /// JSON (one document per line) instead of tables.
        json: bool,
        /// Time between refreshes.
        every: Duration,
        /// Stop after this many, if given.
        count: Option<u32>,
    },
    /// Change settings, in this order.
    Change(Vec<ControlRequest>),
}

impl Cli {
    /// Parses a command line. nvsharectl's flags stand alone: they may not be
    /// mixed with a subcommand (clap cannot declare a conflict between
    /// top-level flags and subcommands while global options such as
    /// `--socket` are accepted before the subcommand).
    pub fn parse_args<I, T>(argv: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(argv)?;
        if cli.command.is_some() && (cli.set_tq.is_some() || cli.anti_thrash.is_some()) {
            let mut command = <Cli as clap::CommandFactory>::command();
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                "-T/--set-tq and -S/--anti-thrash cannot be combined with a subcommand",
            ));
        }
        Ok(cli)
    }

    /// The requests this command line stands for.
    pub fn plan(&self) -> Plan {
        match &self.command {
            Some(Command::Status {
                json, watch: None, ..
            }) => Plan::Status { json: *json },
            Some(Command::Status {
                json,
                watch: Some(every),
                count,
            }) => Plan::Watch {
                json: *json,
                every: *every,
                count: *count,
            },
            Some(Command::Top { every }) => Plan::Watch {
                json: false,
                every: *every,
                count: None,
            },
            Some(Command::SetTq { seconds, gpu: None }) => {
                Plan::Change(vec![set_quantum(*seconds)])
            }
            Some(Command::SetTq {
                seconds,
                gpu: Some(gpu),
            }) => Plan::Change(vec![ControlRequest::SetGpuQuantum {
                gpu: *gpu,
                quantum_ms: millis(*seconds),
            }]),
            Some(Command::SetPolicy { policy, gpu: None }) => {
                Plan::Change(vec![ControlRequest::SetPolicy { policy: *policy }])
            }
            Some(Command::SetPolicy {
                policy,
                gpu: Some(gpu),
            }) => Plan::Change(vec![ControlRequest::SetGpuPolicy {
                gpu: *gpu,
                policy: *policy,
            }]),
            None => {
                let mut changes = Vec::new();
                if let Some(quantum) = self.set_tq {
                    changes.push(set_quantum(quantum));
                }
                if let Some(switch) = self.anti_thrash {
                    let policy = match switch {
                        Switch::On => Policy::Exclusive,
                        Switch::Off => Policy::Off,
                    };
                    changes.push(ControlRequest::SetPolicy { policy });
                }
                if changes.is_empty() {
                    Plan::Status { json: false }
                } else {
                    Plan::Change(changes)
                }
            }
        }
    }
}

fn set_quantum(quantum: Duration) -> ControlRequest {
    ControlRequest::SetQuantum {
        quantum_ms: millis(quantum),
    }
}

fn millis(quantum: Duration) -> u64 {
    u64::try_from(quantum.as_millis()).unwrap_or(u64::MAX)
}

fn parse_gpu(text: &str) -> Result<GpuSelector, String> {
    text.parse()
        .map_err(|e: nvshare_proto::gpu::ParseGpuSelectorError| e.to_string())
}

fn parse_policy(text: &str) -> Result<Policy, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Plan {
        let mut argv = vec!["nvshare-ctl"];
        argv.extend(args);
        Cli::parse_args(argv).expect("valid command line").plan()
    }

    fn rejected(args: &[&str]) -> bool {
        let mut argv = vec!["nvshare-ctl"];
        argv.extend(args);
        Cli::parse_args(argv).is_err()
    }

    #[test]
    fn subcommands_map_to_requests() {
        assert_eq!(plan(&["status"]), Plan::Status { json: false });
        assert_eq!(plan(&["status", "--json"]), Plan::Status { json: true });
        assert_eq!(plan(&[]), Plan::Status { json: false });
        assert_eq!(
            plan(&["set-tq", "30"]),
            Plan::Change(vec![ControlRequest::SetQuantum { quantum_ms: 30_000 }])
        );
        assert_eq!(
            plan(&["set-tq", "0.25"]),
            Plan::Change(vec![ControlRequest::SetQuantum { quantum_ms: 250 }])
        );
        assert_eq!(
            plan(&["set-tq", "200ms"]),
            Plan::Change(vec![ControlRequest::SetQuantum { quantum_ms: 200 }])
        );
        assert_eq!(
            plan(&["set-policy", "exclusive"]),
            Plan::Change(vec![ControlRequest::SetPolicy {
                policy: Policy::Exclusive
            }])
        );
    }

    #[test]
    fn settings_may_name_one_gpu_by_index_or_uuid() {
        let uuid = "GPU-12345678-9abc-def0-0123-456789abcdef";
        assert_eq!(
            plan(&["set-tq", "--gpu", "1", "200ms"]),
            Plan::Change(vec![ControlRequest::SetGpuQuantum {
                gpu: GpuSelector::Index(1),
                quantum_ms: 200
            }])
        );
        assert_eq!(
            plan(&["set-policy", "exclusive", "--gpu", uuid]),
            Plan::Change(vec![ControlRequest::SetGpuPolicy {
                gpu: GpuSelector::Uuid(uuid.parse().unwrap()),
                policy: Policy::Exclusive
            }])
        );
        assert!(rejected(&["set-tq", "--gpu", "first", "5"]));
        assert!(rejected(&["set-policy", "off", "--gpu", "GPU-12"]));
    }

    #[test]
    fn watching_refreshes_the_status() {
        let watch = |json, ms, count| Plan::Watch {
            json,
            every: Duration::from_millis(ms),
            count,
        };
        assert_eq!(plan(&["status", "--watch"]), watch(false, 2000, None));
        assert_eq!(
            plan(&["status", "--watch", "500ms"]),
            watch(false, 500, None)
        );
        assert_eq!(
            plan(&["status", "--json", "--watch=1", "--count", "3"]),
            watch(true, 1000, Some(3))
        );
        assert_eq!(plan(&["top"]), watch(false, 2000, None));
        assert_eq!(plan(&["top", "--every", "0.5"]), watch(false, 500, None));
        assert!(
            rejected(&["status", "--count", "3"]),
            "--count needs --watch"
        );
        assert!(rejected(&["status", "--watch", "0"]));
        assert!(rejected(&["status", "--watch", "1", "--count", "0"]));
    }

    #[test]
    fn nvsharectl_flags_are_accepted() {
        let quantum = |s: u64| ControlRequest::SetQuantum {
            quantum_ms: s * 1000,
        };
        let policy = |policy| ControlRequest::SetPolicy { policy };
        assert_eq!(plan(&["-T", "10"]), Plan::Change(vec![quantum(10)]));
        assert_eq!(plan(&["--set-tq=10"]), Plan::Change(vec![quantum(10)]));
        assert_eq!(
            plan(&["-S", "on"]),
            Plan::Change(vec![policy(Policy::Exclusive)])
        );
        assert_eq!(
            plan(&["--anti-thrash=off"]),
            Plan::Change(vec![policy(Policy::Off)])
        );
        assert_eq!(
            plan(&["-T", "5", "-S", "off"]),
            Plan::Change(vec![quantum(5), policy(Policy::Off)])
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(rejected(&["set-tq", "0"]));
        assert!(rejected(&["set-tq", "-3"]));
        assert!(rejected(&["set-tq", "soon"]));
        assert!(rejected(&["-T", "NaN"]));
        assert!(rejected(&["set-policy", "fair"]));
        assert!(rejected(&["-S", "maybe"]));
        assert!(rejected(&["-T", "5", "status"]));
    }

    #[test]
    fn the_socket_option_works_anywhere() {
        let cli = Cli::try_parse_from(["nvshare-ctl", "status", "--socket", "/x.sock"]).unwrap();
        assert_eq!(cli.socket, Some(PathBuf::from("/x.sock")));
        let cli = Cli::parse_args(["nvshare-ctl", "--socket", "/y.sock", "-T", "3"]).unwrap();
        assert_eq!(cli.socket, Some(PathBuf::from("/y.sock")));
        let cli =
            Cli::parse_args(["nvshare-ctl", "--socket", "/z.sock", "status", "--json"]).unwrap();
        assert_eq!(cli.socket, Some(PathBuf::from("/z.sock")));
        assert_eq!(cli.plan(), Plan::Status { json: true });
    }
}
