//! The UI's static assets, compiled into the binary (`include_str!`): one
//! stylesheet and one script. Each is served under a name that carries a
//! hash of its content, so browsers cache it for a year and a new build is
//! fetched at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const CSS: &str = include_str!("assets/app.css");
pub const JS: &str = include_str!("assets/app.js");

/// Total bytes of the embedded UI assets.
pub const TOTAL_BYTES: usize = CSS.len() + JS.len();

struct Asset {
    path: String,
    body: &'static str,
    content_type: &'static str,
}

fn versioned(stem: &str, ext: &str, body: &'static str, content_type: &'static str) -> Asset {
    let hash = switchyard_store::hash_secret(body);
    Asset {
        path: format!("/ui/assets/{stem}.{}.{ext}", &hash[..12]),
        body,
        content_type,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        versioned("app", "css", CSS, "text/css; charset=utf-8"),
        versioned("app", "js", JS, "text/javascript; charset=utf-8"),
    ]
});

/// The URL of the stylesheet, with its content hash.
pub fn css_url() -> &'static str {
    &ASSETS[0].path
}

/// The URL of the script, with its content hash.
pub fn js_url() -> &'static str {
    &ASSETS[1].path
}

/// `GET /ui/assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    let wanted = format!("/ui/assets/{name}");
    let Some(asset) = ASSETS.iter().find(|a| a.path == wanted) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response()
}
