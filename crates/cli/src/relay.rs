//! `switchyard relay`: settings, logging, signals; the work is
//! `switchyard_relay`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_server::ServerConfig;
use switchyard_server::cors::CorsOrigins;
use switchyard_server::net::NetConfig;

use crate::serve::{
    init_logging, max_connections, parse_duration, raise_open_file_limit, shutdown_signal,
};

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
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Directory for the relay's event log and its synced copies.
    #[arg(
        long,
        env = "SWITCHYARD_DATA_DIR",
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
    /// Address of a second listener for `/metrics` (without a key),
    /// `/healthz` and `/readyz`.
    #[arg(long, env = "SWITCHYARD_OPS_LISTEN")]
    ops_listen: Option<SocketAddr>,
    /// Open connections at most (default: from the open-file limit).
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SWITCHYARD_BODY_LIMIT", default_value_t = 4 << 20)]
    body_limit: usize,
    /// Requests per second allowed per API key (0: unlimited).
    #[arg(long, env = "SWITCHYARD_RATE_LIMIT", default_value_t = 0)]
    rate_limit_per_key: u32,
    /// Time a client has to send a complete request head.
    #[arg(long, env = "SWITCHYARD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Time a client has to send a request body.
    #[arg(long, env = "SWITCHYARD_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    body_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[arg(long, env = "SWITCHYARD_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// On SIGTERM, how long requests in flight may take to finish.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Origins whose web pages may call OFREP, the SDK routes and event
    /// ingestion: `*`, `none`, or a comma-separated list.
    #[arg(long, env = "SWITCHYARD_CORS_ORIGINS", default_value = "*")]
    cors_origins: CorsOrigins,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "pretty")]
    log_format: String,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, env = "SWITCHYARD_THREADS")]
    threads: Option<usize>,
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
    init_logging(&args.log_format)?;
    raise_open_file_limit();
    let mut rt = match args.threads {
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all();
    rt.build()
        .context("cannot start the async runtime")?
        .block_on(relay(args))
}

async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let net = NetConfig {
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: max_connections(args.max_connections),
        shutdown_timeout: args.shutdown_timeout,
    };
    let mut config =
        switchyard_relay::RelayConfig::new(args.upstream.clone(), args.keys, args.data_dir);
    config.key_refresh = args.key_refresh;
    config.forward_backoff = (
        config.forward_backoff.0.min(args.forward_retry_max),
        args.forward_retry_max,
    );
    config.server = ServerConfig {
        body_limit: args.body_limit,
        rate_limit_per_key: args.rate_limit_per_key,
        stream_keepalive: Duration::from_secs(15),
        net,
        cors: args.cors_origins,
        ..ServerConfig::default()
    };
    let relay = switchyard_relay::Relay::start(config)
        .await
        .context("cannot start the relay")?;
    tracing::info!(upstream = %args.upstream, sources = relay.sources.report_len(), "relay started");
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%address, "listening");
    let ops = match args.ops_listen {
        Some(addr) => {
            let ops = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--ops-listen)"))?;
            let address = ops.local_addr().unwrap_or(addr);
            tracing::info!(%address, "operations endpoints listening");
            Some(ops)
        }
        None => None,
    };
    relay
        .serve(listener, ops, shutdown_signal())
        .await
        .context("relay failed")?;
    tracing::info!("stopped");
    Ok(())
}
