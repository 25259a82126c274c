//! Jittered exponential backoff: each wait is drawn between half and all
//! of a ceiling that doubles from `min` to `max`, so clients that lost the
//! server together do not come back together.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            ceiling: min,
        }
    }

    /// The next wait.
    pub fn next(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = self.ceiling.saturating_mul(2).min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Back to the shortest wait (after a success).
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_with_jitter_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let ceilings = [100u64, 200, 400, 800, 1000, 1000];
        for c in ceilings {
            let w = b.next();
            assert!(
                w >= Duration::from_millis(c / 2) && w <= Duration::from_millis(c),
                "{w:?} outside [{}, {c}] ms",
                c / 2
            );
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
