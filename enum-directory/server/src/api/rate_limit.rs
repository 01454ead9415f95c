//! Per-provider token buckets: `burst` requests at once, refilled at `per_second`; over the limit → 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tincan_common::Clock;

use super::ApiError;
use crate::storage::ProviderId;

/// Rate limit settings, per provider.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { per_second: 50.0, burst: 200 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// The token buckets of every provider.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<ProviderId, Bucket>>,
}

impl RateLimiter {
    /// A limiter with `config`, reading time from `clock`.
    pub fn new(config: RateLimitConfig, clock: Arc<dyn Clock>) -> RateLimiter {
        RateLimiter { config, clock, buckets: Mutex::default() }
    }

    /// Takes one token from the provider's bucket, or says how long to wait.
    pub fn check(&self, provider: ProviderId) -> Result<(), ApiError> {
        let now = self.clock.now();
        let burst = f64::from(self.config.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(provider).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.duration_since(bucket.at).unwrap_or_default().as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.config.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if self.config.per_second <= 0.0 {
            Err(ApiError::RateLimited { retry_after_secs: 3600 })
        } else {
            let wait = (1.0 - bucket.tokens) / self.config.per_second;
            Err(ApiError::RateLimited { retry_after_secs: wait.ceil().max(1.0) as u64 })
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
        let limiter = RateLimiter::new(RateLimitConfig { per_second: 2.0, burst: 3 }, clock.clone());
        let (a, b) = (ProviderId(1), ProviderId(2));
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        let Err(ApiError::RateLimited { retry_after_secs }) = limiter.check(a) else { panic!("not limited") };
        assert_eq!(retry_after_secs, 1);
        limiter.check(b).expect("buckets are per provider");
        clock.advance(Duration::from_millis(500));
        limiter.check(a).expect("one token refilled");
        assert!(limiter.check(a).is_err());
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        assert!(limiter.check(a).is_err(), "refill is capped at the burst");
    }
}
