//! [`Aggregator`]: routes decoded events to the experiments and metrics
//! that read them. The caller feeds events in stream order with
//! [`Aggregator::apply`], then says how far it got with
//! [`Aggregator::advance`]; nothing here reads a clock or does I/O.

use std::collections::HashMap;

use serde::Serialize;
use switchyard_core::Context;
use switchyard_core::metric::{EventFilter, EventSource, MetricKind};

use crate::experiment::{ExperimentState, MetricState};
use crate::hash::UnitHasher;
use crate::ring::{Ring, RingStats};
use crate::spec::{ExperimentSpec, Limits};

/// One decoded event, borrowing from its record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event<'a> {
    Exposure {
        project: &'a str,
        environment: &'a str,
        unit: &'a str,
        time_ms: i64,
        experiment: Option<&'a str>,
        flag: Option<&'a str>,
        variation: &'a str,
        /// The attributes object as JSON text, if any (read only for an
        /// experiment broken down by one of them).
        attributes: Option<&'a str>,
    },
    Track {
        project: &'a str,
        environment: &'a str,
        unit: &'a str,
        time_ms: i64,
        name: &'a str,
        value: Option<f64>,
        /// The attributes object as JSON text, if any.
        attributes: Option<&'a str>,
    },
}

/// An event source (name and attribute conditions) shared by every metric
/// that reads it; ids are stable for the aggregator's life and kept in
/// checkpoints (ring entries refer to them).
#[derive(Debug)]
pub(crate) struct Source {
    pub def: EventSource,
    pub filter: EventFilter,
}

/// Where the aggregator is in the stream, and what its numbers include.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Position {
    /// The next offset to read: every record before it is included.
    pub offset: u64,
    /// The latest event time (ms) among the included events.
    pub max_event_ms: Option<i64>,
    /// Events applied since the aggregator was created.
    pub events: u64,
}

/// Aggregator-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Exposures that named no known experiment or flag.
    pub unmatched_exposures: u64,
    /// Tracked events that no metric reads.
    pub unmatched_tracks: u64,
    /// Tracked events whose attributes could not be read for a filter.
    pub bad_attributes: u64,
    /// Experiments or metrics left out by a limit or an invalid definition.
    pub skipped_definitions: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemoryReport {
    pub experiments: usize,
    pub units: usize,
    pub unit_metric_pairs: usize,
    /// Estimated heap bytes (allocated capacity) of all experiments.
    pub experiment_bytes: usize,
    pub ring: RingStats,
    pub ring_bytes: usize,
    pub dropped_units: u64,
}

#[derive(Debug, Default)]
struct EnvIndex {
    by_key: HashMap<String, usize>,
    by_flag: HashMap<String, Vec<usize>>,
    /// Event name to the sources reading it.
    by_name: HashMap<String, Vec<u32>>,
    /// Source to the experiments reading it.
    readers: HashMap<u32, Vec<usize>>,
}

#[derive(Debug)]
pub struct Aggregator {
    pub(crate) limits: Limits,
    pub(crate) hasher: UnitHasher,
    pub(crate) sources: Vec<Source>,
    pub(crate) experiments: Vec<ExperimentState>,
    envs: HashMap<String, HashMap<String, EnvIndex>>,
    pub(crate) ring: Ring,
    pub(crate) position: Position,
    pub(crate) counters: Counters,
}

impl Aggregator {
    /// An empty aggregator. `key` keys the unit hash: draw it at random
    /// once; checkpoints keep it.
    pub fn new(limits: Limits, key: (u64, u64)) -> Aggregator {
        Aggregator {
            ring: Ring::new(limits.ring_capacity),
            limits,
            hasher: UnitHasher::new(key),
            sources: Vec::new(),
            experiments: Vec::new(),
            envs: HashMap::new(),
            position: Position::default(),
            counters: Counters::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn position(&self) -> Position {
        self.position
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn experiments(&self) -> &[ExperimentState] {
        &self.experiments
    }

    pub fn experiment(
        &self,
        project: &str,
        environment: &str,
        key: &str,
    ) -> Option<&ExperimentState> {
        let i = *self.envs.get(project)?.get(environment)?.by_key.get(key)?;
        self.experiments.get(i)
    }

    pub fn memory(&self) -> MemoryReport {
        let mut r = MemoryReport {
            experiments: self.experiments.len(),
            ring: self.ring.stats(),
            ring_bytes: self.ring.memory_bytes(),
            ..MemoryReport::default()
        };
        for e in &self.experiments {
            r.units += e.unit_count();
            r.unit_metric_pairs += e.unit_count() * e.metrics.len();
            r.experiment_bytes += e.memory_bytes();
            r.dropped_units += e.counters.dropped_units;
        }
        r
    }

    pub(crate) fn intern(&mut self, def: &EventSource) -> Result<u32, String> {
        if let Some(i) = self.sources.iter().position(|s| &s.def == def) {
            return Ok(i as u32);
        }
        let filter = EventFilter::new(def)?;
        self.sources.push(Source {
            def: def.clone(),
            filter,
        });
        Ok((self.sources.len() - 1) as u32)
    }

    fn metric_states(&mut self, spec: &ExperimentSpec, rows: u32) -> Vec<MetricState> {
        let mut out = Vec::new();
        for m in &spec.metrics {
            if out.len() >= self.limits.max_metrics_per_experiment
                || m.definition.validate().is_err()
            {
                self.counters.skipped_definitions += 1;
                continue;
            }
            let num = self.intern(&m.definition.numerator);
            let den = match (&m.definition.denominator, m.definition.kind) {
                (Some(d), MetricKind::Ratio) => self.intern(d).map(Some),
                _ => Ok(None),
            };
            match (num, den) {
                (Ok(n), Ok(d)) => out.push(MetricState::new(
                    m.clone(),
                    (n, d),
                    rows,
                    self.position.offset,
                )),
                _ => self.counters.skipped_definitions += 1,
            }
        }
        out
    }

    /// Sets the experiments to aggregate. An experiment whose analysis is
    /// unchanged (same key, phase, variations and time range) keeps its
    /// state, and its metrics whose definition is unchanged keep their
    /// values; anything new starts empty from the current offset (replay
    /// fills it in). Experiments not listed are dropped.
    pub fn configure(&mut self, specs: Vec<ExperimentSpec>) {
        let mut old: HashMap<(String, String, String), ExperimentState> = self
            .experiments
            .drain(..)
            .map(|e| {
                (
                    (
                        e.spec.project.clone(),
                        e.spec.environment.clone(),
                        e.spec.key.clone(),
                    ),
                    e,
                )
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for spec in specs {
            let id = (
                spec.project.clone(),
                spec.environment.clone(),
                spec.key.clone(),
            );
            if self.experiments.len() >= self.limits.max_experiments
                || spec.variations.is_empty()
                || spec.variations.len() >= usize::from(crate::experiment::EXCLUDED)
                || !seen.insert(id.clone())
            {
                self.counters.skipped_definitions += 1;
                continue;
            }
            let state = match old.remove(&id) {
                Some(mut st) if st.spec.same_analysis(&spec) => {
                    let fresh = self.metric_states(&spec, st.rows);
                    st.reconcile(fresh, self.position.offset);
                    if st.spec.breakdown != spec.breakdown {
                        st.set_breakdown(spec.breakdown.clone());
                    }
                    st.spec = spec;
                    st
                }
                _ => {
                    let metrics = self.metric_states(&spec, 0);
                    ExperimentState::new(spec, metrics, self.position.offset)
                }
            };
            self.experiments.push(state);
        }
        self.reindex();
    }

    pub(crate) fn reindex(&mut self) {
        self.envs.clear();
        for (i, e) in self.experiments.iter().enumerate() {
            let env = self
                .envs
                .entry(e.spec.project.clone())
                .or_default()
                .entry(e.spec.environment.clone())
                .or_default();
            env.by_key.insert(e.spec.key.clone(), i);
            env.by_flag.entry(e.spec.flag.clone()).or_default().push(i);
            let mut sources: Vec<u32> = e.by_source.keys().copied().collect();
            sources.sort_unstable();
            for s in sources {
                let readers = env.readers.entry(s).or_default();
                if readers.is_empty() {
                    let name = self.sources[s as usize].def.event.clone();
                    env.by_name.entry(name).or_default().push(s);
                }
                readers.push(i);
            }
        }
    }

    /// Applies one event. Call in stream order.
    pub fn apply(&mut self, ev: &Event<'_>) {
        self.position.events += 1;
        match *ev {
            Event::Exposure {
                project,
                environment,
                unit,
                time_ms,
                experiment,
                flag,
                variation,
                attributes,
            } => {
                self.see_time(time_ms);
                let Some(env) = self.envs.get(project).and_then(|p| p.get(environment)) else {
                    self.counters.unmatched_exposures += 1;
                    return;
                };
                let targets: Vec<usize> = match (experiment, flag) {
                    (Some(k), _) => env.by_key.get(k).map(|&i| vec![i]).unwrap_or_default(),
                    (None, Some(f)) => env.by_flag.get(f).cloned().unwrap_or_default(),
                    (None, None) => Vec::new(),
                };
                if targets.is_empty() {
                    self.counters.unmatched_exposures += 1;
                    return;
                }
                let key = self.hasher.unit(project, environment, unit);
                let (max_units, max_buckets) = (
                    self.limits.max_units_per_experiment,
                    self.limits.max_buckets,
                );
                let by_flag_only = experiment.is_none();
                for i in targets {
                    let e = &mut self.experiments[i];
                    // An exposure naming only the flag counts for the
                    // experiment that was running on it at that time.
                    if by_flag_only
                        && (time_ms < e.spec.start_ms
                            || e.spec.stop_ms.is_some_and(|s| time_ms >= s))
                    {
                        continue;
                    }
                    let v = e
                        .spec
                        .variations
                        .iter()
                        .position(|x| x == variation)
                        .map_or(u16::MAX - 1, |v| v as u16);
                    let value = e
                        .spec
                        .breakdown
                        .as_deref()
                        .map(|a| crate::breakdown::value_of(attributes, a));
                    e.expose(
                        key,
                        v,
                        time_ms,
                        value.as_deref(),
                        &self.ring,
                        max_units,
                        max_buckets,
                    );
                }
            }
            Event::Track {
                project,
                environment,
                unit,
                time_ms,
                name,
                value,
                attributes,
            } => {
                self.see_time(time_ms);
                let Some(env) = self.envs.get(project).and_then(|p| p.get(environment)) else {
                    self.counters.unmatched_tracks += 1;
                    return;
                };
                let Some(srcs) = env.by_name.get(name) else {
                    self.counters.unmatched_tracks += 1;
                    return;
                };
                let value = value.filter(|v| v.is_finite()).unwrap_or(0.0);
                let key = self.hasher.unit(project, environment, unit);
                let mut ctx: Option<Option<Context>> = None;
                for &s in srcs {
                    let src = &self.sources[s as usize];
                    if !src.filter.is_empty() {
                        let c = ctx.get_or_insert_with(|| {
                            attributes
                                .and_then(|a| serde_json::from_str(a).ok())
                                .and_then(|v| Context::from_value(v).ok())
                        });
                        match c {
                            Some(c) if src.filter.matches(c) => {}
                            Some(_) => continue,
                            None => {
                                self.counters.bad_attributes += u64::from(attributes.is_some());
                                continue;
                            }
                        }
                    }
                    self.ring.push(key, time_ms, value, s);
                    if let Some(readers) = env.readers.get(&s) {
                        for &i in readers {
                            self.experiments[i].track(key, s, time_ms, value);
                        }
                    }
                }
            }
        }
    }

    fn see_time(&mut self, t: i64) {
        self.position.max_event_ms = Some(self.position.max_event_ms.map_or(t, |m| m.max(t)));
    }

    /// Every record before `offset` has been applied.
    pub fn advance(&mut self, offset: u64) {
        self.position.offset = self.position.offset.max(offset);
    }
}
