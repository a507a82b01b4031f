//! Small helpers shared by the bench probes (`loadgen`, `replag`).

use std::time::{Duration, Instant};

use shared::{KvClient, addr::parse_endpoint};

/// Connects to `endpoint`, exiting the probe with a message if it cannot.
pub async fn client(endpoint: &str) -> KvClient {
    let ep = parse_endpoint(endpoint, 3000).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    shared::transport::connect(&ep, &shared::transport::Credentials::default())
        .await
        .unwrap_or_else(|e| {
            eprintln!("cannot connect to {ep}: {e}");
            std::process::exit(3);
        })
}

/// A request context with a 10 s deadline.
#[must_use]
pub fn ctx() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(10);
    ctx
}
