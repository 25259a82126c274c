//! The UI's pages: where each lives and how they are put together. Each
//! area has its own module with its own `routes()`; this one merges them.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::layout::{Viewer, error_page, store_error};
use crate::state::AppState;

/// Every page route, under `/` and `/ui`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/assets/{name}", get(super::assets::serve))
        .merge(super::flags::routes())
        .merge(super::experiments::routes())
        .merge(super::metrics::routes())
        .merge(super::org::routes())
        .merge(super::users::routes())
        .merge(super::audit::routes())
        .merge(super::deadletters::routes())
        .merge(super::segments::routes())
}

fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn root() -> Response {
    see_other("/ui")
}

/// The start page: the flags of the viewer's one project, or the
/// projects page when they see several (or none).
async fn home(State(state): State<AppState>, viewer: Viewer) -> Response {
    match state.store.list_projects().await {
        Ok(all) => match viewer.visible(&all).as_slice() {
            [one] => see_other(&format!("/ui/p/{}/flags", one.key)),
            _ => see_other("/ui/projects"),
        },
        Err(e) => error_page(Some(&viewer), &store_error(e)),
    }
}
