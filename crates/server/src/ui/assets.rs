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

// The UI's assets stay small: a build that grows them past 64 KiB fails.
const _: () = assert!(TOTAL_BYTES < 64 * 1024);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A colour variable of the stylesheet (`--name: #rrggbb;`).
    fn var(name: &str) -> [f64; 3] {
        let at = CSS
            .find(&format!("--{name}:"))
            .unwrap_or_else(|| panic!("no --{name} in app.css"));
        let hex = CSS[at..].split('#').nth(1).expect("a #colour");
        hex_colour(&hex[..6])
    }

    fn hex_colour(hex: &str) -> [f64; 3] {
        let c = |i: usize| f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"));
        [c(0), c(2), c(4)]
    }

    /// WCAG 2 relative luminance and contrast ratio.
    fn luminance([r, g, b]: [f64; 3]) -> f64 {
        let f = |c: f64| {
            let c = c / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)
    }

    fn contrast(a: [f64; 3], b: [f64; 3]) -> f64 {
        let (hi, lo) = {
            let (x, y) = (luminance(a), luminance(b));
            if x > y { (x, y) } else { (y, x) }
        };
        (hi + 0.05) / (lo + 0.05)
    }

    #[test]
    fn text_colours_meet_wcag_aa_on_their_backgrounds() {
        let white = [255.0, 255.0, 255.0];
        let pairs = [
            ("ink on the page", var("ink"), var("bg")),
            ("muted text on a panel", var("muted"), var("panel")),
            ("muted text on the page", var("muted"), var("bg")),
            ("links", var("accent"), var("panel")),
            ("primary buttons", var("accent-ink"), var("accent")),
            ("good badges", var("good"), var("good-soft")),
            ("bad badges and errors", var("bad"), var("bad-soft")),
            ("field errors", var("bad"), white),
            ("warnings", var("warn"), var("warn-soft")),
            ("info badges", var("accent"), var("accent-soft")),
            ("the top bar", hex_colour("f3f4f6"), hex_colour("111827")),
        ];
        for (what, fg, bg) in pairs {
            let ratio = contrast(fg, bg);
            assert!(ratio >= 4.5, "{what}: contrast {ratio:.2} is under 4.5:1");
        }
    }

    #[test]
    fn assets_are_served_under_their_content_hashed_names() {
        assert!(css_url().starts_with("/ui/assets/app.") && css_url().ends_with(".css"));
        assert!(js_url().ends_with(".js"));
        assert_ne!(css_url(), js_url());
    }
}
