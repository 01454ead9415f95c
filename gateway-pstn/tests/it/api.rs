//! The provider API of the real binary: every bad input gets its typed 4xx and writes nothing; users sign in
//! with a Matrix OpenID token from a real Synapse; rates, routes and history read back what was written.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::Gateway;

pub(crate) async fn send(
    gw: &Gateway,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", gw.base()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) fn j(v: Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

/// (what, method, path, token, body, status, code)
type Case<'a> = (&'a str, Method, String, Option<&'a str>, Option<Vec<u8>>, u16, &'a str);

#[tokio::test]
async fn bad_inputs_get_typed_4xx_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]).await;
    let svc = gw.cli_ok(&["tokens", "add", "--scope", "service", "sms"]);
    let op = gw.cli_ok(&["tokens", "add", "--scope", "operator", "ops"]);
    let id = gw.cli_ok(&["accounts", "create", "--business", "acme"]);
    gw.cli_ok(&["accounts", "adjust", &id, "5.00", "--memo", "seed", "--key", "seed"]);
    let acct: i64 = id.parse().unwrap();
    let reserve = |extra: Value| {
        let mut base = json!({"idempotency_key": "k1", "account": {"account_id": acct}, "service": "sms",
                              "destination": "+4930123456", "amount": "1.00"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        j(base)
    };
    let mut big = br#"{"idempotency_key":"k","pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 20 * 1024));
    big.extend(br#""}"#);
    let (s, o) = (Some(svc.as_str()), Some(op.as_str()));
    let post = Method::POST;
    let hold = format!("/v1/holds/h_{acct}_999");
    let cases: Vec<Case<'_>> = vec![
        ("no token", post.clone(), "/v1/holds".into(), None, reserve(json!({})), 401, "unauthorized"),
        ("unknown token", post.clone(), "/v1/holds".into(), Some("tcg_nope"), reserve(json!({})), 401, "unauthorized"),
        ("operator holds", post.clone(), "/v1/holds".into(), o, reserve(json!({})), 403, "forbidden"),
        (
            "service accounts",
            post.clone(),
            "/v1/accounts".into(),
            s,
            j(json!({"business": "x", "currency": "EUR"})),
            403,
            "forbidden",
        ),
        ("amount a number", post.clone(), "/v1/holds".into(), s, reserve(json!({"amount": 1.0})), 400, "invalid_json"),
        (
            "amount too precise",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"amount": "0.0000001"})),
            400,
            "invalid_json",
        ),
        ("amount zero", post.clone(), "/v1/holds".into(), s, reserve(json!({"amount": "0"})), 400, "invalid_request"),
        (
            "amount negative",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"amount": "-1"})),
            400,
            "invalid_request",
        ),
        (
            "amount and segments",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"segments": 1})),
            400,
            "invalid_request",
        ),
        (
            "seconds for sms",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"amount": null, "seconds": 60})),
            400,
            "invalid_request",
        ),
        (
            "nothing to hold",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"amount": null})),
            400,
            "invalid_request",
        ),
        (
            "bad destination",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"destination": "+999123"})),
            400,
            "invalid_json",
        ),
        ("bad service", post.clone(), "/v1/holds".into(), s, reserve(json!({"service": "fax"})), 400, "invalid_json"),
        (
            "bad key",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"idempotency_key": "a b"})),
            400,
            "invalid_json",
        ),
        ("no key", post.clone(), "/v1/holds".into(), s, reserve(json!({"idempotency_key": null})), 400, "invalid_json"),
        ("unknown field", post.clone(), "/v1/holds".into(), s, reserve(json!({"x": 1})), 400, "invalid_json"),
        ("ttl zero", post.clone(), "/v1/holds".into(), s, reserve(json!({"ttl_secs": 0})), 400, "invalid_request"),
        (
            "ttl too long",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"ttl_secs": 86401})),
            400,
            "invalid_request",
        ),
        (
            "too much",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"amount": "5.01"})),
            402,
            "insufficient_funds",
        ),
        (
            "no such account",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"account": {"account_id": 9999}})),
            404,
            "account_not_found",
        ),
        (
            "no such user",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"account": {"user_id": "@x:hs.test"}})),
            404,
            "account_not_found",
        ),
        (
            "no rate",
            post.clone(),
            "/v1/holds".into(),
            s,
            reserve(json!({"amount": null, "segments": 1})),
            404,
            "no_rate",
        ),
        (
            "truncated",
            post.clone(),
            "/v1/holds".into(),
            s,
            Some(br#"{"idempotency_key":"#.to_vec()),
            400,
            "invalid_json",
        ),
        ("empty body", post.clone(), "/v1/holds".into(), s, None, 400, "invalid_json"),
        ("oversized", post.clone(), "/v1/holds".into(), s, Some(big), 400, "body_too_large"),
        (
            "bad hold id",
            post.clone(),
            "/v1/holds/nope/settle".into(),
            s,
            j(json!({"idempotency_key": "k2", "amount": "1"})),
            400,
            "invalid_param",
        ),
        (
            "unknown hold",
            post.clone(),
            format!("{hold}/settle"),
            s,
            j(json!({"idempotency_key": "k2", "amount": "1"})),
            404,
            "hold_not_found",
        ),
        (
            "hold of no account",
            post.clone(),
            "/v1/holds/h_9999_1/release".into(),
            s,
            j(json!({"idempotency_key": "k3"})),
            404,
            "hold_not_found",
        ),
        (
            "settle negative",
            post.clone(),
            format!("{hold}/settle"),
            s,
            j(json!({"idempotency_key": "k2", "amount": "-1"})),
            400,
            "invalid_request",
        ),
        (
            "extend both",
            post.clone(),
            format!("{hold}/extend"),
            s,
            j(json!({"idempotency_key": "k2", "amount": "1", "seconds": 1})),
            400,
            "invalid_request",
        ),
        ("bad account id", Method::GET, "/v1/accounts/x1".into(), o, None, 400, "invalid_param"),
        ("no account", Method::GET, "/v1/accounts/9999".into(), o, None, 404, "account_not_found"),
        (
            "adjust zero",
            post.clone(),
            format!("/v1/accounts/{acct}/adjustments"),
            o,
            j(json!({"idempotency_key": "a1", "amount": "0", "memo": "x"})),
            400,
            "invalid_param",
        ),
        (
            "adjust no memo",
            post.clone(),
            format!("/v1/accounts/{acct}/adjustments"),
            o,
            j(json!({"idempotency_key": "a1", "amount": "1", "memo": ""})),
            400,
            "invalid_param",
        ),
        (
            "business no currency",
            post.clone(),
            "/v1/accounts".into(),
            o,
            j(json!({"business": "x"})),
            400,
            "invalid_json",
        ),
        (
            "business bad currency",
            post.clone(),
            "/v1/accounts".into(),
            o,
            j(json!({"business": "x", "currency": "eur"})),
            400,
            "invalid_json",
        ),
        (
            "bad limits",
            Method::PUT,
            format!("/v1/accounts/{acct}/limits"),
            o,
            j(json!({"blocked": ["+44"]})),
            400,
            "invalid_request",
        ),
        (
            "bad plan",
            Method::PUT,
            format!("/v1/accounts/{acct}/plan"),
            o,
            j(json!({"plan": "a b"})),
            400,
            "invalid_param",
        ),
        ("rates bad number", Method::GET, "/v1/rates/123".into(), o, None, 400, "invalid_param"),
        (
            "rates bad service",
            Method::GET,
            format!("/v1/rates/+4930123456?service=fax&account={acct}"),
            o,
            None,
            400,
            "invalid_param",
        ),
        ("rates bad query", Method::GET, "/v1/rates/+4930123456?nope=1".into(), o, None, 400, "invalid_param"),
        ("rates none", Method::GET, format!("/v1/rates/+4930123456?account={acct}"), o, None, 404, "no_rate"),
        ("routes none", Method::GET, "/v1/routes/+4930123456".into(), s, None, 404, "no_rate"),
        (
            "history bad limit",
            Method::GET,
            format!("/v1/accounts/{acct}/history?limit=0"),
            o,
            None,
            400,
            "invalid_param",
        ),
        (
            "history big limit",
            Method::GET,
            format!("/v1/accounts/{acct}/history?limit=201"),
            o,
            None,
            400,
            "invalid_param",
        ),
        ("me as service", Method::GET, "/v1/me".into(), s, None, 403, "forbidden"),
        (
            "openid empty",
            post.clone(),
            "/v1/auth/openid".into(),
            None,
            j(json!({"access_token": "", "matrix_server_name": "tincan.test"})),
            400,
            "invalid_param",
        ),
        (
            "openid other server",
            post.clone(),
            "/v1/auth/openid".into(),
            None,
            j(json!({"access_token": "x", "matrix_server_name": "evil.test"})),
            403,
            "forbidden",
        ),
        ("unknown route", Method::GET, "/v1/nothing".into(), s, None, 404, "not_found"),
        ("wrong method", Method::DELETE, "/v1/holds".into(), s, None, 405, "method_not_allowed"),
    ];
    for (what, method, path, token, body, status, code) in cases {
        let (got, json) = send(&gw, method, &path, token, body).await;
        assert_eq!(got, status, "{what}: {json}");
        assert_eq!(json["error"]["code"], code, "{what}: {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {json}");
    }

    // Nothing was written: the balance and holds as seeded, one history line, no reservation made.
    let (_, a) = send(&gw, Method::GET, &format!("/v1/accounts/{acct}"), o, None).await;
    assert_eq!((a["balance"].as_str(), a["held"].as_str()), (Some("5.00"), Some("0.00")), "{a}");
    let (_, h) = send(&gw, Method::GET, &format!("/v1/accounts/{acct}/history"), o, None).await;
    assert_eq!(h["items"].as_array().map(Vec::len), Some(1), "{h}");
    let metrics = reqwest::get(format!("{}/metrics", gw.base())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tincan_gateway_reservations_total 0"), "{metrics}");
    assert!(metrics.contains("tincan_gateway_rejections_total{reason=\"insufficient_funds\"} 1"), "{metrics}");
    assert!(gw.cli(&["ledger", "check"]).status.success());
}

#[tokio::test]
async fn rate_limited_callers_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[("TINCAN_GATEWAY_API__RATE_LIMIT__BURST", "3"), ("TINCAN_GATEWAY_API__RATE_LIMIT__PER_SECOND", "1")],
    )
    .await;
    let op = gw.cli_ok(&["tokens", "add", "--scope", "operator", "ops"]);
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = http.get(format!("{}/v1/accounts/1", gw.base())).bearer_auth(&op).send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..3], [404, 404, 404], "{statuses:?}");
    assert_eq!(statuses[4], 429, "{statuses:?}");
}

#[tokio::test]
async fn a_rate_deck_over_the_limit_is_413_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("TINCAN_GATEWAY_API__MAX_DECK_BYTES", "4096")]).await;
    let op = gw.cli_ok(&["tokens", "add", "--scope", "operator", "ops"]);
    let http = reqwest::Client::new();
    let url = format!("{}/v1/plans/default/rates", gw.base());
    let head = "prefix,description,connect_fee,per_minute,increments,per_sms\n";
    let small = format!("{head}49,Germany,0,0.012,60/60,0.07\n");
    let r =
        http.put(&url).bearer_auth(&op).header("content-type", "text/csv").body(small.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let before = http.get(&url).bearer_auth(&op).send().await.unwrap().text().await.unwrap();
    assert!(before.contains("49,Germany"), "{before}");

    // Decks up to the limit are taken; one line more and the whole upload is refused with the typed 413 while
    // the deck imported before stays.
    let line = |n: usize| format!("44{n:05},UK {n},0,0.02,60/60,0.05\n");
    let mut fits = small.clone();
    let mut n = 0;
    while fits.len() + line(n).len() <= 4096 {
        fits.push_str(&line(n));
        n += 1;
    }
    let over = format!("{fits}{}", line(n));
    assert!(over.len() > 4096 && fits.len() <= 4096);
    let r = http.put(&url).bearer_auth(&op).header("content-type", "text/csv").body(over).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "deck_too_large", "{body}");
    assert_eq!(http.get(&url).bearer_auth(&op).send().await.unwrap().text().await.unwrap(), before);
    let r = http.put(&url).bearer_auth(&op).header("content-type", "text/csv").body(fits).send().await.unwrap();
    assert_eq!(r.status(), 200, "a deck of the limit's size is taken");
    let after = http.get(&url).bearer_auth(&op).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("4400000,") && after.contains("49,Germany"), "{after}");

    assert!(gw.cli(&["ledger", "check"]).status.success());
}
