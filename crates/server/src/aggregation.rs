//! The aggregation consumer: reads the event stream from the aggregator's
//! checkpoint, feeds `switchyard_aggregate::Aggregator`, writes a
//! checkpoint periodically and then commits the consumer offset (so the
//! log never counts as processed what no checkpoint holds).
//!
//! It runs in the server process in embedded mode. It is written against
//! the `EventStream` and `ConfigStore` traits only, so a separate
//! `switchyard worker` can run the same loop on a partition of a JetStream
//! stream later (one `Aggregation` per partition, its own checkpoint
//! directory and consumer name).
//!
//! Experiments (not drafts) and the metric definitions they name are read
//! from the config store at start and on every change notification (a
//! changed metric definition announces a change of its project).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use switchyard_aggregate::{
    Aggregator, AnalysisOptions, Event, ExperimentResults, ExperimentSpec, Limits, ResultsError,
    SpecMetric, checkpoint,
};
use switchyard_core::model::ExperimentStatus;
use switchyard_events::{EventStream, StoredEvent};
use switchyard_store::{ConfigStore, ExperimentDefinition, Metric};
use tokio::sync::watch;

/// Settings of the aggregation consumer.
#[derive(Debug, Clone)]
pub struct AggregationConfig {
    /// Directory of the checkpoint file (`aggregator.ckpt`).
    pub dir: PathBuf,
    /// Consumer name under which the stream offset is committed.
    pub consumer: String,
    /// A checkpoint is written at most this often while events arrive.
    pub checkpoint_interval: Duration,
    /// How long to wait before reading again when the stream is drained.
    pub poll_interval: Duration,
    /// Bytes read from the stream per batch (the aggregator's lock is held
    /// while one batch is applied).
    pub read_bytes: usize,
    pub limits: Limits,
    /// How often the guardrail monitor checks running experiments.
    pub guardrail_interval: Duration,
}

impl AggregationConfig {
    pub fn new(dir: PathBuf) -> Self {
        AggregationConfig {
            dir,
            consumer: "aggregator".into(),
            checkpoint_interval: Duration::from_secs(10),
            poll_interval: Duration::from_millis(20),
            read_bytes: 256 << 10,
            limits: Limits::default(),
            guardrail_interval: Duration::from_secs(15),
        }
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("aggregator.ckpt")
    }
}

/// The aggregator shared by the consumer task and the results handler.
#[derive(Debug)]
pub struct Aggregation {
    agg: Mutex<Aggregator>,
    config: AggregationConfig,
    stats: Mutex<ConsumerStats>,
    /// Replays by (project, environment, experiment): the running ones and
    /// the last finished one of each.
    replays: Mutex<Replays>,
    /// Set when a replay swapped state in: the consumer writes a
    /// checkpoint soon even if no event arrives.
    replaced: AtomicBool,
    /// In a cluster: the store holding the partitions' saved states,
    /// whose merge this holds (`cluster.rs`); no consumer runs here.
    partitions: Option<Arc<switchyard_store::SqlStore>>,
}

/// Replay progress by (project, environment, experiment).
type Replays = HashMap<(String, String, String), Arc<Mutex<ReplayProgress>>>;

/// Replays running at once, over all experiments.
pub const MAX_RUNNING_REPLAYS: usize = 2;
/// Finished replays remembered for their progress document.
const MAX_REMEMBERED_REPLAYS: usize = 1_000;

/// Where a replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayState {
    Running,
    Done,
    Failed,
}

/// The progress document of a replay (`GET .../replay`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplayProgress {
    pub project: String,
    pub environment: String,
    pub experiment: String,
    pub state: ReplayState,
    /// Events read from the stream so far.
    pub events_read: u64,
    /// Events the replay will have read when it catches up: exact when
    /// done, estimated from the stream offsets while running.
    pub events_total: u64,
    /// Share of the stream read, 0 to 1.
    pub fraction: f64,
    /// Stream offsets: where the replay began (the first retained one),
    /// where it is, and where the live aggregator is.
    pub from_offset: u64,
    pub offset: u64,
    pub target_offset: u64,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a replay could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("a replay of this experiment is already running")]
    Running,
    #[error("{MAX_RUNNING_REPLAYS} replays are running; try again when one has finished")]
    Busy,
    #[error("the experiment is not aggregated yet")]
    NotAggregated,
    #[error("replays are not available in a cluster yet: the workers aggregate the stream")]
    Clustered,
}

#[derive(Debug, Clone, Copy, Default)]
struct ConsumerStats {
    undecodable: u64,
    checkpoints: u64,
    checkpoint_errors: u64,
    checkpoint_bytes: u64,
    committed: u64,
}

/// A fresh 128-bit key for the unit hash, from the OS-seeded keys of the
/// standard library's `RandomState`.
fn random_key() -> (u64, u64) {
    use std::hash::BuildHasher;
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(0x5eed_u64), s.hash_one(0xfeed_u64))
}

impl Aggregation {
    /// Restores the aggregator from its checkpoint, or starts empty (from
    /// the beginning of the retained stream) when there is none or it does
    /// not check.
    pub fn open(config: AggregationConfig) -> std::io::Result<Arc<Aggregation>> {
        std::fs::create_dir_all(&config.dir)?;
        let agg = match checkpoint::read_file(&config.checkpoint_path())? {
            Some(bytes) => match checkpoint::decode(&bytes, config.limits.clone()) {
                Ok(a) => {
                    tracing::info!(
                        offset = a.position().offset,
                        "aggregator: resumed from its checkpoint"
                    );
                    a
                }
                Err(e) => {
                    tracing::warn!(error = %e, "aggregator: checkpoint refused; recomputing from the retained log");
                    Aggregator::new(config.limits.clone(), random_key())
                }
            },
            None => Aggregator::new(config.limits.clone(), random_key()),
        };
        Ok(Arc::new(Aggregation {
            agg: Mutex::new(agg),
            config,
            stats: Mutex::new(ConsumerStats::default()),
            replays: Mutex::new(HashMap::new()),
            replaced: AtomicBool::new(false),
            partitions: None,
        }))
    }

    /// A serve node's aggregation in a cluster: it holds the merge of the
    /// partitions' states saved in `store` by the workers, refreshed by
    /// [`Aggregation::run`] (`cluster::follow_partitions`), and consumes
    /// nothing itself. No checkpoint file is read or written.
    pub fn for_partitions(
        config: AggregationConfig,
        store: Arc<switchyard_store::SqlStore>,
    ) -> Arc<Aggregation> {
        Arc::new(Aggregation {
            agg: Mutex::new(Aggregator::new(config.limits.clone(), random_key())),
            config,
            stats: Mutex::new(ConsumerStats::default()),
            replays: Mutex::new(HashMap::new()),
            replaced: AtomicBool::new(false),
            partitions: Some(store),
        })
    }

    /// Whether this is a cluster node's merged view.
    pub fn is_clustered(&self) -> bool {
        self.partitions.is_some()
    }

    /// Replaces the state by `merged` (a cluster node's refresh).
    pub fn install_merged(&self, merged: Aggregator) {
        *self.lock() = merged;
    }

    /// The settings it runs with.
    pub fn config(&self) -> &AggregationConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Aggregator> {
        self.agg.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> MutexGuard<'_, ConsumerStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The results of one experiment; `Ok(None)` if it is not aggregated.
    pub fn results(
        &self,
        project: &str,
        environment: &str,
        key: &str,
        opts: &AnalysisOptions,
    ) -> Result<Option<ExperimentResults>, ResultsError> {
        self.lock().results(project, environment, key, opts)
    }

    /// The next stream offset the aggregator will read.
    pub fn offset(&self) -> u64 {
        self.lock().position().offset
    }

    /// Reloads experiments and metric definitions from the store.
    pub async fn refresh(
        &self,
        store: &dyn ConfigStore,
    ) -> Result<(), switchyard_store::StoreError> {
        let specs = load_specs(store).await?;
        self.lock().configure(specs);
        Ok(())
    }

    /// Applies one batch read from the stream; returns how many records.
    async fn step(
        &self,
        stream: &dyn EventStream,
    ) -> Result<usize, switchyard_events::StreamError> {
        let from = self.offset();
        let batch = stream.read(from, self.config.read_bytes).await?;
        let n = batch.records.len();
        let mut undecodable = 0;
        {
            let mut agg = self.lock();
            for r in &batch.records {
                match switchyard_events::decode_event(&r.payload) {
                    Some(ev) => agg.apply(&as_event(&ev)),
                    None => undecodable += 1,
                }
            }
            agg.advance(batch.next);
        }
        if undecodable > 0 {
            self.stats().undecodable += undecodable;
        }
        Ok(n)
    }

    /// Writes a checkpoint, then commits its offset to the stream.
    pub async fn checkpoint(&self, stream: &dyn EventStream) -> std::io::Result<()> {
        let (bytes, offset) = {
            let agg = self.lock();
            (checkpoint::encode(&agg), agg.position().offset)
        };
        let path = self.config.checkpoint_path();
        let len = bytes.len() as u64;
        let written = tokio::task::spawn_blocking(move || checkpoint::write_file(&path, &bytes))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(e) = written {
            self.stats().checkpoint_errors += 1;
            return Err(e);
        }
        {
            let mut s = self.stats();
            s.checkpoints += 1;
            s.checkpoint_bytes = len;
        }
        if let Err(e) = stream.commit(&self.config.consumer, offset).await {
            tracing::warn!(error = %e, "aggregator: cannot commit the consumer offset");
        } else {
            self.stats().committed = offset;
        }
        Ok(())
    }

    /// The consumer loop, until `shutdown` turns true (then a last
    /// checkpoint is written).
    pub async fn run(
        self: Arc<Self>,
        stream: Arc<dyn EventStream>,
        store: Arc<dyn ConfigStore>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if let Some(partitions) = self.partitions.clone() {
            let every = self.config.poll_interval.max(Duration::from_millis(500));
            return crate::cluster::follow_partitions(self, partitions, every, shutdown).await;
        }
        let mut changes = store.subscribe();
        let mut stale = true;
        let mut last_checkpoint = Instant::now();
        let mut dirty = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            stale |= any_change(&mut changes);
            if stale {
                match self.refresh(store.as_ref()).await {
                    Ok(()) => stale = false,
                    Err(e) => tracing::warn!(error = %e, "aggregator: cannot read experiments"),
                }
            }
            let read = self.step(stream.as_ref()).await;
            let idle = match read {
                Ok(0) => true,
                Ok(_) => {
                    dirty = true;
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "aggregator: cannot read the event stream");
                    true
                }
            };
            if self.replaced.swap(false, Ordering::AcqRel) {
                dirty = true;
            }
            if dirty && last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                last_checkpoint = Instant::now();
                match self.checkpoint(stream.as_ref()).await {
                    Ok(()) => dirty = false,
                    Err(e) => tracing::warn!(error = %e, "aggregator: cannot write a checkpoint"),
                }
            }
            if idle {
                let wait = if stale {
                    Duration::from_secs(1)
                } else {
                    self.config.poll_interval
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
        if dirty && let Err(e) = self.checkpoint(stream.as_ref()).await {
            tracing::warn!(error = %e, "aggregator: cannot write the last checkpoint");
        }
    }

    fn replays(&self) -> MutexGuard<'_, Replays> {
        self.replays.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The progress of the experiment's current or last replay.
    pub fn replay_progress(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Option<ReplayProgress> {
        let id = (
            project.to_string(),
            environment.to_string(),
            key.to_string(),
        );
        let p = self.replays().get(&id)?.clone();
        let p = p.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(p)
    }

    /// Starts recomputing one experiment's aggregates from the retained
    /// stream, beside the live aggregator; when the replay has caught up
    /// with it, its state replaces the experiment's. One replay per
    /// experiment, [`MAX_RUNNING_REPLAYS`] in all.
    pub fn start_replay(
        self: &Arc<Self>,
        stream: Arc<dyn EventStream>,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Result<ReplayProgress, ReplayError> {
        let id = (
            project.to_string(),
            environment.to_string(),
            key.to_string(),
        );
        if self.partitions.is_some() {
            return Err(ReplayError::Clustered);
        }
        let from = stream.bounds().0;
        let progress = {
            let mut replays = self.replays();
            let running = |p: &Arc<Mutex<ReplayProgress>>| {
                p.lock().unwrap_or_else(|p| p.into_inner()).state == ReplayState::Running
            };
            if replays.get(&id).is_some_and(running) {
                return Err(ReplayError::Running);
            }
            if replays.values().filter(|p| running(p)).count() >= MAX_RUNNING_REPLAYS {
                return Err(ReplayError::Busy);
            }
            let (replayer, target) = {
                let agg = self.lock();
                let r = agg
                    .replayer(project, environment, key, from)
                    .ok_or(ReplayError::NotAggregated)?;
                (r, agg.position().offset)
            };
            if replays.len() >= MAX_REMEMBERED_REPLAYS {
                replays.retain(|_, p| running(p));
            }
            let progress = Arc::new(Mutex::new(ReplayProgress {
                project: project.into(),
                environment: environment.into(),
                experiment: key.into(),
                state: ReplayState::Running,
                events_read: 0,
                events_total: 0,
                fraction: 0.0,
                from_offset: from,
                offset: from,
                target_offset: target,
                started_at: now_rfc3339(),
                finished_at: None,
                error: None,
            }));
            replays.insert(id, progress.clone());
            tokio::spawn(self.clone().replay(stream, replayer, progress.clone()));
            progress
        };
        let p = progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(p)
    }

    async fn replay(
        self: Arc<Self>,
        stream: Arc<dyn EventStream>,
        mut replayer: Aggregator,
        progress: Arc<Mutex<ReplayProgress>>,
    ) {
        let outcome = self.replay_inner(stream, &mut replayer, &progress).await;
        let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
        p.finished_at = Some(now_rfc3339());
        match outcome {
            Ok(()) => {
                p.state = ReplayState::Done;
                p.fraction = 1.0;
                p.events_total = p.events_read;
                tracing::info!(experiment = %p.experiment, events = p.events_read, "replay done");
            }
            Err(e) => {
                tracing::warn!(experiment = %p.experiment, error = %e, "replay failed");
                p.state = ReplayState::Failed;
                p.error = Some(e);
            }
        }
    }

    async fn replay_inner(
        &self,
        stream: Arc<dyn EventStream>,
        replayer: &mut Aggregator,
        progress: &Mutex<ReplayProgress>,
    ) -> Result<(), String> {
        let from = replayer.position().offset;
        let mut read = 0u64;
        loop {
            let target = self.offset();
            let at = replayer.position().offset;
            {
                let mut p = progress.lock().unwrap_or_else(|p| p.into_inner());
                p.events_read = read;
                p.offset = at;
                p.target_offset = target;
                let span = target.saturating_sub(from);
                p.fraction = if span == 0 {
                    1.0
                } else {
                    (at - from) as f64 / span as f64
                };
                p.events_total = if at > from {
                    (read as f64 * span as f64 / (at - from) as f64) as u64
                } else {
                    0
                };
            }
            if at >= target {
                // Caught up: swap it in if the live aggregator has not
                // moved since, else read what it applied meanwhile.
                let mut live = self.lock();
                if live.position().offset == at {
                    let fresh =
                        std::mem::replace(replayer, Aggregator::new(Default::default(), (0, 0)));
                    live.install(fresh).map_err(|e| e.to_string())?;
                    self.replaced.store(true, Ordering::Release);
                    return Ok(());
                }
                continue;
            }
            let batch = stream
                .read(at, self.config.read_bytes)
                .await
                .map_err(|e| format!("cannot read the event stream: {e}"))?;
            let mut next = batch.next;
            for r in &batch.records {
                if r.offset >= target {
                    next = r.offset;
                    break;
                }
                if let Some(ev) = switchyard_events::decode_event(&r.payload) {
                    replayer.apply(&as_event(&ev));
                }
                read += 1;
            }
            if batch.records.is_empty() || next <= at {
                tokio::time::sleep(self.config.poll_interval).await;
                continue;
            }
            replayer.advance(next);
            tokio::task::yield_now().await;
        }
    }

    /// Prometheus text lines for `/metrics`.
    pub fn encode_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let (mem, pos, counters) = {
            let a = self.lock();
            (a.memory(), a.position(), a.counters())
        };
        let s = *self.stats();
        let mut gauge = |name: &str, help: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP switchyard_aggregator_{name} {help}\n# TYPE switchyard_aggregator_{name} gauge\nswitchyard_aggregator_{name} {v}"
            );
        };
        gauge(
            "experiments",
            "Experiments aggregated",
            mem.experiments as f64,
        );
        gauge("units", "Exposed units held", mem.units as f64);
        gauge(
            "unit_metric_pairs",
            "Unit-metric values held",
            mem.unit_metric_pairs as f64,
        );
        gauge(
            "state_bytes",
            "Estimated bytes of experiment state",
            mem.experiment_bytes as f64,
        );
        gauge(
            "ring_entries",
            "Recent tracked events held for late exposures",
            mem.ring.len as f64,
        );
        gauge(
            "ring_capacity",
            "Capacity of the recent-event ring",
            mem.ring.capacity as f64,
        );
        gauge(
            "ring_bytes",
            "Bytes of the recent-event ring",
            mem.ring_bytes as f64,
        );
        gauge(
            "ring_evicted",
            "Tracked events dropped from the full ring",
            mem.ring.evicted as f64,
        );
        gauge(
            "dropped_units",
            "Units refused by the per-experiment unit limit",
            mem.dropped_units as f64,
        );
        gauge(
            "offset",
            "Stream offset the results include",
            pos.offset as f64,
        );
        gauge("events", "Events applied", pos.events as f64);
        gauge(
            "unmatched_exposures",
            "Exposures naming no aggregated experiment",
            counters.unmatched_exposures as f64,
        );
        gauge(
            "unmatched_tracks",
            "Tracked events no metric reads",
            counters.unmatched_tracks as f64,
        );
        gauge(
            "skipped_definitions",
            "Experiments or metrics left out by a limit or an invalid definition",
            counters.skipped_definitions as f64,
        );
        gauge(
            "undecodable_records",
            "Stream records that are not events",
            s.undecodable as f64,
        );
        gauge("checkpoints", "Checkpoints written", s.checkpoints as f64);
        gauge(
            "checkpoint_errors",
            "Checkpoint writes that failed",
            s.checkpoint_errors as f64,
        );
        gauge(
            "checkpoint_bytes",
            "Size of the last checkpoint",
            s.checkpoint_bytes as f64,
        );
        gauge(
            "committed_offset",
            "Consumer offset committed to the stream",
            s.committed as f64,
        );
    }
}

/// Whether a change was announced since the last call (a lagged receiver
/// missed some: that counts too); takes every waiting one.
pub fn any_change<T: Clone>(changes: &mut tokio::sync::broadcast::Receiver<T>) -> bool {
    let mut any = false;
    while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
        changes.try_recv()
    {
        any = true;
    }
    any
}

/// The aggregator's view of a stored event.
pub fn as_event<'a>(e: &'a StoredEvent<'a>) -> Event<'a> {
    if e.kind == "track" {
        Event::Track {
            project: e.project,
            environment: e.environment,
            unit: e.unit,
            time_ms: e.time,
            name: e.name.unwrap_or(""),
            value: e.value,
            attributes: e.attributes.map(|a| a.get()),
        }
    } else {
        Event::Exposure {
            project: e.project,
            environment: e.environment,
            unit: e.unit,
            time_ms: e.time,
            experiment: e.experiment,
            flag: e.flag,
            variation: e.variation.unwrap_or(""),
            attributes: e.attributes.map(|a| a.get()),
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The aggregator's view of one stored experiment: its metrics are the
/// project's definitions (`metrics`) of the keys it names, with their
/// roles. A name without a definition (the store refuses those) or whose
/// definition no longer validates is left out.
pub fn spec_of(e: &ExperimentDefinition, metrics: &[Metric]) -> Option<ExperimentSpec> {
    if e.status == ExperimentStatus::Draft {
        return None;
    }
    Some(ExperimentSpec {
        project: e.project.clone(),
        environment: e.environment.clone(),
        key: e.key.clone(),
        flag: e.flag.clone(),
        phase: e.phase,
        variations: e.variations.iter().map(|v| v.variation.clone()).collect(),
        start_ms: e.started_at.map_or(i64::MIN, ms),
        stop_ms: e.stopped_at.map(ms),
        metrics: e
            .metrics
            .iter()
            .filter_map(|r| {
                let m = metrics.iter().find(|m| m.definition.key == r.metric)?;
                m.definition.validate().ok()?;
                Some(SpecMetric {
                    definition: m.definition.clone(),
                    role: r.role,
                })
            })
            .collect(),
        breakdown: e.breakdown_by.clone(),
    })
}

/// Every started experiment of every environment.
pub async fn load_specs(
    store: &dyn ConfigStore,
) -> Result<Vec<ExperimentSpec>, switchyard_store::StoreError> {
    let mut out = Vec::new();
    for p in store.list_projects().await? {
        let metrics = store.list_metrics(&p.key).await?;
        for env in store.list_environments(&p.key).await? {
            for e in store.list_experiments(&p.key, &env.key).await? {
                out.extend(spec_of(&e, &metrics));
            }
        }
    }
    Ok(out)
}
