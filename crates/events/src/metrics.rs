//! Prometheus metrics of ingestion, in this crate's own registry; the
//! server appends [`EventMetrics::encode`]'s text to its `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// What one log reports. Clones share their values.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    pub fsync: Histogram,
    pub bytes: Gauge,
    /// Bytes between the end of the log and the slowest consumer.
    pub consumer_lag: Gauge,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            fsync: Histogram::new([
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 1.0,
            ]),
            bytes: Gauge::default(),
            consumer_lag: Gauge::default(),
        }
    }
}

#[derive(Debug)]
pub struct EventMetrics {
    registry: Registry,
    pub accepted: Counter,
    pub rejected: Counter,
    pub deduplicated: Counter,
    pub overloaded: Counter,
    pub exposures_logged: Counter,
    pub exposures_deduplicated: Counter,
    pub exposures_dropped: Counter,
    /// Rejected events of accepted batches that the dead-letter store
    /// could not keep (it could not write).
    pub dead_letters_lost: Counter,
    pub log: LogMetrics,
    pub dead_letter_log: LogMetrics,
}

impl Default for EventMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl EventMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard_events");
        let m = EventMetrics {
            registry: Registry::default(),
            accepted: Counter::default(),
            rejected: Counter::default(),
            deduplicated: Counter::default(),
            overloaded: Counter::default(),
            exposures_logged: Counter::default(),
            exposures_deduplicated: Counter::default(),
            exposures_dropped: Counter::default(),
            dead_letters_lost: Counter::default(),
            log: LogMetrics::default(),
            dead_letter_log: LogMetrics::default(),
        };
        let r = &mut registry;
        r.register("accepted", "Events durably accepted", m.accepted.clone());
        r.register(
            "rejected",
            "Events rejected into the dead-letter store",
            m.rejected.clone(),
        );
        r.register(
            "deduplicated",
            "Events dropped because their id was already stored",
            m.deduplicated.clone(),
        );
        r.register(
            "overloaded",
            "Batches refused with 429 because the log is behind",
            m.overloaded.clone(),
        );
        r.register(
            "exposures_logged",
            "Exposures from server-side evaluation appended",
            m.exposures_logged.clone(),
        );
        r.register(
            "exposures_deduplicated",
            "Exposures from server-side evaluation skipped as seen in the window",
            m.exposures_deduplicated.clone(),
        );
        r.register(
            "exposures_dropped",
            "Exposures from server-side evaluation dropped (queue full or log failure)",
            m.exposures_dropped.clone(),
        );
        r.register(
            "dead_letters_lost",
            "Rejected events of stored batches not kept because the dead-letter store could not write",
            m.dead_letters_lost.clone(),
        );
        r.register(
            "log_bytes",
            "Bytes in the event log's segments",
            m.log.bytes.clone(),
        );
        r.register(
            "fsync_seconds",
            "Duration of the event log's group-commit fsync",
            m.log.fsync.clone(),
        );
        r.register(
            "consumer_lag_bytes",
            "Bytes between the log's end and its slowest consumer",
            m.log.consumer_lag.clone(),
        );
        r.register(
            "dead_letter_log_bytes",
            "Bytes in the dead-letter log's segments",
            m.dead_letter_log.bytes.clone(),
        );
        EventMetrics { registry, ..m }
    }

    /// The metric families as OpenMetrics text, without the final `# EOF`.
    pub fn encode(&self, out: &mut String) {
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}
