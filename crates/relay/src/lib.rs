//! `switchyard relay`: a stateless process near the applications that
//! syncs one or more environments from an upstream Switchyard server (or
//! another relay) and serves their SDKs: OFREP, the SDK configuration,
//! streams and key list, and event ingestion (docs/relay.md).
//!
//! # Layout
//! - `mirror.rs`: [`Mirror`], the synced copies (documents and key
//!   lists), read by the server's own snapshots and key ring through the
//!   data-plane methods of `ConfigStore`; the control plane is refused.
//! - `upstream.rs`: [`Sources`], one per key: the SDK client syncing the
//!   document, the key-list poller, the disk copies, and `/readyz`.
//! - `forward.rs`: the forwarder, from the relay's durable event log to
//!   the upstream's `POST /api/v1/events`, retried until acknowledged.
//! - `metrics.rs`: the relay's metric families.
//!
//! The HTTP side is the server's own code ([`switchyard_server::data_plane_app`]
//! on [`switchyard_server::run_app`]): the same handlers, limits, streams
//! and errors as a server node.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod forward;
mod metrics;
pub mod mirror;
pub mod upstream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_server::{AppState, ServerConfig};
use tokio::net::TcpListener;

pub use mirror::Mirror;
pub use upstream::Sources;

/// Settings of a relay. `Debug` leaves the keys out.
#[derive(Clone)]
pub struct RelayConfig {
    /// The upstream's base URL (a server or another relay).
    pub upstream: String,
    /// One server SDK key per environment to serve.
    pub keys: Vec<String>,
    /// The relay's own data: the event log and the synced copies.
    pub data_dir: PathBuf,
    /// The HTTP layer's settings, as for a server.
    pub server: ServerConfig,
    /// How often each key list is polled.
    pub key_refresh: Duration,
    /// The event log's settings.
    pub events: switchyard_events::EventsConfig,
    /// Retry backoff of the forwarder.
    pub forward_backoff: (Duration, Duration),
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("upstream", &self.upstream)
            .field("keys", &self.keys.len())
            .field("data_dir", &self.data_dir)
            .field("key_refresh", &self.key_refresh)
            .finish_non_exhaustive()
    }
}

impl RelayConfig {
    pub fn new(upstream: impl Into<String>, keys: Vec<String>, data_dir: PathBuf) -> Self {
        RelayConfig {
            upstream: upstream.into(),
            keys,
            data_dir,
            server: ServerConfig::default(),
            key_refresh: Duration::from_secs(5),
            events: relay_events_config(),
            forward_backoff: (Duration::from_millis(500), Duration::from_secs(30)),
        }
    }
}

/// Events waiting to be forwarded at most: past it, the relay answers 429
/// to new events rather than filling its disk.
pub const MAX_BACKLOG_BYTES: u64 = 512 << 20;

/// The relay's event log: forwarded segments are deleted once the log
/// passes the backlog bound and four segments more (room for what is
/// accepted but not yet durable), and appends are refused
/// while the forwarder is more than [`MAX_BACKLOG_BYTES`] behind, so
/// retention never deletes what was not forwarded.
fn relay_events_config() -> switchyard_events::EventsConfig {
    let mut config = switchyard_events::EventsConfig::default();
    config.log.segment_bytes = 32 << 20;
    config.log.max_consumer_lag = Some(MAX_BACKLOG_BYTES);
    config.log.retention_bytes = Some(MAX_BACKLOG_BYTES + (128 << 20));
    config
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("cannot open the relay's event log: {0}")]
    Events(#[from] switchyard_events::StreamError),
    #[error("cannot load the synced configuration: {0}")]
    Store(#[from] switchyard_store::StoreError),
}

/// A started relay: its handlers' state and its background work.
#[derive(Debug)]
pub struct Relay {
    pub state: AppState,
    pub sources: Arc<Sources>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Checks the settings, loads the copies on disk, starts syncing every
    /// key and forwarding events. Serves nothing yet: see [`Relay::serve`].
    pub async fn start(config: RelayConfig) -> Result<Relay, RelayError> {
        let url = reqwest::Url::parse(&config.upstream)
            .map_err(|e| RelayError::Config(format!("upstream URL {:?}: {e}", config.upstream)))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(RelayError::Config(format!(
                "upstream URL {:?} is not an http(s) URL",
                config.upstream
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // They would end up in logs; the relay authenticates with its keys.
            return Err(RelayError::Config(
                "the upstream URL must not carry a user name or password".into(),
            ));
        }
        let mut keys: Vec<String> = config
            .keys
            .iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return Err(RelayError::Config(
                "a relay needs at least one server SDK key (--key)".into(),
            ));
        }
        if let Some(bad) = keys.iter().find(|k| !k.starts_with("sy_server_")) {
            let shown: String = bad.chars().take(10).collect();
            return Err(RelayError::Config(format!(
                "--key {shown}...: a relay syncs with server SDK keys (sy_server_...)"
            )));
        }
        let io = |context: String| move |source| RelayError::Io { context, source };
        let cache_dir = config.data_dir.join("sources");
        std::fs::create_dir_all(&cache_dir)
            .map_err(io(format!("cannot create {}", cache_dir.display())))?;
        let events_dir = config.data_dir.join("events");
        let events = switchyard_events::Events::open(&events_dir, config.events.clone()).await?;
        let instance = instance_id(&events_dir)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("switchyard-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RelayError::Config(format!("cannot build the HTTP client: {e}")))?;
        let forwarding = Arc::new(forward::ForwardStats::default());
        let sources = Sources::start(
            &config.upstream,
            &keys,
            &cache_dir,
            config.key_refresh,
            http.clone(),
            forwarding,
        )
        .map_err(RelayError::Config)?;
        let store: Arc<dyn switchyard_store::ConfigStore> = sources.mirror.clone();
        let events = Arc::new(events);
        let state = AppState::new(store, config.server.clone())
            .await?
            .with_events(events.clone())
            .with_upstream(sources.clone());
        let _ = sources.serving.set(state.snapshots.clone());
        let stop = state.shutdown.subscribe();
        let mut tasks = vec![tokio::spawn(sources.clone().follow_keys(stop.clone()))];
        let parked_dir = config.data_dir.join("parked");
        let parked: Arc<dyn switchyard_events::EventStream> = Arc::new(
            switchyard_events::EventLog::open(
                &parked_dir,
                config.events.log.clone(),
                switchyard_events::LogMetrics::default(),
            )
            .map_err(io(format!("cannot open {}", parked_dir.display())))?,
        );
        let _ = sources.parked.set(parked.clone());
        for (role, stream) in [
            (
                forward::Role::Main {
                    parked: parked.clone(),
                },
                events.stream().clone(),
            ),
            (forward::Role::Parked, parked),
        ] {
            let forwarder = forward::Forwarder {
                sources: sources.clone(),
                role,
                stream,
                http: http.clone(),
                instance: instance.clone(),
                backoff_min: config.forward_backoff.0,
                backoff_max: config.forward_backoff.1,
                idle_wait: Duration::from_millis(200),
            };
            tasks.push(tokio::spawn(forwarder.run(stop.clone())));
        }
        Ok(Relay {
            state,
            sources,
            tasks,
        })
    }

    /// Serves the data plane on `listener` (and the operations endpoints
    /// on `ops`) until `shutdown`, then stops syncing and forwarding.
    pub async fn serve(
        self,
        listener: TcpListener,
        ops: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = switchyard_server::data_plane_app(self.state.clone());
        let served =
            switchyard_server::run_app(listener, ops, app, self.state.clone(), shutdown).await;
        // `run_app` flipped the shutdown flag: the tasks stop.
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        served
    }
}

/// This relay's instance id, kept beside its event log (a new log, a new
/// id): the prefix of the ids it gives events that came without one.
fn instance_id(events_dir: &std::path::Path) -> Result<String, RelayError> {
    let path = events_dir.join("relay-instance");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RelayError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            });
        }
    }
    let id: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect();
    let id = format!("relay-{id}");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(&path)?;
        file.write_all(id.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|source| RelayError::Io {
        context: format!("cannot write {}", path.display()),
        source,
    })?;
    Ok(id)
}
