//! `kill -9` of the gateway with 100 calls up (issue #19): sipp places 100 calls through the real binary to a
//! sipp carrier, media anchored at a real rtpengine; once every call is answered and has run a few seconds
//! the gateway is killed with SIGKILL and started again on the same database. The restarted process settles
//! every call its dead predecessor left: each is charged for its seconds from the answer to the last second
//! the dead process confirmed it up (never past the kill), once; its record says so; no hold stays open; no
//! media session stays at rtpengine; and the callers' BYEs are answered 481 (the dialogs died with the
//! process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tincan_gateway::storage::Storage;
use tincan_sip_core::rtpengine::{NgClient, NgTiming};
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::{Rtpengine, Scenario};

use super::records::CALLER_NEVER_ACKS;
use super::{CARRIER_ANSWERS, NUMBER, Rig, amount, dec, messages, trunk};

pub(super) const CALLER_OUTLIVES_THE_GATEWAY: &str = include_str!("../../scenarios/caller_outlives_the_gateway.xml");

/// Calls up when the gateway is killed.
const CALLS: u32 = 100;
/// The account's credit: far more than the calls use (every call is cut by the kill, not by its credit).
const CREDIT: &str = "100.00";
/// How long each caller talks: well past the kill and the restart.
const TALK_MS: u32 = 25_000;

fn now_ms() -> i64 {
    tincan_gateway::storage::unix_ms(tincan_common::Clock::now(&tincan_common::SystemClock))
}

/// The answered calls of the node's processes, as the database holds them.
pub(super) async fn answered_live_calls(storage: &dyn Storage, node: &str) -> usize {
    let mut tx = storage.begin_read().await.unwrap();
    let mut n = 0;
    for run in tx.live_calls().stale_runs(node, "").await.unwrap() {
        n += tx.live_calls().of_run(&run.run_id).await.unwrap().iter().filter(|c| c.answered_at_ms.is_some()).count();
    }
    n
}

async fn kill_with_calls_up(env: Vec<(String, String)>) {
    // Four RTP ports per anchored call (RTP and RTCP for each party).
    let rtp = Rtpengine::start_with_ports(600).await.unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    let ng = NgClient::new(rtp.ng, NgTiming::default(), &mut rng).await.unwrap();
    let mut a = trunk("cheap", "0.004");
    a.max_concurrent = CALLS;
    let extra = format!("per_source_rate = 5000\nrtpengine = \"{}\"\n", rtp.ng);
    let rig = Rig::start_with_env(&[&a], CREDIT, 60, None, &extra, env.clone()).await;
    let url = env
        .iter()
        .find(|(k, _)| k == "TINCAN_GATEWAY_DATABASE__URL")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("sqlite://{}", rig.gw.data_dir.join("gateway.sqlite3").display()));
    let node = format!("udp:{}", rig.sip);

    let carrier = Scenario::new("trunk-a", CARRIER_ANSWERS).unwrap();
    let mut cmd = carrier.uas_command(a.addr);
    cmd.args(["-m", "1000", "-l", "1000", "-timeout", "180s"]);
    let _trunk = carrier.spawn(cmd, "trunk-a").unwrap();

    let caller = Scenario::new("callers", CALLER_OUTLIVES_THE_GATEWAY).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), CALLS);
    let calls = CALLS.to_string();
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account, "-d", &TALK_MS.to_string()]);
    cmd.args(["-r", "50", "-l", &calls, "-timeout", "120s"]);
    let callers = tokio::spawn(async move {
        let ran = caller.run(cmd).await;
        (caller, ran)
    });

    // Every call answered (as the database knows it), then a few seconds of talk before the kill.
    let storage = tincan_gateway::storage::open(&url, Arc::new(tincan_common::SystemClock)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered_live_calls(&*storage, &node).await < CALLS as usize {
        assert!(Instant::now() < deadline, "the calls were not all answered\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ng.list(1000).await.unwrap().len(), CALLS as usize, "every call's media is at rtpengine");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let killed_at = now_ms();
    let rig = rig.crash_and_restart().await;

    // The new process settles what the dead one left.
    let deadline = Instant::now() + Duration::from_secs(30);
    let acct = loop {
        let acct = rig.account().await;
        if amount(&acct["held"]) == "0.00" || Instant::now() > deadline {
            break acct;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(amount(&acct["held"]), "0.00", "every open hold is settled after the restart: {acct}\n{}", rig.log());
    let sessions = ng.list(1000).await.unwrap();
    assert!(sessions.is_empty(), "no media session left at rtpengine: {} of them\n{}", sessions.len(), rig.log());

    let records =
        rig.get(&format!("/v1/accounts/{}/calls?limit=1000", rig.account)).await["items"].as_array().unwrap().clone();
    assert_eq!(records.len(), CALLS as usize, "one record per call");
    let mut ids: Vec<&str> = records.iter().map(|r| r["call_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CALLS as usize, "no call recorded twice");
    let per_second: Decimal = "0.01".parse().unwrap();
    let mut priced = Decimal::ZERO;
    for r in &records {
        assert_eq!((r["result"].as_str(), r["attempt"].as_u64()), (Some("answered"), Some(1)), "{r}");
        assert_eq!(r["reason"], "Gateway Restarted; Billed To The Last Confirmed Second", "{r}");
        let answered_at = r["answered_at_ms"].as_i64().unwrap();
        let billed = r["billed_seconds"].as_u64().unwrap();
        assert!(answered_at < killed_at, "{r}");
        // Never past the kill; at least one of the seconds it was up and confirmed (a heartbeat a second).
        let up = u64::try_from(killed_at - answered_at).unwrap() / 1000;
        assert!(billed >= 1 && billed <= up, "billed {billed} s of a call up {up} whole seconds at the kill: {r}");
        assert!(r["ended_at_ms"].as_i64().unwrap() <= killed_at, "{r}");
        let price = dec(&r["price"]);
        assert_eq!(price, Decimal::from(billed) * per_second, "{r}");
        priced += price;
    }
    // Exactly what the records say, charged once each.
    let credit: Decimal = CREDIT.parse().unwrap();
    assert_eq!(dec(&acct["balance"]), credit - priced, "{acct}");
    let cdrs =
        rig.get(&format!("/v1/accounts/{}/cdrs?limit=200", rig.account)).await["items"].as_array().unwrap().len();
    assert_eq!(cdrs, CALLS as usize, "one settlement per call");
    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");

    // The callers hang up on the new process: their dialogs died with the old one.
    let (caller, ran) = callers.await.unwrap();
    ran.unwrap_or_else(|e| {
        let errors = std::fs::read_to_string(caller.dir().join("errors.log")).unwrap_or_default();
        panic!("{e}\n{}\n{}", errors.lines().take(40).collect::<Vec<_>>().join("\n"), rig.log())
    });
    eprintln!(
        "kill -9 with {CALLS} calls up: charged {priced} for {} seconds in all",
        records.iter().map(|r| r["billed_seconds"].as_u64().unwrap()).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_kill_9_with_100_calls_up_settles_each_to_its_last_confirmed_second() {
    kill_with_calls_up(Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_kill_9_with_100_calls_up_settles_each_to_its_last_confirmed_second() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    kill_with_calls_up(vec![("TINCAN_GATEWAY_DATABASE__URL".into(), pg.url().into())]).await;
}

/// The gateway killed while a call waits for its caller's ACK (the carrier answered, the caller has the
/// gateway's 200 and never ACKs it): the call was never confirmed, so the restarted process releases its hold
/// in full with a `failed` record (`Gateway Restarted`), as a call never answered, instead of charging it to
/// the last second it confirmed up (its live row says answered only once the caller confirms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_call_killed_before_its_caller_acks_is_released_not_charged() {
    let a = trunk("cheap", "0.004");
    // The ACK wait well past the kill (3.5 s after the 200): the kill, not the wait, ends the call here.
    let rig = Rig::start_with(&[&a], "10.00", 60, None, "ack_timeout_ms = 20000\n").await;
    let url = format!("sqlite://{}", rig.gw.data_dir.join("gateway.sqlite3").display());
    let node = format!("udp:{}", rig.sip);
    let carrier = Scenario::new("trunk-a", CARRIER_ANSWERS).unwrap();
    let _trunk = carrier.spawn(carrier.uas_command(a.addr), "trunk-a").unwrap();
    let caller = Scenario::new("caller", CALLER_NEVER_ACKS).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), 1);
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account, "-timeout", "90s", "-trace_msg"]);
    // The caller waits for a BYE that never comes (the dialog dies with the process): stopped when dropped.
    let _caller = caller.spawn(cmd, "caller").unwrap();

    // The caller has the 200; a few heartbeats go by (each would confirm an answered call up) before the kill.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !messages(caller.dir()).contains("SIP/2.0 200 OK") {
        assert!(Instant::now() < deadline, "the caller never got the 200\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let storage = tincan_gateway::storage::open(&url, Arc::new(tincan_common::SystemClock)).await.unwrap();
    // (0 with the fix: an unconfirmed call's live row does not say answered.)
    let marked_answered = answered_live_calls(&*storage, &node).await;
    let rig = rig.crash_and_restart().await;
    let records = rig.records_within(1, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 1, "{records:?}\n{}", rig.log());
    let r = &records[0];
    assert_eq!(
        (r["result"].as_str(), r["sip_status"].as_u64(), r["reason"].as_str()),
        (Some("failed"), Some(500), Some("Gateway Restarted")),
        "released as a call never answered, not charged ({marked_answered} live rows said answered at the kill): \
         {r}\n{}",
        rig.log()
    );
    assert!(r.get("price").is_none() && r.get("billed_seconds").is_none(), "{r}");
    let acct = rig.released().await;
    assert_eq!((amount(&acct["balance"]), amount(&acct["held"])), ("10.00".into(), "0.00".into()), "{acct}");
    assert!(rig.cdrs().await.is_empty(), "nothing was settled");
    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");
}
