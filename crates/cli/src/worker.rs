//! `switchyard worker`: aggregates partitions of a cluster's event stream
//! (NATS JetStream) into PostgreSQL, under leases shared with the other
//! workers (docs/deploy.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_events::jetstream::{JetStreamConfig, stream_partitions};
use switchyard_server::cluster::{Worker, WorkerConfig};

use crate::serve::{init_logging, parse_duration, shutdown_signal};

/// Settings of `switchyard worker`; every flag can also come from the
/// environment variable named beside it.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The cluster's PostgreSQL config store (`postgres://...`), where
    /// leases and the partitions' aggregates are kept.
    #[arg(long, env = "SWITCHYARD_STORE_URL")]
    store_url: String,
    /// The NATS server (JetStream) holding the event stream.
    #[arg(long, env = "SWITCHYARD_NATS_URL")]
    nats_url: String,
    /// Partitions of the event stream, used only if this worker creates
    /// it (otherwise the stream's own count is used).
    #[arg(long, env = "SWITCHYARD_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// Address for `/healthz` and `/metrics`.
    #[arg(
        long,
        env = "SWITCHYARD_WORKER_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    listen: SocketAddr,
    /// How long a partition lease lasts without renewal: a stopped
    /// worker's partitions are taken over after about this long.
    #[arg(long, env = "SWITCHYARD_LEASE_TTL", default_value = "5s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// How often a partition's aggregates are saved while events arrive
    /// (results lag the stream by about this much).
    #[arg(long, env = "SWITCHYARD_SAVE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    save_interval: Duration,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "pretty")]
    log_format: String,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work(args))
}

async fn work(args: WorkerArgs) -> anyhow::Result<()> {
    if !(args.store_url.starts_with("postgres://") || args.store_url.starts_with("postgresql://")) {
        anyhow::bail!("a worker needs the cluster's PostgreSQL store: --store-url postgres://...");
    }
    let store = Arc::new(
        switchyard_store::SqlStore::open_postgres(&args.store_url)
            .await
            .context("cannot open the config store")?,
    );
    let jetstream = JetStreamConfig {
        url: args.nats_url.clone(),
        partitions: args.partitions,
        ..JetStreamConfig::default()
    };
    let partitions = stream_partitions(&jetstream)
        .await
        .with_context(|| format!("cannot open the event stream at {}", args.nats_url))?;
    let mut config = WorkerConfig::new(jetstream);
    config.lease_ttl = args.lease_ttl;
    config.save_interval = args.save_interval;
    config.round_interval = (args.lease_ttl / 4).max(Duration::from_millis(100));
    tracing::info!(id = %config.id, partitions, "worker starting");
    let worker = Worker::new(store, config, partitions);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%address, "worker operations endpoints listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let ops = tokio::spawn(switchyard_server::cluster::serve_worker_ops(
        listener,
        worker.clone(),
        stopped.clone(),
    ));
    let running = tokio::spawn(worker.run(stopped));
    shutdown_signal().await;
    tracing::info!("worker stopping: saving and handing back its partitions");
    stop.send_replace(true);
    let _ = running.await;
    let _ = ops.await;
    Ok(())
}
