//! Token buckets per caller (a token, an account's voucher attempts, a client address before sign-in):
//! `burst` requests at once, refilled at a steady rate; over the limit → 429 with `Retry-After`. Whole
//! micro-requests, no floating point.

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

const ONE: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Millionths of a request.
    micro: u64,
    at_ms: i64,
}

/// The token buckets of every caller.
#[derive(Debug)]
pub struct RateLimiter {
    full: u64,
    /// Micro-requests refilled per millisecond.
    refill: u64,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter with `config`, reading time from `clock`.
    pub fn new(config: RateLimitConfig, clock: Arc<dyn Clock>) -> RateLimiter {
        Self::with_refill(u64::from(config.per_second) * 1000, config.burst, clock)
    }

    /// A limiter of `per_minute` requests a minute after a burst of `burst`.
    pub fn new_per_minute(per_minute: u32, burst: u32, clock: Arc<dyn Clock>) -> RateLimiter {
        Self::with_refill(u64::from(per_minute) * ONE / 60_000, burst, clock)
    }

    fn with_refill(refill: u64, burst: u32, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter { full: u64::from(burst.max(1)) * ONE, refill, clock, buckets: Mutex::default() }
    }

    /// Takes one request from the caller's bucket, or says how long to wait.
    pub fn check(&self, caller: &str) -> Result<(), ApiError> {
        let now = crate::storage::unix_ms(self.clock.now());
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget buckets that have refilled: they hold nothing a fresh one would not.
            let (full, refill) = (self.full, self.refill);
            buckets.retain(|_, b| b.micro.saturating_add((now - b.at_ms).max(0) as u64 * refill) < full);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket { micro: self.full, at_ms: now });
        let elapsed = (now - bucket.at_ms).max(0) as u64;
        bucket.micro = bucket.micro.saturating_add(elapsed.saturating_mul(self.refill)).min(self.full);
        bucket.at_ms = now;
        if bucket.micro >= ONE {
            bucket.micro -= ONE;
            Ok(())
        } else if self.refill == 0 {
            Err(ApiError::RateLimited { retry_after_secs: 3600 })
        } else {
            let wait_ms = (ONE - bucket.micro).div_ceil(self.refill);
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

    #[test]
    fn per_minute_buckets_refill_slowly() {
        let clock = Arc::new(MockClock::at(1_000));
        let limiter = RateLimiter::new_per_minute(6, 2, clock.clone());
        limiter.check("a").unwrap();
        limiter.check("a").unwrap();
        let Err(ApiError::RateLimited { retry_after_secs }) = limiter.check("a") else { panic!("not limited") };
        assert_eq!(retry_after_secs, 10, "six a minute: one every ten seconds");
        clock.advance(Duration::from_secs(9));
        assert!(limiter.check("a").is_err());
        clock.advance(Duration::from_secs(1));
        limiter.check("a").expect("refilled after ten seconds");
    }
}
