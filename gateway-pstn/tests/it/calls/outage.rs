//! A database outage while a call ends (issue #19: no record and no charge may be lost): the gateway talks to
//! PostgreSQL through a TCP proxy the test takes down the moment the call is answered — it closes every
//! connection it carried and closes new ones at once, as a connection pooler does whose database is away.
//! The caller hangs up during the outage, which lasts longer than the gateway waits for the database; then the
//! database comes back. The call's own record (its real end, its billed seconds) and its settlement reach the
//! database once, the hold is closed, and the ledger check passes — also when the gateway is killed with
//! SIGKILL during the outage and started again once the database is back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::Scenario;
use tokio::net::{TcpListener, TcpStream};

use super::crash::answered_live_calls;
use super::{CALLER_HANGS_UP, CARRIER_ANSWERS, NUMBER, Rig, amount, carrier, dec, trunk};
use crate::harness::Gateway;

/// How long the caller talks; the database goes away at the answer and comes back well after the hang-up.
const TALK_MS: u32 = 4_000;
/// How long the database stays away after the caller hung up: longer than the gateway waits for it.
const AWAY_AFTER_HANG_UP: Duration = Duration::from_secs(10);

/// A TCP proxy in front of PostgreSQL (loopback only) that the test can take down.
struct DbProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::watch::Sender<u64>>,
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
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::watch::channel(0u64).0);
        let task = tokio::spawn({
            let (up, cut) = (up.clone(), cut.clone());
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else { continue };
                    if !up.load(Ordering::SeqCst) {
                        // The database is away: the connection is closed at once.
                        continue;
                    }
                    let mut down = cut.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = down.changed() => {}
                        }
                    });
                }
            }
        });
        DbProxy { addr, up, cut, task }
    }

    /// Closes every connection carried and refuses new ones.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The spool files waiting in the gateway's data directory.
fn spooled(data_dir: &std::path::Path) -> usize {
    match std::fs::read_dir(data_dir.join("call-spool")) {
        Ok(d) => d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count(),
        Err(_) => 0,
    }
}

async fn a_call_ends_during_an_outage(crash: bool) {
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
    proxy.down();
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
    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_when_a_call_ends_its_record_and_charge_arrive_once_it_is_back() {
    a_call_ends_during_an_outage(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_when_a_call_ends_and_the_gateway_killed_its_record_and_charge_survive() {
    a_call_ends_during_an_outage(true).await;
}
