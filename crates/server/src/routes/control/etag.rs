//! Versions on the wire: `ETag: "<version>"` on reads and write responses,
//! `If-Match: "<version>"` on every change.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_store::Version;

use crate::error::ApiError;

/// The `If-Match` header of a change, read but not yet checked: handlers
/// check access first, then call [`IfMatch::version`], so that a caller
/// without the right gets 403 rather than a lesson in headers.
#[derive(Debug, Clone)]
pub struct IfMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfMatch(parts.headers.get(header::IF_MATCH).cloned()))
    }
}

impl IfMatch {
    /// The version the caller last read: 428 when the header is missing,
    /// 400 when it is not one quoted version number.
    pub fn version(&self) -> Result<Version, ApiError> {
        let Some(value) = &self.0 else {
            return Err(ApiError::PreconditionRequired);
        };
        parse(value).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_if_match",
            message: "If-Match must be one version as its ETag gives it, e.g. \"3\"".into(),
            field: Some("If-Match".into()),
        })
    }
}

fn parse(value: &HeaderValue) -> Option<Version> {
    let text = value.to_str().ok()?.trim();
    // A weak tag names the same version here: versions are the only validator.
    let text = text.strip_prefix("W/").unwrap_or(text);
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse::<Version>().ok().filter(|v| *v >= 1)
}

/// The header value for `version`.
pub fn etag_value(version: Version) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// `body` as JSON with its version as ETag.
pub fn versioned<T: Serialize>(status: StatusCode, version: Version, body: &T) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::ETAG, etag_value(version));
    resp
}

/// 201 Created with `Location` and ETag.
pub fn created<T: Serialize>(location: &str, version: Version, body: &T) -> Response {
    let mut resp = versioned(StatusCode::CREATED, version, body);
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A list: JSON without an ETag (each item carries its own `version`).
pub fn listed<T: Serialize>(items: &T) -> Response {
    axum::Json(items).into_response()
}

/// 204 after a delete.
pub fn deleted() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<Version> {
        parse(&HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn if_match_accepts_quoted_weak_and_bare_versions() {
        assert_eq!(v("\"3\""), Some(3));
        assert_eq!(v("W/\"12\""), Some(12));
        assert_eq!(v("7"), Some(7));
    }

    #[test]
    fn if_match_rejects_lists_stars_signs_and_overflow() {
        for bad in [
            "*",
            "\"1\", \"2\"",
            "\"-1\"",
            "\"0\"",
            "\"\"",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }
}
