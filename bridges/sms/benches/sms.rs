//! The SMS bridge's benchmark (issue #17), run by `bench/sms/run.sh`; not a test. The SMSC peer is
//! `tests/smsc_peer.py` on the PyPI `smpp34` server (Rust-backed, independent of the rusmpp crates the bridge
//! uses), from the test venv.
//!
//! - `link WINDOW…`: `submit_sm`/s through the carrier link. N messages (one segment each, GSM 7-bit) are stored
//!   in a SQLite outbox first (not timed); then one link with the given window binds and sends them all. Timed
//!   from the start of the link set until the outbox holds nothing pending. The peer is asked every 250 ms how
//!   many it accepted, for the rate over each second. Lost = messages the peer never accepted (counted by
//!   distinct destination and text) or not `submitted` in the outbox.
//! - `e2e`: Matrix message → `submit_sm` latency. Synapse (test venv) with the bridge registered and run in
//!   process (no encryption, free billing); a user sends M texts one after another into a DM with a number's
//!   ghost, each when the previous one reached the peer; latency = the peer's clock at the `submit_sm` minus the
//!   clock just before the client's `PUT /send`.
//!
//! `cargo bench --workspace --profile dev --bench sms -- [link [WINDOW…]] [e2e] [--messages N] [--latency M]
//! [--outbox-dir DIR]` (the outbox's SQLite file in a fresh folder under DIR, e.g. /dev/shm to leave the disk's
//! fsync out; default the system's temporary folder).

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};
use tincan_common::{Clock, Secret, SystemClock};
use tincan_sms::link::{HandlerError, Inbound, InboundHandler, LinkSet, SmscConfig};
use tincan_sms::protocol::udh::Reference;
use tincan_sms::store::{self, MessageState, NewMessage, NewSegment, Store};
use tincan_testkit::ChildGuard;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The SMSC peer, `tests/smsc_peer.py` of this crate (the testkit's driver would find the copy of the
/// checkout it was built in).
struct Smsc {
    _guard: ChildGuard,
    port: u16,
    control: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Smsc {
    async fn start() -> anyhow::Result<Smsc> {
        let dir = tempfile::tempdir()?;
        let (port, control) = (tincan_testkit::ports::free_port(), tincan_testkit::ports::free_port());
        let log = dir.path().join("smsc.jsonl");
        let mut cmd = std::process::Command::new(tincan_testkit::synapse::venv().join("bin/python"));
        cmd.arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc_peer.py"))
            .arg(port.to_string())
            .arg(control.to_string());
        let mut guard = ChildGuard::spawn_logged("smsc-peer", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("\"listening\"") {
            guard.ensure_running()?;
            anyhow::ensure!(Instant::now() < deadline, "the SMSC peer did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Smsc { _guard: guard, port, control, log, _dir: dir })
    }

    async fn control(&self, command: Value) -> anyhow::Result<Value> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.control)).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(&mut stream).read_line(&mut line).await?;
        let reply: Value = serde_json::from_str(&line)?;
        anyhow::ensure!(reply["ok"] == true, "control {command}: {reply}");
        Ok(reply)
    }

    async fn set(&self, mut settings: Value) {
        settings["cmd"] = json!("set");
        self.control(settings).await.expect("the peer takes the setting");
    }

    fn submits(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == "submit_sm")
            .collect()
    }
}

/// Inbound messages are not part of this benchmark.
struct Ignore;

#[async_trait::async_trait]
impl InboundHandler for Ignore {
    async fn handle(&self, _smsc: &str, _inbound: Inbound) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn smsc(port: u16, window: usize) -> SmscConfig {
    SmscConfig {
        name: "peer".into(),
        address: format!("127.0.0.1:{port}"),
        system_id: "tincan".into(),
        password: Secret::new("pw"),
        window,
        reconnect_min_ms: 100,
        reconnect_max_ms: 500,
        response_timeout_secs: 10,
        // Receipts would be deliver_sm traffic on the same link: left out of the submit rate.
        delivery_receipts: false,
        enquire_link_secs: std::env::var("SMS_BENCH_ENQUIRE_LINK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30),
        ..SmscConfig::default()
    }
}

fn message(i: usize) -> NewMessage {
    let (coding, segments) =
        NewSegment::split(&format!("benchmark message {i}"), Reference::Eight(0)).expect("a short GSM text");
    NewMessage {
        event_id: format!("$bench{i}"),
        sender: "@alice:hs.test".into(),
        source: "+447700900001".into(),
        // Spread over destinations, as traffic is.
        destination: format!("+4477009{:05}", i % 100_000),
        coding,
        segments,
        hold: None,
        unit_price: None,
    }
}

async fn stats(peer: &Smsc) -> Value {
    peer.control(json!({"cmd": "stats"})).await.expect("the peer answers stats")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn link(window: usize, n: usize, db_dir: Option<&str>) -> anyhow::Result<()> {
    let peer = Smsc::start().await?;
    peer.set(json!({"log_submits": false})).await;
    let dir = match db_dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let store: Arc<dyn Store> = store::open(&format!("sqlite:{}", dir.path().join("sms.db").display())).await?;
    let msgs: Vec<NewMessage> = (0..n).map(message).collect();
    let mut ids = Vec::with_capacity(n);
    for chunk in msgs.chunks(1000) {
        let mut tx = store.begin().await?;
        for m in chunk {
            ids.push(tx.outbox().enqueue(m, 0).await?.id);
        }
        tx.commit().await?;
    }
    let config = [smsc(peer.port, window)];
    let start = Instant::now();
    let links = LinkSet::start(&config, store.clone(), Arc::new(Ignore), Arc::new(SystemClock)).await?;
    // (seconds since start, accepted by the peer)
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let deadline = start + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let accepted = stats(&peer).await["accepted"].as_u64().unwrap_or(0);
        samples.push((start.elapsed().as_secs_f64(), accepted));
        let pending = {
            let mut tx = store.begin().await?;
            tx.outbox().pending_segments().await?
        };
        if pending == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "window {window}: {pending} still pending after 600 s");
    }
    let elapsed = start.elapsed().as_secs_f64();
    links.stop().await;
    if std::env::var_os("SMS_BENCH_SAMPLES").is_some() {
        let line: Vec<String> = samples.iter().map(|(t, a)| format!("{t:.2}:{a}")).collect();
        eprintln!("samples (s:accepted) {}", line.join(" "));
    }
    let s = stats(&peer).await;
    let (submits, accepted, distinct) = (s["submits"].as_u64(), s["accepted"].as_u64(), s["distinct"].as_u64());
    let mut not_submitted = 0;
    {
        let mut tx = store.begin().await?;
        for id in &ids {
            let m = tx.outbox().message(*id).await?.expect("stored");
            if m.state != MessageState::Submitted {
                not_submitted += 1;
            }
        }
    }
    let lost = n as u64 - distinct.unwrap_or(0).min(n as u64);
    // Rate over each whole second between the first and the last accepted message (the ramp-up of the bind and
    // the tail end out).
    let per_second: Vec<f64> = {
        let first = samples.iter().find(|(_, a)| *a > 0).map(|(t, _)| *t).unwrap_or(0.0);
        let last = samples.iter().find(|(_, a)| *a >= n as u64).map(|(t, _)| *t).unwrap_or(elapsed);
        let at = |t: f64| samples.iter().rev().find(|(ts, _)| *ts <= t).map(|(_, a)| *a).unwrap_or(0);
        let mut v = Vec::new();
        let mut t = first;
        while t + 1.0 <= last {
            v.push((at(t + 1.0) - at(t)) as f64);
            t += 1.0;
        }
        v
    };
    let mut sorted = per_second.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "link window={window} outbox_dir={} messages={n} elapsed_s={elapsed:.2} rate_per_s={:.0} per_second_min={:.0} \
         per_second_median={:.0} per_second_max={:.0} seconds={} submits={} accepted={} distinct={} lost={lost} \
         not_submitted_in_outbox={not_submitted} duplicates={}",
        dir.path().parent().map(|p| p.display().to_string()).unwrap_or_default(),
        n as f64 / elapsed,
        sorted.first().copied().unwrap_or(f64::NAN),
        pct(&sorted, 50.0),
        sorted.last().copied().unwrap_or(f64::NAN),
        sorted.len(),
        submits.unwrap_or(0),
        accepted.unwrap_or(0),
        distinct.unwrap_or(0),
        accepted.unwrap_or(0).saturating_sub(distinct.unwrap_or(0)),
    );
    Ok(())
}

async fn e2e(m: usize) -> anyhow::Result<()> {
    use tincan_appservice::registration::{Tokens, registration_yaml};
    const AS_TOKEN: &str = "sms-as-token-for-the-benchmark";
    const HS_TOKEN: &str = "sms-hs-token-for-the-benchmark";
    let peer = Smsc::start().await?;
    let dir = tempfile::tempdir()?;
    let port = tincan_testkit::ports::free_port();
    let mut c = tincan_sms::config::Config::default();
    c.homeserver.server_name = "hs.test".into();
    c.appservice.id = "tincan-sms".into();
    c.appservice.listen = format!("127.0.0.1:{port}");
    c.appservice.url = format!("http://127.0.0.1:{port}");
    c.appservice.as_token = Secret::new(AS_TOKEN);
    c.appservice.hs_token = Secret::new(HS_TOKEN);
    c.appservice.bot_localpart = "smsbot".into();
    c.database.url = format!("sqlite:{}", dir.path().join("core.db").display());
    c.sms.database_url = format!("sqlite:{}", dir.path().join("sms.db").display());
    c.sms.listen = format!("127.0.0.1:{}", tincan_testkit::ports::free_port());
    c.sms.numbers = vec!["+447400000001".into()];
    c.sms.limits.per_user.per_minute = 1_000_000.0;
    c.sms.limits.per_user.burst = 100_000;
    c.sms.limits.per_prefix.per_minute = 1_000_000.0;
    c.sms.limits.per_prefix.burst = 100_000;
    c.sms.smsc = vec![smsc(peer.port, 10)];
    let core = c.core();
    let tokens = Tokens::from_config(&core).expect("tokens");
    let synapse =
        tincan_testkit::Synapse::builder().appservice(registration_yaml(&core, "sms_", &tokens)).start().await?;
    c.homeserver.url = synapse.url();
    let store = store::open(&c.sms.database_url).await?;
    let sms = tincan_sms::bridge::SmsBridge::new(
        c.sms.clone(),
        "hs.test",
        store,
        Arc::new(tincan_sms::billing::Free),
        Arc::new(SystemClock),
    );
    let bridge = tincan_appservice::Bridge::builder(c.core()).start(Arc::new(sms.clone())).await?;
    let alice = synapse.register_user("alice", false).await?;
    let client = tincan_testkit::matrix::Client::new(synapse.url(), alice.access_token);
    let ghost = "@sms_+447400123456:hs.test";
    let room = client
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [ghost], "is_direct": true, "preset": "trusted_private_chat"})),
        )
        .await["room_id"]
        .as_str()
        .expect("room")
        .to_owned();
    let members = format!("/_matrix/client/v3/rooms/{}/joined_members", tincan_testkit::matrix::enc(&room));
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.call(reqwest::Method::GET, &members, None).await["joined"].get(ghost).is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the ghost did not join; Synapse:\n{}", synapse.log_tail(40));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let clock = SystemClock;
    let now = || clock.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut latencies = Vec::with_capacity(m);
    // Two warm-up texts (the first makes the sender number and the conversation).
    for i in 0..m + 2 {
        let body = format!("latency {i}");
        let sm = hex::encode(tincan_sms::protocol::gsm7::encode(&body)?);
        let path =
            format!("/_matrix/client/v3/rooms/{}/send/m.room.message/bench{i}", tincan_testkit::matrix::enc(&room));
        let t0 = now();
        client.call(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": body}))).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let t = loop {
            if let Some(s) = peer.submits().into_iter().find(|s| s["sm"] == sm.as_str()) {
                break s["t"].as_f64().expect("the peer's time");
            }
            anyhow::ensure!(Instant::now() < deadline, "text {i} did not reach the SMSC within 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if i >= 2 {
            latencies.push((t - t0) * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "e2e texts={m} latency_ms p50={:.1} p90={:.1} p99={:.1} max={:.1}",
        pct(&latencies, 50.0),
        pct(&latencies, 90.0),
        pct(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    sms.stop().await;
    bridge.stop().await;
    drop(synapse);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut take = |flag: &str, default: usize| -> anyhow::Result<usize> {
        match args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < args.len() => {
                let v = args.remove(i + 1).parse()?;
                args.remove(i);
                Ok(v)
            }
            Some(_) => anyhow::bail!("{flag} needs a number"),
            None => Ok(default),
        }
    };
    let n = take("--messages", 20_000)?;
    let m = take("--latency", 200)?;
    let db_dir = match args.iter().position(|a| a == "--outbox-dir") {
        Some(i) if i + 1 < args.len() => {
            let d = args.remove(i + 1);
            args.remove(i);
            Some(d)
        }
        Some(_) => anyhow::bail!("--outbox-dir needs a directory"),
        None => None,
    };
    if args.is_empty() {
        args = vec!["link".into(), "10".into(), "100".into(), "e2e".into()];
    }
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "link" => {
                i += 1;
                let mut windows = Vec::new();
                while let Some(w) = args.get(i).and_then(|a| a.parse::<usize>().ok()) {
                    windows.push(w);
                    i += 1;
                }
                for w in if windows.is_empty() { vec![10, 100] } else { windows } {
                    link(w, n, db_dir.as_deref()).await?;
                }
            }
            "e2e" => {
                e2e(m).await?;
                i += 1;
            }
            other => anyhow::bail!(
                "unknown argument {other:?} (link [WINDOW…], e2e, --messages N, --latency M, --outbox-dir DIR)"
            ),
        }
    }
    Ok(())
}
