//! Seeded simulations of the error rates the tests promise. A/A experiments are
//! simulated from sufficient statistics (a batch's sum and within-batch sum of
//! squares are drawn directly), so thousands of experiments run in well under a
//! second even in a debug build.

use switchyard_stats::analysis::arms_for;
use switchyard_stats::frequentist::{sequential_test, t_test};
use switchyard_stats::{
    Alternative, Component, MeanStatistic, MetricStatistic, RegressionStatistic, Scale,
};

/// xoshiro256** seeded through splitmix64: small, fast and good enough here.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang, shape >= 1.
    fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Sufficient statistic of `n` i.i.d. N(mu, sd^2) values without drawing them:
    /// the sum is normal and the sum of squares about the mean is sd^2 chi2(n-1).
    fn normal_batch(&mut self, n: u64, mu: f64, sd: f64) -> MeanStatistic {
        let nf = n as f64;
        let sum = nf * mu + nf.sqrt() * sd * self.normal();
        let within = sd * sd * 2.0 * self.gamma((nf - 1.0) / 2.0);
        MeanStatistic {
            n,
            sum,
            sum_squares: within + sum * sum / nf,
        }
    }
}

fn p_value(a: &MeanStatistic, b: &MeanStatistic, sequential: bool) -> f64 {
    let (arm_a, arm_b, _) =
        arms_for(&MetricStatistic::Mean(*a), &MetricStatistic::Mean(*b)).unwrap();
    let effect = if sequential {
        sequential_test(&arm_a, &arm_b, Scale::Absolute, 0.05, 5000.0)
    } else {
        t_test(&arm_a, &arm_b, Scale::Absolute, Alternative::TwoSided, 0.05)
    };
    assert!(effect.error.is_none());
    effect.p_value.unwrap()
}

const EXPERIMENTS: usize = 2000;
const PEEKS: usize = 20;
const BATCH: u64 = 100;

#[test]
fn fixed_horizon_false_positive_rate_of_aa_experiments_is_close_to_alpha() {
    let mut rng = Rng::new(7);
    let rejections = (0..EXPERIMENTS)
        .filter(|_| {
            let a = rng.normal_batch(500, 10.0, 3.0);
            let b = rng.normal_batch(500, 10.0, 3.0);
            p_value(&a, &b, false) < 0.05
        })
        .count();
    let rate = rejections as f64 / EXPERIMENTS as f64;
    eprintln!("fixed-horizon A/A false-positive rate: {rate:.4}");
    assert!((0.035..=0.065).contains(&rate), "rate {rate}");
}

/// Runs A/A experiments looked at after each of `PEEKS` batches and counts those
/// declared significant at any look.
fn peeking_false_positive_rate(sequential: bool, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut rejected = 0;
    for _ in 0..EXPERIMENTS {
        let mut a = MeanStatistic {
            n: 0,
            sum: 0.0,
            sum_squares: 0.0,
        };
        let mut b = a;
        let mut significant = false;
        for _ in 0..PEEKS {
            a = a + rng.normal_batch(BATCH, 1.0, 2.0);
            b = b + rng.normal_batch(BATCH, 1.0, 2.0);
            significant |= p_value(&a, &b, sequential) < 0.05;
        }
        rejected += usize::from(significant);
    }
    rejected as f64 / EXPERIMENTS as f64
}

#[test]
fn the_sequential_test_keeps_its_error_rate_under_continuous_peeking_and_the_fixed_test_does_not() {
    let sequential = peeking_false_positive_rate(true, 11);
    let fixed = peeking_false_positive_rate(false, 11);
    eprintln!("A/A with {PEEKS} peeks: sequential {sequential:.4}, fixed-horizon {fixed:.4}");
    assert!(sequential < 0.055, "sequential rate {sequential}");
    assert!(fixed > 0.055, "fixed-horizon rate {fixed}");
}

#[test]
fn cuped_on_correlated_data_narrows_the_confidence_interval() {
    let mut rng = Rng::new(3);
    let rho: f64 = 0.7;
    let mut ratios = Vec::new();
    for _ in 0..100 {
        let mut arm = |lift: f64| {
            let n = 400;
            let (mut post_sum, mut post_sq, mut pre_sum, mut pre_sq, mut prod) =
                (0.0, 0.0, 0.0, 0.0, 0.0);
            for _ in 0..n {
                let pre = 5.0 + rng.normal();
                let post = 5.0 + lift + rho * (pre - 5.0) + (1.0 - rho * rho).sqrt() * rng.normal();
                post_sum += post;
                post_sq += post * post;
                pre_sum += pre;
                pre_sq += pre * pre;
                prod += post * pre;
            }
            RegressionStatistic {
                n,
                post: Component::Mean {
                    sum: post_sum,
                    sum_squares: post_sq,
                },
                pre: Component::Mean {
                    sum: pre_sum,
                    sum_squares: pre_sq,
                },
                sum_products: prod,
            }
        };
        let (a, b) = (arm(0.0), arm(0.1));
        let width = |x: MetricStatistic, y: MetricStatistic| {
            let (arm_a, arm_b, _) = arms_for(&x, &y).unwrap();
            let e = t_test(&arm_a, &arm_b, Scale::Absolute, Alternative::TwoSided, 0.05);
            e.ci.upper - e.ci.lower
        };
        let adjusted = width(
            MetricStatistic::RegressionAdjusted(a),
            MetricStatistic::RegressionAdjusted(b),
        );
        let plain = |s: RegressionStatistic| {
            let Component::Mean { sum, sum_squares } = s.post else {
                unreachable!()
            };
            MetricStatistic::Mean(MeanStatistic {
                n: s.n,
                sum,
                sum_squares,
            })
        };
        let unadjusted = width(plain(a), plain(b));
        ratios.push(adjusted / unadjusted);
    }
    let mean_ratio = ratios.iter().sum::<f64>() / ratios.len() as f64;
    eprintln!(
        "CUPED interval width / unadjusted width: {mean_ratio:.3} (theory {:.3})",
        (1.0 - rho * rho).sqrt()
    );
    assert!(ratios.iter().all(|r| *r < 1.0));
    assert!((mean_ratio - (1.0 - rho * rho).sqrt()).abs() < 0.03);
}
