//! Sufficient statistics: immutable values that add across partitions (days,
//! shards, dimension slices) and give a mean and a variance per unit.
//!
//! Conventions follow gbstats: the sample variance of a mean metric uses `n - 1`,
//! a proportion uses the Bernoulli variance `p (1 - p)`, and every variance is
//! `0` (never NaN) when there are fewer than two units.

use std::ops::Add;

use serde::{Deserialize, Serialize};

/// Sum and sum of squares of a numeric per-unit value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStatistic {
    /// Number of units.
    pub n: u64,
    /// Sum of the per-unit values.
    pub sum: f64,
    /// Sum of the squared per-unit values.
    pub sum_squares: f64,
}

/// Count of units with a binary outcome and how many of them converted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProportionStatistic {
    /// Number of units.
    pub n: u64,
    /// Number of units whose outcome is 1.
    pub successes: f64,
}

/// One side of a ratio or regression-adjusted metric. Its unit count is the
/// count of the enclosing statistic, so it carries none of its own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Component {
    /// A numeric value: sum and sum of squares.
    Mean { sum: f64, sum_squares: f64 },
    /// A binary value: number of ones (its square is itself).
    Proportion { successes: f64 },
}

/// Ratio metric (e.g. revenue per session): per-unit numerator and denominator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioStatistic {
    /// Number of units (the randomisation units, not the denominator events).
    pub n: u64,
    pub numerator: Component,
    pub denominator: Component,
    /// Sum over units of numerator x denominator.
    pub sum_products: f64,
}

/// Metric with a pre-exposure covariate for CUPED.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionStatistic {
    /// Number of units.
    pub n: u64,
    /// The metric measured after exposure.
    pub post: Component,
    /// The same metric measured before exposure (the covariate).
    pub pre: Component,
    /// Sum over units of post x pre.
    pub sum_products: f64,
}

/// The per-variation data of one metric, tagged by `type` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetricStatistic {
    Mean(MeanStatistic),
    Proportion(ProportionStatistic),
    Ratio(RatioStatistic),
    #[serde(alias = "cuped")]
    RegressionAdjusted(RegressionStatistic),
}

fn mean_of(sum: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn sample_variance(sum: f64, sum_squares: f64, n: u64) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let n = n as f64;
    (sum_squares - sum * sum / n) / (n - 1.0)
}

fn sample_covariance(sum_products: f64, sum_x: f64, sum_y: f64, n: u64) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let n = n as f64;
    (sum_products - sum_x * sum_y / n) / (n - 1.0)
}

impl MeanStatistic {
    pub fn mean(&self) -> f64 {
        mean_of(self.sum, self.n)
    }
    pub fn variance(&self) -> f64 {
        sample_variance(self.sum, self.sum_squares, self.n)
    }
}

impl ProportionStatistic {
    pub fn mean(&self) -> f64 {
        mean_of(self.successes, self.n)
    }
    pub fn variance(&self) -> f64 {
        let p = self.mean();
        p * (1.0 - p)
    }
}

impl Component {
    pub fn sum(&self) -> f64 {
        match *self {
            Component::Mean { sum, .. } => sum,
            Component::Proportion { successes } => successes,
        }
    }
    pub fn mean(&self, n: u64) -> f64 {
        mean_of(self.sum(), n)
    }
    pub fn variance(&self, n: u64) -> f64 {
        match *self {
            Component::Mean { sum, sum_squares } => sample_variance(sum, sum_squares, n),
            Component::Proportion { successes } => ProportionStatistic { n, successes }.variance(),
        }
    }
    fn values(&self) -> impl Iterator<Item = f64> {
        let (a, b) = match *self {
            Component::Mean { sum, sum_squares } => (sum, sum_squares),
            Component::Proportion { successes } => (successes, 0.0),
        };
        [a, b].into_iter()
    }
}

impl RatioStatistic {
    /// Sum of the numerator over sum of the denominator (0 when the denominator is 0).
    pub fn mean(&self) -> f64 {
        let d = self.denominator.sum();
        if d == 0.0 {
            0.0
        } else {
            self.numerator.sum() / d
        }
    }
    pub fn covariance(&self) -> f64 {
        sample_covariance(
            self.sum_products,
            self.numerator.sum(),
            self.denominator.sum(),
            self.n,
        )
    }
    /// Per-unit variance of the ratio by the delta method:
    /// `var_m / mu_d^2 - 2 cov mu_m / mu_d^3 + mu_m^2 var_d / mu_d^4`.
    pub fn variance(&self) -> f64 {
        let mu_d = self.denominator.mean(self.n);
        if mu_d == 0.0 || self.n <= 1 {
            return 0.0;
        }
        let mu_m = self.numerator.mean(self.n);
        self.numerator.variance(self.n) / mu_d.powi(2)
            - 2.0 * self.covariance() * mu_m / mu_d.powi(3)
            + mu_m.powi(2) * self.denominator.variance(self.n) / mu_d.powi(4)
    }
}

impl RegressionStatistic {
    pub fn covariance(&self) -> f64 {
        sample_covariance(self.sum_products, self.post.sum(), self.pre.sum(), self.n)
    }
    /// CUPED-adjusted mean `mean(post) - theta mean(pre)`.
    pub fn adjusted_mean(&self, theta: f64) -> f64 {
        self.post.mean(self.n) - theta * self.pre.mean(self.n)
    }
    /// Per-unit variance of `post - theta pre`.
    pub fn adjusted_variance(&self, theta: f64) -> f64 {
        if self.n <= 1 {
            return 0.0;
        }
        self.post.variance(self.n) + theta * theta * self.pre.variance(self.n)
            - 2.0 * theta * self.covariance()
    }
}

impl MetricStatistic {
    pub fn n(&self) -> u64 {
        match self {
            MetricStatistic::Mean(s) => s.n,
            MetricStatistic::Proportion(s) => s.n,
            MetricStatistic::Ratio(s) => s.n,
            MetricStatistic::RegressionAdjusted(s) => s.n,
        }
    }

    /// Mean per unit before any regression adjustment.
    pub fn unadjusted_mean(&self) -> f64 {
        match self {
            MetricStatistic::Mean(s) => s.mean(),
            MetricStatistic::Proportion(s) => s.mean(),
            MetricStatistic::Ratio(s) => s.mean(),
            MetricStatistic::RegressionAdjusted(s) => s.post.mean(s.n),
        }
    }

    /// Per-unit variance before any regression adjustment.
    pub fn unadjusted_variance(&self) -> f64 {
        match self {
            MetricStatistic::Mean(s) => s.variance(),
            MetricStatistic::Proportion(s) => s.variance(),
            MetricStatistic::Ratio(s) => s.variance(),
            MetricStatistic::RegressionAdjusted(s) => s.post.variance(s.n),
        }
    }

    /// Every number the statistic holds, to reject infinities up front.
    pub(crate) fn values(&self) -> Vec<f64> {
        match self {
            MetricStatistic::Mean(s) => vec![s.sum, s.sum_squares],
            MetricStatistic::Proportion(s) => vec![s.successes],
            MetricStatistic::Ratio(s) => s
                .numerator
                .values()
                .chain(s.denominator.values())
                .chain([s.sum_products])
                .collect(),
            MetricStatistic::RegressionAdjusted(s) => s
                .post
                .values()
                .chain(s.pre.values())
                .chain([s.sum_products])
                .collect(),
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            MetricStatistic::Mean(_) => "mean",
            MetricStatistic::Proportion(_) => "proportion",
            MetricStatistic::Ratio(_) => "ratio",
            MetricStatistic::RegressionAdjusted(_) => "regression_adjusted",
        }
    }
}

/// Pooled CUPED coefficient `theta = cov(post, pre) / var(pre)` over the union of
/// two arms, as gbstats' `compute_theta` does. Returns 0 (no adjustment) when the
/// pooled pre or post variance is not positive.
pub fn pooled_theta(a: &RegressionStatistic, b: &RegressionStatistic) -> f64 {
    let joint = *a + *b;
    if joint.pre.variance(joint.n) <= 0.0 || joint.post.variance(joint.n) <= 0.0 {
        return 0.0;
    }
    joint.covariance() / joint.pre.variance(joint.n)
}

impl Add for MeanStatistic {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            n: self.n + o.n,
            sum: self.sum + o.sum,
            sum_squares: self.sum_squares + o.sum_squares,
        }
    }
}

impl Add for ProportionStatistic {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            n: self.n + o.n,
            successes: self.successes + o.successes,
        }
    }
}

/// Adding components of different kinds keeps the numeric (mean) form, which
/// is exact: a binary value's sum of squares equals its sum.
impl Add for Component {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        match (self, o) {
            (Component::Proportion { successes: a }, Component::Proportion { successes: b }) => {
                Component::Proportion { successes: a + b }
            }
            (a, b) => Component::Mean {
                sum: a.sum() + b.sum(),
                sum_squares: a.sum_squares() + b.sum_squares(),
            },
        }
    }
}

impl Component {
    fn sum_squares(&self) -> f64 {
        match *self {
            Component::Mean { sum_squares, .. } => sum_squares,
            Component::Proportion { successes } => successes,
        }
    }
}

impl Add for RatioStatistic {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            n: self.n + o.n,
            numerator: self.numerator + o.numerator,
            denominator: self.denominator + o.denominator,
            sum_products: self.sum_products + o.sum_products,
        }
    }
}

impl Add for RegressionStatistic {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            n: self.n + o.n,
            post: self.post + o.post,
            pre: self.pre + o.pre,
            sum_products: self.sum_products + o.sum_products,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_values(xs: &[f64]) -> MeanStatistic {
        MeanStatistic {
            n: xs.len() as u64,
            sum: xs.iter().sum(),
            sum_squares: xs.iter().map(|x| x * x).sum(),
        }
    }

    #[test]
    fn mean_statistics_of_two_partitions_add_up_to_the_statistic_of_the_union() {
        let a = from_values(&[1.0, 2.0, 3.0]);
        let b = from_values(&[4.0, 10.0]);
        let all = from_values(&[1.0, 2.0, 3.0, 4.0, 10.0]);
        let sum = a + b;
        assert_eq!(sum.n, all.n);
        assert!((sum.variance() - all.variance()).abs() < 1e-12);
        assert!((sum.mean() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn variance_of_fewer_than_two_units_is_zero_not_nan() {
        assert_eq!(from_values(&[]).variance(), 0.0);
        assert_eq!(from_values(&[5.0]).variance(), 0.0);
        assert_eq!(from_values(&[]).mean(), 0.0);
    }

    #[test]
    fn ratio_with_zero_denominator_has_zero_mean_and_variance() {
        let r = RatioStatistic {
            n: 10,
            numerator: Component::Mean {
                sum: 5.0,
                sum_squares: 9.0,
            },
            denominator: Component::Mean {
                sum: 0.0,
                sum_squares: 0.0,
            },
            sum_products: 0.0,
        };
        assert_eq!(r.mean(), 0.0);
        assert_eq!(r.variance(), 0.0);
    }

    #[test]
    fn theta_of_a_covariate_equal_to_the_metric_is_one() {
        let c = Component::Mean {
            sum: 10.0,
            sum_squares: 30.0,
        };
        let s = RegressionStatistic {
            n: 5,
            post: c,
            pre: c,
            sum_products: 30.0,
        };
        assert!((pooled_theta(&s, &s) - 1.0).abs() < 1e-12);
        assert!(s.adjusted_variance(1.0).abs() < 1e-12);
    }
}
