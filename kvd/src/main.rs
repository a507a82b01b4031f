//! The `kvd` binary: flags, logging, signals; everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use kvd::{Server, config::Args};

fn main() -> ExitCode {
    let cfg = match Args::parse().validate() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("kvd: {e}\n\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    // Before the log files create anything under the data directory.
    if let Err(e) = kvd::storage::meta::check_data_dir(&cfg.data_dir, cfg.data_dir_is_default) {
        eprintln!("kvd: {e}");
        return ExitCode::FAILURE;
    }
    let _guard = match kvd::logging::init(&cfg.log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("kvd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kvd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Install the handlers before the start-up line, so a signal right after it is caught.
        let shutdown = match shutdown_signal() {
            Ok(fut) => fut,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGINT/SIGTERM handlers");
                return ExitCode::FAILURE;
            }
        };
        let server = match Server::bind(cfg).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("kvd: {e}");
                return ExitCode::FAILURE;
            }
        };
        match server.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kvd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Installs the SIGINT and SIGTERM handlers; the returned future completes on either.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        }
    })
}
