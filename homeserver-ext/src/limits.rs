//! Abuse controls: keyed token buckets for code requests (per number, prefix, client IP and country) and for
//! code checks (per client IP and number).
//!
//! SMS pumping (premium routes, fake sign-ups to inflate traffic) is the real cost threat, so every request
//! that would send an SMS takes one token from each of its buckets; guessing codes is the takeover threat, so
//! every judged code takes one from the verify buckets. Buckets live in memory: one extension node enforces
//! its own limits (behind several nodes, divide the rates by the node count). The table is bounded
//! (`limits.max_tracked`): buckets that have refilled are dropped first (a full bucket is the same as none),
//! then the least recently used.

use crate::config::{BucketConfig, LimitsConfig};
use crate::net::Cidr;
use crate::number::E164;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_common::Clock;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Scope {
    /// Code requests to the destination number.
    Number,
    /// Code requests to the number's prefix (country code and `prefix_national_digits`).
    Prefix,
    /// Code requests from the client's IP address.
    Ip,
    /// Code requests to the number's country calling code.
    Country,
    /// Codes checked from the client's IP address.
    VerifyIp,
    /// Codes checked for the number.
    VerifyNumber,
    /// Every SMS, all numbers together.
    Global,
    /// Numbers looked up by one Matrix user.
    LookupUser,
    /// Numbers looked up with one Identity Service token.
    LookupToken,
    /// Numbers looked up from the client's IP address.
    LookupIp,
    /// Numbers looked up by the users of one other homeserver.
    LookupHomeserver,
}

impl Scope {
    /// Its name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Number => "number",
            Scope::Prefix => "prefix",
            Scope::Ip => "ip",
            Scope::Country => "country",
            Scope::VerifyIp => "verify_ip",
            Scope::VerifyNumber => "verify_number",
            Scope::Global => "global",
            Scope::LookupUser => "lookup_user",
            Scope::LookupToken => "lookup_token",
            Scope::LookupIp => "lookup_ip",
            Scope::LookupHomeserver => "lookup_homeserver",
        }
    }

    const ALL: [Scope; 11] = [
        Scope::Number,
        Scope::Prefix,
        Scope::Ip,
        Scope::Country,
        Scope::VerifyIp,
        Scope::VerifyNumber,
        Scope::Global,
        Scope::LookupUser,
        Scope::LookupToken,
        Scope::LookupIp,
        Scope::LookupHomeserver,
    ];
}

/// A refused request: which bucket was empty and when it will hold enough tokens again.
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
    burst: f64,
    per_ms: f64,
}

impl Bucket {
    fn new(conf: &BucketConfig, now_ms: u64) -> Self {
        Bucket { tokens: conf.burst as f64, at_ms: now_ms, burst: conf.burst as f64, per_ms: conf.per_ms() }
    }

    /// Tokens at `now_ms`, refilled since the last touch.
    fn level(&self, now_ms: u64) -> f64 {
        (self.tokens + now_ms.saturating_sub(self.at_ms) as f64 * self.per_ms).min(self.burst)
    }
}

/// One bucket a request draws from.
#[derive(Debug, Clone)]
pub struct Draw<'a> {
    /// The limit.
    pub scope: Scope,
    /// Its capacity and refill.
    pub conf: &'a BucketConfig,
    /// The value limited (a number, an IP key…).
    pub key: String,
}

/// In-memory token buckets keyed by scope and value, bounded in number.
#[derive(Debug)]
pub struct Limiter {
    config: LimitsConfig,
    trusted_proxies: Vec<Cidr>,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<(Scope, String), Bucket>>,
    refused: [AtomicU64; Scope::ALL.len()],
    sent: AtomicU64,
}

impl Limiter {
    /// Buckets with the configured capacities and refill rates.
    pub fn new(config: LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        // Validated with the config; an unparsable entry (only possible when the config was not validated) is
        // dropped, which trusts less, never more.
        let trusted_proxies = config.trusted_proxies.iter().filter_map(|t| t.parse().ok()).collect();
        Self {
            config,
            trusted_proxies,
            clock,
            buckets: Mutex::new(HashMap::new()),
            refused: Default::default(),
            sent: AtomicU64::new(0),
        }
    }

    /// The client of a request from `peer` with these `X-Forwarded-For` headers (see [`crate::net::client_ip`]).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        crate::net::client_ip(peer, forwarded_for, &self.trusted_proxies)
    }

    /// Counts an SMS handed to the network (for `/metrics`).
    pub fn note_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of the limits: SMS sent, refusals by scope, and the alarm
    /// `tincan_ext_sms_global_budget_exhausted` (1 while the global SMS budget holds less than one SMS).
    pub fn metrics(&self) -> String {
        let mut out = String::from(
            "# HELP tincan_ext_sms_sent_total Code SMS handed to the network.\n\
             # TYPE tincan_ext_sms_sent_total counter\n",
        );
        out += &format!("tincan_ext_sms_sent_total {}\n", self.sent.load(Ordering::Relaxed));
        out += "# HELP tincan_ext_limit_refusals_total Requests refused by a rate limit, by the limit.\n\
                # TYPE tincan_ext_limit_refusals_total counter\n";
        for (scope, n) in Scope::ALL.iter().zip(&self.refused) {
            out += &format!(
                "tincan_ext_limit_refusals_total{{scope=\"{}\"}} {}\n",
                scope.name(),
                n.load(Ordering::Relaxed)
            );
        }
        let now = self.now_ms();
        let level =
            self.buckets.lock().expect("limiter lock").get(&(Scope::Global, String::new())).map(|b| b.level(now));
        let remaining = level.unwrap_or(f64::from(self.config.global.burst)).floor();
        out += "# HELP tincan_ext_sms_global_budget_remaining SMS left in the global budget (limits.global).\n\
                # TYPE tincan_ext_sms_global_budget_remaining gauge\n";
        out += &format!("tincan_ext_sms_global_budget_remaining {remaining}\n");
        out += "# HELP tincan_ext_sms_global_budget_exhausted 1 while the global SMS budget is spent: alarm on it.\n\
                # TYPE tincan_ext_sms_global_budget_exhausted gauge\n";
        out += &format!("tincan_ext_sms_global_budget_exhausted {}\n", u8::from(remaining < 1.0));
        out
    }

    fn now_ms(&self) -> u64 {
        self.clock.now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
    }

    /// A code request (one SMS): takes one token from the number's, prefix's, country's, the global and (when
    /// known) the client's bucket, or none at all when any of them is empty.
    pub fn check(&self, number: &E164, ip: Option<IpAddr>) -> Result<(), Limited> {
        let c = &self.config;
        let digits = number.digits();
        let country = number.country_code().to_string();
        let prefix = &digits[..digits.len().min(country.len() + c.prefix_national_digits)];
        let mut draws = vec![
            Draw { scope: Scope::Number, conf: &c.per_number, key: digits.to_owned() },
            Draw { scope: Scope::Prefix, conf: &c.per_prefix, key: prefix.to_owned() },
            Draw { scope: Scope::Country, conf: &c.per_country, key: country },
        ];
        if let Some(ip) = ip {
            draws.push(Draw { scope: Scope::Ip, conf: &c.per_ip, key: crate::net::limit_key(ip) });
        }
        // Last, so a request another bucket refuses takes nothing from it either way.
        draws.push(Draw { scope: Scope::Global, conf: &c.global, key: String::new() });
        let result = self.take(&draws, 1);
        if let Err(Limited { scope: Scope::Global, .. }) = result {
            tracing::error!("global SMS budget (limits.global) spent: sign-ups are refused until it refills");
        }
        result
    }

    /// A code about to be judged, from `ip`: one token from the client's verify bucket.
    pub fn check_verify_ip(&self, ip: Option<IpAddr>) -> Result<(), Limited> {
        let Some(ip) = ip else { return Ok(()) };
        let key = crate::net::limit_key(ip);
        self.take(&[Draw { scope: Scope::VerifyIp, conf: &self.config.verify_per_ip, key }], 1)
    }

    /// A code about to be judged for `number` (any session): one token from the number's verify bucket.
    pub fn check_verify_number(&self, number: &str) -> Result<(), Limited> {
        let conf = &self.config.verify_per_number;
        self.take(&[Draw { scope: Scope::VerifyNumber, conf, key: number.to_owned() }], 1)
    }

    /// A `lookup` of `n` addresses by `user_id` with the Identity Service token whose digest is `token_digest`
    /// (another homeserver, `foreign_server`, vouched for it if not ours) from `ip`: `n` tokens from each of
    /// those buckets, or none when any holds fewer.
    pub fn check_lookup(
        &self,
        user_id: &str,
        token_digest: &str,
        foreign_server: Option<&str>,
        ip: Option<IpAddr>,
        n: usize,
    ) -> Result<(), Limited> {
        let c = &self.config;
        let mut draws = vec![
            Draw { scope: Scope::LookupToken, conf: &c.lookup_per_token, key: token_digest.to_owned() },
            Draw { scope: Scope::LookupUser, conf: &c.lookup_per_user, key: user_id.to_owned() },
        ];
        if let Some(ip) = ip {
            draws.push(Draw { scope: Scope::LookupIp, conf: &c.lookup_per_ip, key: crate::net::limit_key(ip) });
        }
        if let Some(server) = foreign_server {
            draws.push(Draw { scope: Scope::LookupHomeserver, conf: &c.lookup_per_homeserver, key: server.to_owned() });
        }
        self.take(&draws, u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Takes `n` tokens from every bucket in `draws`, or none at all when any of them holds fewer.
    pub fn take(&self, draws: &[Draw<'_>], n: u32) -> Result<(), Limited> {
        let now = self.now_ms();
        let n = f64::from(n);
        let mut buckets = self.buckets.lock().expect("limiter lock");
        let mut taken = Vec::with_capacity(draws.len());
        for d in draws {
            let key = (d.scope, d.key.clone());
            let mut b = buckets.get(&key).copied().unwrap_or_else(|| Bucket::new(d.conf, now));
            b.tokens = b.level(now);
            b.at_ms = now;
            if b.tokens < n {
                self.refused[d.scope as usize].fetch_add(1, Ordering::Relaxed);
                let wait_ms = if b.per_ms > 0.0 { (n - b.tokens) / b.per_ms } else { 86_400_000.0 };
                return Err(Limited { scope: d.scope, retry_after: Duration::from_millis(wait_ms.ceil() as u64) });
            }
            b.tokens -= n;
            taken.push((key, b));
        }
        let fresh = taken.iter().filter(|(k, _)| !buckets.contains_key(k)).count();
        if fresh > 0 && buckets.len() + fresh > self.config.max_tracked.max(1) {
            evict(&mut buckets, now, self.config.max_tracked.max(1));
        }
        buckets.extend(taken);
        Ok(())
    }

    /// Buckets held in memory.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().expect("limiter lock").len()
    }
}

/// Makes room under `max`: drops refilled buckets (the same as absent ones), then the least recently used
/// tenth, so a flood of new keys costs an eviction pass only once per `max / 10` keys.
fn evict(buckets: &mut HashMap<(Scope, String), Bucket>, now: u64, max: usize) {
    buckets.retain(|_, b| b.level(now) < b.burst);
    if buckets.len() < max {
        return;
    }
    let mut by_age: Vec<(u64, (Scope, String))> = buckets.iter().map(|(k, b)| (b.at_ms, k.clone())).collect();
    let cut = (max / 10).max(1).min(by_age.len());
    by_age.select_nth_unstable_by_key(cut - 1, |(at, _)| *at);
    for (_, key) in &by_age[..cut] {
        buckets.remove(key);
    }
}

impl BucketConfig {
    fn per_ms(&self) -> f64 {
        if self.period_secs == 0 { 0.0 } else { self.refill as f64 / (self.period_secs as f64 * 1000.0) }
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

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let clock = Arc::new(MockClock::at(1_000));
        let l = limiter(clock);
        let n = |i: u32| E164::parse(&format!("+44207946{i:04}")).unwrap();
        for i in 0..3 {
            let ip: IpAddr = format!("2001:db8:7:9:{i:x}:1:2:3").parse().unwrap();
            assert!(l.check(&n(i), Some(ip)).is_ok());
        }
        let rotated: IpAddr = "2001:db8:7:9:ffff:ffff:ffff:fffe".parse().unwrap();
        assert_eq!(l.check(&n(9), Some(rotated)).unwrap_err().scope, Scope::Ip, "a new address in the same /64");
        assert!(l.check(&n(9), Some("2001:db8:7:a::1".parse().unwrap())).is_ok(), "another /64");
    }

    #[test]
    fn numbers_spread_over_a_prefix_share_its_budget() {
        let clock = Arc::new(MockClock::at(1_000));
        let c = LimitsConfig {
            per_prefix: BucketConfig { burst: 10, refill: 10, period_secs: 3600 },
            ..Default::default()
        };
        let l = Limiter::new(c, clock);
        // +44 791 followed by anything: one prefix (country code and three digits), whatever digits follow.
        for i in 0..10u32 {
            let n = E164::parse(&format!("+44791{}{:06}", i % 10, i * 7919 % 1_000_000)).unwrap();
            assert!(l.check(&n, None).is_ok(), "{i}");
        }
        let err = l.check(&E164::parse("+447919876543").unwrap(), None).unwrap_err();
        assert_eq!(err.scope, Scope::Prefix);
        assert!(l.check(&E164::parse("+447929876543").unwrap(), None).is_ok(), "another prefix");
    }

    #[test]
    fn verify_buckets_per_ip_and_number() {
        let clock = Arc::new(MockClock::at(1_000));
        let c = LimitsConfig {
            verify_per_ip: BucketConfig { burst: 2, refill: 2, period_secs: 3600 },
            verify_per_number: BucketConfig { burst: 3, refill: 3, period_secs: 3600 },
            ..Default::default()
        };
        let l = Limiter::new(c, clock);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.check_verify_ip(Some(ip)).is_ok());
        assert!(l.check_verify_ip(Some(ip)).is_ok());
        assert_eq!(l.check_verify_ip(Some(ip)).unwrap_err().scope, Scope::VerifyIp);
        assert!(l.check_verify_ip(Some("192.0.2.2".parse().unwrap())).is_ok());
        for _ in 0..3 {
            assert!(l.check_verify_number("+442079460001").is_ok());
        }
        assert_eq!(l.check_verify_number("+442079460001").unwrap_err().scope, Scope::VerifyNumber);
        assert!(l.check_verify_number("+442079460002").is_ok());
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_what_is_in_use() {
        let clock = Arc::new(MockClock::at(1_000));
        let conf = BucketConfig { burst: 1, refill: 1, period_secs: 3600 };
        let l = Limiter::new(LimitsConfig { max_tracked: 100, ..Default::default() }, clock.clone());
        let draw = |i: usize| Draw { scope: Scope::VerifyIp, conf: &conf, key: format!("k{i}") };
        // An empty bucket touched last survives a flood of new keys.
        l.take(&[draw(0)], 1).unwrap();
        for i in 1..10_000 {
            if i % 50 == 0 {
                clock.advance(Duration::from_millis(1));
                l.take(&[draw(0)], 0).unwrap();
            }
            l.take(&[draw(i)], 1).unwrap();
            assert!(l.tracked() <= 100, "{} buckets after {i} keys", l.tracked());
        }
        assert_eq!(l.take(&[draw(0)], 1).unwrap_err().scope, Scope::VerifyIp);
        // Refilled buckets are dropped first.
        clock.advance(Duration::from_secs(3600));
        l.take(&[draw(20_000)], 1).unwrap();
        l.take(&[draw(20_001)], 1).unwrap();
        assert!(l.tracked() <= 100);
    }
}
