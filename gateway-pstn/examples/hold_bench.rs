//! Load generator for the ledger's hot path: reserve + settle pairs per second through the in-process ledger
//! (hold workers, batching, the database), with `--accounts N` accounts sharing `--concurrency C` callers
//! (`--accounts 1`: the hot-account case). Prints pairs/s and reserve latency percentiles. Run by
//! `bench/gateway/run.sh`; not a test.
#![allow(clippy::disallowed_methods)] // a load generator: wall-clock timing is what it measures

#[path = "support/requests.rs"]
mod requests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tincan_common::SystemClock;
use tincan_gateway::charging::{Charging, IdempotencyKey};
use tincan_gateway::ledger::{Ledger, LedgerConfig};
use tincan_gateway::storage::{self, EntryKind};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() {
    let url = arg("--db", "sqlite:///tmp/hold_bench.sqlite3");
    let accounts: usize = arg("--accounts", "1").parse().unwrap();
    let concurrency: usize = arg("--concurrency", "64").parse().unwrap();
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
    let run = format!("{}", std::process::id());
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let (svc, ids, run) = (ledger.charging("svc:bench"), ids.clone(), run.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = c;
                while n < pairs {
                    let account = ids[n % ids.len()];
                    let r = requests::reserve(format!("{run}-r-{n}"), account);
                    let t = Instant::now();
                    let hold = svc.reserve(&r).await.expect("reserve");
                    lat.push(t.elapsed());
                    let s = requests::settle(format!("{run}-s-{n}"), hold.id);
                    svc.settle(&s).await.expect("settle");
                    n += concurrency;
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "db={} accounts={accounts} concurrency={concurrency} pairs={pairs} time={:.2}s pairs/s={:.0} reserve p50={:.2}ms p99={:.2}ms",
        if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        took.as_secs_f64(),
        pairs as f64 / took.as_secs_f64(),
        p(0.50).as_secs_f64() * 1000.0,
        p(0.99).as_secs_f64() * 1000.0,
    );
    let mut tx = ledger.storage().begin_read().await.unwrap();
    let report = tx.journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
