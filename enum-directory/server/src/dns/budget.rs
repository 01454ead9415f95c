//! The global signing budget: online signatures per second across all clients, UDP and TCP (a denial of a name
//! not in the cache costs one). Response rate limiting is per client network, so a flood of distinct
//! non-existent names from many (or spoofed) sources passes it and would take every core in signing, positives
//! included; past this budget such a denial over UDP gets a truncated empty reply instead, so a real resolver
//! retries over TCP. TCP draws on the same budget, but may also take its last `tcp_reserve` signatures, which UDP
//! may not: a TCP client has completed a handshake (its address is real, its connections capped), so when a UDP
//! flood has spent the rest, the resolvers retrying over TCP still get answers; past the whole budget a TCP
//! denial gets SERVFAIL. Positive answers and cached denials never draw on it.
//!
//! A token bucket kept as one atomic "theoretical arrival time" (GCRA): taking a token is a load and a
//! compare-and-swap, no lock, and the threads share one cache line only as often as they sign (tens of
//! microseconds each). The UDP and the TCP view share the atomic and differ only in how far ahead of now they
//! let it run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Signing-budget settings (`dns.server.signing_budget`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningBudgetConfig {
    /// Online signatures per second, across all clients and both transports; 0 turns the budget off. May be a
    /// fraction (0.5: one every two seconds).
    pub signatures_per_second: f64,
    /// Signatures that may be made at once after a quiet spell (the bucket's size).
    pub burst: u32,
    /// Of the bucket, the signatures only TCP queries may take (at most `burst - 1`; UDP stops short of them).
    pub tcp_reserve: u32,
}

impl Default for SigningBudgetConfig {
    /// 50 000 a second: about four times what the flood benchmark measured (`bench/dns/RESULTS.md`, 11 363
    /// distinct denials a second on a loaded 2-core machine), so it only bites on machines far faster than that
    /// or under a flood; set it to what the cores can sign less what positives need. A tenth is kept for TCP.
    fn default() -> Self {
        SigningBudgetConfig { signatures_per_second: 50_000.0, burst: 50_000, tcp_reserve: 5_000 }
    }
}

/// The budget (see the module docs): the UDP view; [`SigningBudget::tcp`] gives the TCP one.
#[derive(Debug, Clone)]
pub struct SigningBudget {
    /// Nanoseconds one signature costs of the budget; 0 when it is off.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run: `burst - 1` intervals for TCP, `tcp_reserve` fewer for UDP.
    tolerance_ns: u64,
    /// The TCP view's tolerance.
    tcp_tolerance_ns: u64,
    /// When the bucket will be full again, in nanoseconds since `start`; shared by both views.
    tat_ns: Arc<AtomicU64>,
    start: Instant,
}

impl SigningBudget {
    /// A budget with `config`, full; the UDP view.
    pub fn new(config: &SigningBudgetConfig) -> SigningBudget {
        let rate = config.signatures_per_second;
        let interval_ns = if rate.is_finite() && rate > 0.0 { ((1e9 / rate) as u64).max(1) } else { 0 };
        let burst = u64::from(config.burst.max(1));
        let reserve = u64::from(config.tcp_reserve).min(burst - 1);
        let tcp_tolerance_ns = interval_ns.saturating_mul(burst - 1);
        SigningBudget {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(burst - 1 - reserve),
            tcp_tolerance_ns,
            tat_ns: Arc::new(AtomicU64::new(0)),
            start: Instant::now(),
        }
    }

    /// The TCP view of the same budget: it may also take the reserve.
    pub fn tcp(&self) -> SigningBudget {
        SigningBudget { tolerance_ns: self.tcp_tolerance_ns, ..self.clone() }
    }

    /// Takes one signature from the budget; false when it is spent (for this view).
    pub fn try_take(&self) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut current = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let tat = current.max(now);
            if tat - now > self.tolerance_ns {
                return false;
            }
            match self.tat_ns.compare_exchange_weak(
                current,
                tat.saturating_add(self.interval_ns),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_nothing_until_it_refills() {
        let b = SigningBudget::new(&SigningBudgetConfig { signatures_per_second: 1.0, burst: 3, tcp_reserve: 0 });
        assert_eq!((0..10).filter(|_| b.try_take()).count(), 3);
        let off = SigningBudget::new(&SigningBudgetConfig { signatures_per_second: 0.0, burst: 0, tcp_reserve: 0 });
        assert!((0..1000).all(|_| off.try_take()));
    }

    #[test]
    fn threads_share_one_budget() {
        let config = SigningBudgetConfig { signatures_per_second: 1.0, burst: 100, tcp_reserve: 0 };
        let b = std::sync::Arc::new(SigningBudget::new(&config));
        let taken: usize = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..100).filter(|_| b.try_take()).count())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert!((100..=101).contains(&taken), "{taken}");
    }

    /// UDP stops at the reserve, TCP takes it; both draw on one bucket, so a spent budget is spent for both.
    #[test]
    fn tcp_may_take_the_reserve_udp_may_not() {
        let config = SigningBudgetConfig { signatures_per_second: 0.001, burst: 10, tcp_reserve: 4 };
        let udp = SigningBudget::new(&config);
        let tcp = udp.tcp();
        assert_eq!((0..10).filter(|_| udp.try_take()).count(), 6);
        assert_eq!((0..10).filter(|_| tcp.try_take()).count(), 4);
        assert!(!udp.try_take() && !tcp.try_take());
        let udp = SigningBudget::new(&config);
        assert_eq!((0..20).filter(|_| udp.tcp().try_take()).count(), 10, "TCP alone may spend it all");
        assert!(!udp.try_take());
    }
}
