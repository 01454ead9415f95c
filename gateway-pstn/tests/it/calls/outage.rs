//! A database outage while a call ends (issue #19: no record and no charge may be lost): the gateway talks to
//! PostgreSQL through a TCP proxy the test takes down the moment the call is answered — it closes every
//! connection it carried and then either closes new ones at once, as a connection pooler does whose database is
//! away, or stops listening, so that connections are refused outright, as when the server is stopped.
//! The caller hangs up during the outage, which lasts longer than the gateway waits for the database; then the
//! database comes back. The call's own record (its real end, its billed seconds) and its settlement reach the
//! database once, the hold is closed, and the ledger check passes — also when the gateway is killed with
//! SIGKILL during the outage and started again once the database is back.
//!
//! And a call answered while the database is away: what the gateway knows of it (the answer) is written once
//! the database is back, however long it was away, so that a crash after that bills the call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tincan_gateway::storage::Storage;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::Scenario;
use tokio::net::{TcpListener, TcpStream};

use super::crash::{CALLER_OUTLIVES_THE_GATEWAY, answered_live_calls};
use super::{CALLER_HANGS_UP, CALLER_IS_CUT, CARRIER_ANSWERS, NUMBER, Rig, amount, carrier, dec, trunk};
use crate::harness::Gateway;

/// How long the caller talks; the database goes away at the answer and comes back well after the hang-up.
const TALK_MS: u32 = 4_000;
/// How long the database stays away after the caller hung up: longer than the gateway waits for it.
const AWAY_AFTER_HANG_UP: Duration = Duration::from_secs(10);

/// How the database is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Away {
    /// Connections are accepted and closed at once, as by a connection pooler whose database is down.
    Closes,
    /// Its port is closed: connections are refused outright (the server stopped; nothing listens).
    Refuses,
}

/// Whether the database is reachable through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Up,
    Away(Away),
}

/// A TCP proxy in front of PostgreSQL (loopback only) that the test can take down.
struct DbProxy {
    addr: SocketAddr,
    state: tokio::sync::watch::Sender<Db>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DbProxy {
    async fn start(target: SocketAddr) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = tokio::sync::watch::channel(Db::Up).0;
        let task = tokio::spawn(proxy(Some(listener), addr, target, state.subscribe()));
        DbProxy { addr, state, task }
    }

    /// Closes every connection carried; new ones are closed at once or refused, as `how` says.
    fn down(&self, how: Away) {
        self.state.send_replace(Db::Away(how));
    }

    fn up(&self) {
        self.state.send_replace(Db::Up);
    }
}

/// The proxy's accept loop: while the database is [`Away::Refuses`] nothing listens on `addr`.
async fn proxy(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    target: SocketAddr,
    mut state: tokio::sync::watch::Receiver<Db>,
) {
    loop {
        let now = *state.borrow_and_update();
        match (now, &listener) {
            (Db::Away(Away::Refuses), Some(_)) => listener = None,
            (Db::Away(Away::Refuses), None) => {
                if state.changed().await.is_err() {
                    return;
                }
            }
            // Listening again on the same port (the old one's connections may linger in TIME_WAIT).
            (_, None) => match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            (_, Some(l)) => tokio::select! {
                accepted = l.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    if now != Db::Up {
                        // The database is away: the connection is closed at once.
                        continue;
                    }
                    let mut down = state.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = down.wait_for(|s| *s != Db::Up) => {}
                        }
                    });
                }
                changed = state.changed() => if changed.is_err() { return },
            },
        }
    }
}

/// The spool files waiting in the gateway's data directory.
fn spooled(data_dir: &std::path::Path) -> usize {
    match std::fs::read_dir(data_dir.join("call-spool")) {
        Ok(d) => d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count(),
        Err(_) => 0,
    }
}

async fn a_call_ends_during_an_outage(crash: bool, away: Away) {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let real = url::Url::parse(pg.url()).unwrap();
    let target = SocketAddr::new(real.host_str().unwrap().parse().unwrap(), real.port().unwrap_or(5432));
    let proxy = DbProxy::start(target).await;
    let mut via_proxy = real.clone();
    via_proxy.set_port(Some(proxy.addr.port())).unwrap();
    let env = vec![("TINCAN_GATEWAY_DATABASE__URL".to_owned(), via_proxy.to_string())];

    let a = trunk("cheap", "0.004");
    // Slices of 60 s: no extension falls in the outage.
    let rig = Rig::start_with_env(&[&a], "10.00", 60, None, "", env).await;
    let (_s, _trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    // The test reads the database past the proxy.
    let direct = tincan_gateway::storage::open(pg.url(), Arc::new(tincan_common::SystemClock)).await.unwrap();
    let node = format!("udp:{}", rig.sip);

    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), 1);
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account, "-d", &TALK_MS.to_string()]);
    let call = tokio::spawn(async move {
        let ran = caller.run(cmd).await;
        (caller, ran)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered_live_calls(&*direct, &node).await < 1 {
        assert!(Instant::now() < deadline, "the call was not answered\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.down(away);
    let (_caller, ran) = call.await.unwrap();
    ran.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    tokio::time::sleep(AWAY_AFTER_HANG_UP).await;
    let in_spool = spooled(&rig.gw.data_dir);

    let Rig { gw, sip, account, token, _dir } = rig;
    let gw = if crash {
        // Killed while the database is away, started again once it is back.
        let Gateway { mut guard, api, data_dir, env, args } = gw;
        guard.kill();
        drop(guard);
        proxy.up();
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        Gateway::start_with_args(&data_dir, api, env, &args).await
    } else {
        proxy.up();
        gw
    };
    let rig = Rig { gw, sip, account, token, _dir };

    // The call's own record and its settlement arrive once the database is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (records, cdrs) = loop {
        let records =
            rig.get(&format!("/v1/accounts/{}/calls", rig.account)).await["items"].as_array().unwrap().clone();
        let cdrs = rig.cdrs().await;
        if (!records.is_empty() && !cdrs.is_empty()) || Instant::now() > deadline {
            break (records, cdrs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(records.len(), 1, "the call's record, once (spooled: {in_spool})\n{}", rig.log());
    let r = &records[0];
    assert_eq!((r["result"].as_str(), r["reason"].as_str()), (Some("answered"), Some("Caller Hung Up")), "{r}");
    let billed = r["billed_seconds"].as_u64().unwrap();
    assert!((4..=5).contains(&billed), "about the {TALK_MS} ms talked: {r}");
    let price = Decimal::from(billed) * "0.01".parse::<Decimal>().unwrap();
    assert_eq!(dec(&r["price"]), price, "{r}");
    assert_eq!(cdrs.len(), 1, "settled once: {cdrs:?}");
    assert_eq!(dec(&cdrs[0]["charged"]), price, "charged what the record says");
    let acct = rig.account().await;
    assert_eq!(dec(&acct["balance"]), "10.00".parse::<Decimal>().unwrap() - price, "{acct}");
    assert_eq!(amount(&acct["held"]), "0.00", "{acct}");
    // Nothing is left waiting, and the books agree.
    let deadline = Instant::now() + Duration::from_secs(10);
    while spooled(&rig.gw.data_dir) > 0 {
        assert!(Instant::now() < deadline, "the spool was not emptied\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(in_spool >= 2, "the record and the settlement waited in the spool: {in_spool}");
    // The call is closed in the database too (its live row written off), by the node or by its restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = live_calls(&*direct, &node).await;
        if calls.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the call is still live in the database: {calls:?}\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_when_a_call_ends_its_record_and_charge_arrive_once_it_is_back() {
    a_call_ends_during_an_outage(false, Away::Closes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_when_a_call_ends_and_the_gateway_killed_its_record_and_charge_survive() {
    a_call_ends_during_an_outage(true, Away::Closes).await;
}

/// The same with the database refusing connections outright (its port closed, as when PostgreSQL is stopped):
/// the pool then keeps trying to connect for as long as its acquire timeout, which the gateway does not wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_connections_when_a_call_ends_its_record_and_charge_arrive_once_it_is_back() {
    a_call_ends_during_an_outage(false, Away::Refuses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_connections_when_a_call_ends_and_the_gateway_killed_its_record_and_charge_survive() {
    a_call_ends_during_an_outage(true, Away::Refuses).await;
}

/// The calls of the node's processes as the database holds them.
async fn live_calls(storage: &dyn Storage, node: &str) -> Vec<tincan_gateway::storage::LiveCall> {
    let mut tx = storage.begin_read().await.unwrap();
    let mut calls = Vec::new();
    for run in tx.live_calls().stale_runs(node, "").await.unwrap() {
        calls.extend(tx.live_calls().of_run(&run.run_id).await.unwrap());
    }
    calls
}

/// The carrier answers while the database is away, which stays away far longer than the gateway's writer of
/// live calls used to retry (8 times, about 7 s) before it dropped what it could not write. Once the database is
/// back the answer is written; the gateway killed after that and started again bills the call to the last
/// second it confirmed up, not as a call never answered (its hold released unpaid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_when_a_call_is_answered_the_answer_is_written_once_it_is_back() {
    const RING_MS: u32 = 3_000;
    const AWAY: Duration = Duration::from_secs(20);
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let real = url::Url::parse(pg.url()).unwrap();
    let target = SocketAddr::new(real.host_str().unwrap().parse().unwrap(), real.port().unwrap_or(5432));
    let proxy = DbProxy::start(target).await;
    let mut via_proxy = real.clone();
    via_proxy.set_port(Some(proxy.addr.port())).unwrap();
    let env = vec![("TINCAN_GATEWAY_DATABASE__URL".to_owned(), via_proxy.to_string())];

    let a = trunk("cheap", "0.004");
    let rig = Rig::start_with_env(&[&a], "10.00", 60, None, "", env).await;
    // The carrier rings RING_MS before it answers.
    let rings = CARRIER_ANSWERS.replacen(
        "  <send retrans=\"500\">",
        &format!("  <pause milliseconds=\"{RING_MS}\"/>\n  <send retrans=\"500\">"),
        1,
    );
    assert_ne!(rings, CARRIER_ANSWERS);
    let (_s, _trunk_a) = carrier(&a, "trunk-a", &rings);
    let direct = tincan_gateway::storage::open(pg.url(), Arc::new(tincan_common::SystemClock)).await.unwrap();
    let node = format!("udp:{}", rig.sip);

    // The caller talks past the outage and the restart; its BYE then finds no dialog (481).
    let caller = Scenario::new("caller", CALLER_OUTLIVES_THE_GATEWAY).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), 1);
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account, "-d", "40000", "-timeout", "90s"]);
    let call = tokio::spawn(async move {
        let ran = caller.run(cmd).await;
        (caller, ran)
    });
    // The database goes away while the carrier rings (the call's attempt is written, its answer not yet).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let calls = live_calls(&*direct, &node).await;
        if calls.iter().any(|c| c.carrier.is_some()) {
            assert!(calls.iter().all(|c| c.answered_at_ms.is_none()), "{calls:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the call did not reach the carrier\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.down(Away::Closes);
    tokio::time::sleep(AWAY).await;
    proxy.up();

    // What the gateway knows is written once the database is back.
    let deadline = Instant::now() + Duration::from_secs(15);
    let answered_at = loop {
        let calls = live_calls(&*direct, &node).await;
        if let [c] = &calls[..]
            && let Some(at) = c.answered_at_ms
        {
            break at;
        }
        assert!(Instant::now() < deadline, "the answer was never written: {calls:?}\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // A crash now bills the call to its last confirmed second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let killed_at = tincan_gateway::storage::unix_ms(tincan_common::Clock::now(&tincan_common::SystemClock));
    let rig = rig.crash_and_restart().await;
    let records = rig.records_within(1, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 1, "{records:?}\n{}", rig.log());
    let r = &records[0];
    assert_eq!(
        (r["result"].as_str(), r["reason"].as_str()),
        (Some("answered"), Some("Gateway Restarted; Billed To The Last Confirmed Second")),
        "{r}"
    );
    let billed = r["billed_seconds"].as_u64().unwrap();
    let up = u64::try_from(killed_at - answered_at).unwrap() / 1000;
    // Confirmed up through the outage (heartbeats wait with the answer) and after it; never past the kill.
    assert!(billed + 5 >= up && billed <= up, "billed {billed} s of a call up {up} whole seconds at the kill: {r}");
    let price = Decimal::from(billed) * "0.01".parse::<Decimal>().unwrap();
    assert_eq!(dec(&r["price"]), price, "{r}");
    let acct = rig.released().await;
    assert_eq!(amount(&acct["held"]), "0.00", "{acct}");
    assert_eq!(dec(&acct["balance"]), "10.00".parse::<Decimal>().unwrap() - price, "{acct}");
    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");
    // The caller hangs up on the new process: its dialog died with the old one (481).
    let (_caller, ran) = call.await.unwrap();
    ran.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
}

/// The database refuses connections from the answer on, so the extension of the call's hold, due 2 s after the
/// answer, waits on a pool that keeps trying to connect (its acquire timeout, 30 s, for each of the ledger's
/// attempts). The call must still end at the second its first slice paid for — not run on unpaid until the
/// database is back — and its record and charge arrive once it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_connections_when_a_call_extends_it_is_cut_at_its_paid_time() {
    /// Slices of 12 s: the extension is asked for 10 s before the paid time ends.
    const SLICE_SECS: u32 = 12;
    const AWAY: Duration = Duration::from_secs(30);
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let real = url::Url::parse(pg.url()).unwrap();
    let target = SocketAddr::new(real.host_str().unwrap().parse().unwrap(), real.port().unwrap_or(5432));
    let proxy = DbProxy::start(target).await;
    let mut via_proxy = real.clone();
    via_proxy.set_port(Some(proxy.addr.port())).unwrap();
    let env = vec![("TINCAN_GATEWAY_DATABASE__URL".to_owned(), via_proxy.to_string())];

    let a = trunk("cheap", "0.004");
    let rig = Rig::start_with_env(&[&a], "10.00", SLICE_SECS, None, "", env).await;
    let (_s, _trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let direct = tincan_gateway::storage::open(pg.url(), Arc::new(tincan_common::SystemClock)).await.unwrap();
    let node = format!("udp:{}", rig.sip);

    let caller = Scenario::new("caller", CALLER_IS_CUT).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), 1);
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account, "-timeout", "90s"]);
    let call = tokio::spawn(async move {
        let ran = caller.run(cmd).await;
        (caller, ran, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered_live_calls(&*direct, &node).await < 1 {
        assert!(Instant::now() < deadline, "the call was not answered\n{}", rig.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered = Instant::now();
    proxy.down(Away::Refuses);
    let (_caller, ran, ended) = call.await.unwrap();
    ran.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let lasted = ended.duration_since(answered);
    // Seconds-level: the answer was seen in the database a little after it happened.
    assert!(
        lasted < Duration::from_secs(u64::from(SLICE_SECS) + 2),
        "the call ran {lasted:?} after its answer on {SLICE_SECS} s paid\n{}",
        rig.log()
    );
    tokio::time::sleep(AWAY.saturating_sub(answered.elapsed())).await;
    proxy.up();

    let deadline = Instant::now() + Duration::from_secs(30);
    let (records, cdrs) = loop {
        let records =
            rig.get(&format!("/v1/accounts/{}/calls", rig.account)).await["items"].as_array().unwrap().clone();
        let cdrs = rig.cdrs().await;
        if (!records.is_empty() && !cdrs.is_empty()) || Instant::now() > deadline {
            break (records, cdrs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(records.len(), 1, "{records:?}\n{}", rig.log());
    let r = &records[0];
    assert_eq!((r["result"].as_str(), r["billed_seconds"].as_u64()), (Some("answered"), Some(12)), "{r}");
    assert_eq!(cdrs.len(), 1, "settled once: {cdrs:?}");
    assert_eq!(amount(&cdrs[0]["charged"]), "0.12", "{cdrs:?}");
    let acct = rig.released().await;
    assert_eq!((amount(&acct["balance"]), amount(&acct["held"])), ("9.88".into(), "0.00".into()), "{acct}");
    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");
}
