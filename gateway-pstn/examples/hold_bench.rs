//! Load generator for the ledger's hot path: reserve + settle pairs per second through the in-process ledger
//! (hold workers, batching, the database), with `--accounts N` accounts. Prints pairs/s, reserve latency
//! percentiles and the hold workers' batches (transactions, requests per transaction, time per transaction).
//! Run by `bench/gateway/run.sh`; not a test.
//!
//! Two kinds of load:
//! - `--concurrency C` (closed loop, the default): C callers, each starting its next pair when the last one is
//!   done. Throughput and latency are then tied (Little's law: C = pairs/s × 2 × mean request latency), so
//!   many callers give a long mean latency whatever the ledger does.
//! - `--rate R` (open loop): a pair starts every 1/R seconds whether or not earlier ones are done, as calls
//!   arrive at a gateway; a reserve's latency counts from the instant its pair was due, so a ledger (or a
//!   machine) that falls behind shows it in the latency instead of slowing the load down.
#![allow(clippy::disallowed_methods)] // a load generator: wall-clock timing is what it measures

#[path = "support/requests.rs"]
mod requests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tincan_common::SystemClock;
use tincan_gateway::charging::{AccountId, Charging, IdempotencyKey};
use tincan_gateway::ledger::{Ledger, LedgerConfig, LocalCharging};
use tincan_gateway::storage::{self, EntryKind};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

/// One reserve + settle pair; the reserve's latency counted from `due`.
async fn pair(svc: &LocalCharging, run: &str, n: usize, account: AccountId, due: Instant) -> Duration {
    let r = requests::reserve(format!("{run}-r-{n}"), account);
    let hold = svc.reserve(&r).await.expect("reserve");
    let took = due.elapsed();
    let s = requests::settle(format!("{run}-s-{n}"), hold.id);
    svc.settle(&s).await.expect("settle");
    took
}

/// A counter of the ledger's `/metrics` text.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let url = arg("--db", "sqlite:///tmp/hold_bench.sqlite3");
    let accounts: usize = arg("--accounts", "1").parse().unwrap();
    let concurrency: usize = arg("--concurrency", "64").parse().unwrap();
    let rate: f64 = arg("--rate", "0").parse().unwrap();
    let pairs: usize = arg("--pairs", "5000").parse().unwrap();
    let storage = storage::open(&url, Arc::new(SystemClock)).await.expect("open the database");
    let ledger = Ledger::start(storage, Arc::new(SystemClock), LedgerConfig::default());
    let mut ids = Vec::new();
    for i in 0..accounts {
        let a = ledger.create_business(&format!("bench {i}"), "EUR".parse().unwrap()).await.unwrap().id;
        let key = IdempotencyKey::new(format!("seed-{}", a.0)).unwrap();
        ledger.credit("bench", &key, a, "1000000".parse().unwrap(), EntryKind::Adjustment, "seed", "").await.unwrap();
        ids.push(a);
    }
    let before = ledger.metrics().render(None);
    let run = format!("{}", std::process::id());
    let started = Instant::now();
    let mut lat: Vec<Duration> = Vec::with_capacity(pairs);
    if rate > 0.0 {
        let tasks: Vec<_> = (0..pairs)
            .map(|n| {
                let due = started + Duration::from_secs_f64(n as f64 / rate);
                let (svc, account, run) = (ledger.charging("svc:bench"), ids[n % ids.len()], run.clone());
                tokio::spawn(async move {
                    tokio::time::sleep_until(due.into()).await;
                    pair(&svc, &run, n, account, due).await
                })
            })
            .collect();
        for t in tasks {
            lat.push(t.await.unwrap());
        }
    } else {
        let tasks: Vec<_> = (0..concurrency)
            .map(|c| {
                let (svc, ids, run) = (ledger.charging("svc:bench"), ids.clone(), run.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut n = c;
                    while n < pairs {
                        lat.push(pair(&svc, &run, n, ids[n % ids.len()], Instant::now()).await);
                        n += concurrency;
                    }
                    lat
                })
            })
            .collect();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
    }
    let took = started.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let after = ledger.metrics().render(None);
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    let batches = delta("tincan_gateway_hold_batches_total");
    let load = if rate > 0.0 { format!("rate={rate}") } else { format!("concurrency={concurrency}") };
    println!(
        "db={} accounts={accounts} {load} pairs={pairs} time={:.2}s pairs/s={:.0} reserve p50={:.2}ms p99={:.2}ms \
         max={:.2}ms batches={batches} ops/batch={:.1} batch={:.2}ms",
        if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        took.as_secs_f64(),
        pairs as f64 / took.as_secs_f64(),
        p(0.50).as_secs_f64() * 1000.0,
        p(0.99).as_secs_f64() * 1000.0,
        lat[lat.len() - 1].as_secs_f64() * 1000.0,
        delta("tincan_gateway_hold_batch_ops_total") / batches,
        delta("tincan_gateway_hold_batch_seconds_micros_total") / batches / 1000.0,
    );
    let mut tx = ledger.storage().begin_read().await.unwrap();
    let report = tx.journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
