//! The API's error type and its one mapping to HTTP.
//!
//! Every error response is `{"error": {"code", "message", "field"?}}`.
//! Client mistakes say what was wrong; internal failures are logged with
//! their detail and answered with generic text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer current.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A write without `If-Match`.
    #[error("this change needs an If-Match header with the version you read (its ETag)")]
    PreconditionRequired,
    #[error("{0}")]
    Unprocessable(String),
    /// Well-formed input that one field makes impossible to store or use.
    #[error("{message}")]
    UnprocessableField { field: String, message: String },
    #[error("the request body is larger than the limit")]
    PayloadTooLarge,
    #[error("rate limit exceeded")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Detail for the log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "bad_request",
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// The message shown to the client (an internal error's detail is
    /// logged, never shown).
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "an internal error occurred".to_string()
            }
            other => other.to_string(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "version_mismatch")
            }
            ApiError::PreconditionRequired => {
                (StatusCode::PRECONDITION_REQUIRED, "if_match_required")
            }
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
            ApiError::UnprocessableField { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict { .. } => ApiError::PreconditionFailed(e.to_string()),
            StoreError::AlreadyExists { .. } | StoreError::InUse { .. } => {
                ApiError::Conflict(e.to_string())
            }
            StoreError::Invalid(m) => ApiError::Unprocessable(m),
            StoreError::WrongState(m) => ApiError::Conflict(m),
            StoreError::InvalidField { field, message } => {
                ApiError::UnprocessableField { field, message }
            }
            StoreError::Backend(m) => ApiError::Internal(m),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "config store unavailable");
                ApiError::Unavailable(
                    "the configuration store is unreachable; retry shortly".into(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.public_message();
        let field = match &self {
            ApiError::BadRequest { field, .. } => field.clone(),
            ApiError::UnprocessableField { field, .. } => Some(field.clone()),
            _ => None,
        };
        let mut body = json!({"error": {"code": code, "message": message}});
        if let Some(f) = field {
            body["error"]["field"] = json!(f);
        }
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let ApiError::Unavailable(_) = self {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(UNAVAILABLE_RETRY_AFTER),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 names the scheme it wants.
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchyard\""),
            );
        }
        resp
    }
}

/// Seconds a client is asked to wait after a 503.
pub const UNAVAILABLE_RETRY_AFTER: &str = "5";

pub type ApiResult<T> = Result<T, ApiError>;
