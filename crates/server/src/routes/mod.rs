//! The routers, one module per resource, merged into one.

use axum::Router;

use crate::state::AppState;

pub mod control;
pub mod events;
pub mod ofrep;
pub mod ops;
pub mod sdk;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(ops::router())
        .nest("/api/v1", control::router())
        .merge(events::router())
        .merge(ofrep::router())
        .merge(sdk::router())
        .fallback(ops::not_found)
        // Last: a known path with another method gets the JSON error too.
        .method_not_allowed_fallback(control::method_not_allowed)
}
