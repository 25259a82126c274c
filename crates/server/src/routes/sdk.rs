//! What server SDKs (local evaluation) read: their environment's whole
//! configuration document.
//!
//! - `GET /sdk/v1/config`: the compiled snapshot's `document` bytes (shared,
//!   never copied) with its `ETag`; `If-None-Match` naming it gives `304`.
//! - `GET /sdk/v1/stream`: server-sent events. On connect and after every
//!   change, `event: config`, `id: <revision>`, the full document as
//!   `data`. Between changes, a keep-alive comment every
//!   `stream_keepalive`. Each snapshot's event is rendered once and
//!   shared by every client. A client that misses intermediate revisions gets
//!   the newest one (the `watch` channel keeps only the latest), which is
//!   all a full-document protocol needs. The stream ends when the server
//!   shuts down, so graceful shutdown does not wait on streaming clients,
//!   when the environment is deleted, and when its key is revoked or
//!   deleted (the node's key ring changes, on every node, and the key is
//!   no longer in it).
//!
//! - `GET /sdk/v1/keys`: the live server and client keys of the key's
//!   environment with the SHA-256 of their secrets (never a secret), with
//!   an `ETag`: what a relay (`switchyard relay`) polls to authenticate
//!   that environment's SDKs from memory. A hash cannot be used as a key,
//!   and the caller can already read the whole configuration.
//!
//! All three need a server SDK key: client keys may only evaluate (OFREP).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::auth::{Auth, Principal};
use crate::error::{ApiError, ApiResult};
use crate::snapshots::{Slot, Snapshot};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sdk/v1/config", get(config))
        .route("/sdk/v1/stream", get(stream))
        .route("/sdk/v1/keys", get(keys))
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
    tagged_json(
        &headers,
        &snapshot.etag,
        "no-cache",
        snapshot.document.clone(),
    )
}

/// A JSON document with its `ETag`, or `304` when `If-None-Match` names it.
fn tagged_json(
    headers: &HeaderMap,
    tag: &str,
    cache: &'static str,
    body: Bytes,
) -> ApiResult<Response> {
    let etag = HeaderValue::from_str(tag)
        .map_err(|_| ApiError::Internal(format!("unusable ETag {tag:?}")))?;
    let cache = HeaderValue::from_static(cache);
    if let Some(inm) = headers.get(header::IF_NONE_MATCH)
        && etag_listed(inm, tag)
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
    Ok((headers, body).into_response())
}

async fn keys(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // The environment must exist, as for the document.
    slot_for(&state, &principal)?;
    let (project, environment) = principal.sdk_environment(false)?;
    let (body, tag) = state.auth.environment_keys_document(project, environment)?;
    tagged_json(&headers, &tag, "no-store", body)
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

async fn stream(State(state): State<AppState>, principal: Principal) -> ApiResult<Response> {
    let slot = slot_for(&state, &principal)?;
    let changes = slot.subscribe();
    drop(slot);
    let stream = ConfigStream {
        changes,
        keys: state.auth.subscribe(),
        auth: state.auth.clone(),
        key_id: principal.key().id.clone(),
        shutdown: state.shutdown.subscribe(),
        keep_alive: state.config.stream_keepalive,
        first: true,
        _client: ClientGuard::new(state.metrics.stream_clients.clone()),
    }
    .into_stream();
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
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
    /// Wakes on every change of the key ring.
    keys: watch::Receiver<u64>,
    auth: Arc<Auth>,
    /// The streaming key: the stream ends when it leaves the ring.
    key_id: String,
    shutdown: watch::Receiver<bool>,
    keep_alive: Duration,
    first: bool,
    _client: ClientGuard,
}

const KEEP_ALIVE: &[u8] = b":keep-alive\n\n";

impl ConfigStream {
    fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> {
        futures_util::stream::unfold(self, |mut s| async move {
            if s.first {
                s.first = false;
                let snapshot = s.changes.borrow_and_update().clone();
                return Some((Ok(config_frame(&snapshot)), s));
            }
            // `None`: stop; `Some(false)`: keep-alive; `Some(true)`: a change.
            let keep_alive = tokio::time::sleep(s.keep_alive);
            tokio::pin!(keep_alive);
            let what = loop {
                break tokio::select! {
                    // Shutdown and revocation win over a change that
                    // arrives at the same time.
                    biased;
                    _ = s.shutdown.wait_for(|stop| *stop) => None,
                    keys = s.keys.changed() => {
                        if keys.is_ok() && s.auth.is_live(&s.key_id) {
                            continue;
                        }
                        None
                    }
                    // An error: the environment was deleted, its slot is gone.
                    changed = s.changes.changed() => changed.is_ok().then_some(true),
                    () = &mut keep_alive => Some(false),
                };
            };
            if what? {
                // Snapshots publish only newer revisions, so a wake-up is
                // always a new document.
                let snapshot = s.changes.borrow_and_update().clone();
                Some((Ok(config_frame(&snapshot)), s))
            } else {
                Some((Ok(Bytes::from_static(KEEP_ALIVE)), s))
            }
        })
    }
}

/// The `config` event of a snapshot, rendered once and shared by every
/// client (a `Bytes` clone is a reference count): with 10k streams, a
/// change costs one rendering, not 10k copies of the document.
fn config_frame(snapshot: &Snapshot) -> Bytes {
    snapshot
        .stream_frame
        .get_or_init(|| render(snapshot))
        .clone()
}

fn render(snapshot: &Snapshot) -> Bytes {
    // The document is compact JSON (newlines inside strings are escaped),
    // so it is one `data:` line.
    let head = format!("event: config\nid: {}\ndata: ", snapshot.revision);
    let mut frame = Vec::with_capacity(head.len() + snapshot.document.len() + 2);
    frame.extend_from_slice(head.as_bytes());
    frame.extend_from_slice(&snapshot.document);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}
