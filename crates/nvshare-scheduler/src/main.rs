//! `nvshare-scheduler`: parses the configuration, sets up logging, runs the
//! daemon. Exit status: 0 after a clean shutdown, 1 when the daemon cannot
//! run, 2 for a bad command line.

use clap::Parser;
use nvshare_scheduler::config::Cli;
use nvshare_scheduler::logging::BatchedWriter;
use nvshare_scheduler::logging::format::LineFormat;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = match Cli::parse().into_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("nvshare-scheduler: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = match EnvFilter::try_new(&config.log_filter) {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!(
                "nvshare-scheduler: invalid log filter {:?}: {err} (try info, debug or \
                 nvshare_scheduler=trace)",
                config.log_filter
            );
            return ExitCode::from(2);
        }
    };
    let (writer, flush_on_exit) = match BatchedWriter::start(std::io::stderr()) {
        Ok(started) => started,
        Err(err) => {
            eprintln!("nvshare-scheduler: cannot start the log writer thread: {err}");
            return ExitCode::from(1);
        }
    };
    tracing_subscriber::fmt()
        .event_format(LineFormat)
        .with_env_filter(filter)
        .with_writer(writer)
        .init();
    let outcome = nvshare_scheduler::daemon::run(config);
    drop(flush_on_exit);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nvshare-scheduler: {err}");
            ExitCode::from(1)
        }
    }
}
