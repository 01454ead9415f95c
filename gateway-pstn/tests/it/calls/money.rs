//! The money test, bounded for CI: many concurrent calls from one account whose balance covers only part of
//! them (sipp `-l`), all on loopback. The calls beyond the credit are refused at INVITE (402), the balance
//! watched throughout never goes below zero, the ledger check passes, every call has its record, and the
//! records' prices add up to exactly what the account was charged.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::Scenario;

use super::{CARRIER_ANSWERS, NUMBER, Rig, amount, dec, trunk, watch_balance};

const CALLER_ANSWERED_OR_REFUSED: &str = include_str!("../../scenarios/caller_answered_or_refused.xml");

/// Calls placed (sipp `-m` and `-l`): the issue's 1,000.
const CALLS: u32 = 1000;
/// Calls offered per second (sipp `-r`).
const RATE: u32 = 100;
/// The account's credit.
const CREDIT: &str = "3.00";

#[tokio::test]
async fn many_concurrent_calls_on_one_account_never_overdraw_it_and_add_up() {
    let mut a = trunk("cheap", "0.004");
    a.max_concurrent = CALLS;
    // 3.00 at 0.01 a second; 5 s slices hold 0.05 each (less once the balance is low), so at most 60 calls
    // are held at once and about 300 one-second calls are paid for: most of the 1,000 are refused. One source
    // address sends all the calls, so its request rate limit is raised.
    let rig = Rig::start_with(&[&a], CREDIT, 5, None, "per_source_rate = 5000\n").await;
    let carrier = Scenario::new("trunk-a", CARRIER_ANSWERS).unwrap();
    let mut cmd = carrier.uas_command(a.addr);
    cmd.args(["-m", "100000", "-l", "100000", "-timeout", "120s"]);
    let _trunk = carrier.spawn(cmd, "trunk-a").unwrap();

    let (watching, watcher) = watch_balance(&rig);

    // Half a second of talk: every answered call is billed its first second, and none outlasts its paid time.
    let caller = Scenario::new("callers", &CALLER_ANSWERED_OR_REFUSED.replace("TALK_MS", "500")).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), CALLS);
    let calls = CALLS.to_string();
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account]);
    cmd.args(["-r", &RATE.to_string(), "-l", &calls, "-timeout", "120s"]);
    let out = caller.run(cmd).await.unwrap_or_else(|e| {
        let errors = std::fs::read_to_string(caller.dir().join("errors.log")).unwrap_or_default();
        let first: String = errors.lines().take(60).collect::<Vec<_>>().join("\n");
        panic!("{e}\nfirst errors:\n{first}\n{}", rig.log())
    });
    assert!(!out.is_empty());

    // Every hold closes (settled after both BYEs, or released).
    let deadline = Instant::now() + Duration::from_secs(30);
    let acct = loop {
        let acct = rig.account().await;
        if amount(&acct["held"]) == "0.00" || Instant::now() > deadline {
            break acct;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (samples, lowest) = watcher.await.unwrap();
    assert!(samples > 10, "the balance was watched during the run ({samples} samples)");
    assert_eq!(amount(&acct["held"]), "0.00", "{acct}");
    let credit: Decimal = CREDIT.parse().unwrap();
    let charged = credit - dec(&acct["balance"]);

    let records =
        rig.get(&format!("/v1/accounts/{}/calls?limit=1000", rig.account)).await["items"].as_array().unwrap().clone();
    assert_eq!(records.len(), CALLS as usize, "one record per call (one carrier, no failover)");
    let answered: Vec<&Value> = records.iter().filter(|r| r["result"] == "answered").collect();
    let refused: Vec<&Value> = records.iter().filter(|r| r["result"] == "refused").collect();
    assert_eq!(answered.len() + refused.len(), records.len(), "answered or refused, nothing else");
    assert!(!answered.is_empty() && !refused.is_empty(), "{} answered, {} refused", answered.len(), refused.len());
    assert!(refused.iter().all(|r| r["sip_status"] == 402 && r["attempt"] == 0));
    let priced: Decimal = answered.iter().map(|r| dec(&r["price"])).sum();
    assert_eq!(priced, charged, "the records' prices are what the account was charged");
    assert!(charged > Decimal::ZERO && charged <= credit);

    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");
    eprintln!(
        "money test: {CALLS} calls at {RATE}/s, {} answered, {} refused at INVITE, charged {charged}, lowest available {lowest}, \
         {samples} balance samples",
        answered.len(),
        refused.len()
    );
}
