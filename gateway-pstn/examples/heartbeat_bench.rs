//! How long a gateway process's heartbeat (the `gateway_runs` UPDATE and its commit) takes while calls start
//! under the same run: each call's first hold checks the run in its own transaction (`FOR SHARE` on
//! PostgreSQL), which a heartbeat's UPDATE must wait for. Measures heartbeat latency alone, then under a burst of
//! call starts (`--concurrency` callers doing first hold + live row, settle, close, for `--calls` calls).
//! Not a test: run by hand (`cargo run --release -p tincan-gateway --example heartbeat_bench -- --db URL`).
#![allow(clippy::disallowed_methods)] // a load generator: wall-clock timing is what it measures

#[path = "support/requests.rs"]
mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tincan_common::SystemClock;
use tincan_gateway::charging::{Charging, IdempotencyKey};
use tincan_gateway::ledger::{Ledger, LedgerConfig};
use tincan_gateway::storage::{self, EntryKind, LiveCall, Storage, unix_ms};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

/// Heartbeats every `every` until `stop`: their latencies.
async fn heartbeats(storage: Arc<dyn Storage>, run: String, every: Duration, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut lat = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let mut tx = storage.begin().await.unwrap();
        assert!(tx.live_calls().heartbeat(&run, unix_ms(std::time::SystemTime::now())).await.unwrap());
        tx.commit().await.unwrap();
        lat.push(t.elapsed());
        tokio::time::sleep(every.saturating_sub(t.elapsed())).await;
    }
    lat
}

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    format!("n={} p50={:.2}ms p99={:.2}ms max={:.2}ms", lat.len(), p(0.5), p(0.99), p(1.0))
}

#[tokio::main]
async fn main() {
    let url = arg("--db", "sqlite:///tmp/heartbeat_bench.sqlite3");
    let concurrency: usize = arg("--concurrency", "64").parse().unwrap();
    let calls: usize = arg("--calls", "5000").parse().unwrap();
    let every = Duration::from_millis(arg("--every-ms", "20").parse().unwrap());
    let storage = storage::open(&url, Arc::new(SystemClock)).await.expect("open the database");
    let run = format!("bench-{}", std::process::id());
    let mut tx = storage.begin().await.unwrap();
    tx.live_calls().start_run(&run, "bench", unix_ms(std::time::SystemTime::now())).await.unwrap();
    tx.commit().await.unwrap();
    let ledger = Ledger::start(storage.clone(), Arc::new(SystemClock), LedgerConfig::default());
    let account = ledger.create_business("heartbeat bench", "EUR".parse().unwrap()).await.unwrap().id;
    let key = IdempotencyKey::new(format!("{run}-seed")).unwrap();
    ledger.credit("bench", &key, account, "1000000".parse().unwrap(), EntryKind::Adjustment, "seed", "").await.unwrap();

    // Alone: two seconds of heartbeats.
    let stop = Arc::new(AtomicBool::new(false));
    let alone = tokio::spawn(heartbeats(storage.clone(), run.clone(), every, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let alone = alone.await.unwrap();

    // Under a burst of call starts.
    let stop = Arc::new(AtomicBool::new(false));
    let beating = tokio::spawn(heartbeats(storage.clone(), run.clone(), every, stop.clone()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let (svc, run, storage) = (ledger.charging("svc:pstn"), run.clone(), storage.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = c;
                while n < calls {
                    let call = format!("{run}-{n}");
                    let r = requests::reserve(format!("{call}:reserve"), account);
                    let row = LiveCall {
                        run_id: run.clone(),
                        sip_dialog: Some(format!("dialog-{call}")),
                        ..LiveCall::incoming(&call, "+4930123456", "EUR".parse().unwrap(), 0)
                    };
                    let t = Instant::now();
                    let hold = svc.reserve_for(&r, Some(row)).await.expect("reserve");
                    lat.push(t.elapsed());
                    let s = requests::settle(format!("{call}:settle"), hold.id);
                    svc.settle(&s).await.expect("settle");
                    let mut tx = storage.begin().await.unwrap();
                    tx.live_calls().close(&call).await.unwrap();
                    tx.commit().await.unwrap();
                    n += concurrency;
                }
                lat
            })
        })
        .collect();
    let mut first_holds = Vec::new();
    for t in tasks {
        first_holds.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let burst = beating.await.unwrap();
    println!(
        "db={} concurrency={concurrency} calls={calls} time={:.2}s calls/s={:.0} | heartbeat alone {} | heartbeat \
         under the burst {} | first hold {}",
        if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        took.as_secs_f64(),
        calls as f64 / took.as_secs_f64(),
        summary(alone),
        summary(burst),
        summary(first_holds),
    );
}
