//! kvctl, the operator's tool for kvd.
//!
//! ```text
//! main.rs     parse the command line, run it on a small runtime, map the outcome to an exit code
//! cli.rs      the clap `Cli` (global flags, subcommands) and dispatch; cli/<subcommand>.rs each
//! client.rs   `Error` (the client library's, plus kvctl's own) and the `Exit` code table;
//!             the talking is `shared::client`'s (endpoints, the master, retries)
//! output.rs   text and JSON rendering shared by the subcommands
//! tui.rs      `kvctl tui`, the operator console (tui/: state, update, render, screens)
//! ```
//!
//! Results go to stdout, errors to stderr as `kvctl: <message>`; nothing else is printed.

mod cli;
mod client;
mod output;
mod tui;

use std::process::ExitCode;

use clap::Parser as _;

use crate::{cli::Cli, client::Exit};

fn main() -> ExitCode {
    // Usage errors exit here with clap's code 2, which is `Exit::Usage`.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvctl: cannot start the async runtime: {e}");
            return Exit::Usage.into();
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(()) => Exit::Success.into(),
        // The reader of stdout went away (`kvctl scan | head`): nothing to report.
        Err(e) if e.is_broken_pipe() => Exit::Success.into(),
        Err(e) => {
            eprintln!("kvctl: {e}");
            e.exit().into()
        }
    }
}
