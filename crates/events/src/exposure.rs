//! Exposure logging from server-side evaluation: deduplicated per
//! (environment, unit, experiment, phase, variation) within a time window, queued
//! without blocking the caller, appended in batches by a background thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::dedup::TimeWindow;
use crate::metrics::EventMetrics;
use crate::record::EncodedBatch;
use crate::schema::{EventRef, KindRef};
use crate::stream::EventStream;

/// Settings of the exposure logger.
#[derive(Debug, Clone)]
pub struct ExposureConfig {
    /// A repeated exposure within this time is logged once.
    pub window: Duration,
    /// Most keys remembered (two generations of half each; about 20 bytes a key).
    pub window_keys: usize,
    /// Exposures waiting to be written; past this they are dropped and counted.
    pub queue: usize,
    /// A batch is written after this delay or at `batch` exposures.
    pub linger: Duration,
    pub batch: usize,
}

impl Default for ExposureConfig {
    fn default() -> Self {
        ExposureConfig {
            window: Duration::from_secs(3600),
            window_keys: 2_000_000,
            queue: 100_000,
            linger: Duration::from_millis(100),
            batch: 2_000,
        }
    }
}

struct Exposure {
    project: String,
    environment: String,
    unit: String,
    experiment: String,
    variation: String,
    time_ms: i64,
    /// The unit's attributes when it was served (a JSON object, bounded
    /// by the caller).
    attributes: Option<String>,
}

#[derive(Debug)]
pub struct ExposureLogger {
    seen: Mutex<TimeWindow>,
    /// Unbounded channel, bounded by `queued` against `queue`: a
    /// `sync_channel` of 100,000 would allocate (and touch) all its slots,
    /// 16 MB, at start; this one allocates as exposures wait.
    tx: Mutex<Option<Sender<Exposure>>>,
    queued: Arc<AtomicUsize>,
    queue: usize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<EventMetrics>,
}

impl ExposureLogger {
    pub fn start(
        stream: Arc<dyn EventStream>,
        config: ExposureConfig,
        metrics: Arc<EventMetrics>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let m = metrics.clone();
        let cfg = config.clone();
        let q = queued.clone();
        let thread = std::thread::Builder::new()
            .name("exposure-logger".into())
            .spawn(move || run(rx, q, stream, cfg, m))?;
        Ok(ExposureLogger {
            seen: Mutex::new(TimeWindow::new(
                config.window,
                config.window_keys,
                Instant::now(),
            )),
            tx: Mutex::new(Some(tx)),
            queued,
            queue: config.queue.max(1),
            thread: Mutex::new(Some(thread)),
            metrics,
        })
    }

    /// Logs that `unit` was served `variation` of `experiment` in its phase
    /// `phase` (a new phase counts a unit again), with the unit's
    /// `attributes` then (a JSON object; the caller bounds it). Never
    /// blocks on I/O; see the module doc.
    #[allow(clippy::too_many_arguments)]
    pub fn log(
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
        let key = switchyard_core::exposure::key(
            project,
            environment,
            unit,
            experiment,
            phase,
            variation,
        );
        let fresh = match self.seen.lock() {
            Ok(mut w) => w.insert(key, Instant::now()),
            Err(_) => true,
        };
        if !fresh {
            self.metrics.exposures_deduplicated.inc();
            return;
        }
        let time_ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let e = Exposure {
            project: project.to_string(),
            environment: environment.to_string(),
            unit: unit.to_string(),
            experiment: experiment.to_string(),
            variation: variation.to_string(),
            time_ms,
            attributes,
        };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.metrics.exposures_dropped.inc();
            return;
        }
        let sent = match self.tx.lock() {
            Ok(tx) => tx.as_ref().map(|tx| tx.send(e).is_ok()),
            Err(_) => None,
        };
        if sent != Some(true) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        match sent {
            Some(true) => {}
            Some(false) | None => {
                self.metrics.exposures_dropped.inc();
            }
        }
    }

    /// Writes what is queued and stops the thread.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for ExposureLogger {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(
    rx: Receiver<Exposure>,
    queued: Arc<AtomicUsize>,
    stream: Arc<dyn EventStream>,
    cfg: ExposureConfig,
    metrics: Arc<EventMetrics>,
) {
    let mut pending: Vec<Exposure> = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let wait = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let closed = match rx.recv_timeout(wait) {
            Ok(e) => {
                queued.fetch_sub(1, Ordering::AcqRel);
                pending.push(e);
                deadline.get_or_insert_with(|| Instant::now() + cfg.linger);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if !pending.is_empty() && (closed || due || pending.len() >= cfg.batch) {
            flush(&mut pending, stream.as_ref(), &metrics);
            deadline = None;
        }
        if closed {
            return;
        }
    }
}

fn flush(pending: &mut Vec<Exposure>, stream: &dyn EventStream, metrics: &EventMetrics) {
    let mut batch = EncodedBatch::with_capacity(pending.len() * 96, pending.len());
    for e in pending.iter() {
        let ev = EventRef {
            id: None,
            unit: e.unit.as_str().into(),
            time_ms: e.time_ms,
            kind: KindRef::Exposure {
                experiment: Some(e.experiment.as_str().into()),
                flag: None,
                variation: e.variation.as_str().into(),
                attributes: e.attributes.as_deref(),
            },
        };
        batch.push_event(&e.project, &e.environment, &ev);
    }
    let n = pending.len() as u64;
    pending.clear();
    match block_on(stream.append(batch)) {
        Ok(a) => {
            metrics.exposures_logged.inc_by(a.written as u64);
        }
        Err(e) => {
            tracing::warn!(error = %e, exposures = n, "cannot append exposures");
            metrics.exposures_dropped.inc_by(n);
        }
    }
}

/// Runs a future to completion on this (non-async) thread.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;

    use super::*;
    use crate::stream::{Appended, BoxFuture, MemoryStream, ReadBatch, StreamError, split_batch};

    /// A stream whose appends wait until the gate opens, counting records.
    #[derive(Debug, Default)]
    struct Gated {
        inner: MemoryStream,
        open: Mutex<bool>,
        opened: Condvar,
        records: AtomicUsize,
    }

    impl Gated {
        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    impl EventStream for Gated {
        fn append(&self, batch: EncodedBatch) -> BoxFuture<'_, Result<Appended, StreamError>> {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
            drop(open);
            self.records
                .fetch_add(split_batch(&batch).unwrap().len(), Ordering::SeqCst);
            self.inner.append(batch)
        }
        fn read(
            &self,
            from: u64,
            max_bytes: usize,
        ) -> BoxFuture<'_, Result<ReadBatch, StreamError>> {
            self.inner.read(from, max_bytes)
        }
        fn commit(&self, consumer: &str, next: u64) -> BoxFuture<'_, Result<(), StreamError>> {
            self.inner.commit(consumer, next)
        }
        fn committed(&self, consumer: &str) -> BoxFuture<'_, Result<Option<u64>, StreamError>> {
            self.inner.committed(consumer)
        }
        fn bounds(&self) -> (u64, u64) {
            self.inner.bounds()
        }
    }

    #[test]
    fn the_queue_holds_at_most_its_bound_and_drops_past_it() {
        let stream = Arc::new(Gated::default());
        let metrics = Arc::new(EventMetrics::new());
        let config = ExposureConfig {
            queue: 3,
            batch: 1,
            linger: Duration::ZERO,
            ..ExposureConfig::default()
        };
        let logger = ExposureLogger::start(stream.clone(), config, metrics.clone()).unwrap();
        let log = |unit: &str| {
            logger.log("p", "e", unit, "x", 1, "a", SystemTime::now(), None);
        };
        // The first is taken by the writer, which then waits in `append`.
        log("u0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while logger.queued.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        for unit in ["u1", "u2", "u3", "u4", "u5"] {
            log(unit);
        }
        assert_eq!(logger.queued.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.exposures_dropped.get(), 2);
        stream.open();
        logger.close();
        assert_eq!(stream.records.load(Ordering::SeqCst), 4);
        assert_eq!(logger.queued.load(Ordering::SeqCst), 0);
        assert_eq!(metrics.exposures_dropped.get(), 2);
    }
}
