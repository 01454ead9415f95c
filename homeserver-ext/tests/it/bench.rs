//! Benchmarks (ignored by default; run with `cargo nextest run -p tincan-homeserver-ext --run-ignored only
//! bench --no-capture`). They print figures rather than assert them.

use crate::harness::{Ext, Smsc, code_in};
use serde_json::json;
use std::time::{Duration, Instant};
use tincan_homeserver_ext::store::{Binding, IdentityRepository, SqliteStore};
use tincan_testkit::Synapse;

const OPEN_LIMITS: &str = "[limits]\nper_ip = { burst = 1000000, refill = 1000000, period_secs = 1 }\n\
     per_prefix = { burst = 1000000, refill = 1000000, period_secs = 1 }\n\
     per_country = { burst = 1000000, refill = 1000000, period_secs = 1 }\n";

fn number(i: usize) -> String {
    format!("+4479111{:05}", 20000 + i)
}

/// Request + verify through the extension only: dev SMS sink, JWT backend (no homeserver call).
#[tokio::test]
#[ignore]
async fn bench_signups_extension_only() {
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"bench-secret-0123456789\"\n{OPEN_LIMITS}"
    ))
    .await
    .unwrap();
    let n = 300;
    let start = Instant::now();
    for i in 0..n {
        let phone = number(i);
        let (s, b) = ext
            .post(
                "/_tincan/client/v1/register/request",
                json!({"phone": phone, "client_secret": "b", "send_attempt": 1}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let code = ext.last_code(&phone);
        let (s, v) = ext
            .post("/_tincan/client/v1/register/verify", json!({"sid": b["sid"], "client_secret": "b", "code": code}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    report("sign-ups, extension only (dev sink, JWT, SQLite)", n, start.elapsed());
}

/// The same with the SMPP simulator and a JWT login to Synapse per sign-up.
#[tokio::test]
#[ignore]
async fn bench_signups_with_smsc_and_synapse() {
    let smsc = Smsc::start().await.unwrap();
    let secret = "bench-secret-0123456789";
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": secret, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"{}\"\n[homeserver]\njwt_secret = \"{secret}\"\n\
         [sms]\nbackend = \"smpp\"\nsmpp_address = \"127.0.0.1:{}\"\nsmpp_system_id = \"bench\"\n{OPEN_LIMITS}",
        synapse.url(),
        smsc.port
    ))
    .await
    .unwrap();
    let n = 50;
    let start = Instant::now();
    for i in 0..n {
        let phone = number(i);
        let (s, b) = ext
            .post(
                "/_tincan/client/v1/register/request",
                json!({"phone": phone, "client_secret": "b", "send_attempt": 1}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let code = code_in(smsc.submit(i + 1).await.unwrap()["text"].as_str().unwrap());
        let (s, v) = ext
            .post("/_tincan/client/v1/register/verify", json!({"sid": b["sid"], "client_secret": "b", "code": code}))
            .await;
        assert_eq!(s, 200, "{v}");
        crate::signup::login(&synapse, &v["login"]).await;
    }
    report("sign-ups incl. SMPP simulator and Synapse JWT login", n, start.elapsed());
}

/// `lookup` of 1,000 sha256 hashes against 10,000 bindings.
#[tokio::test]
#[ignore]
async fn bench_lookup_1000_hashes() {
    let ext = Ext::start("server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"bench-secret-0123456789\"\n")
        .await
        .unwrap();
    let store = SqliteStore::connect(&ext.db_url()).await.unwrap();
    store.add_token(&tincan_homeserver_ext::code::digest("bench"), "@b:hs.test", 0).await.unwrap();
    let details: serde_json::Value = ext
        .http
        .get(format!("{}/_matrix/identity/v2/hash_details", ext.url))
        .bearer_auth("bench")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pepper = details["lookup_pepper"].as_str().unwrap().to_owned();
    let hash = |i: usize| tincan_homeserver_ext::identity::lookup_hash(&format!("4479{:08}", i), &pepper);
    for i in 0..10_000 {
        let b = Binding { number: format!("+4479{:08}", i), user_id: format!("@u{i}:hs.test") };
        store.bind(&b, &hash(i), 0).await.unwrap();
    }
    // Half known, half unknown.
    let addresses: Vec<String> = (0..1000).map(|i| hash(i * 20)).collect();
    let mut best = Duration::MAX;
    for _ in 0..10 {
        let start = Instant::now();
        let r: serde_json::Value = ext
            .http
            .post(format!("{}/_matrix/identity/v2/lookup", ext.url))
            .bearer_auth("bench")
            .json(&json!({"algorithm": "sha256", "pepper": pepper, "addresses": addresses}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        best = best.min(start.elapsed());
        assert_eq!(r["mappings"].as_object().unwrap().len(), 500);
    }
    eprintln!("BENCH lookup of 1000 sha256 hashes (10,000 bindings, SQLite): best of 10 = {best:?} round trip");
}

fn report(what: &str, n: usize, took: Duration) {
    eprintln!(
        "BENCH {what}: {n} in {took:?} = {:.1}/s, {:.2} ms each (sequential)",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
}
