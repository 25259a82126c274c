//! Per-key rate limiting (a GCRA token bucket per API key, from `governor`).
//! Over the limit answers 429 with `Retry-After`.
//!
//! Each key's limiter is found by borrowing the key's id (a read lock and a
//! hash lookup; no allocation per request). Only authenticated keys reach
//! the limiter, so the map holds at most one entry per API key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

#[derive(Debug)]
pub struct KeyLimiter {
    quota: Option<Quota>,
    per_key: RwLock<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    clock: DefaultClock,
}

impl KeyLimiter {
    /// `per_second` requests per second per key, with a burst of the same
    /// size; `0` disables the limit.
    pub fn new(per_second: u32) -> Self {
        KeyLimiter {
            quota: NonZeroU32::new(per_second).map(|n| Quota::per_second(n).allow_burst(n)),
            per_key: RwLock::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        let limiter = self.limiter_of(key_id, quota);
        match limiter.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::TooManyRequests {
                    retry_after_secs: wait.as_secs().max(1),
                })
            }
        }
    }

    fn limiter_of(&self, key_id: &str, quota: Quota) -> Arc<DefaultDirectRateLimiter> {
        if let Ok(map) = self.per_key.read()
            && let Some(l) = map.get(key_id)
        {
            return l.clone();
        }
        let mut map = self
            .per_key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key_id.to_string())
            .or_insert_with(|| Arc::new(RateLimiter::direct(quota)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_budget() {
        let l = KeyLimiter::new(3);
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        assert!(matches!(
            l.check("a"),
            Err(ApiError::TooManyRequests { retry_after_secs }) if retry_after_secs >= 1
        ));
        // Another key is not affected by the first one's use.
        assert!(l.check("b").is_ok());
        // Unlimited when disabled.
        let off = KeyLimiter::new(0);
        for _ in 0..100 {
            assert!(off.check("a").is_ok());
        }
    }
}
