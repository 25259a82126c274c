//! Multiple-testing corrections over a family of p-values (every metric x
//! variation comparison of one analysis), and the matching adjusted intervals.

use serde::{Deserialize, Serialize};

use crate::dist;
use crate::effect::{Alternative, Interval};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    #[default]
    None,
    /// Holm-Bonferroni step-down: controls the family-wise error rate.
    Holm,
    /// Benjamini-Hochberg step-up: controls the false discovery rate.
    BenjaminiHochberg,
}

fn order(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    idx
}

/// Holm adjusted p-values: `max_{j <= i} min(1, (m - j + 1) p_(j))` over the sorted
/// p-values (statsmodels `multipletests(method="holm")`).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order(p).iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Benjamini-Hochberg adjusted p-values: `min_{j >= i} min(1, m p_(j) / j)`
/// (statsmodels `multipletests(method="fdr_bh")`).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut out = vec![0.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order(p).iter().enumerate().rev() {
        running = running.min(m as f64 * p[i] / (rank + 1) as f64);
        out[i] = running;
    }
    out
}

pub fn adjust(p: &[f64], correction: Correction) -> Vec<f64> {
    match correction {
        Correction::None => p.to_vec(),
        Correction::Holm => holm(p),
        Correction::BenjaminiHochberg => benjamini_hochberg(p),
    }
}

/// Interval matching an adjusted p-value, in GrowthBook's convention: the standard
/// error is backed out of the adjusted p-value with a normal approximation,
/// `se = |estimate| / z(1 - p_adj/2)`, and the interval is `estimate +- z(1 - alpha/2) se`
/// (one-sided tests use `z(1 - p_adj)` and `z(1 - alpha)` and keep their open end).
/// It never narrows the unadjusted interval, and is unbounded when `p_adj` is 1.
pub fn adjusted_interval(
    estimate: f64,
    ci: Interval,
    p_adjusted: f64,
    alpha: f64,
    alternative: Alternative,
) -> Interval {
    let two_sided = alternative == Alternative::TwoSided;
    if p_adjusted > 0.999_999 {
        return match alternative {
            Alternative::TwoSided => Interval::UNBOUNDED,
            Alternative::Greater => Interval::new(f64::NEG_INFINITY, ci.upper),
            Alternative::Less => Interval::new(ci.lower, f64::INFINITY),
        };
    }
    if estimate == 0.0 {
        return ci;
    }
    let tail = |x: f64| if two_sided { x / 2.0 } else { x };
    let se = (estimate / dist::normal_quantile(1.0 - tail(p_adjusted))).abs();
    let width = dist::normal_quantile(1.0 - tail(alpha)) * se;
    let lower = if ci.lower.is_finite() {
        (estimate - width).min(ci.lower)
    } else {
        ci.lower
    };
    let upper = if ci.upper.is_finite() {
        (estimate + width).max(ci.upper)
    } else {
        ci.upper
    };
    if lower.is_nan() || upper.is_nan() {
        ci
    } else {
        Interval::new(lower, upper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_multiplies_the_smallest_p_value_by_the_family_size_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        assert!((adj[0] - 0.04).abs() < 1e-15);
        assert!((adj[2] - 0.09).abs() < 1e-15);
        assert!((adj[1] - 0.09).abs() < 1e-15);
        assert!((adj[3] - 0.5).abs() < 1e-15);
    }

    #[test]
    fn benjamini_hochberg_never_exceeds_one_and_never_decreases_a_p_value() {
        let p = [0.2, 0.9, 0.001, 0.04, 0.5];
        for (a, raw) in benjamini_hochberg(&p).iter().zip(p) {
            assert!(*a >= raw && *a <= 1.0);
        }
    }

    #[test]
    fn an_adjusted_p_value_of_one_gives_an_unbounded_interval() {
        let ci = Interval::new(-1.0, 2.0);
        let adj = adjusted_interval(0.5, ci, 1.0, 0.05, Alternative::TwoSided);
        assert_eq!(adj, Interval::UNBOUNDED);
    }
}
