//! What server SDKs (local evaluation) read: their environment's whole
//! configuration document.
//!
//! - `GET /sdk/v1/config`: the compiled snapshot's `document` bytes (shared,
//!   never copied) with its `ETag`; `If-None-Match` naming it gives `304`.
//! - `GET /sdk/v1/stream`: server-sent events. On connect and after every
//!   change, `event: config`, `id: <revision>`, the full document as
//!   `data`. Between changes, a keep-alive comment every
//!   `stream_keepalive`. A client that misses intermediate revisions gets
//!   the newest one (the `watch` channel keeps only the latest), which is
//!   all a full-document protocol needs. The stream ends when the server
//!   shuts down, so graceful shutdown does not wait on streaming clients,
//!   and when the environment is deleted.
//!
//! Both need a server SDK key: client keys may only evaluate (OFREP).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::snapshots::{Slot, Snapshot};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sdk/v1/config", get(config))
        .route("/sdk/v1/stream", get(stream))
}

/// The slot of the environment a server SDK key is bound to.
fn slot_for(state: &AppState, principal: &Principal) -> ApiResult<Arc<Slot>> {
    let (project, environment) = principal.sdk_environment(false)?;
    state.snapshots.get(project, environment).ok_or_else(|| {
        ApiError::Forbidden(format!(
            "the environment {project}/{environment} of this key does not exist"
        ))
    })
}

async fn config(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let snapshot = slot_for(&state, &principal)?.load();
    let etag = HeaderValue::from_str(&snapshot.etag)
        .map_err(|_| ApiError::Internal(format!("unusable ETag {:?}", snapshot.etag)))?;
    let cache = HeaderValue::from_static("no-cache");
    if let Some(inm) = headers.get(header::IF_NONE_MATCH)
        && etag_listed(inm, &snapshot.etag)
    {
        let headers = [(header::ETAG, etag), (header::CACHE_CONTROL, cache)];
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
        (header::ETAG, etag),
        (header::CACHE_CONTROL, cache),
    ];
    Ok((headers, snapshot.document.clone()).into_response())
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, `*`).
fn etag_listed(header: &HeaderValue, etag: &str) -> bool {
    fn bare(t: &str) -> &str {
        t.trim().trim_start_matches("W/")
    }
    header.to_str().is_ok_and(|list| {
        list.split(',')
            .any(|t| t.trim() == "*" || bare(t) == bare(etag))
    })
}

async fn stream(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let slot = slot_for(&state, &principal)?;
    let changes = slot.subscribe();
    drop(slot);
    let stream = ConfigStream {
        changes,
        shutdown: state.shutdown.subscribe(),
        first: true,
        sent: 0,
        _client: ClientGuard::new(state.metrics.stream_clients.clone()),
    }
    .into_stream();
    let keep_alive = KeepAlive::new()
        .interval(state.config.stream_keepalive)
        .text("keep-alive");
    Ok(Sse::new(stream).keep_alive(keep_alive))
}

/// Counts a connected client in `stream_clients` for as long as it lives.
#[derive(Debug)]
struct ClientGuard(Gauge);

impl ClientGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        ClientGuard(gauge)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One client's stream state.
#[derive(Debug)]
struct ConfigStream {
    changes: watch::Receiver<Arc<Snapshot>>,
    shutdown: watch::Receiver<bool>,
    first: bool,
    /// Revision of the last document sent.
    sent: u64,
    _client: ClientGuard,
}

impl ConfigStream {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold(self, |mut s| async move {
            if s.first {
                s.first = false;
                let snapshot = s.changes.borrow_and_update().clone();
                s.sent = snapshot.revision;
                return Some((Ok(config_event(&snapshot)), s));
            }
            loop {
                let changed = tokio::select! {
                    // Shutdown wins over a change that arrives at the same time.
                    biased;
                    _ = s.shutdown.wait_for(|stop| *stop) => false,
                    // An error: the environment was deleted, its slot is gone.
                    changed = s.changes.changed() => changed.is_ok(),
                };
                if !changed {
                    return None;
                }
                let snapshot = s.changes.borrow_and_update().clone();
                // A reload that found nothing new swaps in an equal revision.
                if snapshot.revision != s.sent {
                    s.sent = snapshot.revision;
                    return Some((Ok(config_event(&snapshot)), s));
                }
            }
        })
    }
}

fn config_event(snapshot: &Snapshot) -> Event {
    // The document is compact JSON: no newlines, so one `data:` line.
    let data = std::str::from_utf8(&snapshot.document).unwrap_or("{}");
    Event::default()
        .event("config")
        .id(snapshot.revision.to_string())
        .data(data)
}
