//! Bayesian effect test: a Gaussian posterior of the effect from a Gaussian
//! likelihood (the same estimate and variance as the frequentist test) and a
//! flat or proper Gaussian prior, as gbstats' `EffectBayesianABTest`.

use serde::{Deserialize, Serialize};

use crate::dist;
use crate::effect::{
    Arm, Effect, ErrorCode, Interval, Risk, Scale, check_arms, estimate_variance, point_estimate,
    positive,
};

/// A proper Gaussian prior on the effect. No prior means a flat (improper) one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prior {
    #[serde(default)]
    pub mean: f64,
    pub variance: f64,
    /// Scale the prior is expressed on; rescaled by the baseline mean when the
    /// effect is on the other scale. Default: relative.
    #[serde(default = "relative")]
    pub scale: Scale,
}

fn relative() -> Scale {
    Scale::Relative
}

impl Prior {
    /// The prior expressed on `scale`, given the unadjusted baseline mean.
    fn on_scale(&self, scale: Scale, baseline_mean: f64) -> Prior {
        let m = baseline_mean;
        match (self.scale, scale) {
            (Scale::Absolute, Scale::Relative) => Prior {
                mean: self.mean / m.abs(),
                variance: self.variance / (m * m),
                scale,
            },
            (Scale::Relative, Scale::Absolute) => Prior {
                mean: self.mean * m.abs(),
                variance: self.variance * m * m,
                scale,
            },
            _ => *self,
        }
    }
}

/// Posterior of the effect of `b` over `a`. `inverse` marks metrics where lower
/// is better: chance to win then counts a negative effect as a win and the two
/// risks swap.
pub fn bayesian_test(
    a: &Arm,
    b: &Arm,
    scale: Scale,
    prior: Option<&Prior>,
    alpha: f64,
    inverse: bool,
) -> Effect {
    if let Some(code) = check_arms(a, b, scale) {
        return Effect::bayesian_default(code);
    }
    let data_mean = point_estimate(a, b, scale);
    let data_variance = estimate_variance(a, b, scale);
    let (mean, variance) = match prior.map(|p| p.on_scale(scale, a.unadjusted_mean)) {
        None => (data_mean, data_variance),
        Some(p) if !(positive(p.variance) && p.variance.is_finite()) => {
            return Effect::bayesian_default(ErrorCode::ZeroBaselineMean);
        }
        Some(p) => {
            let precision = 1.0 / data_variance + 1.0 / p.variance;
            (
                (data_mean / data_variance + p.mean / p.variance) / precision,
                1.0 / precision,
            )
        }
    };
    let sd = variance.sqrt();
    let z = dist::normal_quantile(1.0 - alpha / 2.0);
    let up = dist::normal_cdf(mean / sd);
    let risk = posterior_risk(mean, sd);
    let (chance_to_win, risk) = if inverse {
        (
            1.0 - up,
            Risk {
                baseline: risk.variation,
                variation: risk.baseline,
            },
        )
    } else {
        (up, risk)
    };
    Effect {
        estimate: mean,
        stddev: sd,
        ci: Interval::new(mean - z * sd, mean + z * sd),
        p_value: None,
        p_value_adjusted: None,
        ci_adjusted: None,
        chance_to_win: Some(chance_to_win),
        risk: Some(risk),
        error: None,
    }
    .checked()
}

/// Expected losses under a `N(mu, sd^2)` posterior of the effect:
/// keeping the baseline loses `E[max(X, 0)] = mu Phi(mu/sd) + sd phi(mu/sd)`,
/// shipping the variation loses `E[max(-X, 0)] = sd phi(mu/sd) - mu Phi(-mu/sd)`.
pub fn posterior_risk(mu: f64, sd: f64) -> Risk {
    let z = mu / sd;
    let density = sd * dist::normal_pdf(z);
    Risk {
        baseline: mu * dist::normal_cdf(z) + density,
        variation: density - mu * dist::normal_cdf(-z),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(n: u64, mean: f64, variance: f64) -> Arm {
        Arm {
            n,
            mean,
            unadjusted_mean: mean,
            variance,
        }
    }

    #[test]
    fn a_proper_prior_shrinks_the_effect_toward_its_mean() {
        let (a, b) = (arm(100, 1.0, 1.0), arm(100, 1.3, 1.0));
        let flat = bayesian_test(&a, &b, Scale::Relative, None, 0.05, false);
        let prior = Prior {
            mean: 0.0,
            variance: 0.01,
            scale: Scale::Relative,
        };
        let shrunk = bayesian_test(&a, &b, Scale::Relative, Some(&prior), 0.05, false);
        assert!(shrunk.estimate < flat.estimate && shrunk.estimate > 0.0);
        assert!(shrunk.stddev < flat.stddev);
    }

    #[test]
    fn an_inverse_metric_swaps_chance_to_win_and_risks() {
        let (a, b) = (arm(100, 1.0, 1.0), arm(100, 1.3, 1.0));
        let up = bayesian_test(&a, &b, Scale::Absolute, None, 0.05, false);
        let down = bayesian_test(&a, &b, Scale::Absolute, None, 0.05, true);
        let (u, d) = (
            up.chance_to_win.unwrap_or(0.0),
            down.chance_to_win.unwrap_or(0.0),
        );
        assert!((u + d - 1.0).abs() < 1e-12);
        assert_eq!(up.risk.map(|r| r.baseline), down.risk.map(|r| r.variation));
    }

    #[test]
    fn risks_differ_by_the_posterior_mean() {
        // E[max(X,0)] - E[max(-X,0)] = E[X]
        let r = posterior_risk(0.3, 0.7);
        assert!((r.baseline - r.variation - 0.3).abs() < 1e-12);
    }
}
