//! The shared vocabulary of every test: the per-arm summary a test consumes,
//! the effect it produces, and the stable error codes of degenerate data.

use serde::{Deserialize, Serialize};

/// What a test needs to know about one arm: unit count, the mean it compares
/// (CUPED-adjusted when applicable), the unadjusted mean that scales relative
/// effects, and the per-unit variance of the compared quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    pub n: u64,
    pub mean: f64,
    pub unadjusted_mean: f64,
    pub variance: f64,
}

/// Absolute difference `mean_b - mean_a` or relative lift `(mean_b - mean_a) / mean_a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Absolute,
    Relative,
}

/// Alternative hypothesis of a frequentist test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    #[default]
    TwoSided,
    /// H1: the variation is greater than the baseline.
    Greater,
    /// H1: the variation is less than the baseline.
    Less,
}

/// Stable codes for results that could not be computed. Each comes with
/// uninformative numbers (effect 0, interval [0, 0], p-value 1, chance to win 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// An arm has no units.
    NoUnits,
    /// An arm has a single unit: no variance can be estimated.
    TooFewUnits,
    /// A relative effect was asked for but the baseline mean is zero.
    ZeroBaselineMean,
    /// An arm's variance is zero or negative (e.g. every unit has the same value).
    ZeroVariance,
    /// The inputs were extreme enough that a result would not be finite.
    NonFiniteResult,
    /// The request was inconsistent (call `AnalysisRequest::validate` first).
    InvalidInput,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoUnits => "NO_UNITS",
            ErrorCode::TooFewUnits => "TOO_FEW_UNITS",
            ErrorCode::ZeroBaselineMean => "ZERO_BASELINE_MEAN",
            ErrorCode::ZeroVariance => "ZERO_VARIANCE",
            ErrorCode::NonFiniteResult => "NON_FINITE_RESULT",
            ErrorCode::InvalidInput => "INVALID_INPUT",
        }
    }
}

/// An interval whose ends may be unbounded (one-sided tests, adjusted intervals
/// of p-values of 1). Unbounded ends are `null` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(with = "lower_bound")]
    pub lower: f64,
    #[serde(with = "upper_bound")]
    pub upper: f64,
}

impl Interval {
    pub const ZERO: Interval = Interval {
        lower: 0.0,
        upper: 0.0,
    };
    pub const UNBOUNDED: Interval = Interval {
        lower: f64::NEG_INFINITY,
        upper: f64::INFINITY,
    };
    pub fn new(lower: f64, upper: f64) -> Self {
        Interval { lower, upper }
    }
    /// Neither end is NaN, and no end is infinite on its own bounded side.
    pub(crate) fn is_sane(&self) -> bool {
        !self.lower.is_nan()
            && !self.upper.is_nan()
            && self.lower != f64::INFINITY
            && self.upper != f64::NEG_INFINITY
    }
}

macro_rules! bound_serde {
    ($name:ident, $infinity:expr) => {
        mod $name {
            use serde::{Deserialize, Deserializer, Serializer};
            pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
                if x.is_finite() {
                    s.serialize_f64(*x)
                } else {
                    s.serialize_none()
                }
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
                Ok(Option::<f64>::deserialize(d)?.unwrap_or($infinity))
            }
        }
    };
}
bound_serde!(lower_bound, f64::NEG_INFINITY);
bound_serde!(upper_bound, f64::INFINITY);

/// Expected loss of shipping each arm: the mean of the effect over the region
/// where that arm is the worse choice, weighted by its probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// Loss of keeping the baseline: `E[max(effect, 0)]`.
    pub baseline: f64,
    /// Loss of shipping the variation: `E[max(-effect, 0)]`.
    pub variation: f64,
}

/// One effect estimate (absolute or relative) of a variation against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Point estimate (posterior mean for the Bayesian engine).
    pub estimate: f64,
    /// Standard error of the estimate (posterior standard deviation).
    pub stddev: f64,
    /// Confidence interval, confidence sequence or credible interval at `1 - alpha`.
    pub ci: Interval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value_adjusted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_adjusted: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chance_to_win: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// Set when the data were degenerate; the numbers are then uninformative defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
}

impl Effect {
    pub(crate) fn frequentist_default(error: ErrorCode) -> Self {
        Effect {
            estimate: 0.0,
            stddev: 0.0,
            ci: Interval::ZERO,
            p_value: Some(1.0),
            p_value_adjusted: None,
            ci_adjusted: None,
            chance_to_win: None,
            risk: None,
            error: Some(error),
        }
    }

    pub(crate) fn bayesian_default(error: ErrorCode) -> Self {
        Effect {
            estimate: 0.0,
            stddev: 0.0,
            ci: Interval::ZERO,
            p_value: None,
            p_value_adjusted: None,
            ci_adjusted: None,
            chance_to_win: Some(0.5),
            risk: Some(Risk {
                baseline: 0.0,
                variation: 0.0,
            }),
            error: Some(error),
        }
    }

    /// Replaces a result holding a NaN or a misplaced infinity by the default.
    pub(crate) fn checked(self) -> Self {
        let finite = |x: Option<f64>| x.is_none_or(f64::is_finite);
        let ok = self.estimate.is_finite()
            && self.stddev.is_finite()
            && self.ci.is_sane()
            && finite(self.p_value)
            && finite(self.chance_to_win)
            && self
                .risk
                .is_none_or(|r| r.baseline.is_finite() && r.variation.is_finite());
        if ok {
            self
        } else if self.chance_to_win.is_some() {
            Effect::bayesian_default(ErrorCode::NonFiniteResult)
        } else {
            Effect::frequentist_default(ErrorCode::NonFiniteResult)
        }
    }
}

/// `x > 0`, false for NaN: reads better negated than `!(x > 0.0)`.
pub(crate) fn positive(x: f64) -> bool {
    x > 0.0
}

/// The degenerate-data checks shared by every test, in a fixed order.
pub fn check_arms(a: &Arm, b: &Arm, scale: Scale) -> Option<ErrorCode> {
    if a.n == 0 || b.n == 0 {
        return Some(ErrorCode::NoUnits);
    }
    if a.n < 2 || b.n < 2 {
        return Some(ErrorCode::TooFewUnits);
    }
    if scale == Scale::Relative && (a.mean == 0.0 || a.unadjusted_mean == 0.0) {
        return Some(ErrorCode::ZeroBaselineMean);
    }
    if !positive(a.variance) || !positive(b.variance) {
        return Some(ErrorCode::ZeroVariance);
    }
    None
}

/// `mean_b - mean_a`, or that divided by the unadjusted baseline mean.
pub fn point_estimate(a: &Arm, b: &Arm, scale: Scale) -> f64 {
    match scale {
        Scale::Absolute => b.mean - a.mean,
        Scale::Relative => (b.mean - a.mean) / a.unadjusted_mean,
    }
}

/// Variance of the point estimate. The relative one is the delta-method variance of
/// `mean_b / mean_a - 1` (gbstats' `frequentist_variance`):
/// `var_b / (mu_a^2 n_b) + var_a mu_b^2 / (mu_a^4 n_a)`.
pub fn estimate_variance(a: &Arm, b: &Arm, scale: Scale) -> f64 {
    let (na, nb) = (a.n as f64, b.n as f64);
    match scale {
        Scale::Absolute => b.variance / nb + a.variance / na,
        Scale::Relative => {
            let (mu_a, mu_b) = (a.unadjusted_mean, b.unadjusted_mean);
            b.variance / (mu_a * mu_a * nb) + a.variance * mu_b * mu_b / (mu_a.powi(4) * na)
        }
    }
}
