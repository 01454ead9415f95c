//! The per-client rate limit of the public (unauthenticated) reads: `/v1/log/sth` and the log's proofs. A token
//! bucket per client network (an IPv4 address, an IPv6 /64: one host's share), by the TCP peer's address; over
//! the limit → 429 with `Retry-After`. Without it, anyone could ask inclusion proofs for number after number, as
//! fast as the directory answers. A provider sending its token is held to its own limit instead
//! ([`PublicClient`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use tincan_common::Clock;

use super::{ApiError, RateLimitConfig, RateLimiter};
use crate::storage::Storage;

/// Client networks tracked at most; when full, the buckets that refilled, then the least recently used, go.
const MAX_TRACKED: usize = 100_000;

/// The default public limit: a client verifying contacts needs a head, a proof and perhaps a consistency proof
/// per contact.
pub fn default_public_limit() -> RateLimitConfig {
    RateLimitConfig { per_second: 5.0, burst: 100 }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

/// Token buckets per client network.
#[derive(Debug)]
pub struct ClientRateLimiter {
    config: RateLimitConfig,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<u128, Bucket>>,
}

/// The network a client address counts in: IPv4 whole (and IPv4-mapped IPv6 as IPv4), IPv6 by /64.
fn network(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) & (u128::MAX << 64)) | 1,
    }
}

impl ClientRateLimiter {
    /// A limiter with `config` per client network, reading time from `clock`.
    pub fn new(config: RateLimitConfig, clock: Arc<dyn Clock>) -> ClientRateLimiter {
        ClientRateLimiter { config, clock, buckets: Mutex::default() }
    }

    /// Takes one token from `ip`'s bucket, or says how long to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let now = self.clock.now();
        let (rate, burst) = (self.config.per_second, f64::from(self.config.burst.max(1)));
        let refilled = |b: &Bucket| {
            (b.tokens + now.duration_since(b.at).unwrap_or_default().as_secs_f64() * rate.max(0.0)).min(burst)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let net = network(ip);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&net) {
            buckets.retain(|_, b| refilled(b) < burst);
            if buckets.len() >= MAX_TRACKED {
                let mut by_age: Vec<(SystemTime, u128)> = buckets.iter().map(|(n, b)| (b.at, *n)).collect();
                let excess = by_age.len() - (MAX_TRACKED - MAX_TRACKED / 8);
                by_age.select_nth_unstable(excess - 1);
                for (_, n) in &by_age[..excess] {
                    buckets.remove(n);
                }
            }
        }
        let bucket = buckets.entry(net).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = refilled(bucket);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if rate <= 0.0 {
            Err(ApiError::RateLimited { retry_after_secs: 3600 })
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Err(ApiError::RateLimited { retry_after_secs: wait.ceil().max(1.0) as u64 })
        }
    }
}

/// A public request within its client's rate limit (429 otherwise). The client is the TCP peer (the API is
/// served with its connection info); a request without one (a router used in-process) counts as one client.
///
/// A request with `Authorization: Bearer …` is a provider's (its extension checking each lookup against the
/// log): it must be a valid provider token (401 otherwise, never a silent fall back to the public bucket) and
/// counts against that provider's own limit, not its address's — a busy provider's proofs would otherwise be
/// refused by the public limit meant for anonymous readers.
#[derive(Debug, Clone, Copy)]
pub struct PublicClient;

impl<S> FromRequestParts<S> for PublicClient
where
    S: Send + Sync,
    Arc<ClientRateLimiter>: FromRef<S>,
    Arc<dyn Storage>: FromRef<S>,
    Arc<RateLimiter>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.headers.contains_key(AUTHORIZATION) {
            super::Authenticated::from_request_parts(parts, state).await?;
            return Ok(PublicClient);
        }
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip());
        Arc::<ClientRateLimiter>::from_ref(state).check(ip)?;
        Ok(PublicClient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tincan_common::MockClock;

    #[test]
    fn per_address_and_per_ipv6_64() {
        let clock = Arc::new(MockClock::at(1_000));
        let l = ClientRateLimiter::new(RateLimitConfig { per_second: 1.0, burst: 2 }, clock.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        l.check(a).unwrap();
        l.check(a).unwrap();
        assert!(matches!(l.check(a), Err(ApiError::RateLimited { retry_after_secs: 1 })));
        l.check("192.0.2.2".parse().unwrap()).expect("another address");
        l.check("::ffff:192.0.2.3".parse().unwrap()).unwrap();
        l.check("192.0.2.3".parse().unwrap()).unwrap();
        assert!(l.check("::ffff:192.0.2.3".parse().unwrap()).is_err(), "IPv4-mapped is the same client");
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        l.check(v6("2001:db8:0:1::1")).unwrap();
        l.check(v6("2001:db8:0:1::2")).unwrap();
        assert!(l.check(v6("2001:db8:0:1:ffff::3")).is_err(), "the same /64");
        l.check(v6("2001:db8:0:2::1")).expect("another /64");
        clock.advance(Duration::from_secs(1));
        l.check(a).expect("refilled");
    }
}
