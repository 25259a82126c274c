//! Merging the aggregators of a partitioned stream into one, for results.
//!
//! A cluster partitions its event stream by a hash of the unit, so every
//! event of a unit (its exposures and its tracked events) is aggregated by
//! the same partition's aggregator, and the partitions hold disjoint sets
//! of units. Their union is therefore the state one aggregator would have
//! built from all the events: units are concatenated, and the per-hour
//! [`Moments`](crate::Moments), unit counts, exposure counts and counters
//! add. The statistics engine then runs on the union exactly as on a
//! single aggregator's state (percentile caps included: they are found over
//! the merged units).
//!
//! Sums of fractional values added in another order can differ in the last
//! bits; integral values (counts, conversions, integral sums) merge
//! exactly.
//!
//! The merged aggregator is for reading results; it is not fed events.

use crate::aggregator::Aggregator;
use crate::breakdown::{Breakdown, NO_SEGMENT, OVERFLOW};
use crate::experiment::{Bucket, ExperimentState};

impl Aggregator {
    /// The union of the partitions' aggregators (see the module doc).
    /// Experiments are matched by project, environment and key; a
    /// partition whose copy of an experiment has another analysis, another
    /// breakdown or other metrics (its worker has not read the latest definition yet) is left
    /// out of that experiment and counted in `skipped_definitions`.
    ///
    /// Position: `offset` is the lowest partition's (every record before
    /// it is included in every partition), `events` the sum, the latest
    /// event time the latest.
    pub fn merge(parts: Vec<Aggregator>) -> Aggregator {
        let mut parts = parts.into_iter();
        let Some(mut base) = parts.next() else {
            return Aggregator::new(Default::default(), (0, 0));
        };
        let max_buckets = base.limits.max_buckets;
        for mut p in parts {
            let pos = p.position;
            base.position.offset = base.position.offset.min(pos.offset);
            base.position.events += pos.events;
            base.position.max_event_ms = match (base.position.max_event_ms, pos.max_event_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let c = p.counters;
            base.counters.unmatched_exposures += c.unmatched_exposures;
            base.counters.unmatched_tracks += c.unmatched_tracks;
            base.counters.bad_attributes += c.bad_attributes;
            base.counters.skipped_definitions += c.skipped_definitions;
            base.ring.evicted += p.ring.evicted;
            for mut e in std::mem::take(&mut p.experiments) {
                let found = base.experiments.iter_mut().find(|b| {
                    b.spec.project == e.spec.project
                        && b.spec.environment == e.spec.environment
                        && b.spec.key == e.spec.key
                });
                match found {
                    Some(b) => {
                        if b.spec.same_analysis(&e.spec)
                            && e.spec.same_analysis(&b.spec)
                            && b.spec.breakdown == e.spec.breakdown
                            && b.metric_keys() == e.metric_keys()
                        {
                            b.absorb(e, max_buckets);
                        } else {
                            base.counters.skipped_definitions += 1;
                        }
                    }
                    None => {
                        // Its metrics name this partition's event sources:
                        // give them the merged aggregator's ids.
                        let mut ok = true;
                        for m in &mut e.metrics {
                            let (num, den) = m.sources;
                            let num = p.sources.get(num as usize).map(|s| base.intern(&s.def));
                            let den =
                                den.map(|d| p.sources.get(d as usize).map(|s| base.intern(&s.def)));
                            match (num, den) {
                                (Some(Ok(n)), None) => m.sources = (n, None),
                                (Some(Ok(n)), Some(Some(Ok(d)))) => m.sources = (n, Some(d)),
                                _ => ok = false,
                            }
                        }
                        if ok {
                            e.index_sources();
                            base.experiments.push(e);
                        } else {
                            base.counters.skipped_definitions += 1;
                        }
                    }
                }
            }
        }
        base.reindex();
        base
    }
}

impl Bucket {
    fn add(&mut self, o: &Bucket) {
        for (a, b) in self.units.iter_mut().zip(&o.units) {
            *a += b;
        }
        for (a, b) in self.moments.iter_mut().zip(&o.moments) {
            a.merge(b);
        }
    }
}

impl ExperimentState {
    /// Adds another partition's state of the same experiment (same
    /// analysis and metrics; disjoint units).
    fn absorb(&mut self, o: ExperimentState, max_buckets: usize) {
        let row0 = self.rows;
        // Breakdown segments of `o` by index to this state's indices
        // (values matched by name; new ones take a free segment or the
        // overflow one).
        let seg_map = match (&mut self.breakdown, &o.breakdown) {
            (Some(a), Some(b)) if a.attribute == b.attribute => Some(merge_breakdown(a, b)),
            _ => None,
        };
        for (key, mut u) in o.units {
            if self.units.contains_key(&key) {
                // Two partitions never hold the same unit unless the
                // partition count changed; such a unit is left out.
                self.counters.excluded_units += 1;
                continue;
            }
            u.row += row0;
            u.segment = match (&seg_map, u.segment) {
                (_, NO_SEGMENT) => NO_SEGMENT,
                (Some(map), s) => map.get(s as usize).copied().unwrap_or(OVERFLOW),
                (None, _) => NO_SEGMENT,
            };
            self.units.insert(key, u);
        }
        self.rows += o.rows;
        for (m, om) in self.metrics.iter_mut().zip(o.metrics) {
            m.values.extend(om.values);
            m.since_offset = m.since_offset.max(om.since_offset);
        }
        // Hours below either floor are merged into it, as one aggregator
        // would have done.
        let floor = self.floor.max(o.floor);
        self.floor = floor;
        for (k, b) in o.buckets {
            let k = k.max(floor);
            match self.buckets.get_mut(&k) {
                Some(mine) => mine.add(&b),
                None => {
                    self.buckets.insert(k, b);
                }
            }
        }
        let below: Vec<i64> = self.buckets.range(..floor).map(|(k, _)| *k).collect();
        for k in below {
            if let Some(b) = self.buckets.remove(&k) {
                let nvar = self.spec.variations.len();
                let nm = self.metrics.len();
                self.buckets
                    .entry(floor)
                    .or_insert_with(|| Bucket::empty(nvar, nm))
                    .add(&b);
            }
        }
        self.trim_buckets(max_buckets);
        for (a, b) in self.exposures.iter_mut().zip(&o.exposures) {
            *a += b;
        }
        self.counters.excluded_units += o.counters.excluded_units;
        self.counters.dropped_units += o.counters.dropped_units;
        self.counters.ignored_exposures += o.counters.ignored_exposures;
        self.since_offset = self.since_offset.max(o.since_offset);
    }
}

/// Adds `b`'s segments into `a`; returns, per segment index of `b`, the
/// index in `a` its units now belong to.
fn merge_breakdown(a: &mut Breakdown, b: &Breakdown) -> Vec<u8> {
    let nvar = a.segments.first().map_or(0, |s| s.units.len());
    let nm = a
        .segments
        .first()
        .map_or(0, |s| s.moments.len() / nvar.max(1));
    let mut map = Vec::with_capacity(b.values.len() + 1);
    for value in &b.values {
        map.push(a.segment_of(value, nvar, nm));
    }
    map.push(OVERFLOW);
    for (i, seg) in b.segments.iter().enumerate() {
        let to = if i < b.values.len() { map[i] } else { OVERFLOW };
        if let Some(s) = a.segment_mut(to) {
            s.add(seg);
        }
    }
    a.unassigned += b.unassigned;
    map
}
