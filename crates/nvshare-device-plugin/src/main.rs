//! `nvshare-device-plugin`: the kubelet device plugin for nvshare. Exit
//! codes: 0 on SIGTERM/SIGINT, 1 when it cannot run, 2 for a bad command
//! line.

use clap::Parser;
use nvshare_device_plugin::config::Cli;
use std::io::IsTerminal;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

fn main() -> ExitCode {
    let config = Cli::parse().into_config();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_filter))
        .with_writer(std::io::stderr)
        // Colour only for people: container logs and files get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let signals = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let (Ok(mut term), Ok(mut int)) = signals else {
            tracing::error!("could not install the SIGTERM/SIGINT handlers");
            return ExitCode::from(1);
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down");
            let _ = shutdown_tx.send(true);
        });
        match nvshare_device_plugin::plugin::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::from(1)
            }
        }
    })
}
