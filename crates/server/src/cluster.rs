//! Scale-out: `switchyard worker`, which aggregates partitions of the
//! JetStream event stream into PostgreSQL, and a serve node's view of the
//! partitions for results (docs/deploy.md).
//!
//! A worker takes partitions by lease (`switchyard_store`'s
//! `sql/cluster.rs`: fair shares, epochs, fenced saves). For each it holds,
//! a task loads the partition's saved state (an aggregator checkpoint, the
//! window of recent event ids and the stream sequence they cover), reads
//! the partition from that sequence with a JetStream consumer, applies
//! each event whose id it has not seen, and saves state and sequence in
//! one transaction every `save_interval`. Messages below the saved
//! sequence are skipped, so a message delivered again (after a crash, a
//! takeover, a reconnect) is counted once; an event sent twice (a client
//! retrying through another node) is dropped by the id window, because
//! every event of a unit lands in the unit's partition.
//!
//! A serve node in a cluster runs no consumer: its [`Aggregation`] holds
//! the merge of the partitions' saved states ([`follow_partitions`]),
//! reloaded when a partition's saved version changes, and the results API,
//! the UI and the guardrail monitor read it as they read the embedded
//! aggregator.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard_aggregate::{Aggregator, Limits, checkpoint};
use switchyard_events::dedup::IdWindow;
use switchyard_events::jetstream::{JetStreamConfig, PartitionConsumer};
use switchyard_store::{ConfigStore, PartitionState, PartitionVersion, SqlStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aggregation::{Aggregation, any_change, as_event, load_specs};

/// How often a partition's lag (`pending_messages`) is asked of JetStream.
const LAG_INTERVAL: Duration = Duration::from_secs(2);

/// Settings of a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's id in the lease table (random per process).
    pub id: String,
    pub jetstream: JetStreamConfig,
    /// How long a lease lasts without renewal: a dead worker's partitions
    /// are taken over after at most this long plus one round.
    pub lease_ttl: Duration,
    /// How often leases are renewed and shares recomputed.
    pub round_interval: Duration,
    /// A partition's state is saved at most this often while events
    /// arrive (the results lag the stream by about this much).
    pub save_interval: Duration,
    /// Messages fetched per read. A message is at most 1 MiB (most are
    /// far smaller: one partition's share of a request's batch), so this
    /// bounds what a worker catching up holds per partition. (A byte
    /// bound on the pull request is not used: nats-server 2.9 ends such a
    /// request with an error when the next message does not fit.)
    pub fetch_messages: usize,
    /// Event ids remembered per partition for deduplication.
    pub dedup_ids: usize,
    pub limits: Limits,
}

impl WorkerConfig {
    pub fn new(jetstream: JetStreamConfig) -> WorkerConfig {
        WorkerConfig {
            id: random_id(),
            jetstream,
            lease_ttl: Duration::from_secs(5),
            round_interval: Duration::from_secs(1),
            save_interval: Duration::from_secs(1),
            fetch_messages: 64,
            dedup_ids: 1 << 18,
            limits: Limits::default(),
        }
    }
}

fn random_id() -> String {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    format!(
        "worker-{:016x}{:08x}",
        s.hash_one(std::process::id()),
        std::process::id()
    )
}

/// A value per held partition, with the lease epoch that set it (a task
/// of an older epoch that ends late removes only its own).
type Gauge = std::sync::Mutex<HashMap<u32, (u64, u64)>>;

fn set_gauge(g: &Gauge, p: u32, epoch: u64, v: u64) {
    g.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(p, (epoch, v));
}

fn clear_gauge(g: &Gauge, p: u32, epoch: u64) {
    let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
    if g.get(&p).is_some_and(|(e, _)| *e == epoch) {
        g.remove(&p);
    }
}

/// Counters of a worker, for `/metrics`.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    partitions: AtomicU64,
    live_workers: AtomicU64,
    events: AtomicU64,
    duplicates: AtomicU64,
    undecodable: AtomicU64,
    saves: AtomicU64,
    /// Microseconds spent saving (encoding and writing) partition states.
    save_micros: AtomicU64,
    /// Microseconds spent waiting for and reading messages.
    fetch_micros: AtomicU64,
    save_errors: AtomicU64,
    lease_errors: AtomicU64,
    takeovers: AtomicU64,
    lost_leases: AtomicU64,
    stream_errors: AtomicU64,
    /// Messages of held partitions not yet read, summed (refreshed after
    /// each save).
    pending: Gauge,
    /// Experiments configured, per held partition.
    experiments: Gauge,
}

impl WorkerMetrics {
    /// Prometheus text lines.
    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        let pending: u64 = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(_, v)| *v)
            .sum();
        let experiments = self
            .experiments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(_, v)| *v)
            .min()
            .unwrap_or(0);
        let rows: [(&str, &str, &str, u64); 13] = [
            (
                "partitions",
                "gauge",
                "Partitions this worker holds",
                self.partitions.load(Ordering::Relaxed),
            ),
            (
                "live_workers",
                "gauge",
                "Workers alive in the last lease round",
                self.live_workers.load(Ordering::Relaxed),
            ),
            (
                "events_total",
                "counter",
                "Events applied",
                self.events.load(Ordering::Relaxed),
            ),
            (
                "duplicates_total",
                "counter",
                "Events dropped as repeats of a recent event id",
                self.duplicates.load(Ordering::Relaxed),
            ),
            (
                "undecodable_total",
                "counter",
                "Stream records that are not events",
                self.undecodable.load(Ordering::Relaxed),
            ),
            (
                "saves_total",
                "counter",
                "Partition states saved",
                self.saves.load(Ordering::Relaxed),
            ),
            (
                "save_errors_total",
                "counter",
                "Partition saves that failed",
                self.save_errors.load(Ordering::Relaxed),
            ),
            (
                "lease_errors_total",
                "counter",
                "Lease rounds that failed",
                self.lease_errors.load(Ordering::Relaxed),
            ),
            (
                "takeovers_total",
                "counter",
                "Partitions taken",
                self.takeovers.load(Ordering::Relaxed),
            ),
            (
                "lost_leases_total",
                "counter",
                "Partitions lost to another worker before a save",
                self.lost_leases.load(Ordering::Relaxed),
            ),
            (
                "stream_errors_total",
                "counter",
                "Failed reads of the event stream",
                self.stream_errors.load(Ordering::Relaxed),
            ),
            (
                "pending_messages",
                "gauge",
                "Messages of the held partitions not read yet",
                pending,
            ),
            (
                "experiments",
                "gauge",
                "Experiments aggregated (the fewest over the held partitions)",
                experiments,
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP switchyard_worker_{name} {help}\n# TYPE switchyard_worker_{name} {kind}\nswitchyard_worker_{name} {v}"
            );
        }
        for (name, help, micros) in [
            (
                "save_seconds_total",
                "Time spent saving partition states (encoding and writing)",
                &self.save_micros,
            ),
            (
                "fetch_seconds_total",
                "Time spent waiting for and reading messages",
                &self.fetch_micros,
            ),
        ] {
            let v = micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "# HELP switchyard_worker_{name} {help}\n# TYPE switchyard_worker_{name} counter\nswitchyard_worker_{name} {v}"
            );
        }
    }
}

/// A worker process's partitions.
#[derive(Debug)]
pub struct Worker {
    store: Arc<SqlStore>,
    config: WorkerConfig,
    partitions: u32,
    pub metrics: WorkerMetrics,
}

struct Held {
    epoch: u64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    /// A worker over a stream of `partitions` partitions. It must run on
    /// a multi-thread Tokio runtime (state encoding and decoding use
    /// `block_in_place`).
    pub fn new(store: Arc<SqlStore>, config: WorkerConfig, partitions: u32) -> Arc<Worker> {
        Arc::new(Worker {
            store,
            config,
            partitions,
            metrics: WorkerMetrics::default(),
        })
    }

    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Lease rounds until `shutdown`; then every partition is saved and
    /// handed back.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut held: HashMap<u32, Held> = HashMap::new();
        let ttl = self.config.lease_ttl.as_millis() as i64;
        let mut last_renewed = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let round_started = Instant::now();
            let round = tokio::time::timeout(
                self.config.lease_ttl,
                self.store
                    .lease_round(&self.config.id, self.partitions, ttl),
            )
            .await
            .unwrap_or_else(|_| {
                Err(switchyard_store::StoreError::Unavailable(
                    "the lease round did not finish within the lease time".into(),
                ))
            });
            match round {
                Ok(round) => {
                    last_renewed = round_started;
                    self.metrics
                        .live_workers
                        .store(round.live_workers as u64, Ordering::Relaxed);
                    // Lost (taken by another worker after an expiry) or
                    // ended by itself: stop and forget.
                    let now: HashMap<u32, u64> = round.held.iter().copied().collect();
                    let gone: Vec<u32> = held
                        .iter()
                        .filter(|(p, h)| now.get(p) != Some(&h.epoch) || h.task.is_finished())
                        .map(|(p, _)| *p)
                        .collect();
                    for p in gone {
                        if let Some(h) = held.remove(&p) {
                            h.stop.send_replace(true);
                        }
                    }
                    for (p, epoch) in &round.held {
                        if held.contains_key(p) {
                            continue;
                        }
                        tracing::info!(partition = p, epoch, "worker: partition taken");
                        self.metrics.takeovers.fetch_add(1, Ordering::Relaxed);
                        let (stop, stopped) = watch::channel(false);
                        let task = tokio::spawn(self.clone().partition(*p, *epoch, stopped));
                        held.insert(
                            *p,
                            Held {
                                epoch: *epoch,
                                stop,
                                task,
                            },
                        );
                    }
                    // More than a fair share (a worker joined): hand back
                    // the highest partitions, each after its last save.
                    while held.len() > round.share {
                        let Some(&p) = held.keys().max() else { break };
                        if let Some(h) = held.remove(&p) {
                            self.hand_back(p, h).await;
                        }
                    }
                    self.metrics
                        .partitions
                        .store(held.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.metrics.lease_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "worker: lease round failed");
                    // Unrenewed this long, the leases may be another
                    // worker's already: stop reading (saves are fenced
                    // anyway) rather than compete for the partitions.
                    if last_renewed.elapsed() >= self.config.lease_ttl && !held.is_empty() {
                        tracing::warn!(
                            partitions = held.len(),
                            "worker: leases not renewed in time; stopping its partitions"
                        );
                        for (_, h) in held.drain() {
                            h.stop.send_replace(true);
                        }
                        self.metrics.partitions.store(0, Ordering::Relaxed);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.round_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        let all: Vec<(u32, Held)> = held.drain().collect();
        for (p, h) in all {
            self.hand_back(p, h).await;
        }
        if let Err(e) = self.store.forget_worker(&self.config.id).await {
            tracing::warn!(error = %e, "worker: cannot remove itself from the worker list");
        }
        tracing::info!("worker: stopped");
    }

    async fn hand_back(&self, p: u32, h: Held) {
        h.stop.send_replace(true);
        let _ = h.task.await;
        if let Err(e) = self
            .store
            .release_partition(&self.config.id, p, h.epoch)
            .await
        {
            tracing::warn!(partition = p, error = %e, "worker: cannot release a partition");
        } else {
            tracing::info!(partition = p, "worker: partition handed back");
        }
    }

    /// The saved state of `p`, or an empty one.
    async fn load(&self, p: u32) -> Result<(Aggregator, IdWindow), String> {
        let saved = self
            .store
            .load_partition(p)
            .await
            .map_err(|e| e.to_string())?;
        let limits = self.config.limits.clone();
        match saved {
            Some(s) => {
                let agg = tokio::task::block_in_place(|| checkpoint::decode(&s.state, limits))
                    .map_err(|e| {
                        format!("the saved state of partition {p} does not decode: {e}")
                    })?;
                let mut agg = agg;
                agg.advance(s.next_sequence);
                Ok((agg, IdWindow::from_bytes(self.config.dedup_ids, &s.dedup)))
            }
            None => Ok((
                Aggregator::new(limits, random_key()),
                IdWindow::new(self.config.dedup_ids),
            )),
        }
    }

    /// Saves `p`'s state; `Ok(false)` when the lease is no longer ours.
    async fn save(
        &self,
        p: u32,
        epoch: u64,
        agg: &Aggregator,
        ids: &IdWindow,
    ) -> Result<bool, String> {
        let started = Instant::now();
        let _timed = Timed(&self.metrics.save_micros, started);
        let state = PartitionState {
            partition: p,
            next_sequence: agg.position().offset,
            state: tokio::task::block_in_place(|| checkpoint::encode(agg)),
            dedup: ids.to_bytes(),
        };
        match self
            .store
            .save_partition(&self.config.id, epoch, &state)
            .await
        {
            Ok(saved) => {
                if saved {
                    self.metrics.saves.fetch_add(1, Ordering::Relaxed);
                }
                Ok(saved)
            }
            Err(e) => {
                self.metrics.save_errors.fetch_add(1, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    /// Aggregates partition `p` under lease `epoch` until `stop` or the
    /// lease is found lost.
    async fn partition(self: Arc<Self>, p: u32, epoch: u64, mut stop: watch::Receiver<bool>) {
        let (mut agg, mut ids) = loop {
            match self.load(p).await {
                Ok(x) => break x,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "worker: cannot load a partition");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        tracing::info!(
            partition = p,
            sequence = agg.position().offset,
            "worker: partition loaded"
        );
        let mut changes = self.store.subscribe();
        let mut stale = true;
        let mut consumer: Option<PartitionConsumer> = None;
        let mut dirty = false;
        let mut last_save = Instant::now();
        let mut last_lag = Instant::now() - LAG_INTERVAL;
        loop {
            if *stop.borrow() {
                break;
            }
            stale |= any_change(&mut changes);
            if stale {
                match load_specs(self.store.as_ref()).await {
                    Ok(specs) => {
                        agg.configure(specs);
                        stale = false;
                        dirty = true;
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "worker: cannot read experiments");
                        // Events read without the experiments would be
                        // counted as unmatched, for good: wait.
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                }
                set_gauge(
                    &self.metrics.experiments,
                    p,
                    epoch,
                    agg.experiments().len() as u64,
                );
            }
            let c = match consumer.as_mut() {
                Some(c) => c,
                None => {
                    let from = agg.position().offset.max(1);
                    let opened = tokio::select! {
                        r = PartitionConsumer::open(&self.config.jetstream, p, epoch, from) => r,
                        _ = stop.changed() => continue,
                    };
                    match opened {
                        Ok(c) => consumer.insert(c),
                        Err(e) => {
                            self.metrics.stream_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(partition = p, error = %e, "worker: cannot open the partition's consumer");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = stop.changed() => {}
                            }
                            continue;
                        }
                    }
                }
            };
            let fetch_started = Instant::now();
            let fetched = tokio::select! {
                r = c.fetch(self.config.fetch_messages, Duration::from_millis(250)) => r,
                _ = stop.changed() => continue,
            };
            self.metrics.fetch_micros.fetch_add(
                fetch_started.elapsed().as_micros() as u64,
                Ordering::Relaxed,
            );
            match fetched {
                Ok(messages) => {
                    let mut applied = 0u64;
                    let mut duplicates = 0u64;
                    let mut undecodable = 0u64;
                    for m in &messages {
                        if m.sequence < agg.position().offset {
                            continue;
                        }
                        for r in &m.records {
                            let Some(ev) = switchyard_events::decode_event(r) else {
                                undecodable += 1;
                                continue;
                            };
                            if let Some(id) = ev.id
                                && !ids.insert(switchyard_events::record::id_hash(
                                    ev.project,
                                    ev.environment,
                                    id,
                                ))
                            {
                                duplicates += 1;
                                continue;
                            }
                            agg.apply(&as_event(&ev));
                            applied += 1;
                        }
                        agg.advance(m.sequence + 1);
                        dirty = true;
                    }
                    self.metrics.events.fetch_add(applied, Ordering::Relaxed);
                    self.metrics
                        .duplicates
                        .fetch_add(duplicates, Ordering::Relaxed);
                    self.metrics
                        .undecodable
                        .fetch_add(undecodable, Ordering::Relaxed);
                }
                Err(e) => {
                    self.metrics.stream_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(partition = p, error = %e, "worker: cannot read the partition; reopening");
                    consumer = None;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            if last_lag.elapsed() >= LAG_INTERVAL
                && let Some(c) = consumer.as_mut()
            {
                last_lag = Instant::now();
                if let Ok(n) = c.pending().await {
                    set_gauge(&self.metrics.pending, p, epoch, n);
                }
            }
            if dirty && last_save.elapsed() >= self.config.save_interval {
                last_save = Instant::now();
                match self.save(p, epoch, &agg, &ids).await {
                    Ok(true) => dirty = false,
                    Ok(false) => {
                        self.lost(p);
                        dirty = false;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "worker: cannot save a partition")
                    }
                }
            }
        }
        if dirty {
            match self.save(p, epoch, &agg, &ids).await {
                Ok(true) => {}
                Ok(false) => self.lost(p),
                Err(e) => tracing::warn!(partition = p, error = %e, "worker: last save failed"),
            }
        }
        clear_gauge(&self.metrics.pending, p, epoch);
        clear_gauge(&self.metrics.experiments, p, epoch);
    }

    fn lost(&self, p: u32) {
        self.metrics.lost_leases.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            partition = p,
            "worker: the partition's lease went to another worker; its unsaved work is dropped"
        );
    }
}

/// Adds the time since its start to a counter when dropped.
struct Timed<'a>(&'a AtomicU64, Instant);

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.0
            .fetch_add(self.1.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

fn random_key() -> (u64, u64) {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(0x5eed_u64), s.hash_one(0xfeed_u64))
}

/// Keeps `aggregation` the merge of the partitions' saved states, checking
/// their versions every `interval`, until `shutdown`.
pub async fn follow_partitions(
    aggregation: Arc<Aggregation>,
    store: Arc<SqlStore>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut cache: HashMap<u32, (PartitionVersion, Arc<Vec<u8>>)> = HashMap::new();
    let mut merged: Vec<PartitionVersion> = Vec::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match refresh_partitions(&aggregation, &store, &mut cache, &mut merged).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "results: cannot read the partitions' states"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn refresh_partitions(
    aggregation: &Aggregation,
    store: &SqlStore,
    cache: &mut HashMap<u32, (PartitionVersion, Arc<Vec<u8>>)>,
    merged: &mut Vec<PartitionVersion>,
) -> Result<(), String> {
    let versions = store
        .partition_versions()
        .await
        .map_err(|e| e.to_string())?;
    if versions == *merged {
        return Ok(());
    }
    for v in &versions {
        if cache.get(&v.partition).map(|(c, _)| c) == Some(v) {
            continue;
        }
        let Some(s) = store
            .load_partition(v.partition)
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        // The version read with the state may be newer than `v`: keyed
        // by its sequence, it is read again at the next check if so.
        let v = PartitionVersion {
            next_sequence: s.next_sequence,
            ..*v
        };
        cache.insert(v.partition, (v, Arc::new(s.state)));
    }
    cache.retain(|p, _| versions.iter().any(|v| v.partition == *p));
    // In partition order, so every node merges alike.
    let mut states: Vec<(u32, Arc<Vec<u8>>)> =
        cache.iter().map(|(p, (_, b))| (*p, b.clone())).collect();
    states.sort_by_key(|(p, _)| *p);
    let limits = aggregation.config().limits.clone();
    let agg = tokio::task::spawn_blocking(move || {
        let mut parts = Vec::with_capacity(states.len());
        for (_, s) in states {
            parts.push(checkpoint::decode(&s, limits.clone()).map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(Aggregator::merge(parts))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let agg = match agg {
        Ok(a) => a,
        Err(e) => {
            // Not again until a partition's version changes.
            *merged = versions;
            return Err(format!(
                "a partition's saved state does not decode ({e}); results keep the last merge"
            ));
        }
    };
    aggregation.install_merged(agg);
    *merged = cache.values().map(|(v, _)| *v).collect();
    merged.sort_by_key(|v| v.partition);
    Ok(())
}

/// Serves a worker's operations endpoints on `listener` until `shutdown`:
/// `/healthz` (the process is up) and `/metrics` (Prometheus text).
pub async fn serve_worker_ops(
    listener: tokio::net::TcpListener,
    worker: Arc<Worker>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let worker = worker.clone();
                async move {
                    let mut out = String::new();
                    worker.metrics.encode(&mut out);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        out,
                    )
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
