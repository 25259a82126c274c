//! Guardrails: what in an experiment's results must stop it.
//!
//! Two findings raise an alert:
//! - a guardrail metric is significantly harmed in a variation: its
//!   always-valid confidence sequence for the absolute effect against the
//!   baseline lies wholly on the bad side of zero (below it when higher is
//!   better, above it when lower is better). A confidence sequence may be
//!   looked at after every event without inflating the error rate, which
//!   is what a monitor that checks continuously needs;
//! - the sample ratio mismatch check fails, which means the assignment or
//!   the exposure logging is broken and no metric can be trusted. The
//!   monitor looks at every pass, so this is the always-valid sequential
//!   test ([`switchyard_stats::sequential_srm`]) at level
//!   [`SRM_ALERT_THRESHOLD`], not the fixed-horizon p-value the results
//!   show (which, looked at often enough, would raise false alarms).
//!
//! [`guardrail_options`] gives the analysis settings the check needs;
//! [`check`] reads the results computed with them. Both are pure: the
//! server decides what an alert does (record it, stop the experiment).

use serde::{Deserialize, Serialize};
use switchyard_core::metric::{Direction, MetricRole};
use switchyard_stats::{Correction, Engine, Settings};

use crate::results::{AnalysisOptions, ExperimentResults};

/// Level of the sequential SRM test: strict, as the field is (GrowthBook
/// and Statsig warn at p < 0.001), because an alert may stop the
/// experiment.
pub const SRM_ALERT_THRESHOLD: f64 = 0.001;

/// Fewest units in the experiment before any alert is raised: below it a
/// handful of early units would decide.
pub const MIN_UNITS: u64 = 100;

/// Why an experiment is alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A guardrail metric is significantly harmed in one variation.
    GuardrailHarmed,
    /// The units per variation do not match the configured weights.
    SampleRatioMismatch,
}

/// One finding of [`check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// The guardrail metric (for `guardrail_harmed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The harmed variation (for `guardrail_harmed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<String>,
    /// A sentence for people, with the numbers that decided.
    pub message: String,
}

/// The analysis a guardrail check reads: frequentist, sequential (always
/// valid), no correction across metrics (each guardrail is its own
/// promise), the SRM threshold of [`SRM_ALERT_THRESHOLD`]; `alpha` and the
/// baseline as the experiment is configured, and its weights for SRM.
pub fn guardrail_options(alpha: f64, baseline: usize, weights: Vec<f64>) -> AnalysisOptions {
    AnalysisOptions {
        settings: Settings {
            engine: Engine::Frequentist,
            alpha,
            sequential: true,
            correction: Correction::None,
            baseline,
            srm_threshold: SRM_ALERT_THRESHOLD,
            ..Settings::default()
        },
        weights,
        max_points: 1,
        breakdown: false,
    }
}

/// The alerts `results` (computed with [`guardrail_options`]) call for;
/// empty while the experiment has fewer than [`MIN_UNITS`] units.
pub fn check(results: &ExperimentResults) -> Vec<Alert> {
    let units: u64 = results.variations.iter().map(|v| v.units).sum();
    if units < MIN_UNITS {
        return Vec::new();
    }
    let mut alerts = Vec::new();
    let srm = &results.analysis.srm;
    let observed: Vec<u64> = results.variations.iter().map(|v| v.units).collect();
    let weights: Vec<f64> = results.variations.iter().map(|v| v.weight).collect();
    let sequential = switchyard_stats::sequential_srm(&observed, &weights, SRM_ALERT_THRESHOLD);
    if sequential.mismatch {
        let observed: Vec<String> = results
            .variations
            .iter()
            .zip(&srm.expected)
            .map(|(v, e)| format!("{} {} (expected {:.0})", v.key, v.units, e))
            .collect();
        alerts.push(Alert {
            kind: AlertKind::SampleRatioMismatch,
            metric: None,
            variation: None,
            message: format!(
                "sample ratio mismatch: sequential Bayes factor e^{:.1} > 1/{SRM_ALERT_THRESHOLD} \
                 (fixed-horizon p = {:.2e}); units {}",
                sequential.log_bayes_factor,
                srm.p_value,
                observed.join(", ")
            ),
        });
    }
    for detail in &results.metrics {
        if detail.role != MetricRole::Guardrail {
            continue;
        }
        let Some(analysed) = results.analysis.metrics.iter().find(|m| m.id == detail.key) else {
            continue;
        };
        for v in &analysed.variations {
            let Some(c) = &v.comparison else { continue };
            let effect = &c.absolute;
            if effect.error.is_some() {
                continue;
            }
            let harmed = match detail.direction {
                Direction::Higher => effect.ci.upper < 0.0,
                Direction::Lower => effect.ci.lower > 0.0,
            };
            if harmed {
                alerts.push(Alert {
                    kind: AlertKind::GuardrailHarmed,
                    metric: Some(detail.key.clone()),
                    variation: Some(v.id.clone()),
                    message: format!(
                        "guardrail {:?} harmed in {:?}: effect {:+.4} against {:?}, \
                         always-valid interval [{:.4}, {:.4}] ({} is better)",
                        detail.key,
                        v.id,
                        effect.estimate,
                        c.baseline,
                        effect.ci.lower,
                        effect.ci.upper,
                        match detail.direction {
                            Direction::Higher => "higher",
                            Direction::Lower => "lower",
                        }
                    ),
                });
            }
        }
    }
    alerts
}
