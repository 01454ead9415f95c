//! Response rate limiting against reflection/amplification: a token bucket per client network (/24 for IPv4,
//! /56 for IPv6); over the limit, every `slip`-th answer goes out truncated (TC, no records) so a real client
//! retries over TCP, and the rest are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Rate-limit settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RrlConfig {
    /// Off switch.
    pub enabled: bool,
    /// Sustained answers per second per network.
    pub responses_per_second: u32,
    /// Answers a network may get at once after being quiet.
    pub burst: u32,
    /// Over the limit, every `slip`-th answer is sent truncated; 0 drops them all.
    pub slip: u32,
    /// IPv4 network size.
    pub ipv4_prefix: u8,
    /// IPv6 network size.
    pub ipv6_prefix: u8,
    /// Loopback clients are not limited (local tools, the benchmark).
    pub exempt_loopback: bool,
    /// Networks tracked before the table is cleared (bounds memory under a spoofed flood).
    pub max_tracked: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            enabled: true,
            responses_per_second: 200,
            burst: 400,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt_loopback: true,
            max_tracked: 200_000,
        }
    }
}

/// What to do with one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send a truncated stand-in.
    Slip,
    /// Send nothing.
    Drop,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Duration,
    limited: u32,
}

/// The limiter; `now` is a monotonic time the caller supplies (tests drive it).
#[derive(Debug)]
pub struct RateLimiter {
    config: RrlConfig,
    table: Mutex<HashMap<u128, Bucket>>,
}

impl RateLimiter {
    /// A limiter with `config`.
    pub fn new(config: RrlConfig) -> RateLimiter {
        RateLimiter { config, table: Mutex::new(HashMap::new()) }
    }

    fn network(&self, ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let p = u32::from(self.config.ipv4_prefix.min(32));
                let masked = if p == 0 { 0 } else { bits & (u32::MAX << (32 - p)) };
                (1u128 << 127) | u128::from(masked)
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let p = u32::from(self.config.ipv6_prefix.min(127));
                if p == 0 { 0 } else { bits & (u128::MAX << (128 - p)) & !(1u128 << 127) | (bits & (1u128 << 127)) }
            }
        }
    }

    /// Decides for one answer to `ip` at `now`.
    pub fn check(&self, ip: IpAddr, now: Duration) -> Verdict {
        self.check_at(ip, || now)
    }

    /// [`check`](Self::check), reading the clock (`now`) only when `ip` is rate-limited at all.
    pub fn check_at(&self, ip: IpAddr, now: impl FnOnce() -> Duration) -> Verdict {
        let c = &self.config;
        if !c.enabled || (c.exempt_loopback && ip.is_loopback()) {
            return Verdict::Send;
        }
        let now = now();
        let net = self.network(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= c.max_tracked && !table.contains_key(&net) {
            table.clear();
        }
        let b = table.entry(net).or_insert(Bucket { tokens: f64::from(c.burst), last: now, limited: 0 });
        let elapsed = now.saturating_sub(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * f64::from(c.responses_per_second)).min(f64::from(c.burst.max(1)));
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        if c.slip > 0 && b.limited.is_multiple_of(c.slip) { Verdict::Slip } else { Verdict::Drop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> RrlConfig {
        RrlConfig { responses_per_second: 10, burst: 5, slip: 2, exempt_loopback: false, ..RrlConfig::default() }
    }

    #[test]
    fn limits_a_network_and_slips() {
        let l = RateLimiter::new(strict());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Duration::from_secs(100);
        let v: Vec<Verdict> = (0..9).map(|_| l.check(a, t)).collect();
        assert_eq!(&v[..5], &[Verdict::Send; 5]);
        assert_eq!(&v[5..], &[Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]);
        // The same /24 shares the bucket, another network does not.
        assert_ne!(l.check("192.0.2.200".parse().unwrap(), t), Verdict::Send);
        assert_eq!(l.check("198.51.100.1".parse().unwrap(), t), Verdict::Send);
        // Tokens come back with time.
        assert_eq!(l.check(a, t + Duration::from_millis(200)), Verdict::Send);
    }

    #[test]
    fn a_flood_from_one_address_is_limited_by_default() {
        let l = RateLimiter::new(RrlConfig::default());
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        // 10 s of 10,000 queries a second from one address: the burst, then 200 a second; of the rest every
        // second one is slipped (truncated, no records, nothing signed) and the others dropped.
        let mut sent = 0;
        let mut slipped = 0;
        for i in 0..100_000u64 {
            match l.check(a, Duration::from_micros(i * 100)) {
                Verdict::Send => sent += 1,
                Verdict::Slip => slipped += 1,
                Verdict::Drop => {}
            }
        }
        assert!((2_390..=2_410).contains(&sent), "burst 400 + 10 s x 200/s, got {sent}");
        assert!((100_000 - sent) / 2 - slipped <= 1, "{slipped}");
    }

    #[test]
    fn off_and_loopback_exempt() {
        let l = RateLimiter::new(RrlConfig { enabled: false, ..strict() });
        assert!((0..100).all(|_| l.check("192.0.2.1".parse().unwrap(), Duration::ZERO) == Verdict::Send));
        let l = RateLimiter::new(RrlConfig { exempt_loopback: true, ..strict() });
        assert!((0..100).all(|_| l.check("127.0.0.1".parse().unwrap(), Duration::ZERO) == Verdict::Send));
    }

    #[test]
    fn ipv6_by_56() {
        let l = RateLimiter::new(RrlConfig { slip: 0, ..strict() });
        let t = Duration::ZERO;
        for _ in 0..5 {
            assert_eq!(l.check("2001:db8:0:1::1".parse().unwrap(), t), Verdict::Send);
        }
        assert_eq!(l.check("2001:db8:0:2::1".parse().unwrap(), t), Verdict::Drop, "same /56");
        assert_eq!(l.check("2001:db8:0:100::1".parse().unwrap(), t), Verdict::Send, "other /56");
    }
}
