//! The Switchyard HTTP server.
//!
//! # Layout
//! - [`app`] builds the whole [`axum::Router`] from an [`AppState`]; [`run`]
//!   serves it on a listener until a shutdown signal ([`run_with_ops`]
//!   also serves [`ops_app`] on a second one). Tests call them directly
//!   (port 0), the binary only wires configuration to them.
//! - `net.rs`: the serving loop (hyper): connection cap, header, idle and
//!   body timeouts, bounded shutdown; `net/sse.rs`, SDK streams opened as
//!   a connection's first request, served without hyper's buffers.
//! - `cors.rs`: CORS for the routes browsers call.
//! - `state.rs`: [`AppState`] (store, snapshots, auth cache, limiter, metrics).
//! - `snapshots.rs`: compiled per-environment configuration in memory,
//!   swapped atomically on store change notifications. Evaluation requests
//!   never touch the database.
//! - `auth.rs`: API keys (`Authorization: Bearer`) verified from an
//!   in-memory key ring, roles, SDK key scope.
//! - `ui.rs`: people, not only keys: sign-in with email and password,
//!   browser sessions (cookie), CSRF protection; a session authenticates
//!   to the control API like an admin key with the user's role.
//! - `fresh.rs`: after a control-API write, this node's snapshots are
//!   refreshed before the answer (read-your-writes).
//! - `error.rs`: [`ApiError`], the one mapping of errors to HTTP.
//! - `aggregation.rs`: the consumer task that feeds the streaming
//!   aggregator from the event stream and checkpoints it.
//! - `cluster.rs`: scale-out: `switchyard worker` (partitions of the
//!   JetStream stream aggregated into PostgreSQL under leases) and a serve
//!   node's merged view of the partitions for results.
//! - `simulate.rs`: the simulated traffic of `serve --demo` (bounded,
//!   labelled), so the demo experiment shows results at once.
//! - `routes/`: one module per resource: `control` (the `/api/v1` REST API),
//!   `ofrep` (OpenFeature remote evaluation), `sdk` (config document and
//!   server-sent events), `ops` (health, readiness, metrics, OpenAPI).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod aggregation;
pub mod auth;
pub mod cluster;
pub mod cors;
pub mod error;
pub mod extract;
mod fresh;
pub mod guardrails;
pub mod limiter;
pub mod metrics;
pub mod net;
pub mod routes;
pub mod simulate;
pub mod snapshots;
pub mod state;
pub mod ui;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

pub use error::{ApiError, ApiResult};
pub use state::{AppState, Freshness, ServerConfig, UpstreamHealth};

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    // Extractors enforce the body limit and answer a JSON 413 (extract.rs).
    let routes = routes::router(&state).layer(cors::CorsLayer::new(state.config.cors.clone()));
    with_layers(routes, state)
}

/// The data plane alone ([`routes::data_plane_router`]), with the same
/// layers: what `switchyard relay` serves.
pub fn data_plane_app(state: AppState) -> Router {
    let routes =
        routes::data_plane_router(&state).layer(cors::CorsLayer::new(state.config.cors.clone()));
    with_layers(routes, state)
}

/// The operations listener's application: `/healthz`, `/readyz` and
/// `/metrics` without a key (routes/ops.rs).
pub fn ops_app(state: AppState) -> Router {
    with_layers(routes::ops::ops_router(), state)
}

/// The layers every route gets. The metrics layer is outermost, so a
/// request whose handler panicked is counted with its 500.
fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    use tower_http::catch_panic::CatchPanicLayer;

    routes
        .layer(CatchPanicLayer::custom(routes::ops::panic_response))
        .layer(metrics::TrackLayer::new(state.metrics.clone()))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains
/// in-flight requests. Also runs the snapshot refresher and, when the
/// state has both, the aggregation consumer over the event stream.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_ops(listener, None, state, shutdown).await
}

/// Connections the operations listener holds at most.
pub const OPS_MAX_CONNECTIONS: usize = 128;

/// [`run`], and [`ops_app`] on `ops` when given. Both listeners have the
/// limits of `state.config.net`, each its own connection cap (at most
/// [`OPS_MAX_CONNECTIONS`] on `ops`), so a flood on the API cannot stop
/// Prometheus or a health check on `ops`.
///
/// On `shutdown`: both stop accepting, streams end, requests in flight
/// get `shutdown_timeout` to finish, and the connections still open then
/// are closed.
pub async fn run_with_ops(
    listener: TcpListener,
    ops: Option<TcpListener>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(state.clone());
    run_app(listener, ops, app, state, shutdown).await
}

/// [`run_with_ops`] serving `app` (built from `state`, e.g.
/// [`data_plane_app`]) instead of the whole [`app`].
pub async fn run_app(
    listener: TcpListener,
    ops: Option<TcpListener>,
    app: Router,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use net::Stop;

    let refresher = tokio::spawn(
        state
            .snapshots
            .clone()
            .follow(state.shutdown.subscribe(), Duration::from_secs(30)),
    );
    let aggregator = match (&state.aggregation, &state.events) {
        (Some(a), Some(ev)) => Some(tokio::spawn(a.clone().run(
            ev.stream().clone(),
            state.store.clone(),
            state.shutdown.subscribe(),
        ))),
        _ => None,
    };
    let simulation = match (&state.simulation, &state.events) {
        (Some(sim), Some(ev)) => Some(tokio::spawn(simulate::run(
            (**sim).clone(),
            ev.clone(),
            state.shutdown.subscribe(),
        ))),
        _ => None,
    };
    let guardrails = state.aggregation.as_ref().map(|a| {
        tokio::spawn(guardrails::run(
            state.store.clone(),
            a.clone(),
            a.config().guardrail_interval,
            state.shutdown.subscribe(),
        ))
    });
    let config = Arc::new(state.config.net.clone());
    let (stop, stopped) = tokio::sync::watch::channel(Stop::Running);
    let mut loops = vec![tokio::spawn(net::serve(
        listener,
        app,
        config.clone(),
        state.metrics.clone(),
        stopped.clone(),
    ))];
    if let Some(ops) = ops {
        // Scrapers and health checks need few connections.
        let ops_config = Arc::new(net::NetConfig {
            max_connections: config.max_connections.min(OPS_MAX_CONNECTIONS),
            ..(*config).clone()
        });
        loops.push(tokio::spawn(net::serve(
            ops,
            ops_app(state.clone()),
            ops_config,
            state.metrics.clone(),
            stopped,
        )));
    }
    shutdown.await;
    tracing::info!("shutting down: draining requests, closing streams");
    state.shutdown.send_replace(true);
    stop.send_replace(Stop::Graceful);
    let mut drained = std::pin::pin!(async move {
        for serving in loops {
            let _ = serving.await;
        }
    });
    if tokio::time::timeout(config.shutdown_timeout, drained.as_mut())
        .await
        .is_err()
    {
        tracing::warn!(
            after = ?config.shutdown_timeout,
            "shutdown: closing connections whose requests are still in flight"
        );
        stop.send_replace(Stop::Force);
        drained.await;
    }
    let _ = refresher.await;
    if let Some(s) = simulation {
        let _ = s.await;
    }
    if let Some(a) = aggregator {
        let _ = a.await;
    }
    if let Some(g) = guardrails {
        let _ = g.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panicking handler answers the JSON 500, the server goes on, and
    /// the request is counted under its route with status 500.
    #[tokio::test]
    async fn a_panic_in_a_handler_is_a_counted_json_500() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("config.db").display());
        let store = switchyard_store::open(&url).await.unwrap();
        let state = AppState::new(store, ServerConfig::default()).await.unwrap();
        let routes = routes::router(&state).route(
            "/boom",
            axum::routing::get(|| async {
                if true {
                    panic!("kaboom");
                }
                "unreachable"
            }),
        );
        let app = with_layers(routes, state.clone());
        let resp = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "internal", "{json}");
        assert!(
            !json.to_string().contains("kaboom"),
            "the panic text leaks: {json}"
        );
        let ok = app
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let metrics = state.metrics.encode();
        assert!(
            metrics.contains(
                "switchyard_http_requests_total{method=\"GET\",route=\"/boom\",status=\"500\"} 1"
            ),
            "{metrics}"
        );
    }
}
