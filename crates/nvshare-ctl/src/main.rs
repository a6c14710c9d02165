//! `nvshare-ctl`: the operator tool of the nvshare scheduler.
//!
//! # Layout
//! - [`cli`]: the command line (subcommands and nvsharectl's `-T`/`-S`) and
//!   the requests it stands for.
//! - [`connection`]: the control conversation over the Unix socket.
//! - [`table`]: `status` as tables; [`json`]: `status --json`;
//!   [`waits`]: what the next program on a GPU waits for, in words;
//!   [`units`]: durations as people read them (sizes:
//!   [`nvshare_proto::units::Bytes`]).
//! - [`error`]: [`error::CtlError`] and the exit code of each failure: 2 when
//!   the scheduler cannot be reached, 1 when it refuses or misbehaves, 64
//!   for a bad command line.

mod cli;
mod connection;
mod error;
mod json;
mod table;
mod units;
mod waits;

use cli::{Cli, Plan};
use connection::Connection;
use error::CtlError;
use nvshare_proto::{ControlReply, ControlRequest, GpuHostShadows, GpuWait};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    init_logging();
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        // --help and --version: printed to stdout, exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(error::EXIT_USAGE);
        }
    };
    match run(&cli) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("nvshare-ctl: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Logs to stderr as `NVSHARE_LOG` filters them, else debug logs with
/// `NVSHARE_DEBUG=1` (as the original nvshare), else warnings (the rule of
/// every nvshare program).
fn init_logging() {
    let directive =
        nvshare_proto::env::log_filter(std::env::var(nvshare_proto::env::LOG).ok(), "warn");
    let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for people: scripts and files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Carries out the command line; returns what to print.
fn run(cli: &Cli) -> Result<String, CtlError> {
    let path = nvshare_proto::socket::resolve(cli.socket.clone());
    let mut conn = Connection::open(&path)?;
    match cli.plan() {
        Plan::Status { json } => {
            let report = match conn.call(&ControlRequest::Status)? {
                ControlReply::Status(report) => report,
                other => return Err(unexpected(&conn, other)),
            };
            let host = host_shadows(&mut conn);
            let waits = waits(&mut conn);
            if json {
                Ok(json::status_json(&report, host.as_deref(), &waits)? + "\n")
            } else {
                Ok(table::status_text(&report, host.as_deref(), &waits))
            }
        }
        Plan::Change(requests) => {
            let mut out = String::new();
            for request in &requests {
                match conn.call(request)? {
                    ControlReply::Done => out.push_str(&done_line(request)),
                    other => return Err(unexpected(&conn, other)),
                }
            }
            Ok(out)
        }
    }
}

/// The host shadows of every client, or `None` (shown as unknown) from a
/// scheduler that does not report them.
fn host_shadows(conn: &mut Connection) -> Option<Vec<GpuHostShadows>> {
    match conn.call(&ControlRequest::HostShadows) {
        Ok(ControlReply::HostShadows(gpus)) => Some(gpus),
        other => {
            tracing::debug!(
                ?other,
                "the scheduler does not report host shadows; leaving them out"
            );
            None
        }
    }
}

/// What the next program on each GPU waits for; nothing from a scheduler
/// that does not say.
fn waits(conn: &mut Connection) -> Vec<GpuWait> {
    match conn.call(&ControlRequest::Waits) {
        Ok(ControlReply::Waits(waits)) => waits,
        other => {
            tracing::debug!(
                ?other,
                "the scheduler does not report waits; leaving them out"
            );
            Vec::new()
        }
    }
}

/// What was changed, for the operator.
fn done_line(request: &ControlRequest) -> String {
    match request {
        ControlRequest::SetQuantum { quantum_ms } => format!(
            "time quantum set to {}\n",
            units::human_duration_ms(*quantum_ms)
        ),
        ControlRequest::SetPolicy { policy } => format!("policy set to {policy}\n"),
        ControlRequest::Status | ControlRequest::HostShadows | ControlRequest::Waits => {
            String::new()
        }
    }
}

/// A refusal becomes its message; any other reply is a protocol mix-up.
fn unexpected(conn: &Connection, reply: ControlReply) -> CtlError {
    match reply {
        ControlReply::Error(e) => CtlError::Refused(e.message),
        other => CtlError::UnexpectedReply {
            path: conn.path().to_owned(),
            got: format!("{other:?}"),
        },
    }
}
