//! `switchyard serve`: configuration, logging, store, bootstrap, signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_server::cors::CorsOrigins;
use switchyard_server::net::NetConfig;
use switchyard_server::{AppState, ServerConfig};

/// Settings of `switchyard serve`; every flag can also come from the
/// environment variable named beside it.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory for embedded data (the SQLite config store, the event log).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// Config store URL: `sqlite://PATH` or `postgres://...`. Default: a
    /// SQLite file in the data directory.
    #[arg(long, env = "SWITCHYARD_STORE_URL")]
    store_url: Option<String>,
    /// Also create the `demo` project (flags, a segment, a running
    /// experiment) if it does not exist, and send simulated traffic to its
    /// experiment (`checkout-test` in `development`: 20 units a second,
    /// 20,000 in all, every event labelled simulated) so its results show
    /// at once.
    #[arg(long, env = "SWITCHYARD_DEMO")]
    demo: bool,
    /// How long a web UI session lasts after sign-in (docs/users.md).
    #[arg(long, env = "SWITCHYARD_SESSION_TTL", default_value = "12h", value_parser = parse_duration)]
    session_ttl: Duration,
    /// Mark session cookies `Secure`: `auto` (when the request came over
    /// HTTPS, `X-Forwarded-Proto: https`), `always` or `never`.
    #[arg(long, env = "SWITCHYARD_SECURE_COOKIES", default_value = "auto", value_parser = ["auto", "always", "never"])]
    secure_cookies: String,
    /// Reverse proxies in front of the server, as comma-separated address
    /// ranges (`10.0.0.0/8,192.168.1.7/32`): for requests from them, the
    /// client address used by the sign-in rate limit is read from
    /// `X-Forwarded-For`. Empty: the TCP peer is the client.
    #[arg(long, env = "SWITCHYARD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<switchyard_server::ui::IpNet>,
    /// Run as a node of a cluster (docs/deploy.md): events go to this NATS
    /// server's JetStream stream (spooled in the data directory while it
    /// is unreachable), and results are the merge of what the
    /// `switchyard worker`s saved. Needs a PostgreSQL `--store-url`.
    #[arg(long, env = "SWITCHYARD_NATS_URL")]
    nats_url: Option<String>,
    /// Partitions of the event stream, used only if this node creates it
    /// (otherwise the stream's own count is used).
    #[arg(long, env = "SWITCHYARD_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    #[command(flatten)]
    http: HttpArgs,
}

/// The HTTP serving settings `serve` and `relay` share; every flag can also
/// come from the environment variable named beside it.
#[derive(Debug, clap::Args)]
pub(crate) struct HttpArgs {
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SWITCHYARD_BODY_LIMIT", default_value_t = 4 << 20)]
    body_limit: usize,
    /// Requests per second allowed per API key (0: unlimited).
    #[arg(long, env = "SWITCHYARD_RATE_LIMIT", default_value_t = 0)]
    rate_limit_per_key: u32,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "pretty")]
    log_format: String,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, env = "SWITCHYARD_THREADS")]
    threads: Option<usize>,
    /// Address of a second listener for operations endpoints (`/metrics`
    /// without a key, `/healthz`, `/readyz`). Without it, `/metrics` on
    /// `--listen` needs an organisation-wide admin key.
    #[arg(long, env = "SWITCHYARD_OPS_LISTEN")]
    ops_listen: Option<SocketAddr>,
    /// Open connections at most; past it new ones get a 503. Default: the
    /// open-file limit (`ulimit -n`) less 256 kept for the store, the
    /// event log and the operations listener.
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Time a client has to send a complete request head (`10s`, `500ms`).
    #[arg(long, env = "SWITCHYARD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Time a client has to send a request body, once the server reads it.
    #[arg(long, env = "SWITCHYARD_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    body_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    /// Keep it above your load balancer's idle timeout (60 s on many).
    #[arg(long, env = "SWITCHYARD_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// On SIGTERM, how long requests in flight may take to finish before
    /// their connections are closed.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Origins whose web pages may call OFREP, the SDK routes and event
    /// ingestion: `*` (any), `none`, or a comma-separated list such as
    /// `https://app.example.com,http://localhost:3000`.
    #[arg(long, env = "SWITCHYARD_CORS_ORIGINS", default_value = "*")]
    cors_origins: CorsOrigins,
}

impl HttpArgs {
    /// The connection limits, logged.
    pub(crate) fn net(&self) -> NetConfig {
        let net = NetConfig {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: max_connections(self.max_connections),
            shutdown_timeout: self.shutdown_timeout,
        };
        tracing::info!(
            max_connections = net.max_connections,
            header_read_timeout = ?net.header_read_timeout,
            body_read_timeout = ?net.body_read_timeout,
            idle_timeout = ?net.idle_timeout,
            "connection limits"
        );
        net
    }

    /// The HTTP layer's settings (the UI's are the defaults).
    pub(crate) fn server_config(&self) -> ServerConfig {
        ServerConfig {
            body_limit: self.body_limit,
            rate_limit_per_key: self.rate_limit_per_key,
            stream_keepalive: Duration::from_secs(15),
            net: self.net(),
            cors: self.cors_origins.clone(),
            ..ServerConfig::default()
        }
    }

    /// Logging, the open-file limit, then the async runtime running `main`.
    pub(crate) fn run<F: std::future::Future<Output = anyhow::Result<()>>>(
        &self,
        main: impl FnOnce() -> F,
    ) -> anyhow::Result<()> {
        init_logging(&self.log_format)?;
        raise_open_file_limit();
        // One thread needs no work stealing: a current-thread runtime serves
        // it with less scheduling per task wake-up.
        let mut rt = match self.threads {
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
            .block_on(main())
    }

    /// The operations listener, when `--ops-listen` asks for one.
    pub(crate) async fn ops_listener(&self) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        let Some(addr) = self.ops_listen else {
            return Ok(None);
        };
        let ops = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--ops-listen)"))?;
        let address = ops.local_addr().unwrap_or(addr);
        tracing::info!(%address, "operations endpoints listening");
        Ok(Some(ops))
    }
}

/// A duration such as `10s`, `500ms`, `2m` or `1h`; a bare number is
/// seconds. Zero is refused: every limit must hold.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ms, s, m or h"
            ));
        }
    };
    if !(seconds > 0.0 && seconds.is_finite() && seconds < 1e9) {
        return Err(format!("{s:?}: a timeout must be more than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// File descriptors kept for everything but client connections.
const FD_RESERVE: u64 = 256;

/// The soft open-file limit (`ulimit -n`), where the system says it.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// Raises the soft open-file limit to the hard one, as far as the system
/// lets an unprivileged process: each client connection, an SSE stream
/// above all, holds a descriptor, and the usual soft default (1,024) would
/// cap the server at about 800 streams. Logs the limit it got, which also
/// sets the default `--max-connections`.
pub(crate) fn raise_open_file_limit() {
    use rlimit::Resource;
    let before = Resource::NOFILE.get().ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            let hard = Resource::NOFILE.get().ok().map(|(_, hard)| hard);
            tracing::info!(
                open_file_limit = now,
                was = before.map(|(soft, _)| soft),
                hard_limit = hard,
                "open-file limit raised to the hard limit"
            );
        }
        Err(e) => tracing::warn!(
            error = %e,
            open_file_limit = before.map(|(soft, _)| soft),
            "cannot raise the open-file limit; connections are capped by it"
        ),
    }
}

/// `--max-connections`, or one derived from the open-file limit: the cap
/// exists so the server refuses a connection before the process runs out
/// of descriptors (then it could not even accept one to refuse it).
pub(crate) fn max_connections(asked: Option<usize>) -> usize {
    let limit = open_file_limit();
    let room = limit.map(|l| l.saturating_sub(FD_RESERVE).max(16));
    match (asked, room) {
        (Some(n), Some(room)) if n as u64 > room => {
            tracing::warn!(
                max_connections = n,
                open_file_limit = limit,
                "--max-connections is above what the open-file limit leaves room for; \
                 raise `ulimit -n` or connections may fail with \"too many open files\""
            );
            n
        }
        (Some(n), _) => n,
        (None, Some(room)) => usize::try_from(room).unwrap_or(usize::MAX).min(1 << 20),
        (None, None) => NetConfig::default().max_connections,
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.http.run(|| serve(&args))
}

pub(crate) fn init_logging(format: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        "json" => builder.json().init(),
        "pretty" => builder.init(),
        other => anyhow::bail!("unknown --log-format {other:?}: use pretty or json"),
    }
    Ok(())
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let store_url = match &args.store_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", args.data_dir.join("config.db").display()),
    };
    // In a cluster the node also reads the workers' partitions from the
    // store, so it holds the PostgreSQL store itself.
    let cluster_store = match &args.nats_url {
        Some(_)
            if store_url.starts_with("postgres://") || store_url.starts_with("postgresql://") =>
        {
            Some(std::sync::Arc::new(
                switchyard_store::SqlStore::open_postgres(&store_url)
                    .await
                    .context("cannot open the config store")?,
            ))
        }
        Some(_) => anyhow::bail!(
            "--nats-url runs a cluster node, which needs a PostgreSQL config store (--store-url postgres://...)"
        ),
        None => None,
    };
    let store: std::sync::Arc<dyn switchyard_store::ConfigStore> = match &cluster_store {
        Some(s) => s.clone(),
        None => switchyard_store::open(&store_url)
            .await
            .context("cannot open the config store")?,
    };
    tracing::info!(backend = store.backend(), "config store open");
    if let Some(boot) = switchyard_store::bootstrap(store.as_ref(), args.demo)
        .await
        .context("cannot prepare the config store")?
    {
        // Printed once, on the terminal only: the store keeps only its hash.
        terminal(&format!(
            "\n  Switchyard is set up. Your admin API key (shown only this once):\n\n      {}\n\n  \
             Try:  curl -H 'Authorization: Bearer <key>' http://{}/api/v1/projects\n",
            boot.admin_key_secret, args.listen
        ));
    }
    let config = ServerConfig {
        ui: switchyard_server::ui::UiConfig {
            session_ttl: args.session_ttl,
            secure_cookies: match args.secure_cookies.as_str() {
                "always" => Some(true),
                "never" => Some(false),
                _ => None,
            },
            trusted_proxies: args.trusted_proxies.clone(),
            ..Default::default()
        },
        ..args.http.server_config()
    };
    let events_dir = args.data_dir.join("events");
    let aggregation_config =
        switchyard_server::aggregation::AggregationConfig::new(args.data_dir.join("aggregator"));
    let mut jetstream = None;
    let (events, aggregation) = match (&args.nats_url, cluster_store) {
        (Some(url), Some(sql)) => {
            let (events, stream) = cluster_events(url, args.partitions, &events_dir).await?;
            jetstream = Some(stream);
            (
                events,
                switchyard_server::aggregation::Aggregation::for_partitions(
                    aggregation_config,
                    sql,
                ),
            )
        }
        _ => (
            switchyard_events::Events::open(
                &events_dir,
                switchyard_events::EventsConfig::default(),
            )
            .await
            .with_context(|| format!("cannot open the event log in {}", events_dir.display()))?,
            switchyard_server::aggregation::Aggregation::open(aggregation_config)
                .context("cannot open the aggregator's checkpoint directory")?,
        ),
    };
    let mut state = AppState::new(store, config)
        .await
        .context("cannot load configuration snapshots")?
        .with_events(std::sync::Arc::new(events))
        .with_aggregation(aggregation);
    if args.demo {
        state = state.with_simulation(switchyard_server::simulate::Simulation::demo());
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%address, "listening");
    if let Some(token) = switchyard_server::ui::setup_link(&state)
        .await
        .context("cannot read the web UI users")?
    {
        // Printed on the terminal only; valid once, for an hour, on this node.
        terminal(&format!(
            "\n  No web UI user yet. Set the first administrator's email and password at\n      \
             http://{address}/ui/setup?token={token}\n  (single use, valid for 1 hour), or run:  \
             switchyard user add --admin EMAIL\n"
        ));
    }
    let ops = args.http.ops_listener().await?;
    let events = state.events.clone();
    switchyard_server::run_with_ops(listener, ops, state, shutdown_signal())
        .await
        .context("server failed")?;
    if let Some(js) = jetstream {
        // Queued exposures first, then the spool's forwarder.
        if let Some(ev) = events {
            ev.close();
        }
        js.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A cluster node's event ingestion: the JetStream stream, spooled in
/// `dir/spool` while NATS is unreachable; dead letters stay on the node.
async fn cluster_events(
    url: &str,
    partitions: u32,
    dir: &std::path::Path,
) -> anyhow::Result<(
    switchyard_events::Events,
    std::sync::Arc<switchyard_events::jetstream::JetStreamEvents>,
)> {
    use switchyard_events::jetstream::{JetStreamConfig, JetStreamEvents};
    let defaults = switchyard_events::EventsConfig::default();
    let metrics = std::sync::Arc::new(switchyard_events::EventMetrics::new());
    let jetstream = JetStreamConfig {
        url: url.to_string(),
        partitions,
        ..JetStreamConfig::default()
    };
    // The spool holds events only while NATS is away; past its backlog
    // bound (512 MiB) it refuses new events (429) rather than grow.
    let stream = JetStreamEvents::connect(
        jetstream,
        &dir.join("spool"),
        switchyard_events::LogConfig::default(),
        metrics.clone(),
    )
    .await
    .with_context(|| format!("cannot open the event stream at {url}"))?;
    let dead = switchyard_events::EventLog::open(
        &dir.join("dead-letters"),
        defaults.dead_letter_log,
        metrics.dead_letter_log.clone(),
    )
    .with_context(|| format!("cannot open the dead-letter log in {}", dir.display()))?;
    let events = switchyard_events::Events::with_streams(
        stream.clone(),
        std::sync::Arc::new(dead),
        defaults.limits,
        defaults.exposures,
        metrics,
    )
    .await
    .context("cannot start event ingestion")?;
    Ok((events, stream))
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Writes `text` and a newline to standard output for the person who
/// started the server. A closed or broken stdout (a supervisor that went
/// away, a pipe nobody reads) must not stop the server, as `println!`
/// would by panicking: the error is logged and ignored.
fn terminal(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "cannot write to standard output");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_units_and_zero_is_refused() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "0s", "", "s", "ten", "5d", "-1s", "1e99"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_connection_cap_leaves_room_under_the_open_file_limit() {
        let limit = open_file_limit().expect("Linux reports its open-file limit");
        let cap = max_connections(None) as u64;
        assert!(
            cap + FD_RESERVE <= limit.max(16 + FD_RESERVE),
            "cap {cap}, limit {limit}"
        );
        assert_eq!(max_connections(Some(7)), 7);
    }
}
