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
    /// Networks tracked at most (bounds memory under a spoofed flood). When full, the buckets that have refilled
    /// (as good as new) and then the least recently seen are evicted, down to 7/8 of this; a network being limited
    /// keeps querying, so it stays among the recent ones and keeps its empty bucket.
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
        if table.len() >= c.max_tracked.max(1) && !table.contains_key(&net) {
            evict(&mut table, c, now);
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

/// Makes room in a full table: drops the buckets that have refilled completely by `now` (a new bucket would be
/// the same), then, if more than 7/8 of `max_tracked` are left, the least recently seen down to that. Cleared
/// whole, the table would hand every network being limited a fresh burst each time a spoofed flood filled it;
/// evicting 1/8 at a time keeps the work per new network constant on average.
fn evict(table: &mut HashMap<u128, Bucket>, c: &RrlConfig, now: Duration) {
    let keep = c.max_tracked.max(1) - c.max_tracked.max(1).div_ceil(8);
    let (rate, burst) = (f64::from(c.responses_per_second), f64::from(c.burst.max(1)));
    table.retain(|_, b| b.tokens + now.saturating_sub(b.last).as_secs_f64() * rate < burst);
    if table.len() <= keep {
        return;
    }
    let mut by_age: Vec<(Duration, u128)> = table.iter().map(|(net, b)| (b.last, *net)).collect();
    let excess = by_age.len() - keep;
    by_age.select_nth_unstable(excess - 1);
    for (_, net) in &by_age[..excess] {
        table.remove(net);
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

    /// Issue 14 item 16: a spoofed flood of new networks filling the table must not hand a network being
    /// limited a fresh burst (the table used to be cleared whole at its cap).
    #[test]
    fn a_full_table_evicts_the_oldest_and_keeps_a_limited_network_limited() {
        let l = RateLimiter::new(RrlConfig { max_tracked: 100, slip: 0, ..strict() });
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let at = |i: u64| Duration::from_secs(100) + Duration::from_micros(i);
        let sent = (0..5).filter(|i| l.check(attacker, at(*i)) == Verdict::Send).count();
        assert_eq!(sent, 5, "the burst");
        // 1,000 spoofed networks, one query each, while the attacker keeps asking: the table fills ten times over.
        for i in 0..1_000u64 {
            let spoofed = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + ((i as u32) << 8)));
            assert_eq!(l.check(spoofed, at(10 + 2 * i)), Verdict::Send, "a new network gets its burst");
            assert_eq!(l.check(attacker, at(11 + 2 * i)), Verdict::Drop, "the attacker got a fresh burst at {i}");
            assert!(l.table.lock().unwrap().len() <= 100);
        }
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
