//! The `kvd` binary: flags, logging, signals; everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use kvd::{
    Server,
    config::{Args, Command, TokenCommand},
};

/// `kvd token new`: prints the new token on stdout, once.
fn token_new(role: &str, name: &str, file: &std::path::Path) -> ExitCode {
    let role = match kvd::auth::Role::parse(role) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kvd: --role: {e}");
            return ExitCode::from(2);
        }
    };
    match kvd::auth::append_new(file, role, name) {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "kvd: token {name:?} ({role}) added to {}; it is shown only now. A running node \
                 takes it on SIGHUP.",
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kvd: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Token(TokenCommand::New {
        role,
        name,
        auth_file,
    })) = &args.command
    {
        return token_new(role, name, auth_file);
    }
    let cfg = match args.validate() {
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
        .worker_threads(cfg.worker_threads)
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
        if let Err(e) = reload_on_sighup(server.node().clone()) {
            tracing::error!(error = %e, "cannot install the SIGHUP handler");
            return ExitCode::FAILURE;
        }
        match server.run(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kvd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Re-reads `--auth-file` on every SIGHUP (a bad file keeps the tokens in use).
fn reload_on_sighup(node: kvd::Node) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match node.auth().reload() {
                Ok(n) => tracing::info!(tokens = n, "SIGHUP: --auth-file re-read"),
                Err(e) => {
                    tracing::warn!(error = %e, "SIGHUP: --auth-file not taken; the tokens in use stay")
                }
            }
        }
    });
    Ok(())
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
