//! The control-plane REST API, nested under `/api/v1`.
//!
//! One module per resource; each exposes `router()` with paths relative to
//! `/api/v1`. Shared conventions live in `etag` (versions as ETags,
//! `If-Match` on every change) and `input` (path parameters, key and name
//! validation, access checks).
//!
//! Every change is versioned: single-resource reads and write responses
//! carry `ETag: "<version>"`; PUT, PATCH, DELETE, start and stop need
//! `If-Match` with that version (missing: 428, stale: 412). Writes pass the
//! caller (`Principal::actor`) to the store, which records the audit entry
//! in the same transaction.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

mod api_keys;
mod audit;
mod environments;
mod etag;
mod experiments;
mod flags;
mod holdouts;
mod input;
mod metrics;
mod projects;
mod resource;
mod segments;
mod users;

pub use audit::RESOURCE_KINDS;

/// The OpenAPI 3.1 document of every route of the server.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .merge(projects::router())
        .merge(environments::router())
        .merge(flags::router())
        .merge(segments::router())
        .merge(metrics::router())
        .merge(experiments::router())
        .merge(holdouts::router())
        .merge(api_keys::router())
        .merge(audit::router())
        .merge(users::router())
        // Last: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
}

/// A known path with a method it does not have: the usual JSON error (the
/// router adds `Allow` with the methods it has).
pub async fn method_not_allowed() -> Response {
    let body = serde_json::json!({"error": {
        "code": "method_not_allowed",
        "message": "this path does not take this method; see the Allow header",
    }});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// Served without authentication: it describes the API, it holds no data.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
