//! The global signing budget: online signatures per second across all UDP clients (a denial of a name not in
//! the cache costs one). Response rate limiting is per client network, so a flood of distinct non-existent names
//! from many (or spoofed) sources passes it and would take every core in signing, positives included; past
//! this budget such a denial gets a truncated empty reply instead, so a real resolver retries over TCP (not
//! budgeted: a TCP client has completed a handshake, so its address is real and its rate bounded by its
//! connections). Positive answers and cached denials never draw on it.
//!
//! A token bucket kept as one atomic "theoretical arrival time" (GCRA): taking a token is a load and a
//! compare-and-swap, no lock, and the threads share one cache line only as often as they sign (tens of
//! microseconds each).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Signing-budget settings (`dns.server.signing_budget`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningBudgetConfig {
    /// Online signatures per second for UDP queries, across all clients; 0 turns the budget off.
    pub signatures_per_second: u32,
    /// Signatures that may be made at once after a quiet spell (the bucket's size).
    pub burst: u32,
}

impl Default for SigningBudgetConfig {
    /// 50 000 a second: about four times what the flood benchmark measured (`bench/dns/RESULTS.md`, 11 363
    /// distinct denials a second on a loaded 2-core machine), so it only bites on machines far faster than that
    /// or under a flood; set it to what the cores can sign less what positives need.
    fn default() -> Self {
        SigningBudgetConfig { signatures_per_second: 50_000, burst: 50_000 }
    }
}

/// The budget (see the module docs).
#[derive(Debug)]
pub struct SigningBudget {
    /// Nanoseconds one signature costs of the budget; 0 when it is off.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run: `burst` intervals.
    tolerance_ns: u64,
    /// When the bucket will be full again, in nanoseconds since `start`.
    tat_ns: AtomicU64,
    start: Instant,
}

impl SigningBudget {
    /// A budget with `config`, full.
    pub fn new(config: &SigningBudgetConfig) -> SigningBudget {
        let interval_ns = match config.signatures_per_second {
            0 => 0,
            n => (1_000_000_000 / u64::from(n)).max(1),
        };
        SigningBudget {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(config.burst.max(1)).saturating_sub(1)),
            tat_ns: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Takes one signature from the budget; false when it is spent.
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
        let b = SigningBudget::new(&SigningBudgetConfig { signatures_per_second: 1, burst: 3 });
        assert_eq!((0..10).filter(|_| b.try_take()).count(), 3);
        let off = SigningBudget::new(&SigningBudgetConfig { signatures_per_second: 0, burst: 0 });
        assert!((0..1000).all(|_| off.try_take()));
    }

    #[test]
    fn threads_share_one_budget() {
        let b = std::sync::Arc::new(SigningBudget::new(&SigningBudgetConfig { signatures_per_second: 1, burst: 100 }));
        let taken: usize = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..100).filter(|_| b.try_take()).count())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert!((100..=101).contains(&taken), "{taken}");
    }
}
