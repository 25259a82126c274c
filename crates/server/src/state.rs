//! Shared state of the HTTP handlers.

use std::sync::Arc;

use switchyard_store::ConfigStore;

use crate::auth::Auth;
use crate::limiter::KeyLimiter;
use crate::metrics::Metrics;
use crate::snapshots::Snapshots;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Requests per second per API key; 0 disables the limit.
    pub rate_limit_per_key: u32,
    /// How often the SSE stream sends a keep-alive comment.
    pub stream_keepalive: std::time::Duration,
    /// Connection limits and timeouts (`net.rs`).
    pub net: crate::net::NetConfig,
    /// Origins allowed to call the browser routes (`cors.rs`).
    pub cors: crate::cors::CorsOrigins,
    /// Sign-in and browser sessions (`ui.rs`).
    pub ui: crate::ui::UiConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            body_limit: 1 << 20,
            rate_limit_per_key: 0,
            stream_keepalive: std::time::Duration::from_secs(15),
            net: crate::net::NetConfig::default(),
            cors: crate::cors::CorsOrigins::default(),
            ui: crate::ui::UiConfig::default(),
        }
    }
}

/// The handlers' state: one `Arc`, so a clone per request is one atomic
/// increment. Fields are reached through `Deref` (`state.store`).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct Shared {
    pub store: Arc<dyn ConfigStore>,
    pub snapshots: Arc<Snapshots>,
    /// The live API keys (held by `snapshots` too, refreshed with them).
    pub auth: Arc<Auth>,
    pub limiter: Arc<KeyLimiter>,
    /// Sign-in rate limits (`ui.rs`).
    pub ui: Arc<crate::ui::UiState>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServerConfig>,
    /// Event ingestion (`/api/v1/events`); `None` until
    /// [`AppState::with_events`], and the event routes answer 503.
    pub events: Option<Arc<switchyard_events::Events>>,
    /// The streaming aggregator behind the results API; `None` until
    /// [`AppState::with_aggregation`], and results answer 503.
    pub aggregation: Option<Arc<crate::aggregation::Aggregation>>,
    /// The simulated traffic source of `serve --demo`; `None` otherwise.
    /// The results API labels the experiment it feeds as simulated.
    pub simulation: Option<Arc<crate::simulate::Simulation>>,
    /// Flips to `true` when the server shuts down: streams end, the
    /// snapshot refresher stops.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set on a relay (`switchyard relay`): how current its copy of the
    /// upstream is, reported by `/readyz` in place of the config store.
    pub upstream: Option<Arc<dyn UpstreamHealth>>,
}

/// How current a relay's synced copy is, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Every environment synced recently.
    Current,
    /// The upstream cannot be reached (or refused a key): the relay
    /// serves its last copy.
    Stale,
    /// Some environment has no copy at all yet: its SDKs get nothing.
    Missing,
}

/// What a relay reports of its upstream (implemented by `switchyard-relay`).
pub trait UpstreamHealth: Send + Sync + std::fmt::Debug {
    /// The freshness, and a JSON detail for the `/readyz` body (no secrets).
    fn check(&self) -> (Freshness, serde_json::Value);

    /// Appends the relay's metric families (OpenMetrics text, no `# EOF`)
    /// to `/metrics`.
    fn encode_metrics(&self, _out: &mut String) {}
}

impl AppState {
    /// Loads every environment's snapshot and the live keys from the store.
    pub async fn new(
        store: Arc<dyn ConfigStore>,
        config: ServerConfig,
    ) -> Result<AppState, switchyard_store::StoreError> {
        let snapshots = Snapshots::load(store.clone()).await?;
        Ok(AppState(Arc::new(Shared {
            store,
            auth: snapshots.auth.clone(),
            snapshots,
            limiter: Arc::new(KeyLimiter::new(config.rate_limit_per_key)),
            ui: Arc::new(crate::ui::UiState::new(&config.ui)),
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config),
            shutdown: Arc::new(tokio::sync::watch::Sender::new(false)),
            events: None,
            aggregation: None,
            simulation: None,
            upstream: None,
        })))
    }

    /// Marks the state as a relay's: `/readyz` reports `upstream`.
    pub fn with_upstream(self, upstream: Arc<dyn UpstreamHealth>) -> AppState {
        let _ = self.metrics.upstream.set(upstream.clone());
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.upstream = Some(upstream);
        AppState(Arc::new(shared))
    }

    /// Adds event ingestion (e.g. `Events::open(&data_dir.join("events"), ..)`)
    /// and its metrics to `/metrics`.
    pub fn with_events(self, events: Arc<switchyard_events::Events>) -> AppState {
        let _ = self.metrics.events.set(events.clone());
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.events = Some(events);
        AppState(Arc::new(shared))
    }

    /// Adds the streaming aggregator: [`crate::run`] then runs its consumer
    /// over the event stream, and `/metrics` reports it.
    pub fn with_aggregation(self, aggregation: Arc<crate::aggregation::Aggregation>) -> AppState {
        let _ = self.metrics.aggregation.set(aggregation.clone());
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.aggregation = Some(aggregation);
        AppState(Arc::new(shared))
    }

    /// Adds a simulated traffic source (`serve --demo`): [`crate::run`]
    /// then runs it into the event stream (which needs
    /// [`AppState::with_events`]).
    pub fn with_simulation(self, simulation: crate::simulate::Simulation) -> AppState {
        let mut shared = Arc::unwrap_or_clone(self.0);
        shared.simulation = Some(Arc::new(simulation));
        AppState(Arc::new(shared))
    }
}
