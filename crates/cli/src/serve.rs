//! `switchyard serve`: configuration, logging, store, bootstrap, signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
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
    /// experiment) if it does not exist.
    #[arg(long, env = "SWITCHYARD_DEMO")]
    demo: bool,
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
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format)?;
    // One thread needs no work stealing: a current-thread runtime serves
    // it with less scheduling per task wake-up.
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
        .block_on(serve(args))
}

fn init_logging(format: &str) -> anyhow::Result<()> {
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let store_url = match &args.store_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", args.data_dir.join("config.db").display()),
    };
    let store = switchyard_store::open(&store_url)
        .await
        .context("cannot open the config store")?;
    tracing::info!(backend = store.backend(), "config store open");
    if let Some(boot) = switchyard_store::bootstrap(store.as_ref(), args.demo)
        .await
        .context("cannot prepare the config store")?
    {
        // Printed once, on the terminal only: the store keeps only its hash.
        println!();
        println!("  Switchyard is set up. Your admin API key (shown only this once):");
        println!();
        println!("      {}", boot.admin_key_secret);
        println!();
        println!(
            "  Try:  curl -H 'Authorization: Bearer <key>' http://{}/api/v1/projects",
            args.listen
        );
        println!();
    }
    let config = ServerConfig {
        body_limit: args.body_limit,
        rate_limit_per_key: args.rate_limit_per_key,
        stream_keepalive: Duration::from_secs(15),
    };
    let events_dir = args.data_dir.join("events");
    let events =
        switchyard_events::Events::open(&events_dir, switchyard_events::EventsConfig::default())
            .await
            .with_context(|| format!("cannot open the event log in {}", events_dir.display()))?;
    let state = AppState::new(store, config)
        .await
        .context("cannot load configuration snapshots")?
        .with_events(std::sync::Arc::new(events));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %args.listen, "listening");
    switchyard_server::run(listener, state, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
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
