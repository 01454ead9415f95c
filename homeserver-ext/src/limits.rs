//! Abuse controls for code requests: token buckets per number, prefix, client IP and country.
//!
//! SMS pumping (premium routes, fake sign-ups to inflate traffic) is the real cost threat, so every request
//! that would send an SMS takes one token from four buckets. Buckets live in memory: one extension node
//! enforces its own limits (behind several nodes, divide the rates by the node count).

use crate::config::{BucketConfig, LimitsConfig};
use crate::number::E164;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_common::Clock;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The destination number.
    Number,
    /// The number's leading digits (`prefix_digits`).
    Prefix,
    /// The client's IP address.
    Ip,
    /// The number's country calling code.
    Country,
}

/// A refused request: which bucket was empty and when it will hold a token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The empty bucket.
    pub scope: Scope,
    /// Wait at least this long.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// In-memory token buckets keyed by scope and value.
#[derive(Debug)]
pub struct Limiter {
    config: LimitsConfig,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<(u8, String), Bucket>>,
}

impl Limiter {
    /// Buckets with the configured capacities and refill rates.
    pub fn new(config: LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token from each bucket the request touches, or none at all when any of them is empty.
    pub fn check(&self, number: &E164, ip: Option<IpAddr>) -> Result<(), Limited> {
        let now = self.clock.now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let digits = number.digits();
        let prefix = &digits[..digits.len().min(self.config.prefix_digits)];
        let mut keys = vec![
            (Scope::Number, &self.config.per_number, digits.to_owned()),
            (Scope::Prefix, &self.config.per_prefix, prefix.to_owned()),
            (Scope::Country, &self.config.per_country, number.country_code().to_string()),
        ];
        if let Some(ip) = ip {
            keys.push((Scope::Ip, &self.config.per_ip, ip.to_string()));
        }
        let mut buckets = self.buckets.lock().expect("limiter lock");
        let mut refreshed = Vec::with_capacity(keys.len());
        for (scope, conf, value) in &keys {
            let key = (*scope as u8, value.clone());
            let mut b = buckets.get(&key).copied().unwrap_or(Bucket { tokens: conf.burst as f64, at_ms: now });
            let elapsed = now.saturating_sub(b.at_ms) as f64 / 1000.0;
            b.tokens = (b.tokens + elapsed * conf.per_second()).min(conf.burst as f64);
            b.at_ms = now;
            if b.tokens < 1.0 {
                let wait = if conf.per_second() > 0.0 { (1.0 - b.tokens) / conf.per_second() } else { 86_400.0 };
                return Err(Limited {
                    scope: *scope,
                    retry_after: Duration::from_millis((wait * 1000.0).ceil() as u64),
                });
            }
            refreshed.push((key, b));
        }
        for (key, mut b) in refreshed {
            b.tokens -= 1.0;
            buckets.insert(key, b);
        }
        Ok(())
    }
}

impl BucketConfig {
    fn per_second(&self) -> f64 {
        if self.period_secs == 0 { 0.0 } else { self.refill as f64 / self.period_secs as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_common::MockClock;

    fn limiter(clock: Arc<MockClock>) -> Limiter {
        let c = LimitsConfig {
            per_number: BucketConfig { burst: 2, refill: 1, period_secs: 60 },
            per_ip: BucketConfig { burst: 3, refill: 1, period_secs: 60 },
            ..Default::default()
        };
        Limiter::new(c, clock)
    }

    #[test]
    fn number_bucket_empties_and_refills() {
        let clock = Arc::new(MockClock::at(1_000));
        let l = limiter(clock.clone());
        let n = E164::parse("+442079460001").unwrap();
        assert!(l.check(&n, None).is_ok());
        assert!(l.check(&n, None).is_ok());
        let err = l.check(&n, None).unwrap_err();
        assert_eq!(err.scope, Scope::Number);
        assert_eq!(err.retry_after, Duration::from_secs(60));
        clock.advance(Duration::from_secs(60));
        assert!(l.check(&n, None).is_ok());
    }

    #[test]
    fn ip_bucket_spans_numbers_and_refusal_takes_nothing() {
        let clock = Arc::new(MockClock::at(1_000));
        let l = limiter(clock);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        for n in ["+442079460001", "+442079460002", "+442079460003"] {
            assert!(l.check(&E164::parse(n).unwrap(), Some(ip)).is_ok());
        }
        let fourth = E164::parse("+442079460004").unwrap();
        assert_eq!(l.check(&fourth, Some(ip)).unwrap_err().scope, Scope::Ip);
        // The refused request took no token from the number's own bucket.
        assert!(l.check(&fourth, None).is_ok());
        assert!(l.check(&fourth, None).is_ok());
    }
}
