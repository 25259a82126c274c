//! Event ingestion: `POST /api/v1/events` (server or client SDK key), and
//! the dead-letter store: `GET /api/v1/events/dead-letters`, `POST
//! /api/v1/events/dead-letters/replay` (admin keys; a server SDK key may
//! list its own environment's), and `GET /api/v1/events/export` (raw
//! events of one environment as streamed NDJSON; admin keys with the
//! editor role, as they hold units and attributes). The work is done by
//! [`switchyard_events::Events`]; this module maps HTTP to it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use switchyard_events::{
    BodyFormat, DeadLetterFilter, Events, Export, ExportFilter, IngestError, StreamError,
};
use switchyard_store::{ApiKeyKind, Role};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

const MAX_LIST: usize = 1000;

/// Ingestion alone, as a relay serves it.
pub fn ingest_router() -> Router<AppState> {
    Router::new().route("/api/v1/events", post(ingest))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", post(ingest))
        .route("/api/v1/events/dead-letters", get(list_dead_letters))
        .route("/api/v1/events/dead-letters/replay", post(replay))
        .route("/api/v1/events/export", get(export))
}

fn events(state: &AppState) -> Result<&Arc<Events>, ApiError> {
    state
        .events
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("event ingestion is not configured".into()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn too_large(message: String) -> Response {
    let body = json!({"error": {"code": "payload_too_large", "message": message}});
    (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
}

fn ingest_error(e: IngestError) -> Response {
    match e {
        IngestError::InvalidJson(m) => ApiError::BadRequest {
            code: "invalid_json",
            message: m,
            field: None,
        }
        .into_response(),
        IngestError::InvalidBody(m) => ApiError::BadRequest {
            code: "invalid_body",
            message: m,
            field: None,
        }
        .into_response(),
        IngestError::BodyTooLarge { .. } | IngestError::TooManyEvents { .. } => {
            too_large(e.to_string())
        }
        IngestError::Overloaded { retry_after } => {
            let mut resp = ApiError::TooManyRequests {
                retry_after_secs: retry_after.as_secs().max(1),
            }
            .into_response();
            let body = json!({"error": {"code": "overloaded",
                "message": "event storage is behind; retry after the delay in Retry-After"}});
            *resp.body_mut() = axum::body::Body::from(body.to_string());
            resp
        }
        IngestError::Unavailable(detail) => {
            // The detail (a disk's error) is for the log; the client learns
            // that nothing of the batch was stored and when to retry.
            tracing::warn!(%detail, "events refused: event storage cannot write");
            let mut resp = ApiError::Unavailable(
                "event storage cannot write at the moment; nothing of this batch was stored, \
                 retry after the delay in Retry-After"
                    .into(),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            resp
        }
    }
}

fn stream_error(e: StreamError) -> ApiError {
    match e {
        StreamError::Overloaded { retry_after } => ApiError::TooManyRequests {
            retry_after_secs: retry_after.as_secs().max(1),
        },
        other => ApiError::Unavailable(other.to_string()),
    }
}

async fn ingest(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (project, environment) = match principal.sdk_environment(true) {
        Ok(pe) => pe,
        Err(e) => return e.into_response(),
    };
    let events = match events(&state) {
        Ok(ev) => ev,
        Err(e) => return e.into_response(),
    };
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large(format!(
                "the request body exceeds {} bytes",
                state.config.body_limit
            ));
        }
        Err(r) => return ApiError::bad_request(r.body_text()).into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let format = if content_type.starts_with("application/x-ndjson")
        || content_type.starts_with("application/ndjson")
    {
        BodyFormat::Ndjson
    } else if content_type.starts_with("application/json") {
        BodyFormat::Json
    } else {
        return ApiError::BadRequest {
            code: "unsupported_media_type",
            message: "expected Content-Type: application/json or application/x-ndjson".into(),
            field: None,
        }
        .into_response();
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return ApiError::BadRequest {
                code: "unsupported_encoding",
                message: format!("unsupported Content-Encoding {other:?}: use gzip or none"),
                field: None,
            }
            .into_response();
        }
    };
    match events
        .ingest(project, environment, &body, format, gzip, now_ms())
        .await
    {
        Ok(report) => Json(report).into_response(),
        Err(e) => ingest_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    project: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
    #[serde(default)]
    include_replayed: bool,
}

/// The filter a key may use: an SDK key sees its own environment only.
fn scoped_filter(
    principal: &Principal,
    role: Role,
    project: Option<String>,
    environment: Option<String>,
) -> Result<DeadLetterFilter, ApiError> {
    let mut f = DeadLetterFilter::default();
    match principal.key().kind {
        ApiKeyKind::Admin(_) => {
            let project = project.or_else(|| principal.key().project.clone());
            principal.require_admin(role, project.as_deref())?;
            f.project = project;
            f.environment = environment;
        }
        _ if role == Role::Viewer => {
            let (p, e) = principal.sdk_environment(false)?;
            f.project = Some(p.to_string());
            f.environment = Some(e.to_string());
        }
        _ => principal.require_admin(role, None)?,
    }
    Ok(f)
}

async fn list_dead_letters(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let mut filter = scoped_filter(&principal, Role::Viewer, q.project, q.environment)?;
    filter.from = q.from;
    filter.include_replayed = q.include_replayed;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIST);
    // Serialised as it is (no `serde_json::Value` in between): a stored
    // event is raw JSON text and is written out without being parsed again.
    let page = events(&state)?
        .dead_letters(&filter, limit)
        .await
        .map_err(stream_error)?;
    Ok(Json(page).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    project: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
}

/// The replay body is optional: no body (or only white space) replays
/// everything the key may replay.
async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::bad_request(r.body_text())
        }
    })?;
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        let request = axum::http::Request::builder()
            .header(
                header::CONTENT_TYPE,
                headers
                    .get(header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(header::HeaderValue::from_static("")),
            )
            .body(axum::body::Body::from(body))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let ApiJson(req) = ApiJson::<ReplayRequest>::from_request(request, &()).await?;
        req
    };
    let mut filter = scoped_filter(&principal, Role::Editor, req.project, req.environment)?;
    filter.from = req.from;
    let limit = req.limit.unwrap_or(10_000).clamp(1, 100_000);
    match events(&state)?.replay(&filter, limit, now_ms()).await {
        Ok(report) => Ok(Json(report).into_response()),
        Err(e) => Ok(ingest_error(e)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    project: Option<String>,
    environment: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A time bound: milliseconds since the Unix epoch or RFC 3339.
fn time_bound(field: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    switchyard_events::export::parse_time_bound(&v)
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_field(
                field,
                format!("{field} must be milliseconds since the Unix epoch or an RFC 3339 time"),
            )
        })
}

/// Streams the stored events of one environment (and time range) as
/// NDJSON, reading the log a chunk at a time: memory stays at about one
/// chunk however large the log, and a slow client slows the reading. A
/// read error mid-way aborts the response (the client sees an incomplete
/// body, never a silently short one).
async fn export(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let project = q
        .project
        .or_else(|| principal.key().project.clone())
        .ok_or_else(|| ApiError::invalid_field("project", "project is required"))?;
    principal.require_admin(Role::Editor, Some(&project))?;
    let environment = q
        .environment
        .ok_or_else(|| ApiError::invalid_field("environment", "environment is required"))?;
    let from_ms = time_bound("from", q.from)?;
    let to_ms = time_bound("to", q.to)?;
    if state.snapshots.get(&project, &environment).is_none() {
        return Err(ApiError::NotFound(format!(
            "no environment {environment:?} in project {project:?}"
        )));
    }
    let events = events(&state)?.clone();
    if !events.stream().readable() {
        // A cluster node's stream is JetStream, read by workers only.
        return Err(ApiError::Unavailable(
            "a cluster node does not export raw events: read the JetStream stream with NATS tools (docs/deploy.md)".into(),
        ));
    }
    let filter = ExportFilter {
        project,
        environment,
        from_ms,
        to_ms,
    };
    let export = Export::new(events.stream().as_ref(), filter);
    let chunks =
        futures_util::stream::try_unfold((events, export), |(events, mut export)| async move {
            loop {
                match export.next_chunk(events.stream().as_ref()).await {
                    // The log's reads are synchronous file reads of one chunk:
                    // let other tasks run between chunks.
                    Ok(Some(chunk)) if chunk.is_empty() => tokio::task::yield_now().await,
                    Ok(Some(chunk)) => return Ok(Some((Bytes::from(chunk), (events, export)))),
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        tracing::error!(error = %e, "event export failed mid-way");
                        return Err(std::io::Error::other(e.to_string()));
                    }
                }
            }
        });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}
