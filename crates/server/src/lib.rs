//! The Switchyard HTTP server.
//!
//! # Layout
//! - [`app`] builds the whole [`axum::Router`] from an [`AppState`]; [`run`]
//!   serves it on a listener until a shutdown signal. Tests call both
//!   directly (port 0), the binary only wires configuration to them.
//! - `state.rs`: [`AppState`] (store, snapshots, auth cache, limiter, metrics).
//! - `snapshots.rs`: compiled per-environment configuration in memory,
//!   swapped atomically on store change notifications. Evaluation requests
//!   never touch the database.
//! - `auth.rs`: API keys (`Authorization: Bearer`), roles, SDK key scope.
//! - `error.rs`: [`ApiError`], the one mapping of errors to HTTP.
//! - `routes/`: one module per resource: `control` (the `/api/v1` REST API),
//!   `ofrep` (OpenFeature remote evaluation), `sdk` (config document and
//!   server-sent events), `ops` (health, readiness, metrics, OpenAPI).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod error;
pub mod extract;
pub mod limiter;
pub mod metrics;
pub mod routes;
pub mod snapshots;
pub mod state;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

pub use error::{ApiError, ApiResult};
pub use state::{AppState, ServerConfig};

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    use tower_http::catch_panic::CatchPanicLayer;

    // Extractors enforce the body limit and answer a JSON 413 (extract.rs).
    routes::router(state.config.body_limit)
        .layer(metrics::TrackLayer::new(state.metrics.clone()))
        .layer(CatchPanicLayer::custom(routes::ops::panic_response))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains
/// in-flight requests. Also runs the snapshot refresher.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let refresher = tokio::spawn(
        state
            .snapshots
            .clone()
            .follow(state.shutdown.subscribe(), Duration::from_secs(30)),
    );
    let stop = state.shutdown.clone();
    let app = app(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: draining requests, closing streams");
            stop.send_replace(true);
        })
        .await;
    let _ = refresher.await;
    result
}
