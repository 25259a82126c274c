//! Sample-ratio mismatch: Pearson's chi-square goodness of fit of the observed
//! unit counts against the configured traffic weights, for any number of arms.

use serde::{Deserialize, Serialize};

use crate::dist;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrmResult {
    /// Pearson's statistic `sum (observed - expected)^2 / expected`.
    pub chi_square: f64,
    /// Degrees of freedom: number of arms minus one.
    pub dof: u64,
    pub p_value: f64,
    /// Expected unit counts under the configured weights.
    pub expected: Vec<f64>,
    /// True when `p_value` is below the configured threshold.
    pub mismatch: bool,
}

/// Goodness of fit, following gbstats' `check_srm` (and `scipy.stats.chisquare`
/// when every weight is positive): arms with a non-positive weight are left out of
/// the sum, the degrees of freedom stay `arms - 1`, and no units at all gives p = 1.
pub fn check_srm(observed: &[u64], weights: &[f64], threshold: f64) -> SrmResult {
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    let total_weight: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    let expected: Vec<f64> = weights
        .iter()
        .map(|&w| {
            if w > 0.0 && total_weight > 0.0 {
                w / total_weight * total
            } else {
                0.0
            }
        })
        .collect();
    let chi_square: f64 = observed
        .iter()
        .zip(&expected)
        .filter(|(_, e)| **e > 0.0)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum();
    let dof = observed.len().saturating_sub(1) as u64;
    let p_value = if total == 0.0 || dof == 0 {
        1.0
    } else {
        dist::chi_square_sf(chi_square, dof as f64)
    };
    SrmResult {
        chi_square,
        dof,
        p_value,
        expected,
        mismatch: p_value < threshold,
    }
}

/// Concentration of the Dirichlet prior of [`sequential_srm`]: the prior
/// is centred on the configured split, `alpha_i = PRIOR_CONCENTRATION * p_i`.
/// Any prior keeps the test valid; this one is weak enough to detect a
/// split off by a few percent within thousands of units.
pub const PRIOR_CONCENTRATION: f64 = 100.0;

/// An always-valid (sequential) sample-ratio mismatch test, after Lindon
/// and Malek, "Anytime-valid inference for multinomial count data" (2022):
/// the Bayes factor of a Dirichlet-multinomial alternative against the
/// configured split `p` is a nonnegative martingale under the null, so by
/// Ville's inequality the chance that it ever exceeds `1 / alpha`, however
/// often it is looked at, is at most `alpha`. For a continuous monitor,
/// where a fixed-horizon p-value checked at every pass would raise false
/// alarms.
///
/// `ln BF = ln B(a + n) - ln B(a) - sum n_i ln p_i`, with
/// `ln B(x) = sum ln Gamma(x_i) - ln Gamma(sum x_i)` and `a = c p`. Arms
/// with a non-positive weight are left out; a unit in such an arm is a
/// mismatch by itself (it should not exist), as is a log Bayes factor that
/// is not finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialSrm {
    pub log_bayes_factor: f64,
    /// `ln(1 / alpha)`: the threshold the log Bayes factor is compared with.
    pub log_threshold: f64,
    pub mismatch: bool,
}

pub fn sequential_srm(observed: &[u64], weights: &[f64], alpha: f64) -> SequentialSrm {
    use statrs::function::gamma::ln_gamma;
    let log_threshold = (1.0 / alpha).ln();
    let total_weight: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    let mut impossible = false;
    let (mut sum_a, mut sum_an, mut log_b_post, mut log_b_prior, mut log_lik) =
        (0.0, 0.0, 0.0, 0.0, 0.0);
    for (&n, &w) in observed.iter().zip(weights) {
        if w <= 0.0 || total_weight <= 0.0 {
            impossible |= n > 0;
            continue;
        }
        let p = w / total_weight;
        let a = PRIOR_CONCENTRATION * p;
        let n = n as f64;
        sum_a += a;
        sum_an += a + n;
        log_b_post += ln_gamma(a + n);
        log_b_prior += ln_gamma(a);
        log_lik += n * p.ln();
    }
    if sum_a == 0.0 {
        return SequentialSrm {
            log_bayes_factor: 0.0,
            log_threshold,
            mismatch: impossible,
        };
    }
    let log_bayes_factor =
        (log_b_post - ln_gamma(sum_an)) - (log_b_prior - ln_gamma(sum_a)) - log_lik;
    SequentialSrm {
        log_bayes_factor,
        log_threshold,
        mismatch: impossible || !log_bayes_factor.is_finite() || log_bayes_factor > log_threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequential_bayes_factor_of_one_expected_unit_is_one() {
        // B(51, 50) / B(50, 50) / 0.5 = (50 / 100) / 0.5 = 1.
        let r = sequential_srm(&[1, 0], &[0.5, 0.5], 0.001);
        assert!(r.log_bayes_factor.abs() < 1e-9, "{r:?}");
        assert!(!r.mismatch);
        // Two units in one arm: B(52, 50) / B(50, 50) / 0.25 = (50*51)/(100*101) * 4.
        let r = sequential_srm(&[2, 0], &[0.5, 0.5], 0.001);
        let expected = (50.0 * 51.0 / (100.0 * 101.0) * 4.0_f64).ln();
        assert!((r.log_bayes_factor - expected).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn the_sequential_test_finds_a_real_mismatch_and_not_a_balanced_split() {
        assert!(sequential_srm(&[5_300, 4_700], &[1.0, 1.0], 0.001).mismatch);
        assert!(!sequential_srm(&[5_020, 4_980], &[1.0, 1.0], 0.001).mismatch);
        assert!(sequential_srm(&[3, 1, 0], &[1.0, 0.0, 1.0], 0.001).mismatch);
        assert!(!sequential_srm(&[0, 0], &[1.0, 1.0], 0.001).mismatch);
    }

    /// Looked at after every unit of 300 sequences of 2,000 units with the
    /// configured split, the test must raise at most about alpha of them.
    #[test]
    fn looking_after_every_unit_keeps_false_alarms_under_alpha() {
        let alpha = 0.05;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let runs = 300;
        let mut alarms = 0;
        for _ in 0..runs {
            let mut n = [0u64; 2];
            for _ in 0..2_000 {
                n[usize::from(next() % 10 < 3)] += 1; // a 70/30 split
                if sequential_srm(&n, &[0.7, 0.3], alpha).mismatch {
                    alarms += 1;
                    break;
                }
            }
        }
        // The bound is alpha (15 of 300); 27 would be beyond 3 standard errors.
        assert!(alarms <= 27, "{alarms} of {runs} sequences alarmed");
        // The same looks at a fixed-horizon p < alpha alarm far more often.
        let mut fixed = 0;
        for _ in 0..runs {
            let mut n = [0u64; 2];
            for i in 0..2_000 {
                n[usize::from(next() % 10 < 3)] += 1;
                if i >= 100 && check_srm(&n, &[0.7, 0.3], alpha).mismatch {
                    fixed += 1;
                    break;
                }
            }
        }
        assert!(fixed > alarms, "fixed {fixed} vs sequential {alarms}");
    }

    #[test]
    fn a_perfect_split_has_no_mismatch() {
        let r = check_srm(&[500, 500], &[0.5, 0.5], 0.001);
        assert_eq!(r.chi_square, 0.0);
        assert_eq!(r.p_value, 1.0);
        assert!(!r.mismatch);
    }

    #[test]
    fn a_lopsided_split_of_three_arms_is_flagged() {
        let r = check_srm(&[1000, 1000, 1200], &[1.0, 1.0, 1.0], 0.001);
        assert_eq!(r.dof, 2);
        assert!(r.mismatch);
    }

    #[test]
    fn no_units_at_all_is_not_a_mismatch() {
        assert_eq!(check_srm(&[0, 0], &[1.0, 1.0], 0.001).p_value, 1.0);
    }
}
