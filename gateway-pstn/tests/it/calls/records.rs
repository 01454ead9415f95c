//! Call detail records for every attempt, answered or not (`GET /v1/accounts/{id}/calls`, `calls export` as
//! CSV), and the RFC 3326 `Reason` the gateway gives: toward the caller when carriers fail, on both BYEs when
//! credit ends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::{Scenario, finished};

use super::{
    CALLER_CANCELS, CALLER_IS_CUT, CALLER_REFUSED, CARRIER_ANSWERS, CARRIER_FAILS, CARRIER_NO_ANSWER, NUMBER, Rig,
    amount, carrier, dec, messages, trunk,
};

pub(super) const CALLER_NEVER_ACKS: &str = include_str!("../../scenarios/caller_never_acks.xml");

impl Rig {
    /// [`Rig::call`] with sipp's message log kept (in the scenario's directory).
    async fn traced_call(&self, scenario: &Scenario, number: &str, talk_ms: u32) -> anyhow::Result<String> {
        let local: SocketAddr = free_addr();
        let mut cmd = scenario.command(self.sip, local, 1);
        cmd.args(["-key", "number", number, "-key", "account", &self.account, "-d", &talk_ms.to_string()]);
        cmd.arg("-trace_msg");
        scenario.run(cmd).await
    }
}

/// The failover case: the first carrier answers 503, the second 486 → the call fails busy, one record per
/// attempt, nothing charged.
#[tokio::test]
async fn a_failed_call_has_a_record_per_attempt_and_the_caller_hears_why() {
    let (a, b) = (trunk("cheap", "0.004"), trunk("dear", "0.009"));
    let rig = Rig::start(&[&a, &b], "10.00", 60).await;
    let (_sa, trunk_a) = carrier(&a, "trunk-a", &CARRIER_FAILS.replace("CODE", "503"));
    let (_sb, trunk_b) = carrier(&b, "trunk-b", &CARRIER_FAILS.replace("CODE", "486"));
    let caller = Scenario::new("caller", &CALLER_REFUSED.replace("EXPECTED", "486")).unwrap();
    rig.traced_call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    assert!(finished(trunk_b, Duration::from_secs(10)).await);
    // The busy answer reaches the caller with its Q.850 cause (RFC 3398: 486 → 17).
    let seen = messages(caller.dir());
    assert!(seen.contains("Reason: Q.850;cause=17;text=\"User busy\""), "{seen}");
    let records = rig.records(2).await;
    assert_eq!(records.len(), 2, "{records:?}\n{}", rig.log());
    let (first, second) = (&records[0], &records[1]);
    assert_eq!((first["attempt"].as_u64(), first["carrier"].as_str()), (Some(1), Some("cheap")));
    assert_eq!((first["result"].as_str(), first["sip_status"].as_u64()), (Some("failed"), Some(503)));
    assert_eq!(first["q850_cause"], 41);
    assert_eq!((second["attempt"].as_u64(), second["carrier"].as_str()), (Some(2), Some("dear")));
    assert_eq!((second["result"].as_str(), second["sip_status"].as_u64()), (Some("busy"), Some(486)));
    assert_eq!(second["q850_cause"], 17);
    assert_eq!(first["call_id"], second["call_id"], "one call");
    assert_eq!(first["hold_seq"], second["hold_seq"], "one hold");
    for r in &records {
        assert!(r.get("price").is_none() && r.get("billed_seconds").is_none(), "{r}");
        assert!(r["ended_at_ms"].as_i64() >= r["started_at_ms"].as_i64());
    }
    let acct = rig.released().await;
    assert_eq!((amount(&acct["balance"]), amount(&acct["held"])), ("10.00".into(), "0.00".into()));
    assert!(rig.cdrs().await.is_empty(), "nothing was settled");
    // The same records as CSV, from the command line and from the API.
    let out = rig.gw.cli(&["calls", "export", "--account", &rig.account]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,call_id,attempt,account_id,hold,destination,carrier,result,sip_status"));
    assert!(lines[1].contains(",1,") && lines[1].contains(",cheap,failed,503,") && lines[1].contains(",41,"));
    assert!(lines[2].contains(",dear,busy,486,") && lines[2].contains(&format!(",{NUMBER},")), "{csv}");
    let http = reqwest::Client::new()
        .get(format!("{}/v1/accounts/{}/calls?format=csv", rig.gw.base(), rig.account))
        .bearer_auth(&rig.token)
        .send()
        .await
        .unwrap();
    assert_eq!(http.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(http.text().await.unwrap(), csv, "the API's CSV is the command line's");
    let bad = reqwest::Client::new()
        .get(format!("{}/v1/accounts/{}/calls?format=xml", rig.gw.base(), rig.account))
        .bearer_auth(&rig.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_call_the_caller_gives_up_on_has_a_cancelled_record() {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start(&[&a], "10.00", 60).await;
    let (_sa, trunk_a) = carrier(&a, "trunk-a", &CARRIER_NO_ANSWER.replace("PROVISIONAL", "180 Ringing"));
    let caller = Scenario::new("caller", CALLER_CANCELS).unwrap();
    rig.call(&caller, NUMBER, 500).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the carrier got CANCEL");
    let records = rig.records(1).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["result"], "cancelled", "{records:?}");
    assert_eq!(records[0]["sip_status"], 487);
    assert_eq!(records[0]["carrier"], "cheap");
    assert!(records[0].get("answered_at_ms").is_none());
    assert_eq!(amount(&rig.released().await["held"]), "0.00");
}

#[tokio::test]
async fn credit_ends_with_a_q850_reason_on_both_byes_and_the_records_add_up_to_the_charge() {
    let a = trunk("cheap", "0.004");
    // 0.05 at 0.01 a second pays 5 s.
    let rig = Rig::start(&[&a], "0.05", 2).await;
    let (sa, trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_IS_CUT).unwrap();
    rig.traced_call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    let reason = "Reason: Q.850;cause=16;text=\"Prepaid credit exhausted\"";
    let to_caller = messages(caller.dir());
    let to_carrier = messages(sa.dir());
    assert!(to_caller.contains("BYE sip:") && to_caller.contains(reason), "{to_caller}");
    assert!(to_carrier.contains("BYE sip:") && to_carrier.contains(reason), "{to_carrier}");
    // Now the balance is gone: the next call is refused before any carrier, and says so in a record.
    let refused = Scenario::new("refused", &CALLER_REFUSED.replace("EXPECTED", "402")).unwrap();
    rig.traced_call(&refused, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(messages(refused.dir()).contains("Reason: Q.850;cause=21;"));
    let records = rig.records(2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    let (call, refusal) = (&records[0], &records[1]);
    assert_eq!((call["result"].as_str(), call["sip_status"].as_u64()), (Some("answered"), Some(200)));
    assert_eq!((call["billed_seconds"].as_u64(), call["reason"].as_str()), (Some(5), Some("Prepaid credit exhausted")));
    assert!(call["answered_at_ms"].as_i64() >= call["started_at_ms"].as_i64());
    // 5 s at the carrier's 0.004 a minute: 0.000333… rounded up to the micro-unit.
    assert_eq!(amount(&call["cost"]), "0.000334");
    assert_eq!((refusal["attempt"].as_u64(), refusal["result"].as_str()), (Some(0), Some("refused")));
    assert_eq!((refusal["sip_status"].as_u64(), refusal.get("carrier")), (Some(402), None));
    // What the records price is what the account was charged.
    let cdrs = rig.settled(1).await;
    assert_eq!(amount(&call["price"]), amount(&cdrs[0]["charged"]));
    assert_eq!(amount(&call["price"]), "0.05");
    assert_eq!(amount(&rig.account().await["balance"]), "0.00");
}

/// A caller that never ACKs the gateway's 200 (issue #19: a caller that took a 482 for its INVITE from the node
/// a proxy failed over to, then gets the stalled node's late 200) until the call ends, at `slice_secs` slices on
/// `credit`: the gateway's BYE reaches it, the carrier's leg is hung up, the call is not charged (its hold is
/// released in full, no settlement) and its record says so. `ack_timeout_ms`: the gateway's wait for the ACK.
/// How long the call ran, for the caller.
async fn a_call_never_confirmed(credit: &str, slice_secs: u32, ack_timeout_ms: u64) -> (Rig, Value, Duration) {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start_with(&[&a], credit, slice_secs, None, &format!("ack_timeout_ms = {ack_timeout_ms}\n")).await;
    let (_sa, trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_NEVER_ACKS).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), 1);
    // Without its ACK wait the gateway would give up only at 64*T1 (32 s), within this timeout.
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account, "-timeout", "90s", "-trace_msg"]);
    let started = Instant::now();
    caller.run(cmd).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let took = started.elapsed();
    let seen = messages(caller.dir());
    assert!(!seen.contains("ACK sip:") && seen.contains("BYE sip:"), "no ACK sent, the gateway's BYE came: {seen}");
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the carrier's leg was answered and hung up");
    let records = rig.records(1).await;
    assert_eq!(records.len(), 1, "{records:?}\n{}", rig.log());
    let r = records[0].clone();
    assert_eq!(
        (r["result"].as_str(), r["sip_status"].as_u64(), r["carrier"].as_str(), r["q850_cause"].as_u64()),
        (Some("failed"), Some(200), Some("cheap"), Some(102)),
        "not a connected call: {r}\n{}",
        rig.log()
    );
    assert!(r["reason"].as_str().unwrap().starts_with("Not Confirmed By The Caller (No ACK); Not Charged; "), "{r}");
    assert_eq!((r["billed_seconds"].as_u64(), dec(&r["price"])), (Some(0), rust_decimal::Decimal::ZERO), "{r}");
    // The carrier answered (and may charge the provider for its leg): when, and what its leg cost.
    assert!(r["answered_at_ms"].as_i64() >= r["started_at_ms"].as_i64(), "{r}");
    assert!(dec(&r["cost"]) > rust_decimal::Decimal::ZERO, "{r}");
    let acct = rig.released().await;
    assert_eq!((amount(&acct["balance"]), amount(&acct["held"])), (credit.to_owned(), "0.00".into()), "{acct}");
    assert!(rig.cdrs().await.is_empty(), "nothing was settled");
    let check = rig.gw.cli(&["ledger", "check"]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains("ledger check passed"), "{report}");
    (rig, r, took)
}

/// The gateway ends the call when no ACK came within `calls.ack_timeout_ms` (3 s here) of the carrier's answer,
/// not at the stack's 64*T1 (32 s of the carrier's time for free, a toll-fraud hole), and it costs the caller
/// nothing.
#[tokio::test]
async fn a_call_the_caller_never_acks_is_ended_at_the_ack_timeout_and_not_charged() {
    let (_rig, r, took) = a_call_never_confirmed("10.00", 60, 3000).await;
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(7), "ended after {took:?}, not ~3 s");
    assert!(r["reason"].as_str().unwrap().ends_with("; ACK Timed Out"), "{r}");
}

/// Credit that ends before the ACK wait (10 s here): the call is cut at its paid time (5 s on 0.05) as any
/// call, and still not charged.
#[tokio::test]
async fn a_call_the_caller_never_acks_cut_when_credit_ends_is_not_charged() {
    let (_rig, r, took) = a_call_never_confirmed("0.05", 2, 10_000).await;
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(8), "cut after {took:?}");
    assert!(r["reason"].as_str().unwrap().ends_with("; Prepaid credit exhausted"), "{r}");
}
