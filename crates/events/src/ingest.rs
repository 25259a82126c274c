//! [`Events`]: the ingestion service the HTTP layer calls. It decodes a
//! body, validates each event, appends the accepted ones to the event
//! stream and the rejected ones to the dead-letter store, and answers only
//! once both are durable.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::deadletter::{DeadLetters, Filter, NewLetter, Page};
use crate::exposure::{ExposureConfig, ExposureLogger};
use crate::log::{EventLog, LogConfig};
use crate::metrics::EventMetrics;
use crate::record::EncodedBatch;
use crate::schema::{BatchError, Limits, Rejection, parse_event, parse_json, parse_ndjson};
use crate::stream::{EventStream, MemoryStream, StreamError};

/// Dead letters re-validated per append during a replay.
const REPLAY_PAGE: usize = 1000;

/// Settings of [`Events`].
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub log: LogConfig,
    pub dead_letter_log: LogConfig,
    pub limits: Limits,
    pub exposures: ExposureConfig,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            log: LogConfig::default(),
            dead_letter_log: LogConfig {
                segment_bytes: 16 << 20,
                retention_bytes: Some(256 << 20),
                dedup_ids: 100_000,
                ..LogConfig::default()
            },
            limits: Limits::default(),
            exposures: ExposureConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// An array of events, or `{"events": [...]}`.
    Json,
    /// One event per line.
    Ndjson,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedEvent {
    pub index: usize,
    #[serde(flatten)]
    pub reason: Rejection,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub accepted: usize,
    /// Events whose id was already stored.
    pub duplicates: usize,
    pub rejected: Vec<RejectedEvent>,
    /// `false` when the accepted events are stored but the rejected ones
    /// could not be kept in the dead-letter store (its disk is full): the
    /// answer still lists each rejection with its reason.
    pub dead_letters_stored: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Dead letters now valid and appended to the event log.
    pub replayed: usize,
    /// Dead letters still invalid, with today's reason.
    pub still_rejected: Vec<StillRejected>,
    /// Where to continue (`from`) when `limit` letters were handled before
    /// the end of the dead-letter log; `None` at the end.
    pub next: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StillRejected {
    pub id: u64,
    pub reason: Rejection,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not JSON (or NDJSON) at all: syntax, truncation, not UTF-8.
    #[error("{0}")]
    InvalidJson(String),
    /// The body cannot be used otherwise (e.g. a broken gzip stream).
    #[error("{0}")]
    InvalidBody(String),
    #[error("the body exceeds {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("a batch holds at most {max} events")]
    TooManyEvents { max: usize },
    #[error("the event log is behind; retry later")]
    Overloaded { retry_after: Duration },
    #[error("event storage is unavailable")]
    Unavailable(String),
}

impl From<StreamError> for IngestError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Overloaded { retry_after } => IngestError::Overloaded { retry_after },
            other => IngestError::Unavailable(other.to_string()),
        }
    }
}

/// Event ingestion: the stream, dead letters, exposures and metrics.
#[derive(Debug)]
pub struct Events {
    stream: Arc<dyn EventStream>,
    dead: DeadLetters,
    limits: Limits,
    metrics: Arc<EventMetrics>,
    exposures: ExposureLogger,
}

impl Events {
    /// The embedded, durable setup: the event log in `dir/log`, dead letters
    /// in `dir/dead-letters`.
    pub async fn open(dir: &Path, config: EventsConfig) -> Result<Events, StreamError> {
        let metrics = Arc::new(EventMetrics::new());
        let log = EventLog::open(&dir.join("log"), config.log, metrics.log.clone())?;
        let dead = EventLog::open(
            &dir.join("dead-letters"),
            config.dead_letter_log,
            metrics.dead_letter_log.clone(),
        )?;
        Self::with_streams(
            Arc::new(log),
            Arc::new(dead),
            config.limits,
            config.exposures,
            metrics,
        )
        .await
    }

    /// Everything in memory, for tests.
    pub async fn in_memory(config: EventsConfig) -> Result<Events, StreamError> {
        Self::with_streams(
            Arc::new(MemoryStream::default()),
            Arc::new(MemoryStream::default()),
            config.limits,
            config.exposures,
            Arc::new(EventMetrics::new()),
        )
        .await
    }

    pub async fn with_streams(
        stream: Arc<dyn EventStream>,
        dead_letters: Arc<dyn EventStream>,
        limits: Limits,
        exposures: ExposureConfig,
        metrics: Arc<EventMetrics>,
    ) -> Result<Events, StreamError> {
        let dead = DeadLetters::open(dead_letters).await?;
        let exposures = ExposureLogger::start(stream.clone(), exposures, metrics.clone())?;
        Ok(Events {
            stream,
            dead,
            limits,
            metrics,
            exposures,
        })
    }

    pub fn stream(&self) -> &Arc<dyn EventStream> {
        &self.stream
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn metrics(&self) -> &EventMetrics {
        &self.metrics
    }

    /// `Err(why)` while the event log or the dead-letter store cannot
    /// write (a full disk); both recover by themselves.
    pub fn health(&self) -> Result<(), String> {
        self.stream
            .health()
            .map_err(|e| format!("event log: {e}"))?;
        self.dead
            .stream()
            .health()
            .map_err(|e| format!("dead-letter store: {e}"))
    }

    /// Ingests one request body for `project`/`environment`.
    pub async fn ingest(
        &self,
        project: &str,
        environment: &str,
        body: &[u8],
        format: BodyFormat,
        gzip: bool,
        now_ms: i64,
    ) -> Result<IngestReport, IngestError> {
        let max = self.limits.max_body_bytes;
        let inflated;
        let body = if gzip {
            // Every member: `cat a.gz b.gz` is one valid gzip stream, and
            // stopping after the first would acknowledge less than was sent.
            // Bounded after decompression, so a bomb is a 413, not memory.
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
            flate2::read::MultiGzDecoder::new(body)
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| IngestError::InvalidBody(format!("invalid gzip body: {e}")))?;
            inflated = out;
            &inflated[..]
        } else {
            body
        };
        if body.len() > max {
            return Err(IngestError::BodyTooLarge { max });
        }
        let parsed = match format {
            BodyFormat::Json => parse_json(body, &self.limits),
            BodyFormat::Ndjson => parse_ndjson(body, &self.limits),
        };
        let events = parsed.map_err(|e| match e {
            BatchError::TooManyEvents { max } => IngestError::TooManyEvents { max },
            BatchError::NotABatch(m) => IngestError::InvalidBody(m),
            other => IngestError::InvalidJson(other.to_string()),
        })?;
        let mut batch = EncodedBatch::with_capacity(body.len() + body.len() / 2, events.len());
        let mut indices = Vec::with_capacity(events.len());
        let mut rejected = Vec::new();
        for (i, raw) in events.iter().enumerate() {
            match raw.validate(&self.limits, now_ms) {
                Ok(ev) => {
                    batch.push_event(project, environment, &ev);
                    indices.push(i);
                }
                Err(reason) => rejected.push((i, reason, raw.to_json())),
            }
        }
        // Admission happens when `append` is called: the accepted events
        // first, so that a refused batch stores no dead letters either.
        let main = (!batch.is_empty()).then(|| self.stream.append(batch));
        let letters: Vec<NewLetter<'_>> = rejected
            .iter()
            .map(|(i, reason, text)| NewLetter {
                project,
                environment,
                index: *i,
                reason,
                event: text,
            })
            .collect();
        let appended = match main {
            Some(f) => match f.await {
                Ok(a) => Some(a),
                Err(e) => {
                    if matches!(e, StreamError::Overloaded { .. }) {
                        self.metrics.overloaded.inc();
                    }
                    return Err(e.into());
                }
            },
            None => None,
        };
        // The accepted events are durable now and cannot be taken back, so
        // a dead-letter store that cannot write does not turn the answer
        // into a 503 (the batch would be partly stored); the answer says so.
        let mut dead_letters_stored = true;
        if !letters.is_empty() {
            let dl = DeadLetters::encode(now_ms, &letters);
            if let Err(e) = self.dead.stream().append(dl).await {
                if appended.is_none() {
                    return Err(e.into());
                }
                tracing::error!(error = %e, letters = letters.len(),
                    "dead letters not stored; the events of their batch are");
                self.metrics.dead_letters_lost.inc_by(letters.len() as u64);
                dead_letters_stored = false;
            }
        }
        let (accepted, duplicates) = appended.map_or((0, 0), |a| (a.written, a.duplicates.len()));
        self.metrics.accepted.inc_by(accepted as u64);
        self.metrics.deduplicated.inc_by(duplicates as u64);
        self.metrics.rejected.inc_by(rejected.len() as u64);
        Ok(IngestReport {
            accepted,
            duplicates,
            rejected: rejected
                .into_iter()
                .map(|(index, reason, _)| RejectedEvent { index, reason })
                .collect(),
            dead_letters_stored,
        })
    }

    /// Logs an exposure from server-side evaluation (deduplicated within a
    /// window, appended asynchronously in batches; never blocks on I/O),
    /// with the unit's `attributes` (a JSON object, bounded by the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn log_exposure(
        &self,
        project: &str,
        environment: &str,
        unit: &str,
        experiment: &str,
        phase: u32,
        variation: &str,
        at: SystemTime,
        attributes: Option<String>,
    ) {
        self.exposures.log(
            project,
            environment,
            unit,
            experiment,
            phase,
            variation,
            at,
            attributes,
        );
    }

    /// One page of dead letters; see [`Page`].
    pub async fn dead_letters(&self, filter: &Filter, limit: usize) -> Result<Page, StreamError> {
        self.dead.list(filter, limit).await
    }

    /// Re-validates up to `limit` dead letters matching `filter` with
    /// today's rules and appends those that pass to the event log, a page
    /// at a time (memory is bounded by a page, not by `limit`). A letter
    /// kept truncated is never replayed.
    pub async fn replay(
        &self,
        filter: &Filter,
        limit: usize,
        now_ms: i64,
    ) -> Result<ReplayReport, IngestError> {
        let mut report = ReplayReport::default();
        let mut filter = filter.clone();
        filter.include_replayed = false;
        let mut left = limit;
        while left > 0 {
            let page = self.dead.list(&filter, left.min(REPLAY_PAGE)).await?;
            left -= page.dead_letters.len();
            let mut batch = EncodedBatch::default();
            let mut ids = Vec::new();
            for l in &page.dead_letters {
                if let Some(size) = l.truncated {
                    report.still_rejected.push(StillRejected {
                        id: l.id,
                        reason: Rejection {
                            code: "truncated".into(),
                            message: format!(
                                "only the first bytes of this {size}-byte event were kept; it cannot be replayed"
                            ),
                            field: None,
                        },
                    });
                    continue;
                }
                let raw = parse_event(l.event.get());
                match raw.validate(&self.limits, now_ms) {
                    Ok(mut ev) => {
                        let fallback = format!("dead-letter-{}", l.id);
                        if ev.id.is_none() {
                            ev.id = Some(fallback.as_str().into());
                        }
                        batch.push_event(&l.project, &l.environment, &ev);
                        ids.push(l.id);
                    }
                    Err(reason) => report
                        .still_rejected
                        .push(StillRejected { id: l.id, reason }),
                }
            }
            if !batch.is_empty() {
                let a = self.stream.append(batch).await?;
                self.metrics.accepted.inc_by(a.written as u64);
                report.replayed += ids.len();
                self.dead.mark_replayed(ids).await?;
            }
            report.next = page.next;
            match page.next {
                Some(n) => filter.from = n,
                None => break,
            }
        }
        Ok(report)
    }

    /// Writes queued exposures and stops the background thread.
    pub fn close(&self) {
        self.exposures.close();
    }
}
