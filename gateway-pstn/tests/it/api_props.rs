//! Property tests of the request bodies: whatever a caller sends to the write endpoints, the answer is a typed
//! 4xx (never a 5xx, never a panic) unless the request is valid, and a refused request writes nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tincan_common::SystemClock;
use tincan_gateway::api::{self, ApiState, HomeserverConfig, RateLimitConfig, RateLimiter, UserAuth, VoucherLimiter};
use tincan_gateway::charging::{AccountId, IdempotencyKey};
use tincan_gateway::ledger::{Ledger, LedgerConfig};
use tincan_gateway::storage::{self, EntryKind, Scope, TokenHash};
use tower::ServiceExt;

struct World {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    state: ApiState,
    account: AccountId,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.sqlite3").display());
    let (state, account) = rt.block_on(async {
        let clock = Arc::new(SystemClock);
        let s = storage::open(&url, clock.clone()).await.unwrap();
        let ledger = Ledger::start(s.clone(), clock.clone(), LedgerConfig::default());
        let a = ledger.create_business("props", "EUR".parse().unwrap()).await.unwrap().id;
        let key = IdempotencyKey::new("seed").unwrap();
        ledger.credit("t", &key, a, "5.00".parse().unwrap(), EntryKind::Adjustment, "seed", "").await.unwrap();
        let mut tx = s.begin().await.unwrap();
        tx.tokens().add(TokenHash::of("svc"), Scope::Service, "svc", None, None, 0).await.unwrap();
        tx.commit().await.unwrap();
        let limiter =
            Arc::new(RateLimiter::new(RateLimitConfig { per_second: 1_000_000, burst: 1_000_000 }, clock.clone()));
        let auth = Arc::new(UserAuth {
            homeserver: HomeserverConfig::default(),
            currency: "EUR".parse().unwrap(),
            http: reqwest::Client::new(),
        });
        let vouchers = Arc::new(VoucherLimiter(RateLimiter::new_per_minute(5, 10, clock)));
        let state =
            ApiState { ledger, limiter, auth, vouchers, payments: Arc::default(), deck_limit: Default::default() };
        (state, a)
    });
    World { _dir: dir, rt, state, account }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[ -~]{0,20}".prop_map(Value::from),
        prop_oneof![Just("1.00"), Just("0"), Just("-1"), Just("0.0000001"), Just("1e3"), Just("99999999999999")]
            .prop_map(Value::from),
        prop_oneof![Just("voice"), Just("sms"), Just("+4930123456"), Just("+999"), Just("k-1"), Just("h_1_1")]
            .prop_map(Value::from),
    ]
}

/// Objects shaped like the charging requests, with any values, and some unknown fields.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let fields = prop::sample::select(vec![
        "idempotency_key",
        "account",
        "service",
        "destination",
        "amount",
        "seconds",
        "segments",
        "ttl_secs",
        "carrier",
        "hold",
        "x",
    ]);
    let value = scalar().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("account_id".to_owned()), Just("user_id".to_owned()), "[a-z]{1,5}"],
                inner,
                0..3
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        prop::collection::btree_map(fields, value, 0..9)
            .prop_map(|m| serde_json::to_vec(&Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
                .unwrap()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn path() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/v1/holds",
        "/v1/quote",
        "/v1/holds/h_1_1/settle",
        "/v1/holds/h_1_1/extend",
        "/v1/holds/h_1_1/release",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn any_body_gets_a_typed_answer_and_refusals_write_nothing(path in path(), body in body()) {
        thread_local!(static WORLD: World = world());
        WORLD.with(|w| {
            w.rt.block_on(async {
                let before = w.state.ledger.account(&tincan_gateway::charging::AccountRef::Id { account_id: w.account }).await.unwrap();
                let req = Request::post(path).header("authorization", "Bearer svc").header("content-type", "application/json")
                    .body(Body::from(body.clone())).unwrap();
                let resp = api::router(w.state.clone()).oneshot(req).await.unwrap();
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
                let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                prop_assert!(!status.is_server_error(), "{status} for {}: {json}", String::from_utf8_lossy(&body));
                if status != StatusCode::OK {
                    prop_assert!(status.is_client_error());
                    prop_assert!(json["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "untyped: {json}");
                    let after = w.state.ledger.account(&tincan_gateway::charging::AccountRef::Id { account_id: w.account }).await.unwrap();
                    prop_assert_eq!((after.balance, after.held), (before.balance, before.held), "a refusal wrote: {}", json);
                }
                Ok(())
            })
        })?;
    }
}

#[test]
fn a_valid_reservation_passes_the_same_door() {
    let w = world();
    w.rt.block_on(async {
        let body = json!({"idempotency_key": "ok", "account": {"account_id": w.account.0}, "service": "sms",
                          "destination": "+4930123456", "amount": "1.00"});
        let req = Request::post("/v1/holds")
            .header("authorization", "Bearer svc")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = api::router(w.state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "the property test's door admits valid requests");
    });
}
