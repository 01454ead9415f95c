//! Token buckets per caller (a token, or a client address before sign-in): `burst` requests at once, refilled
//! at `per_second`; over the limit → 429 with `Retry-After`. Whole milli-tokens, no floating point.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tincan_common::Clock;

use super::ApiError;

/// Rate limit settings, per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { per_second: 200, burst: 1000 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a request.
    milli: u64,
    at_ms: i64,
}

/// The token buckets of every caller.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter with `config`, reading time from `clock`.
    pub fn new(config: RateLimitConfig, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter { config, clock, buckets: Mutex::default() }
    }

    /// Takes one request from the caller's bucket, or says how long to wait.
    pub fn check(&self, caller: &str) -> Result<(), ApiError> {
        let now = crate::storage::unix_ms(self.clock.now());
        let full = u64::from(self.config.burst.max(1)) * 1000;
        let rate = u64::from(self.config.per_second); // milli-tokens per millisecond
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget buckets that have refilled: they hold nothing a fresh one would not.
            buckets.retain(|_, b| b.milli + (now - b.at_ms).max(0) as u64 * rate < full);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket { milli: full, at_ms: now });
        let elapsed = (now - bucket.at_ms).max(0) as u64;
        bucket.milli = (bucket.milli + elapsed.saturating_mul(rate)).min(full);
        bucket.at_ms = now;
        if bucket.milli >= 1000 {
            bucket.milli -= 1000;
            Ok(())
        } else if rate == 0 {
            Err(ApiError::RateLimited { retry_after_secs: 3600 })
        } else {
            let wait_ms = (1000 - bucket.milli).div_ceil(rate);
            Err(ApiError::RateLimited { retry_after_secs: wait_ms.div_ceil(1000).max(1) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tincan_common::MockClock;

    #[test]
    fn bucket_drains_and_refills() {
        let clock = Arc::new(MockClock::at(1_000));
        let limiter = RateLimiter::new(RateLimitConfig { per_second: 2, burst: 3 }, clock.clone());
        for _ in 0..3 {
            limiter.check("a").unwrap();
        }
        let Err(ApiError::RateLimited { retry_after_secs }) = limiter.check("a") else { panic!("not limited") };
        assert_eq!(retry_after_secs, 1);
        limiter.check("b").expect("buckets are per caller");
        clock.advance(Duration::from_millis(500));
        limiter.check("a").expect("one request refilled");
        assert!(limiter.check("a").is_err());
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            limiter.check("a").unwrap();
        }
        assert!(limiter.check("a").is_err(), "refill is capped at the burst");
    }
}
