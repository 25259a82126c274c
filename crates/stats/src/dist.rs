//! Thin wrappers over `statrs` for the few distribution functions the tests need.
//!
//! Every function here is total: arguments outside the domain give a finite,
//! conservative answer rather than a panic, because callers have already
//! rejected degenerate inputs and we never want a NaN to leak into a result.

use crate::effect::positive;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};
use statrs::function::beta::beta_reg;
use statrs::function::gamma::ln_gamma;

/// Standard normal density.
pub fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal CDF, accurate in both tails (computed through `erfc`).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal quantile. `p` must lie in (0, 1); the ends map to infinities.
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let Ok(dist) = Normal::new(0.0, 1.0) else {
        return f64::NAN;
    };
    // One Newton step on the tail nearer to p removes statrs' ~1e-12 error.
    let mut x = dist.inverse_cdf(p);
    for _ in 0..2 {
        let err = if p > 0.5 {
            (1.0 - p) - normal_cdf(-x)
        } else {
            normal_cdf(x) - p
        };
        let density = normal_pdf(x);
        if !positive(density) {
            break;
        }
        x -= err / density;
    }
    x
}

/// Above this many degrees of freedom the regularised incomplete beta of statrs
/// loses precision (1e-9 relative at 1e6, 1e-6 at 1e9), so the t tail comes from Fisher's
/// expansion around the normal instead (relative error ~ (t^4/dof)^3).
const LARGE_DOF: f64 = 1e5;

/// `P(T > t)` for large `dof`: `Q(t) + phi(t) (g1/dof + g2/dof^2)` with
/// `g1 = (t^3 + t)/4`, `g2 = (3t^7 - 7t^5 - 5t^3 - 3t)/96`.
fn t_sf_large_dof(t: f64, dof: f64) -> f64 {
    let t2 = t * t;
    let g1 = t * (t2 + 1.0) / 4.0;
    let g2 = t * (((3.0 * t2 - 7.0) * t2 - 5.0) * t2 - 3.0) / 96.0;
    normal_cdf(-t) + normal_pdf(t) * (g1 + g2 / dof) / dof
}

/// P(T > t) for a Student t with `dof` degrees of freedom (upper tail).
pub fn t_sf(t: f64, dof: f64) -> f64 {
    if !dof.is_finite() {
        return normal_cdf(-t);
    }
    if dof > LARGE_DOF {
        return t_sf_large_dof(t, dof);
    }
    // P(|T| > |t|) = I_{dof/(dof+t^2)}(dof/2, 1/2); half of it is one tail.
    let half_tail = 0.5 * beta_reg(dof / 2.0, 0.5, dof / (dof + t * t));
    if t >= 0.0 { half_tail } else { 1.0 - half_tail }
}

/// P(T < t) for a Student t with `dof` degrees of freedom.
pub fn t_cdf(t: f64, dof: f64) -> f64 {
    t_sf(-t, dof)
}

/// Two-sided tail probability P(|T| > |t|), computed without cancellation.
pub fn t_two_sided(t: f64, dof: f64) -> f64 {
    if !dof.is_finite() {
        return 2.0 * normal_cdf(-t.abs());
    }
    if dof > LARGE_DOF {
        return (2.0 * t_sf_large_dof(t.abs(), dof)).min(1.0);
    }
    beta_reg(dof / 2.0, 0.5, dof / (dof + t * t)).min(1.0)
}

/// Quantile of the Student t distribution. Starts from the Cornish-Fisher
/// expansion around the normal quantile (Abramowitz and Stegun 26.7.5) for
/// moderate and large degrees of freedom, or from statrs' inverse for small ones,
/// then polishes with Newton steps on the tail CDF so it agrees with scipy to ~1e-12.
pub fn t_quantile(p: f64, dof: f64) -> f64 {
    if !dof.is_finite() {
        return normal_quantile(p);
    }
    let Ok(dist) = StudentsT::new(0.0, 1.0, dof) else {
        return f64::NAN;
    };
    let mut x = if dof >= 4.0 {
        let z = normal_quantile(p);
        let z2 = z * z;
        let g1 = z * (z2 + 1.0) / 4.0;
        let g2 = z * ((5.0 * z2 + 16.0) * z2 + 3.0) / 96.0;
        let g3 = z * (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) / 384.0;
        let g4 = z * ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) / 92160.0;
        z + (g1 + (g2 + (g3 + g4 / dof) / dof) / dof) / dof
    } else {
        dist.inverse_cdf(p)
    };
    // log of the density's normalising constant, computed once for the Newton loop.
    let log_norm =
        ln_gamma((dof + 1.0) / 2.0) - ln_gamma(dof / 2.0) - 0.5 * (dof * std::f64::consts::PI).ln();
    for _ in 0..6 {
        let density = (log_norm - (dof + 1.0) / 2.0 * (x * x / dof).ln_1p()).exp();
        if !positive(density) || !x.is_finite() {
            break;
        }
        // Work in the tail nearer to p, where the CDF has full relative precision.
        let err = if p > 0.5 {
            (1.0 - p) - t_sf(x, dof)
        } else {
            t_cdf(x, dof) - p
        };
        let step = err / density;
        x -= step;
        if step.abs() <= 1e-12 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// Upper tail of the chi-square distribution with `dof` degrees of freedom.
pub fn chi_square_sf(x: f64, dof: f64) -> f64 {
    match ChiSquared::new(dof) {
        Ok(c) => c.sf(x),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_inverts_the_cdf() {
        for p in [1e-6, 0.025, 0.3, 0.5, 0.975, 1.0 - 1e-9] {
            assert!((normal_cdf(normal_quantile(p)) - p).abs() < 1e-12);
        }
    }

    #[test]
    fn t_quantile_matches_scipy_for_fractional_degrees_of_freedom() {
        // scipy.stats.t.ppf(p, dof) for p in 0.001, 0.05, 0.975, 0.999
        let expected: [(f64, [f64; 4]); 6] = [
            (
                1.5,
                [
                    -52.18443000899265,
                    -3.7051808200967518,
                    6.016663104427929,
                    52.18443000899263,
                ],
            ),
            (
                3.0,
                [
                    -10.214531852407385,
                    -2.353363434801824,
                    3.1824463052837078,
                    10.214531852407383,
                ],
            ),
            (
                17.3,
                [
                    -3.6346924942406162,
                    -1.7378728385820263,
                    2.1070320037534676,
                    3.634692494240616,
                ],
            ),
            (
                250.7,
                [
                    -3.123057425922016,
                    -1.6509543440059014,
                    1.9694716449615097,
                    3.123057425922016,
                ],
            ),
            (
                1e6,
                [
                    -3.09024045631652,
                    -1.6448551507220406,
                    1.959966356814107,
                    3.09024045631652,
                ],
            ),
            (
                1e9,
                [
                    -3.0902323143179427,
                    -1.644853628475242,
                    1.959963986912325,
                    3.0902323143179427,
                ],
            ),
        ];
        for (dof, quantiles) in expected {
            for (p, q) in [0.001, 0.05, 0.975, 0.999].into_iter().zip(quantiles) {
                let x = t_quantile(p, dof);
                assert!(
                    (x - q).abs() <= 1e-10 * q.abs(),
                    "dof {dof} p {p}: {x} vs {q}"
                );
            }
        }
    }

    #[test]
    fn t_tails_match_scipy_for_huge_degrees_of_freedom() {
        // scipy.stats.t.sf(x, dof)
        for (x, dof, sf) in [
            (4.0, 1e7, 3.1671469345084426e-05),
            (4.0, 1e9, 3.1671244108233914e-05),
            (2.0, 5e6, 0.022750158943665028),
        ] {
            let got = t_sf(x, dof);
            assert!(
                (got - sf).abs() <= 1e-9 * sf,
                "x {x} dof {dof}: {got} vs {sf}"
            );
        }
    }

    #[test]
    fn two_sided_t_tail_is_twice_one_tail() {
        let (t, dof) = (2.1, 40.0);
        assert!((t_two_sided(t, dof) - 2.0 * t_sf(t, dof)).abs() < 1e-14);
        assert!((t_two_sided(-t, dof) - 2.0 * t_sf(t, dof)).abs() < 1e-14);
    }
}
