//! Fixed-horizon Welch t-tests and the always-valid sequential test.
//!
//! Both follow gbstats 0.8 (`TwoSidedTTest`, `OneSidedTreatment{Greater,Lesser}TTest`,
//! `SequentialTwoSidedTTest`) formula for formula, so they agree with it on the
//! same sufficient statistics.

use crate::dist;
use crate::effect::{
    Alternative, Arm, Effect, Interval, Scale, check_arms, estimate_variance, point_estimate,
};

/// Welch-Satterthwaite degrees of freedom of the per-unit variances.
pub fn welch_dof(a: &Arm, b: &Arm) -> f64 {
    let (na, nb) = (a.n as f64, b.n as f64);
    let (va, vb) = (a.variance / na, b.variance / nb);
    (va + vb).powi(2) / (vb * vb / (nb - 1.0) + va * va / (na - 1.0))
}

/// Welch t-test of `b` against `a` on the chosen scale. The relative scale uses the
/// delta-method variance with Welch's degrees of freedom, as gbstats does.
pub fn t_test(a: &Arm, b: &Arm, scale: Scale, alternative: Alternative, alpha: f64) -> Effect {
    if let Some(code) = check_arms(a, b, scale) {
        return Effect::frequentist_default(code);
    }
    let estimate = point_estimate(a, b, scale);
    let stddev = estimate_variance(a, b, scale).sqrt();
    let dof = welch_dof(a, b);
    let t = estimate / stddev;
    let (p_value, ci) = match alternative {
        Alternative::TwoSided => {
            let width = dist::t_quantile(1.0 - alpha / 2.0, dof) * stddev;
            (
                dist::t_two_sided(t, dof),
                Interval::new(estimate - width, estimate + width),
            )
        }
        Alternative::Greater => {
            let width = dist::t_quantile(1.0 - alpha, dof) * stddev;
            (
                dist::t_sf(t, dof),
                Interval::new(estimate - width, f64::INFINITY),
            )
        }
        Alternative::Less => {
            let width = dist::t_quantile(1.0 - alpha, dof) * stddev;
            (
                dist::t_cdf(t, dof),
                Interval::new(f64::NEG_INFINITY, estimate + width),
            )
        }
    };
    Effect {
        estimate,
        stddev,
        ci,
        p_value: Some(p_value),
        p_value_adjusted: None,
        ci_adjusted: None,
        chance_to_win: None,
        risk: None,
        error: None,
    }
    .checked()
}

/// Mixing parameter `rho` of the normal-mixture boundary that makes the
/// confidence sequence tightest at `tuning` (N*) total units (Howard et al. 2021,
/// eq. 161 of Waudby-Smith et al. arXiv:2103.06476v7).
pub fn mixture_rho(alpha: f64, tuning: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / tuning).sqrt()
}

/// Two-sided always-valid test: an asymptotic confidence sequence and its
/// p-value (the inverse of the mixture e-value, capped at 1). Valid at every
/// look, so the data may be peeked at continuously.
pub fn sequential_test(a: &Arm, b: &Arm, scale: Scale, alpha: f64, tuning: f64) -> Effect {
    if let Some(code) = check_arms(a, b, scale) {
        return Effect::frequentist_default(code);
    }
    let estimate = point_estimate(a, b, scale);
    let variance = estimate_variance(a, b, scale);
    let total = (a.n + b.n) as f64;
    let rho = mixture_rho(alpha, tuning);
    let rho2 = rho * rho;
    // Per-unit scale of the estimator, so that the width shrinks like sqrt(log N / N).
    let s2 = variance * total;
    let nr2p1 = total * rho2 + 1.0;
    let width =
        s2.sqrt() * (2.0 * nr2p1 * (nr2p1.sqrt() / alpha).ln() / (total * rho).powi(2)).sqrt();
    let st2 = estimate * estimate * total / variance;
    // p = 1 / e-value, computed in logs to avoid overflow of the exponential.
    let log_evalue = rho2 * st2 / (2.0 * nr2p1) - 0.5 * nr2p1.ln();
    let p_value = (-log_evalue).exp().min(1.0);
    Effect {
        estimate,
        stddev: variance.sqrt(),
        ci: Interval::new(estimate - width, estimate + width),
        p_value: Some(p_value),
        p_value_adjusted: None,
        ci_adjusted: None,
        chance_to_win: None,
        risk: None,
        error: None,
    }
    .checked()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effect::ErrorCode;

    fn arm(n: u64, mean: f64, variance: f64) -> Arm {
        Arm {
            n,
            mean,
            unadjusted_mean: mean,
            variance,
        }
    }

    #[test]
    fn identical_arms_give_a_p_value_of_one_and_a_symmetric_interval() {
        let a = arm(100, 2.0, 1.0);
        let r = t_test(&a, &a, Scale::Absolute, Alternative::TwoSided, 0.05);
        assert_eq!(r.estimate, 0.0);
        assert!((r.p_value.unwrap_or(0.0) - 1.0).abs() < 1e-12);
        assert!((r.ci.lower + r.ci.upper).abs() < 1e-12);
    }

    #[test]
    fn zero_variance_returns_the_error_code_and_default_numbers() {
        let a = arm(100, 2.0, 0.0);
        let r = t_test(
            &a,
            &arm(100, 3.0, 1.0),
            Scale::Absolute,
            Alternative::TwoSided,
            0.05,
        );
        assert_eq!(r.error, Some(ErrorCode::ZeroVariance));
        assert_eq!(r.p_value, Some(1.0));
        assert_eq!(r.ci, Interval::ZERO);
    }

    #[test]
    fn a_zero_baseline_mean_only_blocks_the_relative_effect() {
        let (a, b) = (arm(50, 0.0, 1.0), arm(50, 0.5, 1.0));
        let rel = t_test(&a, &b, Scale::Relative, Alternative::TwoSided, 0.05);
        let abs = t_test(&a, &b, Scale::Absolute, Alternative::TwoSided, 0.05);
        assert_eq!(rel.error, Some(ErrorCode::ZeroBaselineMean));
        assert_eq!(abs.error, None);
    }

    #[test]
    fn the_confidence_sequence_is_wider_than_the_fixed_horizon_interval() {
        let (a, b) = (arm(1000, 1.0, 1.0), arm(1000, 1.1, 1.0));
        let fixed = t_test(&a, &b, Scale::Absolute, Alternative::TwoSided, 0.05);
        let seq = sequential_test(&a, &b, Scale::Absolute, 0.05, 5000.0);
        assert!(seq.ci.upper - seq.ci.lower > fixed.ci.upper - fixed.ci.lower);
        assert!(seq.p_value > fixed.p_value);
    }

    #[test]
    fn an_overwhelming_sequential_effect_gives_a_p_value_near_zero_and_never_nan() {
        let (a, b) = (arm(1_000_000, 1.0, 1.0), arm(1_000_000, 2.0, 1.0));
        let p = sequential_test(&a, &b, Scale::Absolute, 0.05, 5000.0)
            .p_value
            .unwrap_or(1.0);
        assert!((0.0..1e-100).contains(&p));
    }
}
