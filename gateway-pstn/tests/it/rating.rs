//! Quotes, reservations and settlements priced by the rate deck (longest prefix, increments, per-account
//! plans), and the fraud limits, through the in-process ledger on SQLite and PostgreSQL.

use std::sync::Arc;

use tincan_common::SystemClock;
use tincan_enum_core::E164;
use tincan_gateway::charging::{
    AccountRef, ChargeError, Charging, ExtendRequest, IdempotencyKey, QuoteRequest, ReserveRequest, ServiceKind,
    SettleRequest,
};
use tincan_gateway::fraud::FraudConfig;
use tincan_gateway::ledger::{Ledger, LedgerConfig};
use tincan_gateway::money::Amount;
use tincan_gateway::rating::parse_csv;
use tincan_gateway::storage::{self, EntryKind, Limits, Storage};

const DECK: &str = "prefix,description,connect_fee,per_minute,increments,per_sms\n\
                    49,Germany,0,0.012,60/60,0.07\n\
                    49151,Germany mobile,0.02,0.30,30/6,0.09\n\
                    4490,UK premium rate,0,1.00,60/60,\n\
                    44871,UK shared cost,0.10,0.50,60/60,\n";

fn a(s: &str) -> Amount {
    s.parse().unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).unwrap()
}

fn n(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

async fn priced_charging(storage: Arc<dyn Storage>) {
    let ledger = Ledger::start(storage.clone(), Arc::new(SystemClock), LedgerConfig::default());
    ledger.set_fraud(FraudConfig {
        blocked_prefixes: vec!["4490".into()],
        opt_in_prefixes: vec!["44871".into()],
        ..FraudConfig::default()
    });
    let mut tx = storage.begin().await.unwrap();
    tx.rates().replace("default", &parse_csv(DECK).unwrap()).await.unwrap();
    tx.commit().await.unwrap();
    let acct = ledger.create_business("caller", "EUR".parse().unwrap()).await.unwrap().id;
    ledger.credit("t", &key("seed"), acct, a("1.00"), EntryKind::Adjustment, "seed", "").await.unwrap();
    let who = AccountRef::Id { account_id: acct };
    let svc = ledger.charging("svc:pstn");

    // 1.00 at 0.02 + 0.30/min in 30/6: 0.98 pays 196 s, of which 192 are whole increments (30 + 27 × 6).
    let q = svc
        .quote(&QuoteRequest {
            account: who.clone(),
            service: ServiceKind::Voice,
            destination: n("+4915112345678"),
            seconds: Some(31),
            segments: None,
        })
        .await
        .unwrap();
    assert_eq!((q.prefix.as_str(), q.description.as_str()), ("+49151", "Germany mobile"), "the longest prefix");
    assert_eq!((q.first_increment, q.next_increment, q.connect_fee, q.per_minute), (30, 6, a("0.02"), a("0.30")));
    assert_eq!(q.amount, Some(a("0.20")), "31 s bill as 36 s: 0.18 + 0.02");
    assert_eq!((q.available, q.max_seconds), (a("1.00"), Some(192)));
    let q = svc
        .quote(&QuoteRequest {
            account: who.clone(),
            service: ServiceKind::Sms,
            destination: n("+4930123456"),
            seconds: None,
            segments: Some(3),
        })
        .await
        .unwrap();
    assert_eq!((q.prefix.as_str(), q.amount, q.max_segments), ("+49", Some(a("0.21")), Some(14)));

    // Reserve the price of 120 s, extend by 60 s, settle 150 s at the hold's rate.
    let reserve = ReserveRequest {
        idempotency_key: key("r1"),
        account: who.clone(),
        service: ServiceKind::Voice,
        destination: n("+4915112345678"),
        amount: None,
        seconds: Some(120),
        segments: None,
        ttl_secs: Some(60),
    };
    let hold = svc.reserve(&reserve).await.unwrap();
    assert_eq!(hold.amount, a("0.62"), "0.02 + 120 s at 0.30/min");
    let ext = ExtendRequest {
        idempotency_key: key("e1"),
        hold: hold.id,
        amount: None,
        seconds: Some(60),
        ttl_secs: Some(60),
    };
    let hold = svc.extend(&ext).await.unwrap();
    assert_eq!(hold.amount, a("0.92"));
    let too_long =
        ExtendRequest { idempotency_key: key("e2"), hold: hold.id, amount: None, seconds: Some(60), ttl_secs: None };
    assert_eq!(svc.extend(&too_long).await.unwrap_err(), ChargeError::InsufficientFunds, "0.92 + 0.30 > 1.00");
    let settle = SettleRequest {
        idempotency_key: key("s1"),
        hold: hold.id,
        amount: None,
        seconds: Some(151),
        segments: None,
        carrier: Some("trunk-a".into()),
    };
    let s = svc.settle(&settle).await.unwrap();
    assert_eq!((s.charged, s.released), (a("0.80"), a("0.12")), "151 s bill as 156 s: 0.78 + 0.02");
    assert_eq!(ledger.account(&who).await.unwrap().balance, a("0.20"));

    // SMS by segments; a voice-only prefix has no SMS price.
    let sms = ReserveRequest {
        idempotency_key: key("r2"),
        service: ServiceKind::Sms,
        destination: n("+4930123456"),
        seconds: None,
        segments: Some(2),
        ..reserve.clone()
    };
    let h = svc.reserve(&sms).await.unwrap();
    assert_eq!(h.amount, a("0.14"));
    let wrong = SettleRequest {
        idempotency_key: key("s2"),
        hold: h.id,
        amount: None,
        seconds: Some(10),
        segments: None,
        carrier: None,
    };
    assert!(matches!(svc.settle(&wrong).await, Err(ChargeError::Invalid(_))), "seconds do not settle an SMS hold");
    let three = SettleRequest { idempotency_key: key("s3"), seconds: None, segments: Some(3), ..wrong.clone() };
    assert_eq!(svc.settle(&three).await.unwrap_err(), ChargeError::ExceedsHold, "3 segments cost more than held");
    let two = SettleRequest { idempotency_key: key("s4"), seconds: None, segments: Some(2), ..wrong };
    assert_eq!(svc.settle(&two).await.unwrap().charged, a("0.14"));
    let no_sms = ReserveRequest { idempotency_key: key("r3"), destination: n("+448712345678"), ..sms.clone() };
    assert!(matches!(svc.reserve(&no_sms).await, Err(ChargeError::DestinationBlocked(_))), "opt-in first");
    let unknown = ReserveRequest { idempotency_key: key("r4"), destination: n("+12025550143"), ..sms.clone() };
    assert_eq!(svc.reserve(&unknown).await.unwrap_err(), ChargeError::NoRate);

    // Fraud limits: blocked, opt-in, concurrent holds, spend per hour.
    let blocked = ReserveRequest {
        idempotency_key: key("r5"),
        destination: n("+449098790000"),
        amount: Some(a("0.01")),
        seconds: None,
        segments: None,
        ..reserve.clone()
    };
    assert_eq!(svc.reserve(&blocked).await.unwrap_err(), ChargeError::DestinationBlocked("+4490 is blocked".into()));
    ledger
        .set_limits(
            acct,
            Limits {
                opt_in: vec!["44871".into()],
                max_open_holds: Some(1),
                max_spend_hour: Some(a("1.00")),
                ..Limits::default()
            },
        )
        .await
        .unwrap();
    let sat = ReserveRequest {
        idempotency_key: key("r6"),
        destination: n("+448712345678"),
        amount: Some(a("0.02")),
        seconds: None,
        ..reserve.clone()
    };
    let first = svc.reserve(&sat).await.expect("opted in");
    let second = ReserveRequest { idempotency_key: key("r7"), ..sat.clone() };
    assert!(matches!(svc.reserve(&second).await, Err(ChargeError::LimitExceeded(m)) if m.contains("holds")));
    svc.settle(&SettleRequest {
        idempotency_key: key("s5"),
        hold: first.id,
        amount: Some(a("0.02")),
        seconds: None,
        segments: None,
        carrier: None,
    })
    .await
    .unwrap();
    let over = ReserveRequest { idempotency_key: key("r8"), amount: Some(a("0.05")), ..sat.clone() };
    assert!(
        matches!(svc.reserve(&over).await, Err(ChargeError::LimitExceeded(m)) if m.contains("hour")),
        "0.96 charged + 0.05 > 1.00 per hour"
    );
    let report = storage.begin_read().await.unwrap().journal().check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn sqlite_prices_by_rate_deck_and_enforces_fraud_limits() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    priced_charging(storage::open(&url, Arc::new(SystemClock)).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_prices_by_rate_deck_and_enforces_fraud_limits() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    priced_charging(storage::open(pg.url(), Arc::new(SystemClock)).await.unwrap()).await;
}
