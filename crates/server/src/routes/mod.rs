//! The routers, one module per resource, merged into one.

use axum::Router;

use crate::state::AppState;

pub mod control;
pub mod events;
pub mod ofrep;
pub mod ops;
pub mod results;
pub mod sdk;

/// The body limit applies to the routes that read a body through axum's
/// extractors (the control API, event ingestion); OFREP reads its body
/// itself, with the same limit, and the rest read none. Scoping it so
/// spares the evaluation path a request extension. Likewise the control
/// API alone has the read-your-writes middleware (`fresh.rs`).
pub fn router(state: &AppState) -> Router<AppState> {
    use axum::extract::DefaultBodyLimit;
    let body_limit = state.config.body_limit;
    Router::new()
        .merge(ops::router())
        .nest(
            "/api/v1",
            control::router()
                .layer(DefaultBodyLimit::max(body_limit))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::fresh::after_write,
                )),
        )
        .merge(events::router().layer(DefaultBodyLimit::max(body_limit)))
        .merge(results::router())
        .merge(ofrep::router())
        .merge(sdk::router())
        .merge(crate::ui::router(state))
        .fallback(ops::not_found)
        // Last: a known path with another method gets the JSON error too.
        .method_not_allowed_fallback(control::method_not_allowed)
}

/// The data plane alone, as a relay serves it: health, readiness and
/// metrics, event ingestion, OFREP and the SDK routes; no control API, no
/// web UI, no results.
pub fn data_plane_router(state: &AppState) -> Router<AppState> {
    use axum::extract::DefaultBodyLimit;
    Router::new()
        .merge(ops::router())
        .merge(events::ingest_router().layer(DefaultBodyLimit::max(state.config.body_limit)))
        .merge(ofrep::router())
        .merge(sdk::router())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(control::method_not_allowed)
}
