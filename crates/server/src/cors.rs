//! Cross-origin requests (CORS) for the routes a browser calls: OFREP
//! (`/ofrep/...`), the SDK routes (`/sdk/...`) and event ingestion
//! (`POST /api/v1/events`). The control API and operations endpoints get
//! no CORS headers, so a web page cannot read them cross-origin.
//!
//! Keys travel in the `Authorization` header, never in cookies, so CORS
//! grants a page nothing it could not do with the key from any HTTP
//! client; it only lets a web app on another origin read the answers. A
//! request with an `Authorization` header is always preflighted: an
//! `OPTIONS` with `Origin` and `Access-Control-Request-Method` is answered
//! here (204, or 403 for an origin not allowed) without reaching a handler.
//!
//! A request without `Origin` (every server-side SDK) passes through with
//! one header lookup.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The origins allowed to call the CORS routes from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`Access-Control-Allow-Origin: *`).
    #[default]
    Any,
    /// These origins only (`scheme://host[:port]`, as browsers send them).
    List(Arc<[HeaderValue]>),
    /// No cross-origin access: no CORS headers at all.
    Off,
}

impl FromStr for CorsOrigins {
    type Err = String;

    /// `*` (any), `none` or an empty string (off), or a comma-separated
    /// list of origins such as `https://app.example.com,http://localhost:3000`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(CorsOrigins::Any);
        }
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(CorsOrigins::Off);
        }
        let mut origins = Vec::new();
        for origin in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            origins.push(parse_origin(origin)?);
        }
        Ok(CorsOrigins::List(origins.into()))
    }
}

/// One origin as a browser serialises it: `http` or `https`, a host, an
/// optional port, nothing else. Scheme and host are lower-cased, as
/// browsers send them.
fn parse_origin(origin: &str) -> Result<HeaderValue, String> {
    let bad = |why: &str| format!("invalid CORS origin {origin:?}: {why}");
    let lower = origin.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| bad("it must start with http:// or https://"))?;
    if rest.is_empty() {
        return Err(bad("it names no host"));
    }
    if rest.contains(['/', '?', '#', '@', ' ', '*']) {
        return Err(bad(
            "an origin is scheme://host[:port], with no path, user or wildcard",
        ));
    }
    if let Some((_, port)) = rest.rsplit_once(':')
        && !rest.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(bad("the port is not a number"));
    }
    HeaderValue::from_str(&lower).map_err(|_| bad("it holds characters a header cannot"))
}

/// Whether `path` is one of the routes that get CORS.
fn is_cors_path(path: &str) -> bool {
    path.starts_with("/ofrep/") || path.starts_with("/sdk/") || path == "/api/v1/events"
}

const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, POST");
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static(
    "authorization, content-type, content-encoding, if-none-match, x-api-key",
);
/// Headers a page's script may read besides the always-readable ones.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("etag, retry-after");
/// How long a browser may cache a preflight answer (Chromium caps it at
/// two hours).
const MAX_AGE: HeaderValue = HeaderValue::from_static("7200");
const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("origin");
const VARY_PREFLIGHT: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);
const ANY: HeaderValue = HeaderValue::from_static("*");

/// The tower layer; see the module doc.
#[derive(Debug, Clone)]
pub struct CorsLayer {
    origins: CorsOrigins,
}

impl CorsLayer {
    pub fn new(origins: CorsOrigins) -> Self {
        CorsLayer { origins }
    }
}

impl<S> tower::Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Cors<S> {
        Cors {
            inner,
            origins: self.origins.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cors<S> {
    inner: S,
    origins: CorsOrigins,
}

impl<S> Cors<S> {
    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            CorsOrigins::Any => Some(ANY),
            CorsOrigins::List(list) => list.contains(origin).then(|| origin.clone()),
            CorsOrigins::Off => None,
        }
    }
}

impl<S> tower::Service<Request> for Cors<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let listed = matches!(self.origins, CorsOrigins::List(_));
        let origin = req.headers().get(header::ORIGIN);
        if (origin.is_none() && !listed)
            || matches!(self.origins, CorsOrigins::Off)
            || !is_cors_path(req.uri().path())
        {
            return CorsFuture::Inner {
                inner: self.inner.call(req),
                allow: None,
                vary: false,
            };
        }
        let allow = origin.and_then(|o| self.allow(o));
        let preflight = req.method() == Method::OPTIONS
            && origin.is_some()
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            return CorsFuture::Ready {
                response: Some(preflight_response(allow, listed)),
            };
        }
        CorsFuture::Inner {
            inner: self.inner.call(req),
            allow,
            vary: listed,
        }
    }
}

fn preflight_response(allow: Option<HeaderValue>, listed: bool) -> Response {
    let Some(allow) = allow else {
        return ApiError::Forbidden(
            "this origin may not call the server from a browser (see --cors-origins)".into(),
        )
        .into_response();
    };
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    h.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    if listed {
        h.insert(header::VARY, VARY_PREFLIGHT);
    }
    resp
}

pin_project_lite::pin_project! {
    #[project = CorsProj]
    pub enum CorsFuture<F> {
        Inner {
            #[pin]
            inner: F,
            allow: Option<HeaderValue>,
            vary: bool,
        },
        Ready {
            response: Option<Response>,
        },
    }
}

impl<F, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CorsProj::Ready { response } => Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                ApiError::Internal("CORS future polled after completion".into()).into_response()
            }))),
            CorsProj::Inner { inner, allow, vary } => {
                let mut resp = std::task::ready!(inner.poll(cx))?;
                let h = resp.headers_mut();
                if let Some(allow) = allow.take() {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
                    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
                }
                if *vary {
                    h.append(header::VARY, VARY_ORIGIN);
                }
                Poll::Ready(Ok(resp))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_from_star_none_and_lists() {
        assert_eq!("*".parse::<CorsOrigins>(), Ok(CorsOrigins::Any));
        assert_eq!("".parse::<CorsOrigins>(), Ok(CorsOrigins::Off));
        assert_eq!("none".parse::<CorsOrigins>(), Ok(CorsOrigins::Off));
        let list: CorsOrigins = "https://App.Example.com, http://localhost:3000,http://[::1]:8080"
            .parse()
            .unwrap();
        let CorsOrigins::List(list) = list else {
            panic!("a list: {list:?}")
        };
        assert_eq!(
            list.iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>(),
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://[::1]:8080"
            ]
        );
    }

    #[test]
    fn origins_with_paths_wildcards_or_no_scheme_are_refused() {
        for bad in [
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://*.example.com",
            "ftp://example.com",
            "https://",
            "https://example.com:http",
            "https://user@example.com",
        ] {
            let err = bad.parse::<CorsOrigins>().unwrap_err();
            assert!(err.contains("invalid CORS origin"), "{bad}: {err}");
        }
    }

    #[test]
    fn only_the_browser_routes_get_cors() {
        assert!(is_cors_path("/ofrep/v1/evaluate/flags"));
        assert!(is_cors_path("/ofrep/v1/evaluate/flags/x"));
        assert!(is_cors_path("/sdk/v1/config"));
        assert!(is_cors_path("/api/v1/events"));
        assert!(!is_cors_path("/api/v1/events/dead-letters"));
        assert!(!is_cors_path("/api/v1/projects"));
        assert!(!is_cors_path("/metrics"));
    }
}
