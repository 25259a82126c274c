//! Events from the application to the server: exposures (an experiment
//! flag was read) and tracked events (`Client::track`).
//!
//! The calling thread only encodes the event and pushes it on a bounded
//! queue under a short lock: never I/O, never a wait. A full queue drops
//! its oldest event and counts it. The SDK's thread sends the queue in
//! batches to `POST /api/v1/events`; a batch that fails with a network
//! error, 429 or 5xx is sent again, whole and with the same event ids
//! (so the server stores each event once however often it is sent), after
//! `Retry-After` or a jittered backoff. A batch the server refuses as a
//! whole (another 4xx) is dropped and counted.
//!
//! Every event gets a sequence number; `resolved` is the highest number
//! below which every event is delivered or dropped, which is what `flush`
//! waits for.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use switchyard_core::exposure::{TimeWindow, attributes_of};
use switchyard_core::{Context, Exposure};
use tokio::sync::{Notify, watch};

use crate::backoff::Backoff;
use crate::http::{CallError, Http};

/// The server refuses events over 32 KiB; the SDK drops them at once.
pub(crate) const MAX_EVENT_BYTES: usize = 32 * 1024;
/// A batch stays under this many bytes of JSON (the server's body limit
/// is larger).
const MAX_BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct EventsConfig {
    pub capacity: usize,
    pub batch: usize,
    pub flush_interval: Duration,
    pub exposure_window: Duration,
    pub exposure_keys: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// Counters of what happened to events, since the client started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    /// Events waiting to be sent (queued or in the batch being sent).
    pub pending: u64,
    /// Accepted by the server (including events it already had).
    pub delivered: u64,
    /// Exposures not queued because the same one was within the window.
    pub exposures_deduplicated: u64,
    /// Dropped from a full queue (the oldest go first).
    pub dropped_overflow: u64,
    /// Dropped because the server refused them: a whole batch refused
    /// (a 4xx other than 429), or single events it rejected.
    pub refused: u64,
    /// Dropped at the SDK: larger than 32 KiB.
    pub too_large: u64,
    /// Sending attempts that failed and were retried.
    pub retries: u64,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    json: String,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Pending>,
    /// The sequence number the next event gets (the first is 1).
    next: u64,
    /// The first sequence number of the batch being sent.
    in_flight: Option<(u64, usize)>,
}

impl Queue {
    /// Every event numbered up to this is delivered or dropped.
    fn resolved(&self) -> u64 {
        let first_open = self
            .in_flight
            .map(|(seq, _)| seq)
            .or(self.items.front().map(|p| p.seq))
            .unwrap_or(self.next);
        first_open.saturating_sub(1)
    }
}

#[derive(Debug)]
pub(crate) struct Events {
    queue: Mutex<Queue>,
    config: EventsConfig,
    wake: Notify,
    resolved: watch::Sender<u64>,
    exposures: Mutex<TimeWindow>,
    id_prefix: String,
    /// Set by `close`: nothing more is queued.
    closed: AtomicBool,
    delivered: AtomicU64,
    deduplicated: AtomicU64,
    overflow: AtomicU64,
    refused: AtomicU64,
    too_large: AtomicU64,
    retries: AtomicU64,
}

#[derive(Serialize)]
struct ExposureEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    unit: &'a str,
    experiment: &'a str,
    flag: &'a str,
    variation: &'a str,
    time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<&'a serde_json::value::RawValue>,
}

#[derive(Serialize)]
struct TrackEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    unit: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<&'a Map<String, Value>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Events {
    pub fn new(config: EventsConfig) -> Self {
        Events {
            queue: Mutex::new(Queue {
                next: 1,
                ..Queue::default()
            }),
            exposures: Mutex::new(TimeWindow::new(
                config.exposure_window,
                config.exposure_keys,
                Instant::now(),
            )),
            config,
            wake: Notify::new(),
            resolved: watch::Sender::new(0),
            // 128 random bits: ids from two processes never meet.
            id_prefix: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            closed: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    /// Queues an exposure unless the same one (environment, unit,
    /// experiment, phase, variation) was queued within the window.
    pub fn exposure(&self, environment: &str, flag: &str, ctx: &Context, exposure: &Exposure<'_>) {
        let Some(unit) = ctx.unit(exposure.bucket_by) else {
            return;
        };
        let key = switchyard_core::exposure::key(
            "",
            environment,
            &unit,
            exposure.experiment,
            exposure.phase,
            exposure.variation,
        );
        let fresh = match self.exposures.lock() {
            Ok(mut seen) => seen.insert(key, Instant::now()),
            Err(_) => true,
        };
        if !fresh {
            self.deduplicated.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let attributes =
            attributes_of(ctx).and_then(|a| serde_json::value::RawValue::from_string(a).ok());
        self.push(|id| {
            serde_json::to_string(&ExposureEvent {
                kind: "exposure",
                id,
                unit: &unit,
                experiment: exposure.experiment,
                flag,
                variation: exposure.variation,
                time: now_ms(),
                attributes: attributes.as_deref(),
            })
        });
    }

    pub fn track(
        &self,
        unit: &str,
        name: &str,
        value: Option<f64>,
        attributes: Option<&Map<String, Value>>,
    ) {
        self.push(|id| {
            serde_json::to_string(&TrackEvent {
                kind: "track",
                id,
                unit,
                name,
                value: value.filter(|v| v.is_finite()),
                time: now_ms(),
                attributes,
            })
        });
    }

    /// Stops queueing: the client is closing.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn push(&self, encode: impl FnOnce(&str) -> serde_json::Result<String>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        let seq = q.next;
        let id = format!("{}-{seq}", self.id_prefix);
        let json = match encode(&id) {
            Ok(json) if json.len() <= MAX_EVENT_BYTES => json,
            Ok(json) => {
                self.too_large.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    bytes = json.len(),
                    "switchyard: an event over 32 KiB was dropped"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "switchyard: an event could not be encoded");
                return;
            }
        };
        q.next += 1;
        q.items.push_back(Pending { seq, json });
        if q.items.len() > self.config.capacity {
            q.items.pop_front();
            self.overflow.fetch_add(1, Ordering::Relaxed);
            let resolved = q.resolved();
            self.resolved.send_replace(resolved);
        }
        let full = q.items.len() >= self.config.batch;
        drop(q);
        if full {
            self.wake.notify_one();
        }
    }

    pub fn stats(&self) -> EventStats {
        let pending = self
            .queue
            .lock()
            .map(|q| q.items.len() + q.in_flight.map_or(0, |(_, n)| n))
            .unwrap_or(0) as u64;
        EventStats {
            pending,
            delivered: self.delivered.load(Ordering::Relaxed),
            exposures_deduplicated: self.deduplicated.load(Ordering::Relaxed),
            dropped_overflow: self.overflow.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            too_large: self.too_large.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// The sequence number of the newest event queued so far.
    pub fn newest(&self) -> u64 {
        self.queue.lock().map(|q| q.next - 1).unwrap_or(0)
    }

    /// Waits until every event up to `target` is delivered or dropped.
    pub async fn wait_resolved(&self, target: u64) {
        self.wake.notify_one();
        let mut rx = self.resolved.subscribe();
        let _ = rx.wait_for(|&r| r >= target).await;
    }

    /// Takes the next batch off the queue and marks it in flight.
    fn take_batch(&self) -> Option<Vec<Pending>> {
        let mut q = self.queue.lock().ok()?;
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(p) = q.items.front() {
            if batch.len() >= self.config.batch
                || (!batch.is_empty() && bytes + p.json.len() > MAX_BATCH_BYTES)
            {
                break;
            }
            bytes += p.json.len() + 1;
            batch.extend(q.items.pop_front());
        }
        let first = batch.first()?.seq;
        q.in_flight = Some((first, batch.len()));
        Some(batch)
    }

    fn finish_batch(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.in_flight = None;
            let resolved = q.resolved();
            self.resolved.send_replace(resolved);
        }
    }

    /// The sending loop, on the SDK's thread: until `stop` says so, then
    /// one last attempt to send everything, for at most `drain`.
    pub async fn run(&self, http: Http, mut stop: watch::Receiver<bool>, drain: Duration) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.flush_interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let mut stopping = false;
            while !*stop.borrow() {
                let Some(batch) = self.take_batch() else {
                    break;
                };
                let outcome = self.deliver(&http, &batch, None, &mut stop).await;
                self.finish_batch();
                if outcome == Sent::Stopping {
                    stopping = true;
                    break;
                }
            }
            if stopping || *stop.borrow() {
                break;
            }
        }
        let now = tokio::time::Instant::now();
        // `Duration::MAX` means "as long as it takes": a year will do.
        let deadline = now
            .checked_add(drain)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        while let Some(batch) = self.take_batch() {
            let outcome = self.deliver(&http, &batch, Some(deadline), &mut stop).await;
            self.finish_batch();
            if outcome != Sent::Answered {
                let left = self.stats().pending;
                tracing::warn!(
                    undelivered = batch.len() as u64 + left,
                    "switchyard: the client closed with events undelivered"
                );
                break;
            }
        }
    }

    /// Sends one batch until the server answers it, retrying what can be
    /// retried, until `deadline` (the batch is then lost; the caller
    /// reports it) or, without a deadline, until `stop` (the batch goes
    /// back to the queue for the drain).
    async fn deliver(
        &self,
        http: &Http,
        batch: &[Pending],
        deadline: Option<tokio::time::Instant>,
        stop: &mut watch::Receiver<bool>,
    ) -> Sent {
        let mut body =
            String::with_capacity(batch.iter().map(|p| p.json.len() + 1).sum::<usize>() + 12);
        body.push_str("{\"events\":[");
        for (i, p) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&p.json);
        }
        body.push_str("]}");
        let mut backoff = Backoff::new(self.config.retry_min, self.config.retry_max);
        loop {
            let attempt = http.events(body.clone());
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d, attempt)
                    .await
                    .unwrap_or_else(|_| Err(CallError::Network("out of time".into()))),
                // Closing cuts a request short: the drain sends the batch
                // again, with the same ids, under its deadline.
                None => tokio::select! {
                    outcome = attempt => outcome,
                    _ = stop.wait_for(|s| *s) => {
                        self.put_back(batch);
                        return Sent::Stopping;
                    }
                },
            };
            let wait = match outcome {
                Ok(answer) => {
                    let rejected = serde_json::from_str::<Value>(&answer)
                        .ok()
                        .and_then(|v| v.get("rejected").and_then(Value::as_array).map(Vec::len))
                        .unwrap_or(0);
                    if rejected > 0 {
                        tracing::warn!(rejected, "switchyard: the server rejected events");
                    }
                    self.refused.fetch_add(rejected as u64, Ordering::Relaxed);
                    self.delivered.fetch_add(
                        (batch.len() - rejected.min(batch.len())) as u64,
                        Ordering::Relaxed,
                    );
                    return Sent::Answered;
                }
                Err(CallError::Unauthorized(m) | CallError::Refused(m)) => {
                    tracing::error!(events = batch.len(), error = %m, "switchyard: the server refused a batch of events; it is dropped");
                    self.refused
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    return Sent::Answered;
                }
                Err(CallError::Retry {
                    message,
                    retry_after,
                }) => {
                    tracing::debug!(error = %message, "switchyard: sending events again later");
                    // Honoured, but never below the shortest backoff: a
                    // `Retry-After: 0` must not make a tight loop.
                    let next = backoff.next();
                    retry_after.map_or(next, |d| {
                        d.max(self.config.retry_min).min(Duration::from_secs(300))
                    })
                }
                Err(CallError::Network(message)) => {
                    tracing::debug!(error = %message, "switchyard: sending events again later");
                    backoff.next()
                }
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            let until = tokio::time::Instant::now() + wait;
            if deadline.is_some_and(|d| until > d) {
                return Sent::OutOfTime;
            }
            if deadline.is_some() {
                tokio::time::sleep_until(until).await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    // Closing: leave this loop for the drain, which sends
                    // this batch again (it was put back) under its deadline.
                    _ = stop.wait_for(|s| *s) => {
                        self.put_back(batch);
                        return Sent::Stopping;
                    }
                }
            }
        }
    }

    /// Returns an undelivered batch to the front of the queue (closing).
    fn put_back(&self, batch: &[Pending]) {
        if let Ok(mut q) = self.queue.lock() {
            for p in batch.iter().rev() {
                q.items.push_front(Pending {
                    seq: p.seq,
                    json: p.json.clone(),
                });
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The server answered: delivered, or refused for good.
    Answered,
    /// The drain's deadline passed first.
    OutOfTime,
    /// The client is closing; the batch is back in the queue.
    Stopping,
}
