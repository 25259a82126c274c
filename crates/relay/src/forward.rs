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
//!
//! An event whose environment is not served right now (the upstream
//! refuses its key, or its configuration has not arrived) does not hold
//! back the others: it is parked, as the NDJSON line it would be sent as
//! (its id included), in a second durable log, and the main log moves on.
//! A second forwarder sends the parked lines once their environment is
//! served again; lines whose environment may still be served later go
//! back to the end of the parked log (looked at again after a backoff),
//! and only those of an environment no source names, once every key list
//! is synced, are dropped (counted).

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
/// The parked log's consumer.
pub const PARKED_CONSUMER: &str = "relay-parked-forwarder";
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
    /// among the relay's sources, or the upstream finds them malformed.
    pub dropped: Counter,
    pub failures: Counter,
    /// Log bytes not yet forwarded.
    pub pending_bytes: Gauge,
    /// Events parked because their environment was not served.
    pub parked: Counter,
    /// Parked-log bytes not yet forwarded.
    pub parked_pending_bytes: Gauge,
    /// The last failure of each forwarder (main, parked), while it lasts.
    last_error: [Mutex<Option<String>>; 2],
}

impl ForwardStats {
    fn failed(&self, role: usize, message: String) {
        self.failures.inc();
        let mut last = self.last_error[role]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none() {
            tracing::warn!(error = %message, "cannot forward events upstream; they wait in the relay's log");
        }
        *last = Some(message);
    }

    fn recovered(&self, role: usize) {
        let mut last = self.last_error[role]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.take().is_some() {
            tracing::info!("forwarding events upstream again");
        }
    }

    pub(crate) fn report(&self) -> serde_json::Value {
        let failing = self.last_error.iter().any(|slot| {
            slot.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some()
        });
        json!({
            "pending_bytes": self.pending_bytes.get(),
            "parked_pending_bytes": self.parked_pending_bytes.get(),
            "forwarded": self.forwarded.get(),
            "parked": self.parked.get(),
            "dropped": self.dropped.get(),
            "failing": failing,
        })
    }
}

/// Why a request failed.
enum SendError {
    /// Try the same events again later.
    Retry(String),
    /// The body is too large; `own`: the upstream itself said so (not a
    /// proxy before it).
    TooLarge { message: String, own: bool },
    /// The upstream says the body itself is malformed: sending it again
    /// cannot help.
    Refused(String),
}

/// Which log a forwarder reads.
#[derive(Debug)]
pub(crate) enum Role {
    /// The relay's event log (event records); what cannot be sent now is
    /// appended to `parked`.
    Main { parked: Arc<dyn EventStream> },
    /// The parked log (NDJSON lines with their ids).
    Parked,
}

#[derive(Debug)]
pub(crate) struct Forwarder {
    pub sources: Arc<Sources>,
    pub role: Role,
    pub stream: Arc<dyn EventStream>,
    pub http: reqwest::Client,
    /// Names this relay's log in the ids it gives events without one.
    pub instance: String,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub idle_wait: Duration,
}

impl Forwarder {
    fn consumer(&self) -> &'static str {
        match self.role {
            Role::Main { .. } => CONSUMER,
            Role::Parked => PARKED_CONSUMER,
        }
    }

    fn slot(&self) -> usize {
        match self.role {
            Role::Main { .. } => 0,
            Role::Parked => 1,
        }
    }

    fn pending(&self, stats: &ForwardStats, from: u64) {
        let end = self.stream.bounds().1;
        let gauge = match self.role {
            Role::Main { .. } => &stats.pending_bytes,
            Role::Parked => &stats.parked_pending_bytes,
        };
        gauge.set(i64::try_from(end.saturating_sub(from)).unwrap_or(i64::MAX));
    }

    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let stats = self.sources.forwarding.clone();
        let consumer = self.consumer();
        let mut from = match self.stream.committed(consumer).await {
            Ok(Some(offset)) => offset,
            Ok(None) => {
                // Committed at once: the log bounds what waits behind a
                // committed consumer only, so from the first event on.
                let start = self.stream.bounds().0;
                if let Err(e) = self.stream.commit(consumer, start).await {
                    tracing::error!(error = %e, "cannot record the forwarder's offset");
                }
                start
            }
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
            if from > end {
                // The offsets file is ahead of the log (a restore, a lost
                // segment): nothing there to send; go on from the end.
                tracing::error!(
                    offset = from,
                    end,
                    "the forwarder's offset is past the end of the relay's log; forwarding from the end"
                );
                from = end;
            }
            self.pending(&stats, from);
            let batch = match self.stream.read(from, READ_BYTES).await {
                Ok(b) => b,
                Err(e) => {
                    stats.failed(self.slot(), format!("reading the relay's log: {e}"));
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
            // Set when this read's events that cannot be sent now were
            // set aside (parked, or put back at the parked log's end): a
            // retry of the others does not set them aside again.
            let mut set_aside = None;
            let sent = loop {
                // A send in flight at shutdown is abandoned: not committed,
                // it is sent again after the restart, and dropped by id.
                let outcome = tokio::select! {
                    outcome = self.send(&batch.records, &mut set_aside) => outcome,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match outcome {
                    Ok(sent) => break sent,
                    Err(message) => {
                        stats.failed(self.slot(), message);
                        self.pending(&stats, from);
                        let jittered = wait.mul_f64(0.5 + fastrand::f64() * 0.5);
                        wait = (wait * 2).min(self.backoff_max);
                        if sleep_or_stop(&mut stop, jittered).await {
                            return;
                        }
                    }
                }
            };
            stats.forwarded.inc_by(sent.forwarded);
            stats.parked.inc_by(sent.parked);
            stats.dropped.inc_by(sent.dropped);
            stats.recovered(self.slot());
            if let Err(e) = self.stream.commit(consumer, batch.next).await {
                // Sent but not committed: a restart sends them again, and
                // the upstream drops them by id.
                tracing::warn!(error = %e, "cannot commit the forwarder's offset");
            }
            from = batch.next;
            if sent.waiting > 0 && sent.forwarded == 0 {
                // Only events that must wait: they are back at the end of
                // the parked log; look again after a backoff, not at once.
                let jittered = wait.mul_f64(0.5 + fastrand::f64() * 0.5);
                wait = (wait * 2).min(self.backoff_max);
                if sleep_or_stop(&mut stop, jittered).await {
                    return;
                }
            } else {
                wait = self.backoff_min;
            }
        }
    }

    /// The id of an event that came without one: the relay's instance,
    /// the record's offset and a hash of its bytes (two relays started
    /// from a copied data directory still give different events
    /// different ids).
    fn generated_id(&self, offset: u64, payload: &[u8]) -> String {
        // SHA-256: the same bytes give the same id with any build.
        let hash = switchyard_store::hash_bytes(payload);
        format!("{}.{offset}.{}", self.instance, &hash[..16])
    }

    /// The NDJSON line a record is sent as (without its newline), with its
    /// project and environment.
    fn line_of(
        &self,
        record: &switchyard_events::StoredRecord,
    ) -> Option<(String, String, Vec<u8>)> {
        match self.role {
            Role::Main { .. } => {
                let mut event = decode_event(&record.payload)?;
                let generated;
                if event.id.is_none() {
                    generated = self.generated_id(record.offset, &record.payload);
                    event.id = Some(&generated);
                }
                let line = serde_json::to_vec(&event).ok()?;
                Some((
                    event.project.to_string(),
                    event.environment.to_string(),
                    line,
                ))
            }
            Role::Parked => {
                #[derive(serde::Deserialize)]
                struct Where {
                    project: String,
                    environment: String,
                }
                let at: Where = serde_json::from_slice(&record.payload).ok()?;
                Some((at.project, at.environment, record.payload.clone()))
            }
        }
    }

    /// Sends every event of `records` upstream, grouped by environment in
    /// log order; `Err` when some must be sent again (then all are: the
    /// upstream drops the repeated ones by id).
    async fn send(
        &self,
        records: &[switchyard_events::StoredRecord],
        set_aside: &mut Option<Sent>,
    ) -> Result<Sent, String> {
        let mut sent = Sent::default();
        // (project, environment, chunks of NDJSON lines within the bounds)
        let mut groups: Vec<(String, String, Vec<Chunk>)> = Vec::new();
        for record in records {
            let Some((project, environment, mut line)) = self.line_of(record) else {
                tracing::error!(
                    offset = record.offset,
                    "an unreadable record in the relay's log; skipped"
                );
                sent.dropped += 1;
                continue;
            };
            line.push(b'\n');
            let at = match groups
                .iter()
                .position(|(p, e, _)| *p == project && *e == environment)
            {
                Some(at) => at,
                None => {
                    groups.push((project, environment, vec![Chunk::default()]));
                    groups.len() - 1
                }
            };
            let chunks = &mut groups[at].2;
            if chunks.last().is_some_and(|c| {
                !c.lines.is_empty()
                    && (c.bytes + line.len() > BATCH_BYTES || c.lines.len() >= BATCH_EVENTS)
            }) {
                chunks.push(Chunk::default());
            }
            if let Some(chunk) = chunks.last_mut() {
                chunk.bytes += line.len();
                chunk.lines.push(line);
            }
        }
        // Lines that cannot be sent now: parked (main log), or put back at
        // the end of the parked log (parked log), so that they hold back
        // neither other environments nor each other.
        let mut aside = switchyard_events::EncodedBatch::default();
        let mut aside_counts = Sent::default();
        let mut sendable = Vec::with_capacity(groups.len());
        for (project, environment, chunks) in groups {
            let events = chunks.iter().map(|c| c.lines.len()).sum::<usize>() as u64;
            if let Some(key) = self.sources.key_of(&project, &environment) {
                sendable.push((key, project, environment, chunks));
                continue;
            }
            let may_be_served =
                self.sources.knows(&project, &environment) || !self.sources.all_have_keys();
            if matches!(self.role, Role::Parked) && !may_be_served {
                tracing::error!(%project, %environment, events,
                    "dropping events of an environment this relay no longer has a key for");
                sent.dropped += events;
                continue;
            }
            if set_aside.is_some() {
                continue;
            }
            for line in chunks.iter().flat_map(|c| &c.lines) {
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                if !aside.push_raw(line, None) {
                    tracing::error!(%project, %environment, bytes = line.len(),
                        "an event too large to park; dropped");
                    aside_counts.dropped += 1;
                }
            }
            match self.role {
                Role::Main { .. } => aside_counts.parked += events,
                Role::Parked => aside_counts.waiting += events,
            }
        }
        if set_aside.is_none() {
            if !aside.is_empty() {
                let log = match &self.role {
                    Role::Main { parked } => parked,
                    Role::Parked => &self.stream,
                };
                log.append(aside)
                    .await
                    .map_err(|e| format!("cannot park events: {e}"))?;
            }
            *set_aside = Some(aside_counts);
        }
        if let Some(done) = set_aside {
            sent.parked += done.parked;
            sent.waiting += done.waiting;
            sent.dropped += done.dropped;
        }
        for (key, project, environment, chunks) in sendable {
            for chunk in chunks {
                self.post_chunk(key, chunk.lines, &mut sent, &project, &environment)
                    .await?;
            }
        }
        Ok(sent)
    }

    /// Posts `lines`, halving them while the upstream finds them too large.
    async fn post_chunk(
        &self,
        key: &str,
        lines: Vec<Vec<u8>>,
        sent: &mut Sent,
        project: &str,
        environment: &str,
    ) -> Result<(), String> {
        let mut pending = vec![lines];
        while let Some(mut lines) = pending.pop() {
            let n = lines.len() as u64;
            match self.post(key, lines.concat()).await {
                Ok(()) => sent.forwarded += n,
                Err(SendError::Retry(m)) => return Err(m),
                Err(SendError::TooLarge { .. }) if lines.len() > 1 => {
                    let second = lines.split_off(lines.len() / 2);
                    pending.push(second);
                    pending.push(lines);
                }
                // One event a proxy finds too large: its limit may be
                // raised; only the upstream's own verdict is final.
                Err(SendError::TooLarge {
                    message,
                    own: false,
                }) => return Err(message),
                Err(
                    SendError::TooLarge {
                        message: m,
                        own: true,
                    }
                    | SendError::Refused(m),
                ) => {
                    tracing::error!(%project, %environment, events = n, error = %m,
                        "the upstream refuses forwarded events as malformed; dropping them");
                    sent.dropped += n;
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
        // Only the upstream's own verdict on the body is final; a 404 or
        // 400 from a proxy or an ingress that is not ready is retried.
        let code = serde_json::from_str::<serde_json::Value>(&detail)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let own = code.as_deref() == Some("payload_too_large");
            return Err(SendError::TooLarge { message, own });
        }
        if status == StatusCode::BAD_REQUEST
            && matches!(code.as_deref(), Some("invalid_json" | "invalid_body"))
        {
            return Err(SendError::Refused(message));
        }
        Err(SendError::Retry(message))
    }
}

/// NDJSON lines for one request.
#[derive(Debug, Default)]
struct Chunk {
    lines: Vec<Vec<u8>>,
    bytes: usize,
}

/// What one round sent.
#[derive(Debug, Default)]
struct Sent {
    forwarded: u64,
    parked: u64,
    /// Parked events put back to wait for their environment.
    waiting: u64,
    dropped: u64,
}

/// Sleeps `d`; `true` when `stop` fired instead.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}
