//! `switchyard relay`: settings, logging, signals; the work is
//! `switchyard_relay`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::serve::{HttpArgs, parse_duration, shutdown_signal};

/// Settings of `switchyard relay`; every flag can also come from the
/// environment variable named beside it (prefer the variable for keys:
/// command lines are visible to every user of the machine). `Debug`
/// leaves the keys out.
#[derive(clap::Args)]
pub struct RelayArgs {
    /// The upstream's base URL: a Switchyard server, or another relay.
    #[arg(long, env = "SWITCHYARD_UPSTREAM")]
    upstream: String,
    /// A server SDK key of each environment to serve (repeat the flag, or
    /// separate them with commas in the variable).
    #[arg(
        long = "key",
        env = "SWITCHYARD_RELAY_KEYS",
        value_delimiter = ',',
        required = true,
        hide_env_values = true
    )]
    keys: Vec<String>,
    /// Address to listen on.
    #[arg(
        long,
        env = "SWITCHYARD_RELAY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    listen: SocketAddr,
    /// Directory for the relay's event log and its synced copies.
    #[arg(
        long,
        env = "SWITCHYARD_RELAY_DATA_DIR",
        default_value = "./switchyard-relay-data"
    )]
    data_dir: PathBuf,
    /// How often each environment's key list is re-read from the
    /// upstream: a key revoked there stops working here within this.
    #[arg(long, env = "SWITCHYARD_KEY_REFRESH", default_value = "5s", value_parser = parse_duration)]
    key_refresh: Duration,
    /// Longest wait between two attempts to forward events to an upstream
    /// that is down (the wait doubles from 500 ms up to this).
    #[arg(long, env = "SWITCHYARD_FORWARD_RETRY_MAX", default_value = "30s", value_parser = parse_duration)]
    forward_retry_max: Duration,
    #[command(flatten)]
    http: HttpArgs,
}

impl std::fmt::Debug for RelayArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayArgs")
            .field("upstream", &self.upstream)
            .field("keys", &self.keys.len())
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

pub fn run(args: RelayArgs) -> anyhow::Result<()> {
    args.http.run(|| relay(&args))
}

async fn relay(args: &RelayArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let mut config = switchyard_relay::RelayConfig::new(
        args.upstream.clone(),
        args.keys.clone(),
        args.data_dir.clone(),
    );
    config.key_refresh = args.key_refresh;
    config.forward_backoff = (
        config.forward_backoff.0.min(args.forward_retry_max),
        args.forward_retry_max,
    );
    config.server = args.http.server_config();
    let relay = switchyard_relay::Relay::start(config)
        .await
        .context("cannot start the relay")?;
    tracing::info!(upstream = %args.upstream, sources = relay.sources.report_len(), "relay started");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%address, "listening");
    let ops = args.http.ops_listener().await?;
    relay
        .serve(listener, ops, shutdown_signal())
        .await
        .context("relay failed")?;
    tracing::info!("stopped");
    Ok(())
}
