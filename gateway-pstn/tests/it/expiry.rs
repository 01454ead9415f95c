//! Holds expire by themselves (issue #16: "expired holds release themselves"), through the real binary on SQLite
//! and PostgreSQL: the sweeper gives the money back and counts it, a late settle is refused, a reservation that
//! an expired hold would block releases it at once, and a reused idempotency key with another request is refused.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{j, send};
use crate::harness::Gateway;

/// A gateway with one business account holding 5.00, and a service's and an operator's token.
struct Rig {
    gw: Gateway,
    /// A service's token (holds).
    token: String,
    /// An operator's token (account reads).
    operator: String,
    acct: i64,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(env: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start(dir.path(), env).await;
        let token = gw.cli_ok(&["tokens", "add", "--scope", "service", "sms"]);
        let operator = gw.cli_ok(&["tokens", "add", "--scope", "operator", "ops"]);
        let id = gw.cli_ok(&["accounts", "create", "--business", "acme"]);
        gw.cli_ok(&["accounts", "adjust", &id, "5.00", "--memo", "seed", "--key", "seed"]);
        Rig { gw, token, operator, acct: id.parse().unwrap(), _dir: dir }
    }

    /// A request with the service's token.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        send(&self.gw, method, path, Some(&self.token), body.and_then(j)).await
    }

    /// The account's balance and what is held of it.
    async fn money(&self) -> (String, String) {
        let path = format!("/v1/accounts/{}", self.acct);
        let (_, a) = send(&self.gw, Method::GET, &path, Some(&self.operator), None).await;
        let field = |k: &str| a[k].as_str().unwrap_or_else(|| panic!("no {k}: {a}")).to_owned();
        (field("balance"), field("held"))
    }

    async fn reserve(&self, key: &str, amount: &str, ttl_secs: u32) -> (u16, Value) {
        let body = json!({"idempotency_key": key, "account": {"account_id": self.acct}, "service": "sms",
                          "destination": "+4930123456", "amount": amount, "ttl_secs": ttl_secs});
        self.call(Method::POST, "/v1/holds", Some(body)).await
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.gw.base())).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

async fn the_sweeper_releases_an_expired_hold(env: &[(&str, &str)]) {
    let mut env = env.to_vec();
    env.push(("TINCAN_GATEWAY_LEDGER__SWEEP_INTERVAL_MS", "200"));
    let api = Rig::start(&env).await;

    let (s, hold) = api.reserve("h1", "4.00", 1).await;
    assert_eq!(s, 200, "{hold}");
    let id = hold["id"].as_str().unwrap().to_owned();
    assert_eq!(api.metric("tincan_gateway_holds_open").await, 1.0);
    // While it is open it counts against the balance.
    let (s, refused) = api.reserve("h2", "2.00", 60).await;
    assert_eq!((s, refused["error"]["code"].as_str()), (402, Some("insufficient_funds")), "{refused}");

    // The sweeper closes it as expired soon after its second is up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let (_, h) = api.call(Method::GET, &format!("/v1/holds/{id}"), None).await;
        if h["state"] != "open" || Instant::now() > deadline {
            break h["state"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state, "expired", "the hold was not released by its expiry within 10 s");
    assert_eq!(api.metric("tincan_gateway_expiries_total").await, 1.0);
    assert_eq!(api.metric("tincan_gateway_holds_open").await, 0.0);

    // The money is back, nothing was charged, and a late settle or release is refused.
    assert_eq!(api.money().await, ("5.00".into(), "0.00".into()));
    let (s, late) = api
        .call(Method::POST, &format!("/v1/holds/{id}/settle"), Some(json!({"idempotency_key": "s1", "amount": "1.00"})))
        .await;
    assert_eq!((s, late["error"]["code"].as_str()), (409, Some("hold_closed")), "{late}");
    let (s, h) = api.reserve("h3", "5.00", 60).await;
    assert_eq!(s, 200, "the whole balance is available again: {h}");
    assert!(api.gw.cli(&["ledger", "check"]).status.success());
}

async fn an_expired_hold_is_released_at_once_when_it_would_block_a_reservation(env: &[(&str, &str)]) {
    let mut env = env.to_vec();
    // The sweeper would come only in an hour: what releases the hold below is the reservation it blocks.
    env.push(("TINCAN_GATEWAY_LEDGER__SWEEP_INTERVAL_MS", "3600000"));
    let api = Rig::start(&env).await;

    let (s, hold) = api.reserve("h1", "4.00", 1).await;
    assert_eq!(s, 200, "{hold}");
    let id = hold["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Past its expiry but not swept: still open in the store, and a settle now is too late.
    let (_, h) = api.call(Method::GET, &format!("/v1/holds/{id}"), None).await;
    assert_eq!(h["state"], "open", "{h}");
    let (s, late) = api
        .call(Method::POST, &format!("/v1/holds/{id}/settle"), Some(json!({"idempotency_key": "s1", "amount": "1.00"})))
        .await;
    assert_eq!((s, late["error"]["code"].as_str()), (409, Some("hold_expired")), "{late}");

    let (s, next) = api.reserve("h2", "4.50", 60).await;
    assert_eq!(s, 200, "a reservation the expired hold blocked: {next}");
    let (_, h) = api.call(Method::GET, &format!("/v1/holds/{id}"), None).await;
    assert_eq!(h["state"], "expired", "{h}");
    assert_eq!(api.money().await, ("5.00".into(), "4.50".into()));
    assert!(api.gw.cli(&["ledger", "check"]).status.success());
}

async fn a_key_reused_for_another_request_is_a_conflict_and_changes_nothing(env: &[(&str, &str)]) {
    let api = Rig::start(env).await;

    let (s, first) = api.reserve("k1", "1.00", 60).await;
    assert_eq!(s, 200, "{first}");
    // The same request again is the same answer (a retry), not a second hold.
    let (s, again) = api.reserve("k1", "1.00", 60).await;
    assert_eq!((s, &again["id"]), (200, &first["id"]), "{again}");
    // The same key with another amount is refused.
    let (s, other) = api.reserve("k1", "2.00", 60).await;
    assert_eq!((s, other["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{other}");
    // So is a settle key reused with another amount.
    let id = first["id"].as_str().unwrap();
    let settle = |amount: &str| json!({"idempotency_key": "s1", "amount": amount});
    let (s, settled) = api.call(Method::POST, &format!("/v1/holds/{id}/settle"), Some(settle("0.40"))).await;
    assert_eq!(s, 200, "{settled}");
    let (s, other) = api.call(Method::POST, &format!("/v1/holds/{id}/settle"), Some(settle("0.50"))).await;
    assert_eq!((s, other["error"]["code"].as_str()), (409, Some("idempotency_conflict")), "{other}");

    assert_eq!(api.money().await, ("4.60".into(), "0.00".into()));
    assert_eq!(api.metric("tincan_gateway_holds_open").await, 0.0);
    assert!(api.gw.cli(&["ledger", "check"]).status.success());
}

#[tokio::test]
async fn sqlite_the_sweeper_releases_an_expired_hold_and_a_late_settle_is_refused() {
    the_sweeper_releases_an_expired_hold(&[]).await;
}

#[tokio::test]
async fn postgres_the_sweeper_releases_an_expired_hold_and_a_late_settle_is_refused() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    the_sweeper_releases_an_expired_hold(&[("TINCAN_GATEWAY_DATABASE__URL", pg.url())]).await;
}

#[tokio::test]
async fn sqlite_an_expired_hold_is_released_at_once_when_it_would_block_a_reservation() {
    an_expired_hold_is_released_at_once_when_it_would_block_a_reservation(&[]).await;
}

#[tokio::test]
async fn postgres_an_expired_hold_is_released_at_once_when_it_would_block_a_reservation() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    an_expired_hold_is_released_at_once_when_it_would_block_a_reservation(&[(
        "TINCAN_GATEWAY_DATABASE__URL",
        pg.url(),
    )])
    .await;
}

#[tokio::test]
async fn sqlite_a_key_reused_for_another_request_is_a_conflict_and_changes_nothing() {
    a_key_reused_for_another_request_is_a_conflict_and_changes_nothing(&[]).await;
}

#[tokio::test]
async fn postgres_a_key_reused_for_another_request_is_a_conflict_and_changes_nothing() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    a_key_reused_for_another_request_is_a_conflict_and_changes_nothing(&[("TINCAN_GATEWAY_DATABASE__URL", pg.url())])
        .await;
}
