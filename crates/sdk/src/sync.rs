//! Keeping the configuration current, on the SDK's thread.
//!
//! Streaming (the default): hold `GET /sdk/v1/stream` open; every
//! `config` event is the whole document, compiled here and swapped in.
//! When the stream fails (refused, cut, or silent for longer than the
//! idle timeout, which is three of the server's keep-alives), poll
//! `GET /sdk/v1/config` at once with `If-None-Match`, so a change made
//! while the stream was down is not missed, then wait a jittered backoff
//! and open the stream again. Polling only (`streaming(false)`): the same
//! poll every `poll_interval`.
//!
//! Status: `Ready` while the last contact succeeded, `Stale` while the
//! server cannot be reached and the client serves an older copy,
//! `Failed` when the server refused the key (401/403): syncing stops for
//! good, the last configuration keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use switchyard_core::Evaluator;
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::client::{Shared, Status};
use crate::http::{CallError, Download, Http};
use crate::sse;

#[derive(Debug, Clone)]
pub(crate) struct SyncConfig {
    pub streaming: bool,
    pub poll_interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub stream_idle_timeout: Duration,
    pub request_timeout: Duration,
    pub document_limit: usize,
    pub cache_file: Option<PathBuf>,
}

/// Why a stream ended.
enum StreamEnd {
    Stopped,
    Unauthorized(String),
    Failed(String),
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    http: Http,
    config: SyncConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    let mut etag: Option<String> = None;
    loop {
        if config.streaming {
            match stream(&shared, &http, &config, &mut stop, &mut backoff).await {
                StreamEnd::Stopped => return,
                StreamEnd::Unauthorized(message) => return fail(&shared, message),
                StreamEnd::Failed(message) => {
                    tracing::debug!(error = %message, "switchyard: the stream is down");
                    shared.update_status(|s| s.streaming = false);
                }
            }
        }
        match poll(&shared, &http, &config, &mut etag).await {
            Ok(()) => {}
            Err(CallError::Unauthorized(message)) => return fail(&shared, message),
            Err(e) => lost(&shared, e.to_string()),
        }
        let wait = if config.streaming {
            backoff.next()
        } else {
            config.poll_interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The server refused the key: stop, say so, keep serving what we have.
fn fail(shared: &Shared, message: String) {
    tracing::error!(error = %message, "switchyard: the server refused the SDK key; the configuration is no longer updated");
    shared.update_status(|s| {
        s.status = Status::Failed;
        s.streaming = false;
        s.error = Some(message);
    });
}

/// The server could not be reached (or sent something unusable).
fn lost(shared: &Shared, message: String) {
    shared.update_status(|s| {
        if s.status == Status::Ready || s.error.is_none() {
            tracing::warn!(error = %message, "switchyard: cannot sync the configuration; serving the last copy until it can");
        } else {
            tracing::debug!(error = %message, "switchyard: still cannot sync the configuration");
        }
        if s.status != Status::Initializing || shared.has_config() {
            s.status = Status::Stale;
        }
        s.streaming = false;
        s.error = Some(message);
    });
}

async fn poll(
    shared: &Shared,
    http: &Http,
    config: &SyncConfig,
    etag: &mut Option<String>,
) -> Result<(), CallError> {
    match http.config(etag.as_deref()).await? {
        Download::NotModified => {}
        Download::Changed {
            document,
            etag: new,
        } => {
            apply(shared, config, &document, true).map_err(CallError::Refused)?;
            *etag = new;
        }
    }
    shared.update_status(|s| {
        s.status = Status::Ready;
        s.error = None;
        s.last_sync = Some(SystemTime::now());
    });
    Ok(())
}

async fn stream(
    shared: &Shared,
    http: &Http,
    config: &SyncConfig,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> StreamEnd {
    // A server (or a proxy) that takes the connection but never answers
    // must not hold the client: the answer's head has the request timeout.
    let response = tokio::select! {
        r = tokio::time::timeout(config.request_timeout, http.stream()) => r,
        _ = stop.wait_for(|s| *s) => return StreamEnd::Stopped,
    };
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(CallError::Unauthorized(m))) => return StreamEnd::Unauthorized(m),
        Ok(Err(e)) => return StreamEnd::Failed(e.to_string()),
        Err(_) => {
            return StreamEnd::Failed(format!(
                "the stream was not answered within {:?}",
                config.request_timeout
            ));
        }
    };
    let mut body = std::pin::pin!(response.bytes_stream());
    // The first document of a connection is the server's current one.
    let mut first = true;
    let mut reader = sse::Reader::new(config.document_limit);
    loop {
        let chunk = tokio::select! {
            c = tokio::time::timeout(config.stream_idle_timeout, body.next()) => c,
            _ = stop.wait_for(|s| *s) => return StreamEnd::Stopped,
        };
        let bytes = match chunk {
            Err(_) => {
                return StreamEnd::Failed(format!(
                    "the stream was silent for {:?}",
                    config.stream_idle_timeout
                ));
            }
            Ok(None) => return StreamEnd::Failed("the server ended the stream".into()),
            Ok(Some(Err(e))) => return StreamEnd::Failed(format!("the stream broke: {e}")),
            Ok(Some(Ok(bytes))) => bytes,
        };
        let events = match reader.push(&bytes) {
            Ok(events) => events,
            Err(e) => return StreamEnd::Failed(e.to_string()),
        };
        for event in events.into_iter().filter(|e| e.event == "config") {
            let authoritative = std::mem::replace(&mut first, false);
            match apply(shared, config, &event.data, authoritative) {
                Ok(()) => {
                    backoff.reset();
                    shared.update_status(|s| {
                        s.status = Status::Ready;
                        s.streaming = true;
                        s.error = None;
                        s.last_sync = Some(SystemTime::now());
                    });
                }
                // The stream goes on: the next change may be usable.
                Err(message) => lost(shared, message),
            }
        }
    }
}

/// Compiles a document and swaps it in (see `Shared::install` for when);
/// writes the disk cache.
fn apply(
    shared: &Shared,
    config: &SyncConfig,
    document: &str,
    authoritative: bool,
) -> Result<(), String> {
    let evaluator = Evaluator::from_json(document)
        .map_err(|e| format!("the server's configuration cannot be used: {e}"))?;
    if !shared.install(evaluator, authoritative) {
        return Ok(());
    }
    shared.installed(document);
    if let Some(path) = &config.cache_file
        && let Err(e) = write_cache(path, document)
    {
        tracing::warn!(path = %path.display(), error = %e, "switchyard: cannot write the configuration cache");
    }
    Ok(())
}

/// Writes the cache so that a crash leaves the old file or the new one,
/// never half of one: a temporary file beside it, synced, then renamed.
fn write_cache(path: &std::path::Path, document: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(document.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}
