//! Operations endpoints: liveness, readiness, Prometheus metrics, OpenAPI.

use std::any::Any;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
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
