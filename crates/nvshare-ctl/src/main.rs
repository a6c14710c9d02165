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
use nvshare_proto::{ControlReply, ControlRequest, GpuHostShadows, GpuWait, Inventory};
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
        Plan::Status { json } => status(&mut conn, if json { Shape::Json } else { Shape::Tables }),
        Plan::Watch { json, every, count } => {
            watch(&mut conn, json, every, count)?;
            Ok(String::new())
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

/// How the status is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Tables,
    /// Pretty-printed JSON.
    Json,
    /// One JSON document on one line (for `--watch`).
    JsonLine,
}

/// The status once, in `shape`.
fn status(conn: &mut Connection, shape: Shape) -> Result<String, CtlError> {
    let report = match conn.call(&ControlRequest::Status)? {
        ControlReply::Status(report) => report,
        other => return Err(unexpected(conn, other)),
    };
    let host = host_shadows(conn);
    let waits = waits(conn);
    let inventory = inventory(conn);
    let (host, inventory) = (host.as_deref(), inventory.as_ref());
    Ok(match shape {
        Shape::Tables => table::status_text(&report, host, &waits, inventory),
        Shape::Json => json::status_json(&report, host, &waits, inventory)? + "\n",
        Shape::JsonLine => {
            serde_json::to_string(&json::JsonStatus::new(&report, host, &waits, inventory))? + "\n"
        }
    })
}

/// The status every `every`, `count` times or until interrupted: on a
/// terminal the tables are redrawn in place; otherwise each refresh follows
/// the last (JSON: one document per line). Ends with an error, exit code 2,
/// when the scheduler goes away.
fn watch(
    conn: &mut Connection,
    json: bool,
    every: std::time::Duration,
    count: Option<u32>,
) -> Result<(), CtlError> {
    use std::io::Write;
    let terminal = std::io::stdout().is_terminal() && !json;
    let mut shown = 0u32;
    loop {
        let text = status(conn, if json { Shape::JsonLine } else { Shape::Tables })?;
        let mut out = std::io::stdout().lock();
        let written = if terminal {
            // Home and clear, then the tables: redrawn in place.
            write!(out, "\x1b[H\x1b[2J{text}")
        } else if json {
            write!(out, "{text}")
        } else {
            writeln!(out, "{text}")
        };
        if written.and_then(|()| out.flush()).is_err() {
            // The reader went away (a closed pipe): nothing left to show.
            return Ok(());
        }
        shown += 1;
        if count.is_some_and(|count| shown >= count) {
            return Ok(());
        }
        std::thread::sleep(every);
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

/// The GPUs the scheduler found at start; `None` from a scheduler that
/// does not say (asked last: an older scheduler closes the connection on a
/// request it does not know).
fn inventory(conn: &mut Connection) -> Option<Inventory> {
    match conn.call(&ControlRequest::Inventory) {
        Ok(ControlReply::Inventory(inventory)) => Some(inventory),
        other => {
            tracing::debug!(
                ?other,
                "the scheduler does not report its GPUs; leaving them out"
            );
            None
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
        ControlRequest::SetGpuQuantum { gpu, quantum_ms } => format!(
            "time quantum of {gpu} set to {}\n",
            units::human_duration_ms(*quantum_ms)
        ),
        ControlRequest::SetGpuPolicy { gpu, policy } => {
            format!("policy of {gpu} set to {policy}\n")
        }
        ControlRequest::Status
        | ControlRequest::HostShadows
        | ControlRequest::Waits
        | ControlRequest::Inventory => String::new(),
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
