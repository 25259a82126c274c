//! `switchyard-loadgen`: the load generator of Switchyard's benchmarks
//! (`bench/http.sh`).
//!
//! # Layout
//! - `target.rs`: the server address (loopback only) and a keep-alive
//!   HTTP/1 connection (hyper's client connection, no pool, no TLS).
//! - `http.rs`: `http`, N keep-alive connections sending one request after
//!   another for a fixed time: requests/s, latency percentiles, errors.
//! - `sse.rs`: `sse`, N concurrent server-sent-event clients: how many the
//!   server holds, its memory, and how long a change takes to reach all.
//! - `latency.rs`: `latency`, the time from an event batch's
//!   acknowledgement to the results API counting it, against a running
//!   `switchyard serve` (it creates its own project and experiment).
//! - `stats.rs`: latency percentiles; `/proc` readings of the server.
//!
//! Each subcommand prints a human summary on stderr and one JSON object on
//! stdout, for scripts. Everything is bounded in time and refuses targets
//! that are not on the loopback interface.

mod http;
mod latency;
mod sse;
mod stats;
mod target;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Runtime worker threads (1: a single-threaded runtime, the cheapest).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keep-alive request load on one endpoint.
    Http(http::Args),
    /// Concurrent server-sent-event clients.
    Sse(sse::Args),
    /// Event acknowledged to result updated: sends event batches to a
    /// running server and times how long each takes to show in the
    /// results API.
    Latency(latency::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    let report = rt.block_on(async {
        match cli.command {
            Command::Http(args) => http::run(args).await,
            Command::Sse(args) => sse::run(args).await,
            Command::Latency(args) => latency::run(args).await,
        }
    })?;
    println!("{report}");
    Ok(())
}
