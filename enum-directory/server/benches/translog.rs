//! Proof latency of the transparency log over SQLite at 100k and 1M leaves (`TRANSLOG_BENCH_SIZES`, comma
//! separated, to choose others): an inclusion proof by number and a consistency proof, as the public
//! `GET /v1/log/proof/…` routes make them (cache warm; its one-off fill is printed), beside what every proof cost
//! before the cache: reading all leaf hashes and hashing them.
//! `cargo bench -p tincan-directory --bench translog`.

#![allow(missing_docs)] // criterion_group! makes an undocumented function

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use tincan_common::SystemClock;
use tincan_directory::storage::{SqliteStorage, Storage};
use tincan_directory::translog::TransLog;
use tincan_enum_core::E164;
use tincan_translog::{LogEntry, inclusion_proof};

fn number(i: u64) -> E164 {
    E164::parse(&format!("+49151{i:08}")).unwrap()
}

/// A log of `n` number entries in a fresh SQLite file.
async fn log_of(n: u64, dir: &std::path::Path) -> (Arc<dyn Storage>, TransLog) {
    let url = format!("sqlite://{}", dir.join("bench.sqlite3").display());
    let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(&url, Arc::new(SystemClock)).await.unwrap());
    for start in (0..n).step_by(10_000) {
        let mut tx = storage.begin().await.unwrap();
        for i in start..n.min(start + 10_000) {
            let entry =
                LogEntry::Number { version: i as i64 + 1, number: number(i), record: None, provider: None, at_ms: 0 };
            tx.log().append(&entry).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let log = TransLog::open(storage.clone(), Arc::new(SystemClock)).await.unwrap();
    (storage, log)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sizes = std::env::var("TRANSLOG_BENCH_SIZES").unwrap_or_else(|_| "100000,1000000".into());
    for n in sizes.split(',').map(|s| s.trim().parse::<u64>().expect("TRANSLOG_BENCH_SIZES: numbers")) {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let (storage, log) = rt.block_on(log_of(n, dir.path()));
        eprintln!("translog/{n}: {n} leaves appended in {:?}", started.elapsed());
        let started = Instant::now();
        rt.block_on(log.inclusion(&number(n / 3), None)).unwrap().unwrap();
        eprintln!("translog/{n}: first proof (fills the cache) in {:?}", started.elapsed());

        let mut g = c.benchmark_group(format!("translog/{n}"));
        let mut i = 0u64;
        g.bench_function("inclusion proof by number", |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                rt.block_on(log.inclusion(black_box(&number(i)), None)).unwrap().unwrap()
            })
        });
        g.bench_function("consistency proof n/3 → n", |b| {
            b.iter(|| rt.block_on(log.consistency(black_box(n / 3), n)).unwrap())
        });
        g.sample_size(10);
        g.bench_function("all leaf hashes + inclusion proof (before the cache)", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut tx = storage.begin().await.unwrap();
                    let hashes = tx.log().leaf_hashes(0, n).await.unwrap();
                    inclusion_proof(&hashes, black_box((n / 3) as usize)).unwrap()
                })
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
