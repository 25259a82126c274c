//! The routers, one module per resource, merged into one.

use axum::Router;

use crate::state::AppState;

pub mod control;
pub mod events;
pub mod ofrep;
pub mod ops;
pub mod sdk;

/// `body_limit` applies to the routes that read a body through axum's
/// extractors (the control API, event ingestion); OFREP reads its body
/// itself, with the same limit, and the rest read none. Scoping it so
/// spares the evaluation path a request extension.
pub fn router(body_limit: usize) -> Router<AppState> {
    use axum::extract::DefaultBodyLimit;
    Router::new()
        .merge(ops::router())
        .nest(
            "/api/v1",
            control::router().layer(DefaultBodyLimit::max(body_limit)),
        )
        .merge(events::router().layer(DefaultBodyLimit::max(body_limit)))
        .merge(ofrep::router())
        .merge(sdk::router())
        .fallback(ops::not_found)
        // Last: a known path with another method gets the JSON error too.
        .method_not_allowed_fallback(control::method_not_allowed)
}
