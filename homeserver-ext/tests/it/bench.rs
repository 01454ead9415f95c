//! Benchmarks (ignored by default). `bench/ext/run.sh` runs them on a release build and records the figures in
//! `bench/ext/RESULTS.md`; by hand: `cargo test --release -p tincan-homeserver-ext --test it -- --ignored
//! --nocapture --test-threads 1 bench_`. They print `BENCH …` lines rather than assert figures.
//!
//! - sign-ups with the homeserver and the SMSC excluded: dev SMS sink, JWT backend (the extension issues the
//!   login without calling the homeserver), SQLite; sequential (per-sign-up latency of the extension's two
//!   calls) and with concurrent clients (sign-ups per second);
//! - sign-ups with both included: codes over SMPP to the smpp34 simulator, and the JWT login at Synapse;
//! - `lookup` of 1,000 `sha256` hashes against 10,000 bindings, server time (the handler's own `took_us`).
//! - OpenID sign-ins (authorize → pages → code → token) with SMS and homeserver excluded; the token endpoint's
//!   latency.

use crate::harness::{Api, Ext, Smsc, code_in};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, Seek};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tincan_homeserver_ext::store::{Binding, IdentityRepository, SqliteStore};
use tincan_testkit::Synapse;

const OPEN_LIMITS: &str = "[limits]\nper_ip = { burst = 1000000, refill = 1000000, period_secs = 1 }\n\
     per_prefix = { burst = 1000000, refill = 1000000, period_secs = 1 }\n\
     per_country = { burst = 1000000, refill = 1000000, period_secs = 1 }\n\
     verify_per_ip = { burst = 1000000, refill = 1000000, period_secs = 1 }\n";

fn number(i: usize) -> String {
    format!("+447911{:06}", i)
}

/// Reads the dev sink incrementally (the file only grows), so waiting for a code costs O(new lines).
struct Sink {
    file: std::io::BufReader<std::fs::File>,
    codes: HashMap<String, String>,
}

impl Sink {
    fn open(ext: &Ext) -> Sink {
        let path = ext.dir.path().join("sms.jsonl");
        let file = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path).unwrap();
        Sink { file: std::io::BufReader::new(file), codes: HashMap::new() }
    }

    async fn code(&mut self, to: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.codes.remove(to) {
                return c;
            }
            let mut line = String::new();
            let pos = self.file.stream_position().unwrap();
            while self.file.read_line(&mut line).unwrap() > 0 {
                if !line.ends_with('\n') {
                    // A line still being written: read it again next time.
                    self.file.seek(std::io::SeekFrom::Start(pos)).unwrap();
                    break;
                }
                let v: Value = serde_json::from_str(&line).unwrap();
                self.codes.insert(v["to"].as_str().unwrap().into(), code_in(v["text"].as_str().unwrap()));
                line.clear();
            }
            assert!(Instant::now() < deadline, "no code for {to}");
            if !self.codes.contains_key(to) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

#[derive(Default)]
struct Timings {
    request: Vec<Duration>,
    verify: Vec<Duration>,
    login: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(what: &str, v: &mut [Duration]) {
    if v.is_empty() {
        return;
    }
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    eprintln!(
        "BENCH   {what:<28} n={:<5} mean {:>7.3} ms  p50 {:>7.3}  p90 {:>7.3}  p99 {:>7.3}  max {:>7.3}",
        v.len(),
        ms(mean),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(*v.last().unwrap())
    );
}

async fn timed_post(ext: &Ext, path: &str, body: Value) -> (Duration, Value) {
    let t = Instant::now();
    let (s, v) = ext.post(path, body).await;
    let took = t.elapsed();
    assert_eq!(s, 200, "{path}: {v}");
    (took, v)
}

/// Request + verify through the extension only (dev SMS sink, JWT backend, SQLite), first sequentially for the
/// per-sign-up latency, then with 8 concurrent clients for throughput.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_signups_extension_only() {
    signups_extension_only(None, "SQLite").await;
}

/// The same on PostgreSQL (the machine's server, `TINCAN_TEST_PG_URL`; skipped when it is unreachable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_signups_extension_only_postgres() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    signups_extension_only(Some(pg.url()), "PostgreSQL").await;
}

async fn signups_extension_only(database_url: Option<&str>, db: &str) {
    let ext = Arc::new(
        Ext::start_on(
            database_url,
            &format!(
                "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"bench-secret-0123456789\"\n{OPEN_LIMITS}"
            ),
        )
        .await
        .unwrap(),
    );
    let sink = Arc::new(tokio::sync::Mutex::new(Sink::open(&ext)));
    let sign_up = move |i: usize| {
        let (ext, sink) = (ext.clone(), sink.clone());
        async move {
            let phone = number(i);
            let secret = format!("b{i}");
            let (t_req, b) = timed_post(
                &ext,
                "/_tincan/client/v1/register/request",
                json!({"phone": phone, "client_secret": secret, "send_attempt": 1}),
            )
            .await;
            let code = sink.lock().await.code(&phone).await;
            let (t_ver, v) = timed_post(
                &ext,
                "/_tincan/client/v1/register/verify",
                json!({"sid": b["sid"], "client_secret": secret, "code": code}),
            )
            .await;
            assert_eq!(v["new_account"], true);
            (t_req, t_ver)
        }
    };
    // Warm-up (connections, SQLite pages, first pepper).
    for i in 0..20 {
        sign_up(100_000 + i).await;
    }
    let n = 500;
    let mut t = Timings::default();
    let start = Instant::now();
    for i in 0..n {
        let (r, v) = sign_up(i).await;
        t.request.push(r);
        t.verify.push(v);
    }
    let took = start.elapsed();
    report(&format!("sign-ups, extension only (dev sink, JWT, {db}), 1 client"), n, took);
    let mut both: Vec<Duration> = t.request.iter().zip(&t.verify).map(|(a, b)| *a + *b).collect();
    stats("request round trip", &mut t.request);
    stats("verify round trip", &mut t.verify);
    stats("request + verify", &mut both);

    let clients = 8;
    let per_client = 125;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let sign_up = sign_up.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per_client {
                sign_up(10_000 + c * per_client + k).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    report(
        &format!("sign-ups, extension only (dev sink, JWT, {db}), 8 clients"),
        clients * per_client,
        start.elapsed(),
    );
}

/// The same with codes over SMPP to the smpp34 simulator and a JWT login to Synapse per sign-up.
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
    let http = reqwest::Client::new();
    let warm = 5;
    let n = 100;
    let mut t = Timings::default();
    let mut wait_sms = Vec::new();
    let mut start = Instant::now();
    for i in 0..warm + n {
        if i == warm {
            start = Instant::now();
        }
        let phone = number(i);
        let (t_req, b) = timed_post(
            &ext,
            "/_tincan/client/v1/register/request",
            json!({"phone": phone, "client_secret": "b", "send_attempt": 1}),
        )
        .await;
        let t0 = Instant::now();
        let code = code_in(smsc.submit(i + 1).await.unwrap()["text"].as_str().unwrap());
        let t_sms = t0.elapsed();
        let (t_ver, v) = timed_post(
            &ext,
            "/_tincan/client/v1/register/verify",
            json!({"sid": b["sid"], "client_secret": "b", "code": code}),
        )
        .await;
        let t0 = Instant::now();
        let r = http
            .post(format!("{}/_matrix/client/v3/login", synapse.url()))
            .json(&json!({"type": "org.matrix.login.jwt", "token": v["login"]["token"]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let t_login = t0.elapsed();
        if i >= warm {
            t.request.push(t_req);
            t.verify.push(t_ver);
            t.login.push(t_login);
            wait_sms.push(t_sms);
        }
    }
    report("sign-ups incl. SMPP simulator and Synapse JWT login, 1 client", n, start.elapsed());
    let mut ext_only: Vec<Duration> = t.request.iter().zip(&t.verify).map(|(a, b)| *a + *b).collect();
    stats("request (incl. submit_sm)", &mut t.request);
    stats("verify", &mut t.verify);
    stats("extension: request + verify", &mut ext_only);
    stats("test reads SMSC log", &mut wait_sms);
    stats("Synapse JWT login", &mut t.login);
}

/// `lookup` of 1,000 sha256 hashes (half of them bound) against 10,000 bindings: the server's own time
/// (`took_us` of the handler's debug event) and the HTTP round trip.
#[tokio::test]
#[ignore]
async fn bench_lookup_1000_hashes() {
    let ext = Ext::start("server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"bench-secret-0123456789\"\n")
        .await
        .unwrap();
    let store = SqliteStore::connect(&ext.db_url()).await.unwrap();
    crate::harness::add_is_token(&store, "bench", "@b:hs.test").await;
    let (_, details) = ext.get("/_matrix/identity/v2/hash_details", "bench").await;
    let pepper = details["lookup_pepper"].as_str().unwrap().to_owned();
    let hash = |i: usize| tincan_homeserver_ext::identity::lookup_hash(&format!("4479{:08}", i), &pepper);
    for i in 0..10_000 {
        let b = Binding { number: format!("+4479{:08}", i), user_id: format!("@u{i}:hs.test") };
        store.bind(&b, &|n, p| tincan_homeserver_ext::identity::lookup_hash(&n[1..], p), 0).await.unwrap();
    }
    // Half known, half unknown.
    let addresses: Vec<String> = (0..1000).map(|i| hash(i * 20)).collect();
    let mut round_trips = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let r: Value = ext
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
        round_trips.push(start.elapsed());
        assert_eq!(r["mappings"].as_object().unwrap().len(), 500);
    }
    let log = strip_ansi(&std::fs::read_to_string(ext.dir.path().join("ext.log")).unwrap());
    let mut server: Vec<Duration> = log
        .lines()
        .filter(|l| l.contains("lookup answered") && l.contains("addresses=1000"))
        .filter_map(|l| l.split("took_us=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .map(Duration::from_micros)
        .collect();
    assert_eq!(server.len(), 20, "one took_us per lookup in the log");
    eprintln!("BENCH lookup of 1000 sha256 hashes (500 bound), 10,000 bindings, SQLite, 20 runs:");
    stats("server time (handler)", &mut server);
    stats("HTTP round trip", &mut round_trips);
}

/// The log without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn report(what: &str, n: usize, took: Duration) {
    eprintln!(
        "BENCH {what}: {n} in {took:.3?} = {:.1} sign-ups/s, {:.3} ms each (wall)",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
}

/// Complete OpenID sign-ins through the extension alone (dev SMS sink, JWT backend, SQLite, no homeserver):
/// `GET /oauth2/authorize` → number page → code page → redirect with the code → `POST /oauth2/token`, first
/// sequentially (per-step latency, the token endpoint's p99), then with 8 concurrent browsers (sign-ins per
/// second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_oidc_sign_ins_extension_only() {
    use crate::oidc::{Browser, REDIRECT, Rp, query_param, test_keys};
    let keys = test_keys();
    let port = tincan_testkit::ports::free_port();
    let config = format!(
        "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"bench-secret-0123456789\"\n{OPEN_LIMITS}\
         [oidc]\nissuer = \"http://127.0.0.1:{port}\"\n\
         per_ip = {{ burst = 1000000, refill = 1000000, period_secs = 1 }}\n\
         [[oidc.keys]]\nkid = \"k1\"\nalg = \"RS256\"\nprivate_key_file = \"{}\"\n\
         [[oidc.clients]]\nclient_id = \"synapse\"\nclient_secret = \"synapse-client-secret-0123456789\"\n\
         redirect_uris = [\"{REDIRECT}\"]\n",
        keys.rs256.display()
    );
    let ext = Arc::new(Ext::start_at(port, None, &config).await.unwrap());
    let sink = Arc::new(tokio::sync::Mutex::new(Sink::open(&ext)));
    // One sign-in: (authorize + number + code pages, token endpoint).
    let sign_in = move |i: usize| {
        let (ext, sink) = (ext.clone(), sink.clone());
        async move {
            let rp = Rp::new(REDIRECT);
            let phone = number(i);
            let mut b = Browser::new();
            let t = Instant::now();
            let page = b.get(&rp.authorize_url(&ext.url, &[])).await;
            assert_eq!(page.status, 200, "{}", page.body);
            let page = b.submit(&ext.url, &page, "/oauth2/authorize/phone", &[("phone", &phone)]).await;
            assert_eq!(page.status, 200, "{}", page.body);
            let code = sink.lock().await.code(&phone).await;
            let back = b.submit(&ext.url, &page, "/oauth2/authorize/code", &[("code", &code)]).await;
            assert_eq!(back.status, 303, "{}", back.body);
            let pages = t.elapsed();
            let code = query_param(back.location.as_deref().unwrap(), "code").unwrap();
            let t = Instant::now();
            let (s, body, _) = rp.token(&ext.url, &code, "synapse-client-secret-0123456789", &rp.verifier).await;
            let token = t.elapsed();
            assert_eq!(s, 200, "{body}");
            (pages, token)
        }
    };
    for i in 0..20 {
        sign_in(50_000 + i).await;
    }
    let n: usize = std::env::var("TINCAN_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let (mut pages, mut token) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for i in 0..n {
        let (p, t) = sign_in(60_000 + i).await;
        pages.push(p);
        token.push(t);
    }
    let took = start.elapsed();
    eprintln!(
        "BENCH OpenID sign-ins, extension only (dev sink, JWT, SQLite), 1 browser: {n} in {took:.3?} = {:.1} \
         sign-ins/s, {:.3} ms each (wall)",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
    stats("pages (authorize..code)", &mut pages);
    stats("token endpoint", &mut token);

    let clients = 8;
    let per_client = n.div_ceil(clients);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut token = Vec::new();
    for c in 0..clients {
        let sign_in = sign_in.clone();
        tasks.push(tokio::spawn(async move {
            let mut token = Vec::new();
            for k in 0..per_client {
                token.push(sign_in(70_000 + c * per_client + k).await.1);
            }
            token
        }));
    }
    for task in tasks {
        token.extend(task.await.unwrap());
    }
    let took = start.elapsed();
    let total = clients * per_client;
    eprintln!(
        "BENCH OpenID sign-ins, extension only (dev sink, JWT, SQLite), 8 browsers: {total} in {took:.3?} = {:.1} \
         sign-ins/s",
        total as f64 / took.as_secs_f64()
    );
    stats("token endpoint, 8 browsers", &mut token);
}
