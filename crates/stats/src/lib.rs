//! Switchyard's statistics engine: pure functions from sufficient statistics to
//! experiment results. No I/O, no async, no randomness.
//!
//! # Layout
//! - [`statistic`]: sufficient statistics that add across partitions (mean,
//!   proportion, ratio, regression-adjusted for CUPED).
//! - [`effect`]: what every test consumes ([`Arm`]) and produces ([`Effect`]),
//!   the stable [`ErrorCode`]s, absolute and relative (delta-method) estimates.
//! - [`frequentist`]: Welch t-tests, one- and two-sided; the always-valid
//!   sequential test (normal-mixture confidence sequences).
//! - [`bayesian`]: Gaussian posterior of the effect, chance to win, risk.
//! - [`srm`]: sample-ratio mismatch check.
//! - [`corrections`]: Holm-Bonferroni and Benjamini-Hochberg with adjusted intervals.
//! - [`request`] and [`analysis`]: the document `switchyard analyze` reads and
//!   the results it prints; [`analyze`] ties everything together.
//!
//! Formulas follow GrowthBook's gbstats so that results agree with it to 1e-6;
//! `spec/stats/` holds the golden cases and docs/statistics.md the conventions.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod analysis;
pub mod bayesian;
pub mod corrections;
mod dist;
pub mod effect;
mod error;
pub mod frequentist;
pub mod request;
pub mod srm;
pub mod statistic;

pub use analysis::{AnalysisResult, Comparison, Cuped, MetricResult, VariationResult, analyze};
pub use bayesian::Prior;
pub use corrections::Correction;
pub use effect::{Alternative, Arm, Effect, ErrorCode, Interval, Risk, Scale};
pub use error::AnalyzeError;
pub use request::{AnalysisRequest, Engine, Metric, Settings, Variation};
pub use srm::{SequentialSrm, SrmResult, sequential_srm};
pub use statistic::{
    Component, MeanStatistic, MetricStatistic, ProportionStatistic, RatioStatistic,
    RegressionStatistic,
};

/// Parses an analysis document (JSON, schema in docs/statistics.md), validates
/// it and returns the full results as JSON. Errors name the offending field.
pub fn analyze_document(input: &str) -> Result<serde_json::Value, AnalyzeError> {
    let mut de = serde_json::Deserializer::from_str(input);
    let request: AnalysisRequest =
        serde_path_to_error::deserialize(&mut de).map_err(|e| AnalyzeError::Parse {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    de.end().map_err(|e| AnalyzeError::Parse {
        path: ".".to_owned(),
        message: e.to_string(),
    })?;
    request.validate()?;
    serde_json::to_value(analyze(&request)).map_err(|e| AnalyzeError::Encode(e.to_string()))
}
