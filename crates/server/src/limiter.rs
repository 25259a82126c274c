//! Per-key rate limiting (a GCRA token bucket per API key, from `governor`).
//! Over the limit answers 429 with `Retry-After`.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

#[derive(Debug)]
pub struct KeyLimiter {
    inner: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl KeyLimiter {
    /// `per_second` requests per second per key, with a burst of the same
    /// size; `0` disables the limit.
    pub fn new(per_second: u32) -> Self {
        let inner = NonZeroU32::new(per_second)
            .map(|n| RateLimiter::keyed(Quota::per_second(n).allow_burst(n)));
        KeyLimiter {
            inner,
            clock: DefaultClock::default(),
        }
    }

    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        match limiter.check_key(&key_id.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::TooManyRequests {
                    retry_after_secs: wait.as_secs().max(1),
                })
            }
        }
    }
}
