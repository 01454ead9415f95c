//! Users sign in with a Matrix OpenID token from a real Synapse, redeem vouchers and read their history;
//! payment webhooks (Stripe's signature format and the generic one) credit, refund and charge back once per
//! event, and a chargeback beyond the balance becomes an explicit debt.

use reqwest::Method;
use serde_json::{Value, json};
use tincan_gateway::payments::sign;
use tincan_testkit::Synapse;

use crate::harness::Gateway;

async fn call(gw: &Gateway, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", gw.base()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// An OpenID token for a fresh user of `synapse`.
async fn openid(synapse: &Synapse, localpart: &str) -> Value {
    let user = synapse.register_user(localpart, false).await.unwrap();
    let url = format!("{}/_matrix/client/v3/user/{}/openid/request_token", synapse.url(), user.user_id);
    reqwest::Client::new()
        .post(url)
        .bearer_auth(&user.access_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn users_sign_in_with_openid_redeem_vouchers_and_read_history() {
    let synapse = Synapse::builder().server_name("tincan.test").start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TINCAN_GATEWAY_HOMESERVER__URL", synapse.url()),
        ("TINCAN_GATEWAY_HOMESERVER__SERVER_NAME", "tincan.test".to_owned()),
        ("TINCAN_GATEWAY_VOUCHERS__ATTEMPTS_BURST", "6".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gateway::start(dir.path(), &env).await;
    let codes = gw.cli_ok(&["vouchers", "create", "--amount", "10.00", "--count", "2", "--name", "launch"]);
    let codes: Vec<&str> = codes.lines().collect();
    assert_eq!(codes.len(), 2);

    let (status, session) =
        call(&gw, Method::POST, "/v1/auth/openid", None, Some(openid(&synapse, "alice").await)).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user_id"], "@alice:tincan.test");
    let token = session["token"].as_str().unwrap().to_owned();
    let (_, me) = call(&gw, Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!((me["balance"].as_str(), me["user_id"].as_str()), (Some("0.00"), Some("@alice:tincan.test")), "{me}");

    // A second sign-in finds the same account.
    let (_, again) =
        call(&gw, Method::POST, "/v1/auth/openid", None, Some(openid_again(&synapse, "alice2").await)).await;
    assert_ne!(again["account_id"], session["account_id"], "another user, another account");

    let (status, r) =
        call(&gw, Method::POST, "/v1/me/vouchers", Some(&token), Some(json!({"code": codes[0].to_lowercase()}))).await;
    assert_eq!((status, r["credited"].as_str(), r["balance"].as_str()), (200, Some("10.00"), Some("10.00")), "{r}");
    let (status, r) = call(&gw, Method::POST, "/v1/me/vouchers", Some(&token), Some(json!({"code": codes[0]}))).await;
    assert_eq!(
        (status, r["balance"].as_str()),
        (200, Some("10.00")),
        "the same user again: same answer, credited once: {r}"
    );
    let other = again["token"].as_str().unwrap();
    let (status, r) = call(&gw, Method::POST, "/v1/me/vouchers", Some(other), Some(json!({"code": codes[0]}))).await;
    assert_eq!((status, r["error"]["code"].as_str()), (409, Some("voucher_used")), "{r}");
    let (status, r) =
        call(&gw, Method::POST, "/v1/me/vouchers", Some(other), Some(json!({"code": "0000-0000-0000-0000"}))).await;
    assert_eq!((status, r["error"]["code"].as_str()), (404, Some("voucher_unknown")), "{r}");
    // Guessing is rate limited per account.
    let mut last = 0;
    for _ in 0..6 {
        last = call(&gw, Method::POST, "/v1/me/vouchers", Some(other), Some(json!({"code": "0000-0000-0000-0001"})))
            .await
            .0;
    }
    assert_eq!(last, 429);

    let (_, h) = call(&gw, Method::GET, "/v1/me/history", Some(&token), None).await;
    let items = h["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{h}");
    assert_eq!((items[0]["kind"].as_str(), items[0]["amount"].as_str()), (Some("voucher"), Some("10.00")));

    let (status, _) = call(
        &gw,
        Method::POST,
        "/v1/auth/openid",
        None,
        Some(json!({"access_token": "forged", "matrix_server_name": "tincan.test"})),
    )
    .await;
    assert_eq!(status, 401, "a token the homeserver does not know");
    assert!(gw.cli(&["ledger", "check"]).status.success());
}

async fn openid_again(synapse: &Synapse, localpart: &str) -> Value {
    openid(synapse, localpart).await
}

async fn hook(gw: &Gateway, path: &str, header: &str, body: &Value, secret: &str, t: u64) -> (u16, Value) {
    let raw = body.to_string();
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", gw.base()))
        .header(header, sign(raw.as_bytes(), secret, t))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn payment_webhooks_credit_refund_and_charge_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TINCAN_GATEWAY_PAYMENTS__STRIPE_SECRET", "whsec_test"),
        ("TINCAN_GATEWAY_PAYMENTS__GENERIC_SECRET", "shop-secret"),
    ];
    let gw = Gateway::start(dir.path(), &env).await;
    let op = gw.cli_ok(&["tokens", "add", "--scope", "operator", "ops"]);
    let acct = gw.cli_ok(&["accounts", "create", "--business", "shop customer"]);
    #[allow(clippy::disallowed_methods)] // the signer's clock, outside the service under test
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    let paid = json!({"id": "evt_pay1", "type": "payment_intent.succeeded",
        "data": {"object": {"amount_received": 2000, "currency": "eur", "metadata": {"account_id": acct}}}});
    let (status, r) = hook(&gw, "/v1/payments/stripe", "Stripe-Signature", &paid, "whsec_test", now).await;
    assert_eq!((status, r["outcome"].as_str()), (200, Some("credited")), "{r}");
    let (status, _) = hook(&gw, "/v1/payments/stripe", "Stripe-Signature", &paid, "whsec_test", now).await;
    assert_eq!(status, 200, "a redelivered event is acknowledged");
    let (status, r) = hook(&gw, "/v1/payments/stripe", "Stripe-Signature", &paid, "whsec_wrong", now).await;
    assert_eq!((status, r["error"]["code"].as_str()), (400, Some("bad_signature")), "{r}");
    let (status, r) = hook(&gw, "/v1/payments/stripe", "Stripe-Signature", &paid, "whsec_test", now - 301).await;
    assert_eq!((status, r["error"]["code"].as_str()), (400, Some("bad_signature")), "a replay outside the window: {r}");
    let (_, a) = call(&gw, Method::GET, &format!("/v1/accounts/{acct}"), Some(&op), None).await;
    assert_eq!(a["balance"], "20.00", "credited exactly once: {a}");

    let ignored = json!({"id": "evt_x", "type": "customer.created", "data": {"object": {}}});
    let (status, r) = hook(&gw, "/v1/payments/stripe", "Stripe-Signature", &ignored, "whsec_test", now).await;
    assert_eq!((status, r["outcome"].as_str()), (200, Some("ignored")));

    let refund = json!({"id": "shop-r1", "type": "refund", "account_id": acct.parse::<i64>().unwrap(), "amount": "5.00", "currency": "EUR"});
    let (status, r) = hook(&gw, "/v1/payments/generic", "X-Tincan-Signature", &refund, "shop-secret", now).await;
    assert_eq!((status, r["outcome"].as_str()), (200, Some("taken_back")), "{r}");
    let dispute = json!({"id": "evt_dp1", "type": "charge.dispute.created",
        "data": {"object": {"amount": 2000, "currency": "eur", "metadata": {"account_id": acct}}}});
    let (status, r) = hook(&gw, "/v1/payments/stripe", "Stripe-Signature", &dispute, "whsec_test", now).await;
    assert_eq!((status, r["debt"].as_str()), (200, Some("5.00")), "15.00 covered, 5.00 owed: {r}");
    let (_, a) = call(&gw, Method::GET, &format!("/v1/accounts/{acct}"), Some(&op), None).await;
    assert_eq!(a["balance"], "-5.00", "{a}");
    let (_, h) = call(&gw, Method::GET, &format!("/v1/accounts/{acct}/history"), Some(&op), None).await;
    let kinds: Vec<&str> = h["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["debt", "chargeback", "refund", "payment"], "{h}");
    let svc = gw.cli_ok(&["tokens", "add", "--scope", "service", "sms"]);
    let reserve = json!({"idempotency_key": "k", "account": {"account_id": acct.parse::<i64>().unwrap()}, "service": "sms",
                         "destination": "+4930123456", "amount": "0.01"});
    let (status, _) = call(&gw, Method::POST, "/v1/holds", Some(&svc), Some(reserve)).await;
    assert_eq!(status, 402, "a balance in debt reserves nothing");
    let check = gw.cli(&["ledger", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}
