//! Thin wrappers over `statrs` for the few distribution functions the tests need.
//!
//! Every function here is total: arguments outside the domain give a finite,
//! conservative answer rather than a panic, because callers have already
//! rejected degenerate inputs and we never want a NaN to leak into a result.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};
use statrs::function::beta::beta_reg;

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
        if !(density > 0.0) {
            break;
        }
        x -= err / density;
    }
    x
}

/// P(T > t) for a Student t with `dof` degrees of freedom (upper tail).
pub fn t_sf(t: f64, dof: f64) -> f64 {
    if !dof.is_finite() {
        return normal_cdf(-t);
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
    for _ in 0..8 {
        let density = statrs::distribution::Continuous::pdf(&dist, x);
        if !(density > 0.0) || !x.is_finite() {
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
        if step.abs() <= 1e-14 * x.abs().max(1.0) {
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
    fn t_quantile_inverts_the_cdf_for_fractional_degrees_of_freedom() {
        for dof in [1.5, 3.0, 17.3, 250.7, 1e6] {
            for p in [0.001, 0.05, 0.5, 0.95, 0.975, 0.999] {
                let x = t_quantile(p, dof);
                assert!((t_cdf(x, dof) - p).abs() < 1e-12, "dof {dof} p {p}");
            }
        }
    }

    #[test]
    fn two_sided_t_tail_is_twice_one_tail() {
        let (t, dof) = (2.1, 40.0);
        assert!((t_two_sided(t, dof) - 2.0 * t_sf(t, dof)).abs() < 1e-14);
        assert!((t_two_sided(-t, dof) - 2.0 * t_sf(t, dof)).abs() < 1e-14);
    }
}
