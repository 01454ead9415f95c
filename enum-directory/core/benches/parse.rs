//! Parse + validate per number (`E164::parse`), on one thread and on eight, for numbers of one country and for
//! numbers of ten countries interleaved (1, 44, 49, 33, 34, 39, 31, 46, 61, 81), beside what `E164::parse` did
//! before issue #23 (`phonenumber::parse` + `is_valid` + the E.164 format, on the crate's global database) on the
//! same input. `E164::parse` also classifies the number (region, premium rate), which the old path did not.
//! `cargo bench -p tincan-enum-core --bench parse`. Figures: `bench/numbers/RESULTS.md`.

#![allow(missing_docs)] // criterion_group! makes an undocumented function

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use tincan_enum_core::E164;

/// Per country, two ranges (a fixed line area and mobiles) where every number is valid (`bench` checks it): prefix
/// and how many free digits follow. The same as `bench/dns/gen.py N OUT --mixed`.
const RANGES: [[(&str, u32); 2]; 10] = [
    [("+12025", 6), ("+14165", 6)], // Washington DC; Toronto (another region of +1)
    [("+44207", 7), ("+44740", 7)], // London; UK mobile
    [("+4930", 8), ("+49151", 8)],  // Berlin; German mobile
    [("+331", 8), ("+3361", 7)],    // Paris; French mobile
    [("+3491", 7), ("+3460", 7)],   // Madrid; Spanish mobile
    [("+3906", 8), ("+3933", 8)],   // Rome (leading zero kept); Italian mobile
    [("+3120", 7), ("+3161", 7)],   // Amsterdam; Dutch mobile
    [("+468", 7), ("+4670", 7)],    // Stockholm; Swedish mobile
    [("+6128", 7), ("+6141", 7)],   // Sydney; Australian mobile
    [("+8133", 7), ("+81901", 7)],  // Tokyo; Japanese mobile
];

const N: usize = 10_000;

/// `N` numbers: the i-th of country `i % countries`, alternating its two ranges, random free digits.
fn numbers(countries: &[[(&str, u32); 2]]) -> Vec<String> {
    let mut x = 0x2023_u64;
    (0..N)
        .map(|i| {
            let (prefix, free) = countries[i % countries.len()][(i / countries.len()) % 2];
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            format!("{prefix}{:0width$}", (x >> 20) % 10u64.pow(free), width = free as usize)
        })
        .collect()
}

/// What `E164::parse` did before issue #23: parse, validate and write the E.164 form on the crate's global database
/// (writing it picks a format first, which reads more patterns: 157 for the interleaved input, 89 without it).
fn old(s: &str) -> bool {
    phonenumber::parse(None, s)
        .is_ok_and(|n| phonenumber::is_valid(&n) && !n.format().mode(phonenumber::Mode::E164).to_string().is_empty())
}

fn new(s: &str) -> bool {
    E164::parse(s).is_ok()
}

/// Wall time for `iters` parses spread over `threads` threads.
fn run(f: fn(&str) -> bool, input: &[String], threads: usize, iters: u64) -> Duration {
    let per = iters.div_ceil(threads as u64) as usize;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per {
                    black_box(f(black_box(&input[(t * 7919 + i) % input.len()])));
                }
            });
        }
    });
    start.elapsed()
}

fn group(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, f: fn(&str) -> bool, input: &[String]) {
    for threads in [1, 8] {
        g.bench_function(format!("{name}/{threads} thread{}", if threads == 1 { "" } else { "s" }), |b| {
            b.iter_custom(|iters| run(f, input, threads, iters))
        });
    }
}

fn bench(c: &mut Criterion) {
    let one = numbers(&RANGES[1..2]);
    let mixed = numbers(&RANGES);
    assert!(one.iter().chain(&mixed).all(|s| old(s) && new(s)), "every bench number is valid");
    let mut g = c.benchmark_group("parse+validate");
    g.throughput(Throughput::Elements(1));
    group(&mut g, "E164::parse/one country (+44)", new, &one);
    group(&mut g, "E164::parse/10 countries interleaved", new, &mixed);
    g.finish();
    // The old path: milliseconds a number when interleaved, so fewer samples.
    let mut g = c.benchmark_group("parse+validate (before: phonenumber's global database)");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    group(&mut g, "phonenumber::parse/one country (+44)", old, &one);
    group(&mut g, "phonenumber::parse/10 countries interleaved", old, &mixed);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
