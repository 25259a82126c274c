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
use crate::state::AppState;
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

/// Readiness: the config store answers and snapshots are loaded, and the
/// event log can write (not so while its disk is full).
async fn readyz(State(state): State<AppState>) -> Response {
    if let Some(Err(e)) = state.events.as_ref().map(|ev| ev.health()) {
        tracing::warn!(error = %e, "readiness check failed");
        return ApiError::Unavailable("event storage cannot write".into()).into_response();
    }
    match state.store.organisation().await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            state.metrics.store_errors.inc();
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::Unavailable("config store unreachable".into()).into_response()
        }
    }
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
