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

#[cfg(test)]
mod tests {
    use super::*;

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
