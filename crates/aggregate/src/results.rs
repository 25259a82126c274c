//! From an experiment's state to its results: per metric and variation the
//! statistics engine's output, the SRM check, counts, freshness, warnings
//! and the cumulative effect per hour of first exposure.
//!
//! The cost does not depend on the number of units (the state holds
//! per-variation moments per hour), except for metrics with a percentile
//! cap: the cap is the exact percentile of the units' current values,
//! found at request time, and that metric's statistics are recomputed from
//! the per-unit values (linear in units).

use serde::Serialize;
use switchyard_core::metric::{Cap, Direction, MetricKind, MetricRole};
use switchyard_stats::{
    AnalysisRequest, AnalysisResult, Interval, Metric, MetricStatistic, Settings, Variation,
};

use crate::aggregator::{Aggregator, Position};
use crate::experiment::{ExperimentState, HOUR_MS};
use crate::moments::{Moments, Shape};

/// How to analyse: the statistics settings and the configured weights.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOptions {
    pub settings: Settings,
    /// Traffic weights per variation (for SRM); equal when empty.
    pub weights: Vec<f64>,
    /// Most points of the cumulative series (evenly thinned; the last
    /// point is always there).
    pub max_points: usize,
    /// Include the breakdown by the experiment's breakdown attribute, when
    /// it has one.
    pub breakdown: bool,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            settings: Settings::default(),
            weights: Vec::new(),
            max_points: 500,
            breakdown: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentResults {
    pub experiment: String,
    pub phase: u32,
    pub variations: Vec<VariationSummary>,
    /// Units exposed to more than one variation, left out.
    pub excluded_units: u64,
    /// Units refused by the unit limit (results are truncated when > 0).
    pub dropped_units: u64,
    /// Exposures outside the experiment's time range or with an unknown
    /// variation.
    pub ignored_exposures: u64,
    pub freshness: Freshness,
    pub warnings: Vec<Warning>,
    /// The statistics engine's output (settings, SRM, per metric and
    /// variation effects).
    pub analysis: AnalysisResult,
    pub metrics: Vec<MetricDetail>,
    pub series: Vec<SeriesPoint>,
    /// Per value of the breakdown attribute (top values, then "other"),
    /// when the experiment has one and it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<BreakdownResults>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownResults {
    /// The exposure attribute.
    pub attribute: String,
    /// Metrics broken down (those with a percentile cap are not: their cap
    /// is found over all units at request time).
    pub metrics: Vec<String>,
    /// Units first exposed before the breakdown was configured, in no
    /// segment (a replay puts them in).
    pub unassigned_units: u64,
    /// Distinct values seen, up to the bound of tracked values.
    pub distinct_values: usize,
    /// The top values by units, then `"other"` (the rest merged) when
    /// there are units in it.
    pub segments: Vec<BreakdownSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownSegment {
    /// The attribute's value; `"(none)"` for exposures without it.
    pub value: String,
    /// True for the merged remainder (`value` is `"other"`).
    pub other: bool,
    /// Units per variation.
    pub units: Vec<u64>,
    /// The statistics engine's output for this segment alone (SRM, per
    /// metric and variation the effects).
    pub analysis: AnalysisResult,
    /// Per metric (in `metrics` order), per variation, the sufficient
    /// statistics given to the engine.
    pub statistics: Vec<Vec<MetricStatistic>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariationSummary {
    pub key: String,
    pub weight: f64,
    pub units: u64,
    pub exposures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Freshness {
    /// Every event record before this stream offset is included.
    pub offset: u64,
    /// The latest event time included (ms since the epoch).
    pub max_event_ms: Option<i64>,
    /// The offset from which this experiment's state has seen events.
    pub since_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDetail {
    pub key: String,
    pub kind: MetricKind,
    pub role: MetricRole,
    pub direction: Direction,
    /// The statistic type analysed.
    pub shape: Shape,
    /// The cap applied to per-unit values (for a percentile cap, the value
    /// of that percentile now).
    pub cap: Option<f64>,
    pub since_offset: u64,
    /// Per variation, the sufficient statistics given to the engine.
    pub statistics: Vec<MetricStatistic>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// End of the hour (ms since the epoch): units first exposed before it.
    pub time_ms: i64,
    pub units: Vec<u64>,
    pub metrics: Vec<SeriesMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesMetric {
    pub key: String,
    /// One per non-baseline variation.
    pub effects: Vec<SeriesEffect>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesEffect {
    pub variation: String,
    pub absolute: f64,
    pub absolute_ci: Interval,
    pub relative: f64,
    pub relative_ci: Interval,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ResultsError {
    pub field: String,
    pub message: String,
}

/// The nearest-rank percentile (`p` in (0, 1)) of `values`.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let (_, x, _) = values.select_nth_unstable_by(rank - 1, |a, b| a.total_cmp(b));
    Some(*x)
}

/// Per metric: (bucket key, per-variation moments), oldest first.
type Columns = Vec<Vec<(i64, Vec<Moments>)>>;

fn columns(e: &ExperimentState) -> (Columns, Vec<Option<f64>>) {
    let nvar = e.spec.variations.len();
    let mut cols = Vec::with_capacity(e.metrics.len());
    let mut caps = Vec::with_capacity(e.metrics.len());
    for (m, metric) in e.metrics.iter().enumerate() {
        match metric.spec.definition.cap {
            Some(Cap::Percentile(p)) => {
                let cap = percentile(&mut e.raw_values(m), p);
                caps.push(cap);
                cols.push(e.recompute(m, cap).into_iter().collect());
            }
            cap => {
                caps.push(match cap {
                    Some(Cap::Fixed(c)) => Some(c),
                    _ => None,
                });
                cols.push(
                    e.buckets
                        .iter()
                        .map(|(&k, b)| (k, b.moments[m * nvar..(m + 1) * nvar].to_vec()))
                        .collect(),
                );
            }
        }
    }
    (cols, caps)
}

fn request(
    e: &ExperimentState,
    opts: &AnalysisOptions,
    weights: &[f64],
    units: &[u64],
    totals: &[Vec<Moments>],
    shapes: &[Shape],
) -> AnalysisRequest {
    AnalysisRequest {
        settings: opts.settings.clone(),
        variations: e
            .spec
            .variations
            .iter()
            .zip(weights)
            .zip(units)
            .map(|((id, &weight), &units)| Variation {
                id: id.clone(),
                weight,
                units,
            })
            .collect(),
        metrics: e
            .metrics
            .iter()
            .zip(totals)
            .zip(shapes)
            .map(|((m, t), &shape)| Metric {
                id: m.spec.definition.key.clone(),
                inverse: m.spec.definition.direction == Direction::Lower,
                prior: None,
                data: t.iter().map(|x| x.statistic(shape)).collect(),
            })
            .collect(),
    }
}

impl Aggregator {
    /// The results of one experiment; `Ok(None)` when it is not aggregated.
    pub fn results(
        &self,
        project: &str,
        environment: &str,
        key: &str,
        opts: &AnalysisOptions,
    ) -> Result<Option<ExperimentResults>, ResultsError> {
        let Some(e) = self.experiment(project, environment, key) else {
            return Ok(None);
        };
        results_of(e, self.position(), self.ring.stats().evicted, opts).map(Some)
    }
}

/// The results of one experiment state at `position`.
pub fn results_of(
    e: &ExperimentState,
    position: Position,
    ring_evicted: u64,
    opts: &AnalysisOptions,
) -> Result<ExperimentResults, ResultsError> {
    let nvar = e.spec.variations.len();
    let weights: Vec<f64> = if opts.weights.len() == nvar {
        opts.weights.clone()
    } else {
        vec![1.0; nvar]
    };
    let units = e.units_per_variation();
    let (cols, caps) = columns(e);
    let totals: Vec<Vec<Moments>> = cols
        .iter()
        .map(|c| {
            let mut t = vec![Moments::default(); nvar];
            for (_, ms) in c {
                for (a, b) in t.iter_mut().zip(ms) {
                    a.merge(b);
                }
            }
            t
        })
        .collect();
    let shapes: Vec<Shape> = e
        .metrics
        .iter()
        .zip(&totals)
        .map(|(m, t)| m.shape(t.iter().any(|x| x.sum_yy > 0.0)))
        .collect();
    let req = request(e, opts, &weights, &units, &totals, &shapes);
    req.validate().map_err(|err| match err {
        switchyard_stats::AnalyzeError::Invalid { field, reason } => ResultsError {
            field,
            message: reason,
        },
        other => ResultsError {
            field: "settings".into(),
            message: other.to_string(),
        },
    })?;
    let analysis = switchyard_stats::analyze(&req);

    let mut warnings = Vec::new();
    if analysis.srm.mismatch {
        warnings.push(Warning {
            code: "srm_mismatch",
            message: format!(
                "SAMPLE RATIO MISMATCH: units per variation {:?} do not fit the configured weights {:?} (p = {:.2e}); assignment or exposure logging is broken, do not trust these results",
                units, weights, analysis.srm.p_value
            ),
        });
    }
    if e.counters.dropped_units > 0 {
        warnings.push(Warning {
            code: "units_truncated",
            message: format!(
                "{} units were not aggregated: the experiment reached its unit limit",
                e.counters.dropped_units
            ),
        });
    }
    for m in &e.metrics {
        if m.since_offset > e.since_offset {
            warnings.push(Warning {
                code: "metric_incomplete",
                message: format!(
                    "metric {:?} was added or changed at offset {} after the experiment's data began at offset {}; replay the experiment to include earlier events",
                    m.spec.definition.key, m.since_offset, e.since_offset
                ),
            });
        }
    }
    if let Some(b) = e.breakdown.as_ref().filter(|b| b.unassigned > 0) {
        warnings.push(Warning {
            code: "breakdown_incomplete",
            message: format!(
                "the breakdown by {:?} was configured after {} units were exposed; they are in no segment until the experiment is replayed",
                b.attribute, b.unassigned
            ),
        });
    }
    if ring_evicted > 0 {
        warnings.push(Warning {
            code: "attribution_bounded",
            message: format!(
                "{ring_evicted} tracked events left the recent-event buffer; events that arrived long before their unit's exposure may be missing"
            ),
        });
    }

    let metrics = e
        .metrics
        .iter()
        .zip(&totals)
        .zip(&shapes)
        .zip(&caps)
        .map(|(((m, t), &shape), &cap)| MetricDetail {
            key: m.spec.definition.key.clone(),
            kind: m.kind(),
            role: m.spec.role,
            direction: m.spec.definition.direction,
            shape,
            cap,
            since_offset: m.since_offset,
            statistics: t.iter().map(|x| x.statistic(shape)).collect(),
        })
        .collect();

    let series = series(e, opts, &weights, &cols, &shapes);
    let breakdown = if opts.breakdown {
        breakdown(e, opts, &weights, &shapes)
    } else {
        None
    };
    Ok(ExperimentResults {
        experiment: e.spec.key.clone(),
        phase: e.spec.phase,
        variations: e
            .spec
            .variations
            .iter()
            .enumerate()
            .map(|(v, k)| VariationSummary {
                key: k.clone(),
                weight: weights[v],
                units: units[v],
                exposures: e.exposures[v],
            })
            .collect(),
        excluded_units: e.counters.excluded_units,
        dropped_units: e.counters.dropped_units,
        ignored_exposures: e.counters.ignored_exposures,
        freshness: Freshness {
            offset: position.offset,
            max_event_ms: position.max_event_ms,
            since_offset: e.since_offset,
        },
        warnings,
        analysis,
        metrics,
        series,
        breakdown,
    })
}

/// The breakdown: segments ranked by units, the top ones by name and the
/// rest (with the overflow segment) merged into "other". Its cost is the
/// segments', not the units'.
fn breakdown(
    e: &ExperimentState,
    opts: &AnalysisOptions,
    weights: &[f64],
    shapes: &[Shape],
) -> Option<BreakdownResults> {
    use crate::breakdown::TOP_VALUES;
    let b = e.breakdown.as_ref()?;
    let nvar = e.spec.variations.len();
    let included: Vec<usize> = e
        .metrics
        .iter()
        .enumerate()
        .filter(|(_, m)| !matches!(m.spec.definition.cap, Some(Cap::Percentile(_))))
        .map(|(i, _)| i)
        .collect();
    let total = |s: &crate::experiment::Bucket| s.units.iter().sum::<u64>();
    let mut ranked: Vec<usize> = (0..b.values.len()).collect();
    ranked.sort_by(|&x, &y| {
        total(&b.segments[y])
            .cmp(&total(&b.segments[x]))
            .then_with(|| b.values[x].cmp(&b.values[y]))
    });
    let mut groups: Vec<(String, bool, Vec<&crate::experiment::Bucket>)> = ranked
        .iter()
        .take(TOP_VALUES)
        .filter(|&&i| total(&b.segments[i]) > 0)
        .map(|&i| (b.values[i].clone(), false, vec![&b.segments[i]]))
        .collect();
    let mut rest: Vec<&crate::experiment::Bucket> = ranked
        .iter()
        .skip(TOP_VALUES)
        .map(|&i| &b.segments[i])
        .collect();
    rest.extend(b.segments.last());
    if rest.iter().any(|s| total(s) > 0) {
        groups.push(("other".into(), true, rest));
    }
    let mut settings = opts.settings.clone();
    // A correction across segments is the reader's call; each segment is
    // analysed as its own experiment.
    settings.correction = switchyard_stats::Correction::None;
    let segments = groups
        .into_iter()
        .map(|(value, other, parts)| {
            let mut units = vec![0u64; nvar];
            let mut totals = vec![vec![Moments::default(); nvar]; included.len()];
            for p in parts {
                for (u, x) in units.iter_mut().zip(&p.units) {
                    *u += x;
                }
                for (t, &m) in totals.iter_mut().zip(&included) {
                    for (v, x) in t.iter_mut().enumerate() {
                        x.merge(&p.moments[m * nvar + v]);
                    }
                }
            }
            let statistics: Vec<Vec<MetricStatistic>> = totals
                .iter()
                .zip(&included)
                .map(|(t, &m)| t.iter().map(|x| x.statistic(shapes[m])).collect())
                .collect();
            let req = AnalysisRequest {
                settings: settings.clone(),
                variations: e
                    .spec
                    .variations
                    .iter()
                    .zip(weights)
                    .zip(&units)
                    .map(|((id, &weight), &units)| Variation {
                        id: id.clone(),
                        weight,
                        units,
                    })
                    .collect(),
                metrics: included
                    .iter()
                    .zip(&statistics)
                    .map(|(&m, data)| Metric {
                        id: e.metrics[m].spec.definition.key.clone(),
                        inverse: e.metrics[m].spec.definition.direction == Direction::Lower,
                        prior: None,
                        data: data.clone(),
                    })
                    .collect(),
            };
            BreakdownSegment {
                value,
                other,
                units,
                analysis: switchyard_stats::analyze(&req),
                statistics,
            }
        })
        .collect();
    Some(BreakdownResults {
        attribute: b.attribute.clone(),
        metrics: included
            .iter()
            .map(|&m| e.metrics[m].spec.definition.key.clone())
            .collect(),
        unassigned_units: b.unassigned,
        distinct_values: b.values.len(),
        segments,
    })
}

fn series(
    e: &ExperimentState,
    opts: &AnalysisOptions,
    weights: &[f64],
    cols: &Columns,
    shapes: &[Shape],
) -> Vec<SeriesPoint> {
    let nvar = e.spec.variations.len();
    let keys: Vec<i64> = e.buckets.keys().copied().collect();
    if keys.is_empty() || opts.max_points == 0 {
        return Vec::new();
    }
    let step = keys.len().div_ceil(opts.max_points).max(1);
    let mut settings = opts.settings.clone();
    settings.correction = switchyard_stats::Correction::None;
    let sopts = AnalysisOptions {
        settings,
        ..opts.clone()
    };
    let mut units = vec![0u64; nvar];
    let mut cum: Vec<Vec<Moments>> = vec![vec![Moments::default(); nvar]; e.metrics.len()];
    let mut at: Vec<usize> = vec![0; e.metrics.len()];
    let mut out = Vec::new();
    for (i, (&k, b)) in e.buckets.iter().enumerate() {
        for (u, x) in units.iter_mut().zip(&b.units) {
            *u += x;
        }
        for (m, col) in cols.iter().enumerate() {
            while at[m] < col.len() && col[at[m]].0 <= k {
                for (a, x) in cum[m].iter_mut().zip(&col[at[m]].1) {
                    a.merge(x);
                }
                at[m] += 1;
            }
        }
        if (i + 1) % step != 0 && i + 1 != keys.len() {
            continue;
        }
        let req = request(e, &sopts, weights, &units, &cum, shapes);
        let a = switchyard_stats::analyze(&req);
        out.push(SeriesPoint {
            time_ms: (k + 1).saturating_mul(HOUR_MS),
            units: units.clone(),
            metrics: a
                .metrics
                .iter()
                .map(|m| SeriesMetric {
                    key: m.id.clone(),
                    effects: m
                        .variations
                        .iter()
                        .filter_map(|v| {
                            let c = v.comparison.as_ref()?;
                            Some(SeriesEffect {
                                variation: v.id.clone(),
                                absolute: c.absolute.estimate,
                                absolute_ci: c.absolute.ci,
                                relative: c.relative.estimate,
                                relative_ci: c.relative.ci,
                            })
                        })
                        .collect(),
                })
                .collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_rank_percentile_is_a_value_of_the_data() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.99), Some(99.0));
        assert_eq!(percentile(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile(&mut [7.0], 0.9), Some(7.0));
        assert_eq!(percentile(&mut [], 0.9), None);
    }
}
