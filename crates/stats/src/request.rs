//! The analysis request: per-variation sufficient statistics and settings.
//! This is the schema of `switchyard analyze` documents (docs/statistics.md).

use serde::{Deserialize, Serialize};

use crate::bayesian::Prior;
use crate::corrections::Correction;
use crate::effect::Alternative;
use crate::error::AnalyzeError;
use crate::statistic::MetricStatistic;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisRequest {
    #[serde(default)]
    pub settings: Settings,
    /// The arms, in the order every metric's `data` lists them.
    pub variations: Vec<Variation>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    #[default]
    Frequentist,
    Bayesian,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub engine: Engine,
    /// 1 - confidence level of every interval; the significance threshold.
    pub alpha: f64,
    /// Frequentist fixed-horizon tests only.
    pub alternative: Alternative,
    /// Use always-valid confidence sequences (frequentist, two-sided).
    pub sequential: bool,
    /// N*: total units at which the confidence sequence is tightest.
    pub sequential_tuning: f64,
    /// Correction across all metric x variation comparisons (frequentist).
    pub correction: Correction,
    /// Default prior of the Bayesian engine; absent means flat.
    pub prior: Option<Prior>,
    /// Index of the baseline (control) in `variations`.
    pub baseline: usize,
    /// SRM p-value below which `srm.mismatch` is true.
    pub srm_threshold: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            engine: Engine::Frequentist,
            alpha: 0.05,
            alternative: Alternative::TwoSided,
            sequential: false,
            sequential_tuning: 5000.0,
            correction: Correction::None,
            prior: None,
            baseline: 0,
            srm_threshold: 0.001,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variation {
    pub id: String,
    /// Configured traffic weight (any positive scale; normalised for SRM).
    pub weight: f64,
    /// Units assigned to the variation, for the SRM check.
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub id: String,
    /// Lower is better (e.g. latency): flips chance to win and risks.
    #[serde(default)]
    pub inverse: bool,
    /// Bayesian prior for this metric, overriding `settings.prior`.
    #[serde(default)]
    pub prior: Option<Prior>,
    /// One statistic per variation, in the order of `variations`.
    pub data: Vec<MetricStatistic>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> AnalyzeError {
    AnalyzeError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn check_prior(field: &str, prior: &Option<Prior>) -> Result<(), AnalyzeError> {
    if let Some(p) = prior {
        if !p.mean.is_finite() {
            return Err(invalid(format!("{field}.mean"), "must be finite"));
        }
        if !(p.variance > 0.0 && p.variance.is_finite()) {
            return Err(invalid(
                format!("{field}.variance"),
                "must be positive and finite",
            ));
        }
    }
    Ok(())
}

impl AnalysisRequest {
    /// Checks what the types cannot: ranges, lengths and consistency.
    /// `analyze` never panics on an unvalidated request, but marks
    /// inconsistent parts with `INVALID_INPUT`.
    pub fn validate(&self) -> Result<(), AnalyzeError> {
        let s = &self.settings;
        if !(s.alpha > 0.0 && s.alpha < 1.0) {
            return Err(invalid(
                "settings.alpha",
                "must be strictly between 0 and 1",
            ));
        }
        if !(s.sequential_tuning > 0.0 && s.sequential_tuning.is_finite()) {
            return Err(invalid(
                "settings.sequential_tuning",
                "must be positive and finite",
            ));
        }
        if !(s.srm_threshold >= 0.0 && s.srm_threshold <= 1.0) {
            return Err(invalid("settings.srm_threshold", "must be between 0 and 1"));
        }
        if s.sequential && s.alternative != Alternative::TwoSided {
            return Err(invalid(
                "settings.alternative",
                "sequential testing supports only \"two_sided\"",
            ));
        }
        if s.sequential && s.engine == Engine::Bayesian {
            return Err(invalid(
                "settings.sequential",
                "applies only to the frequentist engine",
            ));
        }
        check_prior("settings.prior", &s.prior)?;
        if self.variations.len() < 2 {
            return Err(invalid("variations", "at least two variations are needed"));
        }
        if s.baseline >= self.variations.len() {
            return Err(invalid(
                "settings.baseline",
                format!(
                    "index {} is out of range for {} variations",
                    s.baseline,
                    self.variations.len()
                ),
            ));
        }
        for (i, v) in self.variations.iter().enumerate() {
            if !(v.weight >= 0.0 && v.weight.is_finite()) {
                return Err(invalid(
                    format!("variations[{i}].weight"),
                    "must be non-negative and finite",
                ));
            }
        }
        if !self.variations.iter().any(|v| v.weight > 0.0) {
            return Err(invalid(
                "variations",
                "at least one weight must be positive",
            ));
        }
        for (m, metric) in self.metrics.iter().enumerate() {
            check_prior(&format!("metrics[{m}].prior"), &metric.prior)?;
            if metric.data.len() != self.variations.len() {
                return Err(invalid(
                    format!("metrics[{m}].data"),
                    format!(
                        "has {} entries but there are {} variations",
                        metric.data.len(),
                        self.variations.len()
                    ),
                ));
            }
            let first = metric.data.first().map(|d| d.type_name());
            for (i, d) in metric.data.iter().enumerate() {
                if Some(d.type_name()) != first {
                    return Err(invalid(
                        format!("metrics[{m}].data[{i}].type"),
                        "every variation of a metric must have the same statistic type",
                    ));
                }
                if d.values().iter().any(|x| !x.is_finite()) {
                    return Err(invalid(
                        format!("metrics[{m}].data[{i}]"),
                        "values must be finite",
                    ));
                }
            }
        }
        Ok(())
    }
}
