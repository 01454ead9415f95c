//! Token buckets: sending rates per user and per destination prefix, and the throughput an SMSC allows a link.
//!
//! A bucket holds up to `burst` tokens and gains `per_minute` of them every minute; an action takes one. Time
//! is passed in (milliseconds of any clock the caller uses throughout), so the arithmetic is pure and tested
//! here. The table of buckets is bounded: when full, buckets that have refilled completely are dropped first
//! (they hold no state worth keeping), then the oldest.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A rate: `per_minute` sustained, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens gained per minute.
    pub per_minute: f64,
    /// Bucket size.
    pub burst: u32,
}

impl Rate {
    /// `n` a second, bursting to `n`.
    pub fn per_second(n: u32) -> Self {
        Self { per_minute: f64::from(n) * 60.0, burst: n.max(1) }
    }

    /// Problems, naming `key`.
    pub fn validate(&self, key: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.per_minute.is_finite() && self.per_minute > 0.0) {
            p.push(format!("{key}.per_minute: must be a positive number"));
        }
        if self.burst == 0 {
            p.push(format!("{key}.burst: must be at least 1"));
        }
        p
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now_ms: u64) {
        let gained = now_ms.saturating_sub(self.at_ms) as f64 * rate.per_minute / 60_000.0;
        self.tokens = (self.tokens + gained).min(f64::from(rate.burst));
        self.at_ms = self.at_ms.max(now_ms);
    }
}

/// One bucket (a link's throughput).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    bucket: Bucket,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate: Rate, now_ms: u64) -> Self {
        Self { rate, bucket: Bucket { tokens: f64::from(rate.burst), at_ms: now_ms } }
    }

    /// Takes a token, or says how many milliseconds until one is there.
    pub fn take(&mut self, now_ms: u64) -> Result<(), u64> {
        self.bucket.refill(self.rate, now_ms);
        if self.bucket.tokens >= 1.0 {
            self.bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(wait_ms(self.bucket.tokens, self.rate))
        }
    }
}

impl TokenBucket {
    /// Whole tokens available at `now_ms`.
    pub fn available(&mut self, now_ms: u64) -> u32 {
        self.bucket.refill(self.rate, now_ms);
        self.bucket.tokens.floor() as u32
    }

    /// Milliseconds until a token is there (0 when one is).
    pub fn wait_ms(&mut self, now_ms: u64) -> u64 {
        self.bucket.refill(self.rate, now_ms);
        if self.bucket.tokens >= 1.0 { 0 } else { wait_ms(self.bucket.tokens, self.rate) }
    }
}

fn wait_ms(tokens: f64, rate: Rate) -> u64 {
    // Less a hair, so that float error in the refill (0.99000…01 tokens) does not add a millisecond.
    ((1.0 - tokens) * 60_000.0 / rate.per_minute - 1e-6).ceil().max(1.0) as u64
}

/// Buckets by key, all at one rate (one per user, or one per destination prefix).
#[derive(Debug)]
pub struct KeyedBuckets {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
}

impl KeyedBuckets {
    /// Buckets at `rate`, at most `max_keys` of them.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self { rate, max_keys: max_keys.max(1), buckets: HashMap::new() }
    }

    /// Whether `key` has `n` tokens; takes them only if so. `Err` says how many milliseconds until it has.
    pub fn take(&mut self, key: &str, n: u32, now_ms: u64) -> Result<(), u64> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.evict(now_ms);
        }
        let rate = self.rate;
        let b = self.buckets.entry(key.to_owned()).or_insert(Bucket { tokens: f64::from(rate.burst), at_ms: now_ms });
        b.refill(rate, now_ms);
        let n = f64::from(n);
        if b.tokens >= n {
            b.tokens -= n;
            Ok(())
        } else if n > f64::from(rate.burst) {
            // More than a full bucket: never possible at once.
            Err(u64::MAX)
        } else {
            Err(wait_ms(b.tokens - n + 1.0, rate))
        }
    }

    /// Gives back `n` tokens taken for an action that did not happen.
    pub fn give_back(&mut self, key: &str, n: u32) {
        if let Some(b) = self.buckets.get_mut(key) {
            b.tokens = (b.tokens + f64::from(n)).min(f64::from(self.rate.burst));
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn evict(&mut self, now_ms: u64) {
        let rate = self.rate;
        self.buckets.retain(|_, b| {
            let mut b = *b;
            b.refill(rate, now_ms);
            b.tokens < f64::from(rate.burst)
        });
        if self.buckets.len() >= self.max_keys
            && let Some(oldest) = self.buckets.iter().min_by_key(|(_, b)| b.at_ms).map(|(k, _)| k.clone())
        {
            self.buckets.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bucket_bursts_then_refills_at_its_rate() {
        let mut b = TokenBucket::new(Rate::per_second(10), 0);
        for _ in 0..10 {
            assert_eq!(b.take(0), Ok(()));
        }
        assert_eq!(b.take(0), Err(100), "one token every 100 ms");
        assert_eq!((b.available(0), b.wait_ms(0)), (0, 100));
        assert_eq!(b.take(99), Err(1));
        assert_eq!(b.take(100), Ok(()));
        assert_eq!(b.take(10_000), Ok(()), "refilled, but never above the burst");
        for _ in 0..9 {
            assert_eq!(b.take(10_000), Ok(()));
        }
        assert!(b.take(10_000).is_err());
        let mut b = TokenBucket::new(Rate::per_second(2), 0);
        assert_eq!(b.available(0), 2);
        b.take(0).unwrap();
        b.take(0).unwrap();
        assert_eq!((b.available(250), b.wait_ms(250), b.available(500)), (0, 250, 1));
    }

    #[test]
    fn keyed_buckets_are_independent_and_take_all_or_nothing() {
        let mut k = KeyedBuckets::new(Rate { per_minute: 60.0, burst: 5 }, 100);
        assert_eq!(k.take("alice", 3, 0), Ok(()));
        assert_eq!(k.take("alice", 3, 0), Err(1_000), "two left: a 3-part message waits a second");
        assert_eq!(k.take("alice", 2, 0), Ok(()), "nothing was taken by the refusal");
        assert_eq!(k.take("bob", 5, 0), Ok(()));
        assert_eq!(k.take("bob", 6, 0), Err(u64::MAX), "more than the bucket holds");
        k.give_back("bob", 2);
        assert_eq!(k.take("bob", 2, 0), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut k = KeyedBuckets::new(Rate { per_minute: 60.0, burst: 2 }, 3);
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            k.take(key, 1, i as u64).unwrap();
        }
        k.take("d", 1, 3).unwrap();
        assert_eq!(k.len(), 3, "the oldest went");
        // Much later every bucket is full again: all of them can go at once.
        k.take("e", 1, 1_000_000).unwrap();
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn rates_are_validated() {
        assert!(Rate::per_second(1).validate("x").is_empty());
        assert_eq!(Rate { per_minute: 0.0, burst: 0 }.validate("x").len(), 2);
        assert_eq!(Rate { per_minute: f64::NAN, burst: 1 }.validate("x").len(), 1);
    }

    proptest! {
        #[test]
        fn never_more_than_burst_plus_rate_times_elapsed(
            per_minute in 1.0f64..6_000.0, burst in 1u32..50, steps in proptest::collection::vec(0u64..2_000, 1..200)
        ) {
            let rate = Rate { per_minute, burst };
            let mut b = TokenBucket::new(rate, 0);
            let mut now = 0;
            let mut taken = 0u64;
            for step in steps {
                now += step;
                while b.take(now).is_ok() {
                    taken += 1;
                }
            }
            let allowed = f64::from(burst) + now as f64 * per_minute / 60_000.0;
            prop_assert!(taken as f64 <= allowed + 1e-6, "{taken} > {allowed}");
        }
    }
}
