//! Counters for `GET /metrics` (Prometheus text format): reservations, settlements, releases, expiries,
//! rejections by reason, and the hold workers' batches. Open holds are counted from the database when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The ledger's counters.
#[derive(Debug, Default)]
pub struct LedgerMetrics {
    reserved: AtomicU64,
    settled: AtomicU64,
    released: AtomicU64,
    expired: AtomicU64,
    batches: AtomicU64,
    batched_ops: AtomicU64,
    batch_micros: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl LedgerMetrics {
    pub(crate) fn reserved(&self) {
        self.reserved.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn settled(&self) {
        self.settled.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn released(&self) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn expired(&self) {
        self.expired.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn rejected(&self, reason: &'static str) {
        *self.rejected.lock().unwrap_or_else(|e| e.into_inner()).entry(reason).or_default() += 1;
    }
    pub(crate) fn batch(&self, ops: usize, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_ops.fetch_add(ops as u64, Ordering::Relaxed);
        self.batch_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Reservations made so far.
    pub fn reservations(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Renders every counter; `open_holds` is read from the database by the caller.
    pub fn render(&self, open_holds: Option<u64>) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter("tincan_gateway_reservations_total", "Holds made.", self.reserved.load(Ordering::Relaxed));
        counter("tincan_gateway_settlements_total", "Holds settled.", self.settled.load(Ordering::Relaxed));
        counter(
            "tincan_gateway_releases_total",
            "Holds released by their service.",
            self.released.load(Ordering::Relaxed),
        );
        counter("tincan_gateway_expiries_total", "Holds released by expiry.", self.expired.load(Ordering::Relaxed));
        counter(
            "tincan_gateway_hold_batches_total",
            "Transactions of the hold workers.",
            self.batches.load(Ordering::Relaxed),
        );
        counter(
            "tincan_gateway_hold_batch_ops_total",
            "Requests applied in those transactions.",
            self.batched_ops.load(Ordering::Relaxed),
        );
        counter(
            "tincan_gateway_hold_batch_seconds_micros_total",
            "Microseconds spent in those transactions.",
            self.batch_micros.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP tincan_gateway_rejections_total Hold requests refused, by reason.\n\
             # TYPE tincan_gateway_rejections_total counter"
        );
        for (reason, n) in self.rejected.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "tincan_gateway_rejections_total{{reason=\"{reason}\"}} {n}");
        }
        if let Some(n) = open_holds {
            let _ = writeln!(
                out,
                "# HELP tincan_gateway_holds_open Holds open now.\n# TYPE tincan_gateway_holds_open gauge"
            );
            let _ = writeln!(out, "tincan_gateway_holds_open {n}");
        }
        out
    }
}
