//! [`ExperimentState`]: one experiment's units, per-unit metric values and
//! per-variation [`Moments`], kept incrementally.
//!
//! Per unit: its first exposure time and variation (16 bytes, keyed by the
//! 8-byte unit hash). Per unit and metric: two `f64` (16 bytes) in a
//! column per metric: the post-exposure value and the CUPED covariate, or
//! a ratio's numerator and denominator. Per hour of first exposure and
//! variation: the metric's [`Moments`]; the totals are their sum, and their
//! running sum is the cumulative series.
//!
//! When an event changes a unit's value, the unit's old contribution to its
//! bucket's moments is replaced by the new one. A unit seen in two
//! variations leaves the statistics for good and is counted as excluded.

use std::collections::{BTreeMap, HashMap};

use switchyard_core::metric::{Aggregate, Cap, MetricKind};

use crate::breakdown::{Breakdown, NO_SEGMENT};
use crate::hash::UnitMap;
use crate::moments::{Moments, Shape};
use crate::ring::Ring;
use crate::spec::{ExperimentSpec, SpecMetric};

pub(crate) const EXCLUDED: u16 = u16::MAX;
pub const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unit {
    pub first_ms: i64,
    pub row: u32,
    pub variation: u16,
    /// Its breakdown segment (`breakdown.rs`); a byte of what would be
    /// padding.
    pub segment: u8,
}

/// Which side of a metric an event source feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Numerator,
    Denominator,
}

#[derive(Debug, Clone)]
pub(crate) struct MetricState {
    pub spec: SpecMetric,
    pub sources: (u32, Option<u32>),
    /// Per unit row: `[post, pre]` for binomial, count and sum metrics;
    /// `[numerator, denominator]` for mean and ratio metrics.
    pub values: Vec<[f64; 2]>,
    /// The stream offset from which this metric has seen events.
    pub since_offset: u64,
}

impl MetricState {
    pub fn new(spec: SpecMetric, sources: (u32, Option<u32>), rows: u32, since: u64) -> Self {
        MetricState {
            spec,
            sources,
            values: vec![[0.0; 2]; rows as usize],
            since_offset: since,
        }
    }

    pub fn kind(&self) -> MetricKind {
        self.spec.definition.kind
    }

    fn is_ratio(&self) -> bool {
        matches!(self.kind(), MetricKind::Mean | MetricKind::Ratio)
    }

    fn window_ms(&self) -> Option<i64> {
        self.spec
            .definition
            .window_hours
            .map(|h| i64::from(h) * HOUR_MS)
    }

    /// CUPED lookback for the kinds that have a covariate.
    pub fn lookback_ms(&self) -> Option<i64> {
        let c = self.spec.definition.cuped;
        (c.enabled && !self.is_ratio()).then_some(i64::from(c.lookback_hours) * HOUR_MS)
    }

    pub fn fixed_cap(&self) -> Option<f64> {
        match self.spec.definition.cap {
            Some(Cap::Fixed(c)) => Some(c),
            _ => None,
        }
    }

    /// The unit's `(x, y)` from its raw values, capped at `cap`.
    pub fn contribution_capped(&self, v: [f64; 2], cap: Option<f64>) -> (f64, f64) {
        let c = |x: f64| cap.map_or(x, |c| x.min(c));
        match self.kind() {
            MetricKind::Binomial => (
                f64::from(u8::from(v[0] > 0.0)),
                f64::from(u8::from(v[1] > 0.0)),
            ),
            MetricKind::Count | MetricKind::Sum => (c(v[0]), c(v[1])),
            MetricKind::Mean | MetricKind::Ratio => (c(v[0]), v[1]),
        }
    }

    pub fn contribution(&self, v: [f64; 2]) -> (f64, f64) {
        self.contribution_capped(v, self.fixed_cap())
    }

    /// The statistic type, given whether any unit has pre-exposure data.
    pub fn shape(&self, has_pre: bool) -> Shape {
        let cuped = has_pre && self.lookback_ms().is_some();
        match (self.kind(), cuped) {
            (MetricKind::Binomial, false) => Shape::Proportion,
            (MetricKind::Binomial, true) => Shape::ProportionCuped,
            (MetricKind::Count | MetricKind::Sum, false) => Shape::Mean,
            (MetricKind::Count | MetricKind::Sum, true) => Shape::MeanCuped,
            (MetricKind::Mean | MetricKind::Ratio, _) => Shape::Ratio,
        }
    }

    /// Where an event at `t` goes for a unit first exposed at `first`, and
    /// by how much it changes that slot; `None` when outside both windows.
    fn attribute(
        &self,
        first: i64,
        stop: Option<i64>,
        t: i64,
        value: f64,
        role: Role,
    ) -> Option<(usize, f64)> {
        let def = &self.spec.definition;
        let mut end = self
            .window_ms()
            .map_or(i64::MAX, |w| first.saturating_add(w));
        if let Some(s) = stop {
            end = end.min(s);
        }
        let amount = |agg: Aggregate| match agg {
            Aggregate::Count => 1.0,
            Aggregate::Sum => value,
        };
        if t >= first && t < end {
            return Some(match (def.kind, role) {
                (MetricKind::Binomial | MetricKind::Count, _) => (0, 1.0),
                (MetricKind::Sum, _) => (0, value),
                (MetricKind::Mean, Role::Numerator) => (0, value),
                (MetricKind::Mean, Role::Denominator) => (1, 1.0),
                (MetricKind::Ratio, Role::Numerator) => (0, amount(def.numerator.aggregate)),
                (MetricKind::Ratio, Role::Denominator) => (
                    1,
                    amount(
                        def.denominator
                            .as_ref()
                            .map_or(Aggregate::Count, |d| d.aggregate),
                    ),
                ),
            });
        }
        let lookback = self.lookback_ms()?;
        if t < first && t >= first.saturating_sub(lookback) {
            return Some(match def.kind {
                MetricKind::Sum => (1, value),
                _ => (1, 1.0),
            });
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    /// Units per variation.
    pub units: Vec<u64>,
    /// Metric-major: `moments[m * variations + v]`.
    pub moments: Vec<Moments>,
}

impl Bucket {
    pub fn empty(nvar: usize, nmetrics: usize) -> Bucket {
        Bucket {
            units: vec![0; nvar],
            moments: vec![Moments::default(); nmetrics * nvar],
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.units.capacity() * 8 + self.moments.capacity() * std::mem::size_of::<Moments>() + 64
    }

    /// Adds (`join`) or removes a unit of variation `v` with its
    /// per-metric contributions.
    fn count(&mut self, nvar: usize, v: usize, contributions: &[(f64, f64)], join: bool) {
        if join {
            self.units[v] += 1;
        } else {
            self.units[v] = self.units[v].saturating_sub(1);
        }
        for (m, &c) in contributions.iter().enumerate() {
            if join {
                self.moments[m * nvar + v].add(c);
            } else {
                self.moments[m * nvar + v].remove(c);
            }
        }
    }

    /// The moments for a new metric list: `map_old[i]` is the old index
    /// of new metric `i`, `None` for a new metric (its units, zero sums).
    fn remap(&mut self, nvar: usize, map_old: &[Option<usize>]) {
        let mut moments = Vec::with_capacity(map_old.len() * nvar);
        for src in map_old {
            for v in 0..nvar {
                moments.push(match src {
                    Some(i) => self.moments[i * nvar + v],
                    None => Moments {
                        n: self.units[v],
                        ..Moments::default()
                    },
                });
            }
        }
        self.moments = moments;
    }
}

/// Counters of what an experiment turned away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExperimentCounters {
    /// Units seen in more than one variation, left out of the statistics.
    pub excluded_units: u64,
    /// New units refused because the experiment reached its unit limit.
    pub dropped_units: u64,
    /// Exposures outside the experiment's time range or naming an unknown
    /// variation.
    pub ignored_exposures: u64,
}

#[derive(Debug, Clone)]
pub struct ExperimentState {
    pub spec: ExperimentSpec,
    pub(crate) units: UnitMap<Unit>,
    pub(crate) rows: u32,
    pub(crate) metrics: Vec<MetricState>,
    /// Source id to the (metric, role) pairs it feeds.
    pub(crate) by_source: HashMap<u32, Vec<(u16, Role)>>,
    pub(crate) buckets: BTreeMap<i64, Bucket>,
    /// Hours below this were merged into the bucket at this key.
    pub(crate) floor: i64,
    /// Exposure records per variation (a unit may have many).
    pub(crate) exposures: Vec<u64>,
    pub(crate) counters: ExperimentCounters,
    /// The stream offset from which this state has seen events.
    pub(crate) since_offset: u64,
    /// Per-segment moments when the spec names a breakdown attribute.
    pub(crate) breakdown: Option<Breakdown>,
}

impl ExperimentState {
    pub(crate) fn new(spec: ExperimentSpec, metrics: Vec<MetricState>, since: u64) -> Self {
        let n = spec.variations.len();
        let breakdown = spec
            .breakdown
            .clone()
            .map(|a| Breakdown::new(a, n, metrics.len()));
        let mut s = ExperimentState {
            spec,
            units: UnitMap::default(),
            rows: 0,
            metrics,
            by_source: HashMap::new(),
            buckets: BTreeMap::new(),
            floor: i64::MIN,
            exposures: vec![0; n],
            counters: ExperimentCounters::default(),
            since_offset: since,
            breakdown,
        };
        s.index_sources();
        s
    }

    pub(crate) fn index_sources(&mut self) {
        self.by_source.clear();
        for (m, metric) in self.metrics.iter().enumerate() {
            let (num, den) = metric.sources;
            self.by_source
                .entry(num)
                .or_default()
                .push((m as u16, Role::Numerator));
            let den = match metric.kind() {
                MetricKind::Mean => Some(num),
                MetricKind::Ratio => den,
                _ => None,
            };
            if let Some(d) = den {
                self.by_source
                    .entry(d)
                    .or_default()
                    .push((m as u16, Role::Denominator));
            }
        }
    }

    pub fn key(&self) -> &str {
        &self.spec.key
    }

    pub fn counters(&self) -> ExperimentCounters {
        self.counters
    }

    /// Metric keys in the order of [`ExperimentState::totals`].
    pub fn metric_keys(&self) -> Vec<&str> {
        self.metrics
            .iter()
            .map(|m| m.spec.definition.key.as_str())
            .collect()
    }

    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    fn nvar(&self) -> usize {
        self.spec.variations.len()
    }

    fn bucket_key(&self, first_ms: i64) -> i64 {
        first_ms.div_euclid(HOUR_MS).max(self.floor)
    }

    fn bucket_mut(&mut self, key: i64) -> &mut Bucket {
        let nvar = self.nvar();
        let nm = self.metrics.len();
        self.buckets
            .entry(key)
            .or_insert_with(|| Bucket::empty(nvar, nm))
    }

    /// Merges the oldest buckets while there are more than `max`.
    pub(crate) fn trim_buckets(&mut self, max: usize) {
        while self.buckets.len() > max.max(1) {
            let Some((_, first)) = self.buckets.pop_first() else {
                return;
            };
            let Some((&k, second)) = self.buckets.iter_mut().next() else {
                return;
            };
            for (a, b) in second.units.iter_mut().zip(&first.units) {
                *a += b;
            }
            for (a, b) in second.moments.iter_mut().zip(&first.moments) {
                a.merge(b);
            }
            self.floor = k;
        }
    }

    /// The unit enters its variation's statistics with its current values.
    fn join(&mut self, unit: Unit, max_buckets: usize) {
        let nvar = self.nvar();
        let v = unit.variation as usize;
        let contributions: Vec<(f64, f64)> = self
            .metrics
            .iter()
            .map(|m| m.contribution(m.values[unit.row as usize]))
            .collect();
        let key = self.bucket_key(unit.first_ms);
        self.bucket_mut(key).count(nvar, v, &contributions, true);
        if let Some(seg) = self
            .breakdown
            .as_mut()
            .and_then(|b| b.segment_mut(unit.segment))
        {
            seg.count(nvar, v, &contributions, true);
        }
        self.trim_buckets(max_buckets);
    }

    /// The unit leaves its variation's statistics.
    fn leave(&mut self, unit: Unit) {
        let nvar = self.nvar();
        let v = unit.variation as usize;
        let contributions: Vec<(f64, f64)> = self
            .metrics
            .iter()
            .map(|m| m.contribution(m.values[unit.row as usize]))
            .collect();
        let key = self.bucket_key(unit.first_ms);
        if let Some(b) = self.buckets.get_mut(&key) {
            b.count(nvar, v, &contributions, false);
        }
        if let Some(seg) = self
            .breakdown
            .as_mut()
            .and_then(|b| b.segment_mut(unit.segment))
        {
            seg.count(nvar, v, &contributions, false);
        }
    }

    /// Recomputes the unit's values from the events the ring still holds.
    fn refold(&mut self, unit_key: u64, unit: Unit, ring: &Ring) {
        let stop = self.spec.stop_ms;
        for m in &mut self.metrics {
            m.values[unit.row as usize] = [0.0; 2];
        }
        for e in ring.of_unit(unit_key) {
            let Some(uses) = self.by_source.get(&e.source) else {
                continue;
            };
            for &(m, role) in uses {
                let metric = &mut self.metrics[m as usize];
                if let Some((slot, amount)) =
                    metric.attribute(unit.first_ms, stop, e.time, e.value, role)
                {
                    metric.values[unit.row as usize][slot] += amount;
                }
            }
        }
    }

    /// The breakdown segment of a unit first exposed with `value` (the
    /// breakdown attribute's value on that exposure).
    fn segment(&mut self, value: Option<&str>) -> u8 {
        let (nvar, nm) = (self.nvar(), self.metrics.len());
        match (self.breakdown.as_mut(), value) {
            (Some(b), Some(v)) => b.segment_of(v, nvar, nm),
            _ => NO_SEGMENT,
        }
    }

    /// An exposure record of `unit_key` to variation index `variation` at
    /// `t`; `value` is the breakdown attribute's value on it (when the
    /// experiment has a breakdown).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn expose(
        &mut self,
        unit_key: u64,
        variation: u16,
        t: i64,
        value: Option<&str>,
        ring: &Ring,
        max_units: usize,
        max_buckets: usize,
    ) {
        let in_range = t >= self.spec.start_ms && self.spec.stop_ms.is_none_or(|s| t < s);
        if !in_range || variation as usize >= self.nvar() {
            self.counters.ignored_exposures += 1;
            return;
        }
        self.exposures[variation as usize] += 1;
        match self.units.get(&unit_key).copied() {
            None => {
                if self.units.len() >= max_units || self.rows == u32::MAX {
                    self.counters.dropped_units += 1;
                    return;
                }
                let unit = Unit {
                    first_ms: t,
                    row: self.rows,
                    variation,
                    segment: self.segment(value),
                };
                self.rows += 1;
                for m in &mut self.metrics {
                    m.values.push([0.0; 2]);
                }
                self.units.insert(unit_key, unit);
                self.refold(unit_key, unit, ring);
                self.join(unit, max_buckets);
            }
            Some(u) if u.variation == EXCLUDED => {}
            Some(u) if u.variation != variation => {
                self.leave(u);
                if let Some(x) = self.units.get_mut(&unit_key) {
                    x.variation = EXCLUDED;
                }
                self.counters.excluded_units += 1;
            }
            Some(u) if t < u.first_ms => {
                self.leave(u);
                // The earlier exposure is the first: its value counts.
                let segment = if u.segment == NO_SEGMENT {
                    NO_SEGMENT
                } else {
                    self.segment(value)
                };
                let moved = Unit {
                    first_ms: t,
                    segment,
                    ..u
                };
                self.units.insert(unit_key, moved);
                self.refold(unit_key, moved, ring);
                self.join(moved, max_buckets);
            }
            Some(_) => {}
        }
    }

    /// A tracked event of source `source` for `unit_key`.
    pub(crate) fn track(&mut self, unit_key: u64, source: u32, t: i64, value: f64) {
        let Some(unit) = self.units.get(&unit_key).copied() else {
            return;
        };
        if unit.variation == EXCLUDED {
            return;
        }
        let Some(uses) = self.by_source.get(&source) else {
            return;
        };
        let nvar = self.nvar();
        let key = self.bucket_key(unit.first_ms);
        let stop = self.spec.stop_ms;
        let Some(bucket) = self.buckets.get_mut(&key) else {
            return;
        };
        let mut segment = self
            .breakdown
            .as_mut()
            .and_then(|b| b.segment_mut(unit.segment));
        for &(m, role) in uses {
            let metric = &mut self.metrics[m as usize];
            let Some((slot, amount)) = metric.attribute(unit.first_ms, stop, t, value, role) else {
                continue;
            };
            let row = unit.row as usize;
            let old = metric.values[row];
            let mut new = old;
            new[slot] += amount;
            metric.values[row] = new;
            let (c0, c1) = (metric.contribution(old), metric.contribution(new));
            if c0 != c1 {
                let i = m as usize * nvar + unit.variation as usize;
                bucket.moments[i].shift(c0, c1);
                if let Some(seg) = segment.as_deref_mut() {
                    seg.moments[i].shift(c0, c1);
                }
            }
        }
    }

    /// A breakdown attribute set or changed on a running experiment: units
    /// already exposed are left out of it (until a replay), and counted.
    pub(crate) fn set_breakdown(&mut self, attribute: Option<String>) {
        let (nvar, nm) = (self.nvar(), self.metrics.len());
        let units = self.units.len() as u64;
        for u in self.units.values_mut() {
            u.segment = NO_SEGMENT;
        }
        self.breakdown = attribute.map(|a| {
            let mut b = Breakdown::new(a, nvar, nm);
            b.unassigned = units;
            b
        });
    }

    /// Replaces the metric list: metrics with an unchanged definition keep
    /// their values; new or changed ones start empty at `offset`.
    pub(crate) fn reconcile(&mut self, mut fresh: Vec<MetricState>, offset: u64) {
        let nvar = self.nvar();
        let old = std::mem::take(&mut self.metrics);
        let mut old_cols: Vec<Option<MetricState>> = old.into_iter().map(Some).collect();
        let mut map_old: Vec<Option<usize>> = Vec::with_capacity(fresh.len());
        for f in &mut fresh {
            let found = old_cols.iter().position(|o| {
                o.as_ref().is_some_and(|o| {
                    o.spec.definition == f.spec.definition && o.sources == f.sources
                })
            });
            match found.and_then(|i| old_cols[i].take().map(|o| (i, o))) {
                Some((i, o)) => {
                    f.values = o.values;
                    f.since_offset = o.since_offset;
                    map_old.push(Some(i));
                }
                None => {
                    f.values = vec![[0.0; 2]; self.rows as usize];
                    f.since_offset = offset;
                    map_old.push(None);
                }
            }
        }
        for b in self.buckets.values_mut() {
            b.remap(nvar, &map_old);
        }
        if let Some(bd) = self.breakdown.as_mut() {
            for b in &mut bd.segments {
                b.remap(nvar, &map_old);
            }
        }
        self.metrics = fresh;
        self.index_sources();
    }

    /// Approximate heap bytes held (allocated capacity, not length).
    pub fn memory_bytes(&self) -> usize {
        let unit_slot = std::mem::size_of::<(u64, Unit)>() + 1;
        let metrics: usize = self
            .metrics
            .iter()
            .map(|m| m.values.capacity() * std::mem::size_of::<[f64; 2]>())
            .sum();
        let buckets: usize = self.buckets.values().map(Bucket::memory_bytes).sum();
        let breakdown = self.breakdown.as_ref().map_or(0, Breakdown::memory_bytes);
        self.units.capacity() * unit_slot + metrics + buckets + breakdown
    }

    /// Per-variation totals of metric `m` over all buckets (`m` in the
    /// order of the spec's accepted metrics).
    pub fn totals(&self, m: usize) -> Vec<Moments> {
        let nvar = self.nvar();
        let mut out = vec![Moments::default(); nvar];
        for b in self.buckets.values() {
            for (v, o) in out.iter_mut().enumerate() {
                o.merge(&b.moments[m * nvar + v]);
            }
        }
        out
    }

    /// Units per variation.
    pub(crate) fn units_per_variation(&self) -> Vec<u64> {
        let mut out = vec![0; self.nvar()];
        for b in self.buckets.values() {
            for (o, u) in out.iter_mut().zip(&b.units) {
                *o += u;
            }
        }
        out
    }

    /// Recomputes metric `m`'s moments per bucket from the per-unit values
    /// with the cap `cap` (percentile caps are found at results time).
    pub(crate) fn recompute(&self, m: usize, cap: Option<f64>) -> BTreeMap<i64, Vec<Moments>> {
        let nvar = self.nvar();
        let metric = &self.metrics[m];
        let mut out: BTreeMap<i64, Vec<Moments>> = BTreeMap::new();
        // In row order, so the sums do not depend on the map's layout
        // (which differs after a checkpoint restore).
        let mut units: Vec<&Unit> = self
            .units
            .values()
            .filter(|u| u.variation != EXCLUDED)
            .collect();
        units.sort_unstable_by_key(|u| u.row);
        for u in units {
            let c = metric.contribution_capped(metric.values[u.row as usize], cap);
            out.entry(self.bucket_key(u.first_ms))
                .or_insert_with(|| vec![Moments::default(); nvar])[u.variation as usize]
                .add(c);
        }
        out
    }

    /// The uncapped post-exposure values (numerators) of included units.
    pub(crate) fn raw_values(&self, m: usize) -> Vec<f64> {
        let metric = &self.metrics[m];
        self.units
            .values()
            .filter(|u| u.variation != EXCLUDED)
            .map(|u| {
                metric
                    .contribution_capped(metric.values[u.row as usize], None)
                    .0
            })
            .collect()
    }
}
