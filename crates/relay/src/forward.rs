//! Forwarding accepted events upstream.
//!
//! Downstream SDKs' events (and the exposures of evaluations served here)
//! are accepted into the relay's own durable log exactly as a server
//! accepts them: acknowledged only once on disk. One task reads the log
//! from the forwarder's committed offset, sends its events upstream
//! (`POST /api/v1/events`, NDJSON, with the key of each event's
//! environment) in batches, and commits the offset only after the
//! upstream acknowledged every batch of the read. A failed send (the
//! upstream down, overloaded or refusing) is retried after a jittered
//! backoff, the same events with the same ids, so nothing acknowledged is
//! lost and the upstream's deduplication by id stores each event once
//! however often it is sent. An event that came without an id is given
//! one from the relay's instance id and its offset in the log, the same on
//! every retry and after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use reqwest::{StatusCode, header};
use serde_json::json;
use switchyard_events::EventStream;
use switchyard_events::record::decode_event;
use tokio::sync::watch;

use crate::upstream::{Sources, read_limited};

/// The log consumer whose offset is the forwarder's.
pub const CONSUMER: &str = "relay-forwarder";
/// Log bytes read per round.
const READ_BYTES: usize = 1 << 20;
/// Events per upstream request at most.
const BATCH_EVENTS: usize = 1000;
/// Body bytes per upstream request at most (far below any server's limit).
const BATCH_BYTES: usize = 512 << 10;

/// What the forwarder reports.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub forwarded: Counter,
    /// Events that can never be delivered: their environment is no longer
    /// among the relay's sources, or the upstream refuses the batch itself.
    pub dropped: Counter,
    pub failures: Counter,
    /// Log bytes not yet forwarded.
    pub pending_bytes: Gauge,
    last_error: Mutex<Option<String>>,
}

impl ForwardStats {
    fn failed(&self, message: String) {
        self.failures.inc();
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none() {
            tracing::warn!(error = %message, "cannot forward events upstream; they wait in the relay's log");
        }
        *last = Some(message);
    }

    fn recovered(&self) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.take().is_some() {
            tracing::info!("forwarding events upstream again");
        }
    }

    pub(crate) fn report(&self) -> serde_json::Value {
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        json!({
            "pending_bytes": self.pending_bytes.get(),
            "forwarded": self.forwarded.get(),
            "dropped": self.dropped.get(),
            "failing": last.is_some(),
        })
    }
}

/// Why a send failed.
enum SendError {
    /// Try the same events again later.
    Retry(String),
    /// The upstream will never take this batch (a 4xx other than 401,
    /// 403, 408 and 429).
    Refused(String),
}

#[derive(Debug)]
pub(crate) struct Forwarder {
    pub sources: Arc<Sources>,
    pub stream: Arc<dyn EventStream>,
    pub http: reqwest::Client,
    /// Names this relay's log in the ids it gives events without one.
    pub instance: String,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub idle_wait: Duration,
}

impl Forwarder {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let stats = self.sources.forwarding.clone();
        let mut from = match self.stream.committed(CONSUMER).await {
            Ok(Some(offset)) => offset,
            Ok(None) => self.stream.bounds().0,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the forwarder's offset; forwarding from the log's start");
                self.stream.bounds().0
            }
        };
        let mut wait = self.backoff_min;
        loop {
            if *stop.borrow() {
                return;
            }
            let (first, end) = self.stream.bounds();
            if from < first {
                tracing::error!(
                    lost_bytes = first - from,
                    "the log dropped events the forwarder had not sent (retention)"
                );
                from = first;
            }
            stats
                .pending_bytes
                .set(i64::try_from(end - from).unwrap_or(i64::MAX));
            let batch = match self.stream.read(from, READ_BYTES).await {
                Ok(b) => b,
                Err(e) => {
                    stats.failed(format!("reading the relay's log: {e}"));
                    if sleep_or_stop(&mut stop, self.backoff_max).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.records.is_empty() {
                if sleep_or_stop(&mut stop, self.idle_wait).await {
                    return;
                }
                continue;
            }
            loop {
                match self.send(&batch.records).await {
                    Ok(()) => break,
                    Err(message) => {
                        stats.failed(message);
                        let jittered = wait.mul_f64(0.5 + fastrand::f64() * 0.5);
                        wait = (wait * 2).min(self.backoff_max);
                        if sleep_or_stop(&mut stop, jittered).await {
                            return;
                        }
                    }
                }
            }
            wait = self.backoff_min;
            stats.recovered();
            if let Err(e) = self.stream.commit(CONSUMER, batch.next).await {
                // Sent but not committed: a restart sends them again, and
                // the upstream drops them by id.
                tracing::warn!(error = %e, "cannot commit the forwarder's offset");
            }
            from = batch.next;
        }
    }

    /// Sends every event of `records` upstream, grouped by environment in
    /// log order; `Err` when any batch must be retried.
    async fn send(&self, records: &[switchyard_events::StoredRecord]) -> Result<(), String> {
        let stats = &self.sources.forwarding;
        // (project, environment) -> NDJSON bodies, each within the bounds.
        let mut groups: Vec<(String, String, Vec<Vec<u8>>, usize)> = Vec::new();
        for record in records {
            let Some(mut event) = decode_event(&record.payload) else {
                continue;
            };
            let generated;
            if event.id.is_none() {
                generated = format!("{}.{}", self.instance, record.offset);
                event.id = Some(&generated);
            }
            let at = match groups
                .iter()
                .position(|(p, e, _, _)| p == event.project && e == event.environment)
            {
                Some(at) => at,
                None => {
                    groups.push((
                        event.project.to_string(),
                        event.environment.to_string(),
                        vec![Vec::new()],
                        0,
                    ));
                    groups.len() - 1
                }
            };
            let (_, _, bodies, count) = &mut groups[at];
            let mut line = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
            line.push(b'\n');
            let full = bodies.last().is_some_and(|b| {
                !b.is_empty() && (b.len() + line.len() > BATCH_BYTES || *count >= BATCH_EVENTS)
            });
            if full {
                bodies.push(Vec::new());
                *count = 0;
            }
            if let Some(body) = bodies.last_mut() {
                body.extend_from_slice(&line);
            }
            *count += 1;
        }
        for (project, environment, bodies, _) in groups {
            let Some(key) = self.sources.key_of(&project, &environment) else {
                let lines: usize = bodies
                    .iter()
                    .map(|b| b.iter().filter(|&&c| c == b'\n').count())
                    .sum();
                if self.sources.mirror.copies().iter().any(|c| {
                    c.keys
                        .as_ref()
                        .is_some_and(|k| k.project == project && k.environment == environment)
                }) {
                    // The upstream refuses the key right now: wait for it.
                    return Err(format!(
                        "the upstream refuses the key of {project}/{environment}; its events wait"
                    ));
                }
                tracing::error!(%project, %environment, events = lines,
                    "dropping events of an environment this relay no longer has a key for");
                stats.dropped.inc_by(lines as u64);
                continue;
            };
            for body in bodies {
                let events = body.iter().filter(|&&c| c == b'\n').count() as u64;
                match self.post(key, body).await {
                    Ok(()) => {
                        stats.forwarded.inc_by(events);
                    }
                    Err(SendError::Retry(m)) => return Err(m),
                    Err(SendError::Refused(m)) => {
                        tracing::error!(%project, %environment, events, error = %m,
                            "the upstream refuses a batch of forwarded events; dropping it");
                        stats.dropped.inc_by(events);
                    }
                }
            }
        }
        Ok(())
    }

    async fn post(&self, key: &str, body: Vec<u8>) -> Result<(), SendError> {
        let url = format!("{}/api/v1/events", self.sources.upstream());
        let response = self
            .http
            .post(&url)
            .bearer_auth(key)
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("POST {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = read_limited(response, 4096)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let message = format!("POST {url}: {status} {detail}");
        let retry = status.is_server_error()
            || matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
            );
        Err(if retry {
            SendError::Retry(message)
        } else {
            SendError::Refused(message)
        })
    }
}

/// Sleeps `d`; `true` when `stop` fired instead.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}
