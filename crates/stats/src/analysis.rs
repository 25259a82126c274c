//! `analyze`: from a request of sufficient statistics to every result of an
//! experiment: per metric and variation, absolute and relative effects; SRM;
//! and the multiple-testing correction across the whole family.

use serde::{Deserialize, Serialize};

use crate::bayesian::{Prior, bayesian_test};
use crate::corrections::{Correction, adjust, adjusted_interval};
use crate::effect::{Arm, Effect, ErrorCode, Scale};
use crate::frequentist::{sequential_test, t_test};
use crate::request::{AnalysisRequest, Engine, Metric, Settings};
use crate::srm::{SrmResult, check_srm};
use crate::statistic::{MetricStatistic, pooled_theta};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisResult {
    pub engine: Engine,
    pub sequential: bool,
    pub correction: Correction,
    pub alpha: f64,
    pub srm: SrmResult,
    pub metrics: Vec<MetricResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub id: String,
    pub variations: Vec<VariationResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariationResult {
    pub id: String,
    /// Units in this metric's statistic.
    pub units: u64,
    /// Mean per unit, unadjusted.
    pub mean: f64,
    /// Per-unit variance, unadjusted.
    pub variance: f64,
    /// Absent for the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// A variation against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: String,
    /// Present for regression-adjusted metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuped: Option<Cuped>,
    pub absolute: Effect,
    pub relative: Effect,
}

/// CUPED details of one comparison: theta pooled over the two arms compared.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cuped {
    pub theta: f64,
    pub baseline_adjusted_mean: f64,
    pub adjusted_mean: f64,
    pub baseline_adjusted_variance: f64,
    pub adjusted_variance: f64,
}

/// The two arms a test compares, with the CUPED details when they apply.
/// Theta is pooled over both arms (gbstats' `compute_theta`); a theta of 0
/// (no pre-period variance) falls back to the unadjusted statistics.
pub fn arms_for(a: &MetricStatistic, b: &MetricStatistic) -> Option<(Arm, Arm, Option<Cuped>)> {
    let plain = |s: &MetricStatistic| Arm {
        n: s.n(),
        mean: s.unadjusted_mean(),
        unadjusted_mean: s.unadjusted_mean(),
        variance: s.unadjusted_variance(),
    };
    match (a, b) {
        (MetricStatistic::RegressionAdjusted(ra), MetricStatistic::RegressionAdjusted(rb)) => {
            let theta = pooled_theta(ra, rb);
            let adjusted = |s: &crate::statistic::RegressionStatistic| Arm {
                n: s.n,
                mean: s.adjusted_mean(theta),
                unadjusted_mean: s.post.mean(s.n),
                variance: s.adjusted_variance(theta),
            };
            let (arm_a, arm_b) = (adjusted(ra), adjusted(rb));
            let cuped = Cuped {
                theta,
                baseline_adjusted_mean: arm_a.mean,
                adjusted_mean: arm_b.mean,
                baseline_adjusted_variance: arm_a.variance,
                adjusted_variance: arm_b.variance,
            };
            Some((arm_a, arm_b, Some(cuped)))
        }
        _ if a.type_name() == b.type_name() => Some((plain(a), plain(b), None)),
        _ => None,
    }
}

fn effect(
    settings: &Settings,
    prior: Option<&Prior>,
    inverse: bool,
    a: &Arm,
    b: &Arm,
    scale: Scale,
) -> Effect {
    match settings.engine {
        Engine::Bayesian => bayesian_test(a, b, scale, prior, settings.alpha, inverse),
        Engine::Frequentist if settings.sequential => {
            sequential_test(a, b, scale, settings.alpha, settings.sequential_tuning)
        }
        Engine::Frequentist => t_test(a, b, scale, settings.alternative, settings.alpha),
    }
}

fn compare(
    settings: &Settings,
    metric: &Metric,
    a: &MetricStatistic,
    b: &MetricStatistic,
    baseline: &str,
) -> Comparison {
    let prior = metric.prior.as_ref().or(settings.prior.as_ref());
    let Some((arm_a, arm_b, cuped)) = arms_for(a, b) else {
        let failed = || match settings.engine {
            Engine::Bayesian => Effect::bayesian_default(ErrorCode::InvalidInput),
            Engine::Frequentist => Effect::frequentist_default(ErrorCode::InvalidInput),
        };
        return Comparison {
            baseline: baseline.to_owned(),
            cuped: None,
            absolute: failed(),
            relative: failed(),
        };
    };
    Comparison {
        baseline: baseline.to_owned(),
        cuped,
        absolute: effect(
            settings,
            prior,
            metric.inverse,
            &arm_a,
            &arm_b,
            Scale::Absolute,
        ),
        relative: effect(
            settings,
            prior,
            metric.inverse,
            &arm_a,
            &arm_b,
            Scale::Relative,
        ),
    }
}

fn analyze_metric(request: &AnalysisRequest, metric: &Metric) -> MetricResult {
    let settings = &request.settings;
    let base_index = settings.baseline;
    let base_stat = metric.data.get(base_index);
    let base_id = request
        .variations
        .get(base_index)
        .map_or("", |v| v.id.as_str());
    let variations = request
        .variations
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let stat = metric.data.get(i);
            let comparison = match (i == base_index, base_stat, stat) {
                (true, _, _) => None,
                (false, Some(a), Some(b)) => Some(compare(settings, metric, a, b, base_id)),
                (false, _, _) => {
                    let failed = Effect::frequentist_default(ErrorCode::InvalidInput);
                    Some(Comparison {
                        baseline: base_id.to_owned(),
                        cuped: None,
                        absolute: failed.clone(),
                        relative: failed,
                    })
                }
            };
            VariationResult {
                id: v.id.clone(),
                units: stat.map_or(0, MetricStatistic::n),
                mean: stat.map_or(0.0, MetricStatistic::unadjusted_mean),
                variance: stat.map_or(0.0, MetricStatistic::unadjusted_variance),
                comparison,
            }
        })
        .collect();
    MetricResult {
        id: metric.id.clone(),
        variations,
    }
}

/// Adjusts the p-values of one scale across every comparison that has one and
/// no error, and widens the intervals to match.
fn correct(result: &mut AnalysisResult, settings: &Settings, scale: Scale) {
    let mut family: Vec<(usize, usize)> = Vec::new();
    let mut p_values = Vec::new();
    for (m, metric) in result.metrics.iter().enumerate() {
        for (v, var) in metric.variations.iter().enumerate() {
            if let Some(c) = &var.comparison {
                let e = match scale {
                    Scale::Absolute => &c.absolute,
                    Scale::Relative => &c.relative,
                };
                if let (None, Some(p)) = (e.error, e.p_value) {
                    family.push((m, v));
                    p_values.push(p);
                }
            }
        }
    }
    let adjusted = adjust(&p_values, settings.correction);
    for ((m, v), p_adj) in family.into_iter().zip(adjusted) {
        if let Some(c) = result.metrics[m].variations[v].comparison.as_mut() {
            let e = match scale {
                Scale::Absolute => &mut c.absolute,
                Scale::Relative => &mut c.relative,
            };
            e.p_value_adjusted = Some(p_adj);
            e.ci_adjusted = Some(adjusted_interval(
                e.estimate,
                e.ci,
                p_adj,
                settings.alpha,
                settings.alternative,
            ));
        }
    }
}

/// Analyses one experiment. Total: degenerate data and inconsistent requests give
/// results with error codes, never a panic or a NaN. Call
/// [`AnalysisRequest::validate`] first to reject malformed requests with a message.
pub fn analyze(request: &AnalysisRequest) -> AnalysisResult {
    let settings = &request.settings;
    let observed: Vec<u64> = request.variations.iter().map(|v| v.units).collect();
    let weights: Vec<f64> = request.variations.iter().map(|v| v.weight).collect();
    let mut result = AnalysisResult {
        engine: settings.engine,
        sequential: settings.sequential,
        correction: settings.correction,
        alpha: settings.alpha,
        srm: check_srm(&observed, &weights, settings.srm_threshold),
        metrics: request
            .metrics
            .iter()
            .map(|m| analyze_metric(request, m))
            .collect(),
    };
    if settings.engine == Engine::Frequentist && settings.correction != Correction::None {
        correct(&mut result, settings, Scale::Absolute);
        correct(&mut result, settings, Scale::Relative);
    }
    result
}
