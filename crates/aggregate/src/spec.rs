//! What the aggregator is told to compute: experiments with their metric
//! definitions, and the limits that bound its memory.

use serde::{Deserialize, Serialize};
use switchyard_core::metric::{MetricDefinition, MetricRole};

/// One experiment (one phase of it) as the aggregator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub project: String,
    pub environment: String,
    pub key: String,
    /// The flag the experiment runs on: exposures that name only the flag
    /// count for it.
    pub flag: String,
    /// A new phase is a fresh analysis: its state starts empty.
    #[serde(default)]
    pub phase: u32,
    /// Variation keys; the first is the baseline unless the analysis
    /// settings say otherwise.
    pub variations: Vec<String>,
    /// Exposures before this time (ms since the epoch) do not count.
    pub start_ms: i64,
    /// Exposures from this time on do not count, and attribution windows
    /// end here.
    #[serde(default)]
    pub stop_ms: Option<i64>,
    pub metrics: Vec<SpecMetric>,
    /// The exposure attribute the results are broken down by, if any (the
    /// experiment's `breakdown_by`).
    #[serde(default)]
    pub breakdown: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecMetric {
    pub definition: MetricDefinition,
    #[serde(default)]
    pub role: MetricRole,
}

impl ExperimentSpec {
    /// What must stay the same for accumulated state to remain valid
    /// (`self` is the state's spec, `o` the new one). Stopping (no stop
    /// time, then one) keeps it: what was counted came before the stop,
    /// which is when the store wrote it, so a stopped or shipped experiment
    /// keeps its final results. Any other change of the time range, a new
    /// phase or new variations start afresh.
    pub(crate) fn same_analysis(&self, o: &ExperimentSpec) -> bool {
        self.project == o.project
            && self.environment == o.environment
            && self.key == o.key
            && self.phase == o.phase
            && self.variations == o.variations
            && self.start_ms == o.start_ms
            && (self.stop_ms == o.stop_ms || self.stop_ms.is_none())
    }
}

/// Bounds on the aggregator's memory. Each is reported (as a count of what
/// it turned away) when reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Units kept per experiment; exposures of further new units are
    /// counted in `dropped_units` and the results say they are truncated.
    pub max_units_per_experiment: usize,
    /// Experiments kept; further ones are skipped (and reported).
    pub max_experiments: usize,
    /// Metrics analysed per experiment; further ones are skipped.
    pub max_metrics_per_experiment: usize,
    /// Entries in the ring of recent tracked events (40 bytes each plus
    /// its index); see `ring.rs` for what it bounds.
    pub ring_capacity: usize,
    /// Time buckets (hours) kept per experiment for the cumulative series;
    /// beyond it the oldest two are merged.
    pub max_buckets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_units_per_experiment: 20_000_000,
            max_experiments: 1_000,
            max_metrics_per_experiment: 50,
            ring_capacity: 1_000_000,
            max_buckets: 24 * 120,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ExperimentSpec {
        ExperimentSpec {
            project: "p".into(),
            environment: "e".into(),
            key: "x".into(),
            flag: "f".into(),
            phase: 0,
            variations: vec!["a".into(), "b".into()],
            start_ms: 1_000,
            stop_ms: None,
            metrics: Vec::new(),
            breakdown: None,
        }
    }

    #[test]
    fn a_stop_keeps_the_analysis_and_a_new_phase_or_window_does_not() {
        let running = spec();
        let stopped = ExperimentSpec {
            stop_ms: Some(5_000),
            ..spec()
        };
        assert!(running.same_analysis(&stopped));
        assert!(!stopped.same_analysis(&running));
        let moved = ExperimentSpec {
            stop_ms: Some(6_000),
            ..spec()
        };
        assert!(!stopped.same_analysis(&moved));
        let phase = ExperimentSpec {
            phase: 1,
            start_ms: 9_000,
            ..spec()
        };
        assert!(!running.same_analysis(&phase));
        assert!(!stopped.same_analysis(&phase));
    }
}
