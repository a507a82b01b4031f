//! The `kvd` binary: flags, logging, signals; everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use kvd::{KvdError, Server, config::Args};

fn main() -> ExitCode {
    let cfg = match Args::parse().validate() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("kvd: {e}\n\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    let _guard = match kvd::logging::init(&cfg.log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("kvd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("kvd").build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::bind(cfg).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("kvd: {e}");
                return match e {
                    KvdError::Unsupported(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        server.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops kvd");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
    }
}
