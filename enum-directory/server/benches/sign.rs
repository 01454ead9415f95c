//! The signing primitive behind every online-signed denial: one ECDSA P-256 (algorithm 13) or Ed25519
//! (algorithm 15) signature over a typical compact-denial NSEC signing input, in the crates at hand — ring (what
//! the directory signs with), aws-lc-rs (already linked through rustls) and ed25519-dalek — and the directory's
//! own `ZoneKey::sign` on top of ring. `cargo bench -p tincan-directory --bench sign`.

#![allow(missing_docs)] // criterion_group! makes an undocumented function

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tincan_directory::dns::{KeyAlgorithm, KeyRole, ZoneKey};

/// RRSIG head + one NSEC owned by a 12-digit number under `e164.tincan.test.`: about what a negative answer signs.
fn input() -> Vec<u8> {
    let mut owner = Vec::new();
    for d in b"442089876543" {
        owner.extend_from_slice(&[1, *d]);
    }
    owner.extend_from_slice(b"\x04e164\x06tincan\x04test\x00");
    let mut data = vec![0, 47, 13, 15, 0, 0, 1, 44, 0x69, 0, 0, 0, 0x68, 0, 0, 0, 0x12, 0x34];
    data.extend_from_slice(b"\x04e164\x06tincan\x04test\x00");
    data.extend_from_slice(&owner);
    data.extend_from_slice(&[0, 47, 0, 1, 0, 0, 1, 44, 0, 60]);
    data.extend_from_slice(&[1, 0]);
    data.extend_from_slice(&owner);
    data.extend_from_slice(&[0, 17, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
    data
}

fn bench(c: &mut Criterion) {
    let data = input();
    let mut g = c.benchmark_group("sign");

    let rng = ring::rand::SystemRandom::new();
    let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let k = ring::signature::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap();
    g.bench_function("ring/ecdsa-p256", |b| b.iter(|| k.sign(&rng, black_box(&data)).unwrap()));
    let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let k = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    g.bench_function("ring/ed25519", |b| b.iter(|| k.sign(black_box(&data))));

    let arng = aws_lc_rs::rand::SystemRandom::new();
    let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &arng).unwrap();
    let k = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).unwrap();
    g.bench_function("aws-lc-rs/ecdsa-p256", |b| b.iter(|| k.sign(&arng, black_box(&data)).unwrap()));
    let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&arng).unwrap();
    let k = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    g.bench_function("aws-lc-rs/ed25519", |b| b.iter(|| k.sign(black_box(&data))));

    let k = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    g.bench_function("ed25519-dalek/ed25519", |b| b.iter(|| ed25519_dalek::Signer::sign(&k, black_box(&data))));

    for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
        let k = ZoneKey::generate(KeyRole::Zsk, alg, 0).unwrap();
        g.bench_function(format!("ZoneKey::sign/{alg:?}"), |b| b.iter(|| k.sign(black_box(&data)).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
