//! Benchmarks of the bridge with sipp against it — not tests: `#[ignore]`d, run by `bench/sip/run.sh` (which
//! prints the figures with the machine's load). Every load is bounded (counts and rates from the environment),
//! on loopback only. Each runs the same sipp scenario through Kamailio alone (a stateful proxy in front of a sipp
//! UAS that answers at once) as the anchor of what the SIP side costs on this machine.
//!
//! - `bench_messages`: SIP MESSAGE → Matrix messages/s. sipp sends `BENCH_MESSAGES` MESSAGEs at
//!   `BENCH_MESSAGE_RATE`/s from one phone to Alice's number; every distinct body is counted in the portal
//!   (lost = sent − arrived); the Matrix-side rate is from sipp's start to the last message's
//!   `origin_server_ts`.
//! - `bench_calls`: call set-ups/s to Matrix ghosts. sipp calls Alice `BENCH_CALLS` times at `BENCH_CPS`/s from
//!   `BENCH_CALLERS` numbers (portals made beforehand), holds each call `BENCH_HOLD_MS`, hangs up; Alice's
//!   client is scripted (it answers every `m.call.invite` at once). Set-up rate and INVITE → 200 times from
//!   sipp's per-call response times; memory per active call from this process's RSS (the bridge runs in it)
//!   against the calls rtpengine holds, sampled during the run.

use crate::calls::{HANGS_UP, PHONE, TAKES_200, browser_sdp, fill, phone_calls};
use crate::harness::{ALICE_NUMBER, DOMAIN, Harness, enc};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};
use tincan_sip_core::rtpengine::{NgClient, NgTiming};
use tincan_testkit::ports::{free_addr, free_port};
use tincan_testkit::process::ChildGuard;
use tincan_testkit::sip::Scenario;
use tincan_testkit::tools;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn now_ms() -> u64 {
    let now = tincan_common::Clock::now(&tincan_common::SystemClock);
    u64::try_from(now.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// This process's resident memory (KiB).
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What sipp reports at its end.
#[derive(Debug, Default)]
struct SippRun {
    successful: u64,
    failed: u64,
    elapsed: Duration,
    /// Per-call response times (INVITE → 200): (received at, ms since epoch; response time ms).
    rtt: Vec<(f64, f64)>,
}

/// Runs sipp (a UAC) to completion: `calls` at `rate`/s; `extra` arguments added.
fn run_uac(scenario: &Scenario, remote: SocketAddr, calls: u64, rate: u64, extra: &[String]) -> SippRun {
    let local = free_addr();
    let mut cmd = tools::command("sipp");
    let budget = calls / rate.max(1) + 180;
    cmd.arg(remote.to_string())
        .arg("-sf")
        .arg(scenario.path())
        .args(["-i", "127.0.0.1", "-p", &local.port().to_string()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string(), "-l", &calls.to_string()])
        .args(["-nostdin", "-timeout", &format!("{budget}s"), "-timeout_error", "-trace_err"])
        .args(["-trace_rtt", "-rtt_freq", "1"])
        .arg("-error_file")
        .arg(scenario.dir().join("errors.log"))
        .args(extra)
        .current_dir(scenario.dir());
    let t0 = Instant::now();
    let out = cmd.output().expect("running sipp");
    let elapsed = t0.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |label: &str| {
        text.lines()
            .rfind(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut rtt = Vec::new();
    for entry in std::fs::read_dir(scenario.dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with("_rtt.csv") {
            let csv = std::fs::read_to_string(entry.path()).unwrap_or_default();
            rtt.extend(csv.lines().skip(1).filter_map(|l| {
                let mut f = l.split(';');
                Some((f.next()?.trim().parse().ok()?, f.next()?.trim().parse().ok()?))
            }));
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let run = SippRun { successful: count("Successful call"), failed: count("Failed call"), elapsed, rtt };
    if run.failed > 0 || !out.status.success() {
        let errors = std::fs::read_to_string(scenario.dir().join("errors.log")).unwrap_or_default();
        let head: String = errors.lines().take(30).collect::<Vec<_>>().join("\n");
        eprintln!("sipp exited {}; first errors:\n{head}", out.status);
    }
    run
}

/// A sipp UAS in the background answering `calls` times.
fn spawn_uas(scenario: &Scenario, at: SocketAddr, calls: u64) -> ChildGuard {
    let mut cmd = tools::command("sipp");
    cmd.arg("-sf")
        .arg(scenario.path())
        .args(["-i", "127.0.0.1", "-p", &at.port().to_string(), "-m", &calls.to_string(), "-nostdin"])
        .current_dir(scenario.dir());
    scenario.spawn(cmd, "uas").unwrap()
}

/// Kamailio 5 as a transaction-stateful proxy on `listen`, relaying everything to `uas` (record-routing
/// INVITEs).
fn kamailio(listen: SocketAddr, uas: SocketAddr, dir: &Path) -> ChildGuard {
    let cfg = format!(
        r#"#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:{listen}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
request_route {{
  if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
  if (has_totag()) {{
    loose_route();
    $du = "sip:{uas}";
    t_relay();
    exit;
  }}
  if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
  if (is_method("INVITE")) record_route();
  $du = "sip:{uas}";
  if (!t_relay()) sl_reply_error();
}}
"#
    );
    let path = dir.join("kamailio.cfg");
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = tools::command("kamailio");
    cmd.arg("-f").arg(&path).args(["-DD", "-E", "-m", "256"]).arg("-Y").arg(dir).arg("-P").arg(dir.join("pid"));
    let guard = ChildGuard::spawn_logged("kamailio", cmd, dir.join("kamailio.log")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    guard
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Set-ups per second and INVITE → 200 percentiles from sipp's per-call response times.
fn setup_figures(rtt: &[(f64, f64)]) -> String {
    if rtt.is_empty() {
        return "no response times".into();
    }
    let first = rtt.iter().map(|(at, ms)| at - ms).fold(f64::INFINITY, f64::min);
    let last = rtt.iter().map(|(at, _)| *at).fold(0.0, f64::max);
    let mut ms: Vec<f64> = rtt.iter().map(|(_, m)| *m).collect();
    ms.sort_by(f64::total_cmp);
    format!(
        "{:.1} set-ups/s over {:.1} s; INVITE→200 p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        rtt.len() as f64 * 1000.0 / (last - first).max(1.0),
        (last - first) / 1000.0,
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    )
}

fn message_uac() -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench message">
  <send retrans="500"><![CDATA[
MESSAGE sip:{ALICE_NUMBER}@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Bob" <sip:{PHONE}@[local_ip]:[local_port];user=phone>;tag=[call_number]
To: <sip:{ALICE_NUMBER}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

bench message [call_number]]]></send>
  <recv response="202"/>
</scenario>
"#
    )
}

const MESSAGE_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="bench message uas">
  <recv request="MESSAGE"/>
  <send><![CDATA[
SIP/2.0 202 Accepted
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#;

/// The distinct bench bodies in `rooms` and the newest one's `origin_server_ts`.
async fn arrived(h: &Harness, rooms: &[String]) -> (usize, u64) {
    let mut bodies = HashSet::new();
    let mut last_ts = 0;
    for room in rooms {
        let ts = arrived_in(h, room, &mut bodies).await;
        last_ts = last_ts.max(ts);
    }
    (bodies.len(), last_ts)
}

async fn arrived_in(h: &Harness, room: &str, bodies: &mut HashSet<String>) -> u64 {
    let mut last_ts = 0;
    let mut from: Option<String> = None;
    loop {
        let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000", enc(room));
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let v = h.alice(reqwest::Method::GET, &path, None).await;
        let chunk = v["chunk"].as_array().cloned().unwrap_or_default();
        for e in &chunk {
            if let Some(b) = e["content"]["body"].as_str().filter(|b| b.starts_with("bench message "))
                && e["type"] == "m.room.message"
            {
                bodies.insert(b.to_owned());
                last_ts = last_ts.max(e["origin_server_ts"].as_u64().unwrap_or(0));
            }
        }
        match v["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => break,
        }
    }
    last_ts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/sip/run.sh"]
async fn bench_messages() {
    let n = env_num("BENCH_MESSAGES", 3000);
    let rate = env_num("BENCH_MESSAGE_RATE", 400);
    let senders = env_num("BENCH_SENDERS", 50);
    let work = tempfile::tempdir().unwrap();
    let h = Arc::new(Harness::start_with(None, |c, _| c.sip.per_source_rate = 0).await);
    let inf = numbers_file(work.path(), 1_000_000, senders);
    let alice = warm_portals(&h, &inf, senders).await;
    let rooms = alice.joined.lock().unwrap().clone();
    let scenario = Scenario::new("message", &message_uac().replace(PHONE, "[field0]")).unwrap();
    let args = vec!["-inf".to_owned(), inf.display().to_string()];
    println!("messages: load before {}", load());
    let start_ms = now_ms();
    let (sip, a) = (h.sip, args.clone());
    let (run, scenario) = tokio::task::spawn_blocking(move || {
        let r = run_uac(&scenario, sip, n, rate, &a);
        (r, scenario)
    })
    .await
    .unwrap();
    // Wait until every message arrived or nothing more arrives for 30 s.
    let (mut count, mut last_ts) = arrived(&h, &rooms).await;
    let mut progress = Instant::now();
    while count < usize::try_from(n).unwrap() && progress.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (c, ts) = arrived(&h, &rooms).await;
        if c > count {
            progress = Instant::now();
        }
        (count, last_ts) = (c, ts);
    }
    let delivered = count as u64;
    let matrix_secs = last_ts.saturating_sub(start_ms) as f64 / 1000.0;
    println!(
        "messages through the bridge: {n} sent by sipp at {rate}/s from {senders} phones: {} answered 202, {} \
         failed, sipp done in {:.1} s ({:.0}/s accepted); in Matrix: {delivered} arrived, {} lost, last at \
         +{matrix_secs:.1} s → {:.0} messages/s end to end; load after {}",
        run.successful,
        run.failed,
        run.elapsed.as_secs_f64(),
        run.successful as f64 / run.elapsed.as_secs_f64(),
        n - delivered.min(n),
        delivered as f64 / matrix_secs.max(0.001),
        load()
    );
    alice.stop().await;

    // The Matrix side's own ceiling: Alice sends messages straight to Synapse into as many rooms of her own (no
    // ghost in them, so the bridge sees nothing), one sender per room.
    let direct = n.min(env_num("BENCH_SYNAPSE_MESSAGES", 1000));
    let mut plain = Vec::new();
    for _ in 0..rooms.len() {
        let v = h.alice(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(json!({}))).await;
        plain.push(v["room_id"].as_str().unwrap().to_owned());
    }
    println!("synapse alone: load before {}", load());
    let t0 = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    let per_room = direct.div_ceil(plain.len() as u64);
    for (r, room) in plain.iter().enumerate() {
        let (h, room) = (h.clone(), room.clone());
        senders.spawn(async move {
            for i in 0..per_room {
                let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/direct-{r}-{i}", enc(&room));
                h.alice(reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": "direct"}))).await;
            }
        });
    }
    senders.join_all().await;
    let sent = per_room * plain.len() as u64;
    println!(
        "messages straight to Synapse (Alice, {} rooms in parallel): {sent} in {:.1} s → {:.0} messages/s; load after {}",
        rooms.len(),
        t0.elapsed().as_secs_f64(),
        sent as f64 / t0.elapsed().as_secs_f64(),
        load()
    );
    drop(h);

    // The anchor: the same scenario through Kamailio to a sipp UAS answering 202.
    let uas_scenario = Scenario::new("message-uas", MESSAGE_UAS).unwrap();
    let (uas, proxy) = (free_addr(), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let _uas = spawn_uas(&uas_scenario, uas, n);
    let _kam = kamailio(proxy, uas, uas_scenario.dir());
    println!("anchor: load before {}", load());
    let anchor = tokio::task::spawn_blocking(move || run_uac(&scenario, proxy, n, rate, &args)).await.unwrap();
    println!(
        "messages through Kamailio alone: {n} at {rate}/s: {} answered 202, {} failed, sipp done in {:.1} s \
         ({:.0}/s); load after {}",
        anchor.successful,
        anchor.failed,
        anchor.elapsed.as_secs_f64(),
        anchor.successful as f64 / anchor.elapsed.as_secs_f64(),
        load()
    );
}

/// Alice's scripted client: joins every invite (the rooms joined go to `joined`), answers every
/// `m.call.invite` from a ghost at once.
async fn scripted_alice(
    h: Arc<Harness>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    joined: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let filter = json!({
        "room": {"timeline": {"limit": 1000, "types": ["m.call.invite"]}, "state": {"lazy_load_members": true},
                 "ephemeral": {"types": []}, "account_data": {"types": []}},
        "presence": {"types": []}, "account_data": {"types": []}
    })
    .to_string();
    let me = h.alice_account.user_id.clone();
    let mut since: Option<String> = None;
    let answer_sdp = browser_sdp("active", 45100, true);
    while !stop.load(Ordering::Relaxed) {
        let mut path = format!("/_matrix/client/v3/sync?timeout=500&filter={}", enc(&filter));
        if let Some(s) = &since {
            path.push_str(&format!("&since={}", enc(s)));
        }
        let sync: Value = h.alice(reqwest::Method::GET, &path, None).await;
        since = sync["next_batch"].as_str().map(str::to_owned);
        if let Some(invites) = sync["rooms"]["invite"].as_object() {
            for room in invites.keys() {
                let h = h.clone();
                let room = room.clone();
                let joined = joined.clone();
                tokio::spawn(async move {
                    let path = format!("/_matrix/client/v3/rooms/{}/join", enc(&room));
                    h.alice(reqwest::Method::POST, &path, Some(json!({}))).await;
                    joined.lock().unwrap().push(room);
                });
            }
        }
        let Some(rooms) = sync["rooms"]["join"].as_object() else { continue };
        for (room, data) in rooms {
            for e in data["timeline"]["events"].as_array().into_iter().flatten() {
                if e["type"] != "m.call.invite" || e["sender"] == me.as_str() {
                    continue;
                }
                let content = json!({"call_id": e["content"]["call_id"], "party_id": "alice-bench", "version": "1",
                                     "answer": {"type": "answer", "sdp": answer_sdp}});
                let (h, room, answered) = (h.clone(), room.clone(), answered.clone());
                tokio::spawn(async move {
                    let txn = format!("a{}", answered.fetch_add(1, Ordering::Relaxed));
                    let path = format!("/_matrix/client/v3/rooms/{}/send/m.call.answer/{txn}", enc(&room));
                    h.alice(reqwest::Method::PUT, &path, Some(content)).await;
                });
            }
        }
    }
}

/// Alice's scripted client, running.
struct Alice {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    joined: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Alice {
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

/// Starts Alice's scripted client and has each number of the sipp `-inf` file `inf` (`count` of them) text her
/// once, so that their portals exist and she has joined them before any clock starts.
async fn warm_portals(h: &Arc<Harness>, inf: &Path, count: u64) -> Alice {
    let (stop, answered, joined): (_, _, Arc<std::sync::Mutex<Vec<String>>>) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::default());
    let task = tokio::spawn(scripted_alice(h.clone(), stop.clone(), answered.clone(), joined.clone()));
    let alice = Alice { stop, answered, joined, task };
    let warm =
        Scenario::new("warm", &message_uac().replace(PHONE, "[field0]").replace("bench message", "warm-up")).unwrap();
    let (sip, args) = (h.sip, vec!["-inf".to_owned(), inf.display().to_string()]);
    let w = tokio::task::spawn_blocking(move || run_uac(&warm, sip, count, 20, &args)).await.unwrap();
    assert_eq!(w.successful, count, "the warm-up messages");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = alice.joined.lock().unwrap().len() as u64;
        if n >= count {
            break;
        }
        assert!(Instant::now() < deadline, "Alice joined {n} of {count} portals");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice
}

/// `count` phone numbers in a sipp `-inf` file (used in turn).
fn numbers_file(dir: &Path, first: u64, count: u64) -> std::path::PathBuf {
    let numbers: Vec<String> = (0..count).map(|i| format!("+1555{:07}", first + i)).collect();
    let inf = dir.join(format!("numbers-{first}.csv"));
    std::fs::write(&inf, format!("SEQUENTIAL\n{}\n", numbers.join("\n"))).unwrap();
    inf
}

/// rtpengine on loopback with a port range wide enough for the calls held at once.
fn rtpengine(ng: SocketAddr, dir: &Path) -> ChildGuard {
    let (min, max) = (env_num("BENCH_RTP_MIN", 30000), env_num("BENCH_RTP_MAX", 39999));
    let mut cmd = tools::command("rtpengine");
    cmd.args([
        "--config-file=none",
        "--foreground",
        "--table=-1",
        "--interface=127.0.0.1",
        &format!("--listen-ng={ng}"),
        &format!("--port-min={min}"),
        &format!("--port-max={max}"),
        "--log-stderr",
        "--log-level=4",
        "--no-fallback",
    ])
    .arg(format!("--pidfile={}", dir.join("rtpengine.pid").display()));
    let guard = ChildGuard::spawn_logged("rtpengine", cmd, dir.join("rtpengine.log")).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    guard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/sip/run.sh"]
async fn bench_calls() {
    let n = env_num("BENCH_CALLS", 1000);
    let cps = env_num("BENCH_CPS", 50);
    let hold_ms = env_num("BENCH_HOLD_MS", 10_000);
    let callers = env_num("BENCH_CALLERS", 10);
    let work = tempfile::tempdir().unwrap();
    let ng_addr = free_addr();
    let _rtp = rtpengine(ng_addr, work.path());
    let h = Harness::start_with(None, |c, _| {
        c.sip.per_source_rate = 0;
        c.media.rtpengine_ng = ng_addr.to_string();
        c.media.ring_timeout_secs = 60;
    })
    .await;
    let h = Arc::new(h);
    let ng = NgClient::new(ng_addr, NgTiming::default(), &mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng())
        .await
        .unwrap();
    let inf = numbers_file(work.path(), 2_000_000, callers);
    let inf_args = vec!["-inf".to_owned(), inf.display().to_string()];
    let alice = warm_portals(&h, &inf, callers).await;

    // The phones: INVITE (response time from here) → 180 → 200 (to here) → ACK, hold, BYE.
    let xml = phone_calls(&fill(&format!("{TAKES_200}{HANGS_UP}")))
        .replace(PHONE, "[field0]")
        .replacen(
            "<send retrans=\"500\"><![CDATA[\nINVITE",
            "<send retrans=\"500\" start_rtd=\"1\"><![CDATA[\nINVITE",
            1,
        )
        .replacen("<recv response=\"200\">", "<recv response=\"200\" rtd=\"1\">", 1)
        .replace("<pause milliseconds=\"1000\"/>", "<pause/>");
    let scenario = Scenario::new("calls", &xml).unwrap();
    let mut args = inf_args.clone();
    args.extend(["-d".to_owned(), hold_ms.to_string()]);
    let baseline = rss_kib();
    println!("calls: load before {}; RSS before the calls {} KiB", load(), baseline);
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (ng, sampling) = (ng.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut peak = (0usize, 0u64);
            while sampling.load(Ordering::Relaxed) {
                let active = ng.list(100_000).await.map(|l| l.len()).unwrap_or(0);
                let rss = rss_kib();
                if active > peak.0 {
                    peak = (active, rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    };
    let sip = h.sip;
    let (run, scenario) = tokio::task::spawn_blocking(move || {
        let r = run_uac(&scenario, sip, n, cps, &args);
        (r, scenario)
    })
    .await
    .unwrap();
    sampling.store(false, Ordering::Relaxed);
    let (peak_calls, peak_rss) = sampler.await.unwrap();
    let answers = alice.answered.load(Ordering::Relaxed);
    alice.stop().await;
    println!(
        "calls through the bridge: {n} at {cps}/s, held {hold_ms} ms: {} successful, {} failed ({} answers from \
         Alice); {}; peak {peak_calls} calls up at once, RSS {peak_rss} KiB → {:.1} KiB per active call; load after {}",
        run.successful,
        run.failed,
        answers,
        setup_figures(&run.rtt),
        peak_rss.saturating_sub(baseline) as f64 / peak_calls.max(1) as f64,
        load()
    );
    drop(h);

    // The anchor: the same phones through Kamailio to sipp's own UAS (180, 200 at once, BYE answered).
    let (uas, proxy) = (free_addr(), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let uas_dir = tempfile::tempdir().unwrap();
    let mut cmd = tools::command("sipp");
    cmd.args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas.port().to_string(), "-m", &n.to_string(), "-nostdin"])
        .current_dir(uas_dir.path());
    let _uas = ChildGuard::spawn_logged("uas", cmd, uas_dir.path().join("uas.log")).unwrap();
    let _kam = kamailio(proxy, uas, uas_dir.path());
    println!("anchor: load before {}", load());
    let mut args = inf_args;
    args.extend(["-d".to_owned(), hold_ms.to_string()]);
    let anchor = tokio::task::spawn_blocking(move || run_uac(&scenario, proxy, n, cps, &args)).await.unwrap();
    println!(
        "calls through Kamailio alone: {n} at {cps}/s, held {hold_ms} ms: {} successful, {} failed; {}; load after {}",
        anchor.successful,
        anchor.failed,
        setup_figures(&anchor.rtt),
        load()
    );
}
