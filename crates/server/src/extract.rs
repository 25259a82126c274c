//! Request extractors whose failures are [`ApiError`]s, so that a malformed
//! body gets the same JSON error shape as everything else.
//!
//! One vocabulary for bodies every JSON route uses (OFREP excepted, whose
//! protocol says `PARSE_ERROR`):
//! - `invalid_json`: the body is not JSON at all (a syntax error, a
//!   truncated document, bytes that are not UTF-8);
//! - `invalid_body`: it is JSON, of the wrong shape (a missing or
//!   mistyped field, an unknown one where those are refused; `field` names
//!   it when known) or it could not be read whole;
//! - `unsupported_media_type`: the `Content-Type` is not JSON;
//! - `payload_too_large` (413): over the body limit.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Json<T>` with JSON errors naming the offending field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest {
            code: "unsupported_media_type",
            message: "expected Content-Type: application/json".into(),
            field: None,
        },
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
            code: "invalid_json",
            message: e.body_text(),
            field: None,
        },
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            // axum's text is "Failed to deserialize ...: PATH: reason".
            let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
            let field = detail
                .split_once(": ")
                .map(|(path, _)| path.to_string())
                .filter(|p| !p.contains(' '));
            ApiError::BadRequest {
                code: "invalid_body",
                message: detail.to_string(),
                field,
            }
        }
        other => ApiError::BadRequest {
            code: "invalid_body",
            message: other.body_text(),
            field: None,
        },
    }
}

/// The error for a body `serde_json` could not read: `invalid_json` when
/// it is not JSON, `invalid_body` when it is JSON of the wrong shape.
pub fn serde_error(e: &serde_json::Error, message: String) -> ApiError {
    let code = match e.classify() {
        serde_json::error::Category::Data => "invalid_body",
        _ => "invalid_json",
    };
    ApiError::BadRequest {
        code,
        message,
        field: None,
    }
}

/// `Query<T>` with JSON errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query",
        message: r.body_text(),
        field: None,
    }
}
