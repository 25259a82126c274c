//! Operations endpoints: liveness, readiness, Prometheus metrics.
//!
//! `/metrics` names every project, environment and flag of every tenant,
//! so on the API listener it needs an organisation-wide admin key (any
//! role). The operations listener (`--ops-listen`, [`ops_router`]) serves
//! it without a key: it is meant for a private network or loopback, where
//! Prometheus scrapes it. `/healthz` and `/readyz` reveal nothing and need
//! no key on either.

use std::any::Any;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::{AppState, Freshness};
use switchyard_store::Role;

/// The operations routes of the API listener.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_with_key))
}

/// The routes of the operations listener: the same, `/metrics` without a
/// key, and nothing else.
pub fn ops_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
}

/// Liveness: the process answers. Also the trivial endpoint the load
/// benchmark compares evaluation with.
async fn healthz() -> &'static str {
    "ok"
}

/// How long readiness waits for the config store before calling it
/// unreachable: probes usually time out after one or two seconds.
const STORE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Readiness: can this node do its job? Evaluation, SDK streams and event
/// ingestion need only the snapshots in memory and a writable event log,
/// so a config store outage makes the node `degraded` (200: a load
/// balancer must keep sending it evaluation traffic, which it still
/// serves) while an event log that cannot write makes it not ready (503:
/// acknowledging events is what it cannot do). The body says which.
async fn readyz(State(state): State<AppState>) -> Response {
    let log = match state.events.as_ref().map(|ev| ev.health()) {
        None => "disabled",
        Some(Ok(())) => "ok",
        Some(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the event log cannot write");
            "cannot_write"
        }
    };
    if let Some(upstream) = &state.upstream {
        return relay_readiness(log, upstream.check());
    }
    let store = match tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.organisation()).await {
        Ok(Ok(_)) => "ok",
        Ok(Err(e)) => {
            state.metrics.store_errors.inc();
            tracing::warn!(error = %e, "readiness: the config store is unreachable");
            "unreachable"
        }
        Err(_) => {
            state.metrics.store_errors.inc();
            tracing::warn!("readiness: the config store did not answer in time");
            "unreachable"
        }
    };
    // A cluster node keeps accepting events while JetStream is away (into
    // its spool): degraded, not unready.
    let spool = state.events.as_ref().and_then(|ev| ev.stream().spool());
    let spooling = spool.as_ref().is_some_and(|s| s.spooling);
    let (code, status) = if log == "cannot_write" {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    } else if store != "ok" || spooling {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    let mut checks =
        serde_json::json!({"config_store": store, "event_log": log, "snapshots": "loaded"});
    if let Some(s) = spool {
        checks["event_stream"] = serde_json::json!(if s.spooling { "spooling" } else { "ok" });
        checks["spool"] = serde_json::json!({
            "pending_bytes": s.pending_bytes,
            "forwarded": s.forwarded,
        });
    }
    let body = serde_json::json!({
        "status": status,
        "checks": checks,
    });
    let mut resp = (code, axum::Json(body)).into_response();
    if code == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

/// A relay's readiness: its copy of the upstream instead of a config
/// store. Stale is `degraded` (it serves its last copy); an environment
/// with no copy at all, like an event log that cannot write, is not ready.
fn relay_readiness(log: &str, (freshness, detail): (Freshness, serde_json::Value)) -> Response {
    let (code, status) = if log == "cannot_write" || freshness == Freshness::Missing {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    } else if freshness == Freshness::Stale {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    let body = serde_json::json!({
        "status": status,
        "checks": {"upstream": detail, "event_log": log},
    });
    let mut resp = (code, axum::Json(body)).into_response();
    if code == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

async fn metrics_with_key(state: State<AppState>, principal: Principal) -> Response {
    match principal.require_admin(Role::Viewer, None) {
        Ok(()) => metrics(state).await,
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// A panic in a handler is a bug: log it, answer a generic 500.
pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}
