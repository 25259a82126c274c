//! [`Moments`]: what the aggregator keeps per variation and metric, the
//! raw sums every statistic of `switchyard-stats` is made from.

use serde::Serialize;
use switchyard_stats::{
    Component, MeanStatistic, MetricStatistic, ProportionStatistic, RatioStatistic,
    RegressionStatistic,
};

/// Sums over units of a per-unit pair `(x, y)`: `x` is the metric (capped),
/// `y` its CUPED covariate or, for ratio metrics, the denominator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Moments {
    pub n: u64,
    pub sum_x: f64,
    pub sum_xx: f64,
    pub sum_y: f64,
    pub sum_yy: f64,
    pub sum_xy: f64,
}

impl Moments {
    /// A unit joins with value `(x, y)`.
    pub fn add(&mut self, (x, y): (f64, f64)) {
        self.n += 1;
        self.shift((0.0, 0.0), (x, y));
    }

    /// A unit leaves with value `(x, y)`.
    pub fn remove(&mut self, (x, y): (f64, f64)) {
        self.n = self.n.saturating_sub(1);
        self.shift((x, y), (0.0, 0.0));
    }

    /// A unit's value changes from `old` to `new`: its old contribution is
    /// replaced by the new one.
    pub fn shift(&mut self, old: (f64, f64), new: (f64, f64)) {
        let ((x0, y0), (x1, y1)) = (old, new);
        self.sum_x += x1 - x0;
        self.sum_xx += x1 * x1 - x0 * x0;
        self.sum_y += y1 - y0;
        self.sum_yy += y1 * y1 - y0 * y0;
        self.sum_xy += x1 * y1 - x0 * y0;
    }

    pub fn merge(&mut self, o: &Moments) {
        self.n += o.n;
        self.sum_x += o.sum_x;
        self.sum_xx += o.sum_xx;
        self.sum_y += o.sum_y;
        self.sum_yy += o.sum_yy;
        self.sum_xy += o.sum_xy;
    }

    fn mean_component(sum: f64, sum_squares: f64) -> Component {
        Component::Mean { sum, sum_squares }
    }

    /// The statistic for `shape`.
    pub fn statistic(&self, shape: Shape) -> MetricStatistic {
        let n = self.n;
        match shape {
            Shape::Proportion => MetricStatistic::Proportion(ProportionStatistic {
                n,
                successes: self.sum_x,
            }),
            Shape::Mean => MetricStatistic::Mean(MeanStatistic {
                n,
                sum: self.sum_x,
                sum_squares: self.sum_xx,
            }),
            Shape::ProportionCuped => MetricStatistic::RegressionAdjusted(RegressionStatistic {
                n,
                post: Component::Proportion {
                    successes: self.sum_x,
                },
                pre: Component::Proportion {
                    successes: self.sum_y,
                },
                sum_products: self.sum_xy,
            }),
            Shape::MeanCuped => MetricStatistic::RegressionAdjusted(RegressionStatistic {
                n,
                post: Self::mean_component(self.sum_x, self.sum_xx),
                pre: Self::mean_component(self.sum_y, self.sum_yy),
                sum_products: self.sum_xy,
            }),
            Shape::Ratio => MetricStatistic::Ratio(RatioStatistic {
                n,
                numerator: Self::mean_component(self.sum_x, self.sum_xx),
                denominator: Self::mean_component(self.sum_y, self.sum_yy),
                sum_products: self.sum_xy,
            }),
        }
    }
}

/// Which statistic a metric's moments become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Proportion,
    Mean,
    ProportionCuped,
    MeanCuped,
    Ratio,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifting_a_value_equals_removing_it_and_adding_the_new_one() {
        let mut a = Moments::default();
        a.add((1.0, 2.0));
        a.add((3.0, 0.0));
        a.shift((3.0, 0.0), (5.0, 1.0));
        let mut b = Moments::default();
        b.add((1.0, 2.0));
        b.add((5.0, 1.0));
        assert_eq!(a, b);
        b.remove((5.0, 1.0));
        assert_eq!(b.n, 1);
        assert_eq!(b.sum_xy, 2.0);
    }
}
