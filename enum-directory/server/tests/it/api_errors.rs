//! Every bad API input gets its status and typed error code, and nothing is written.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::Directory;

/// What is sent, and the status and error code expected.
type Case<'a> = (&'a str, Method, String, Option<Vec<u8>>, u16, &'a str);

const NUMBER: &str = "+442079460001";

async fn send(d: &Directory, method: Method, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (u16, Value) {
    let mut req = d.http.request(method, d.url(path));
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

fn services(list: Value) -> Vec<u8> {
    json!({ "services": list }).to_string().into_bytes()
}

#[tokio::test]
async fn bad_inputs_get_typed_400s_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let token = d.add_provider("acme", &["+44"]);
    let put = Method::PUT;
    let num = format!("/v1/numbers/{NUMBER}");
    let key = format!("/v1/numbers/{NUMBER}/key");
    let ok_services = services(json!([{"type": "matrix", "uri": "matrix:u/alice:hs.test"}]));
    let many: Vec<Value> = (0..17).map(|i| json!({"type": "sip", "uri": format!("sip:u{i}@sip.test")})).collect();
    let mut oversized = br#"{"services":[{"type":"matrix","uri":"matrix:u/alice:hs.test"}],"pad":""#.to_vec();
    oversized.extend(std::iter::repeat_n(b'x', 20 * 1024));
    oversized.extend(br#""}"#);

    let cases: Vec<Case<'_>> = vec![
        ("no plus", put.clone(), "/v1/numbers/442079460001".into(), Some(ok_services.clone()), 400, "invalid_number"),
        ("letters", put.clone(), "/v1/numbers/+44abc".into(), Some(ok_services.clone()), 400, "invalid_number"),
        (
            "separators",
            put.clone(),
            "/v1/numbers/+44%2020%207946%200001".into(),
            Some(ok_services.clone()),
            400,
            "invalid_number",
        ),
        (
            "too long for its plan",
            put.clone(),
            "/v1/numbers/+4420794600011".into(),
            Some(ok_services.clone()),
            400,
            "invalid_number",
        ),
        (
            "16 digits",
            put.clone(),
            "/v1/numbers/+1234567890123456".into(),
            Some(ok_services.clone()),
            400,
            "invalid_number",
        ),
        (
            "no such country",
            put.clone(),
            "/v1/numbers/+999123".into(),
            Some(ok_services.clone()),
            400,
            "invalid_number",
        ),
        (
            "unknown service type",
            put.clone(),
            num.clone(),
            Some(services(json!([{"type": "fax", "uri": "tel:+442079460001"}]))),
            400,
            "unknown_service_type",
        ),
        (
            "matrix with a sip uri",
            put.clone(),
            num.clone(),
            Some(services(json!([{"type": "matrix", "uri": "sip:alice@sip.test"}]))),
            400,
            "invalid_uri",
        ),
        (
            "malformed matrix uri",
            put.clone(),
            num.clone(),
            Some(services(json!([{"type": "matrix", "uri": "matrix:u/Alice:hs.test"}]))),
            400,
            "invalid_uri",
        ),
        (
            "second service bad",
            put.clone(),
            num.clone(),
            Some(services(json!([{"type": "matrix", "uri": "matrix:u/alice:hs.test"},
                                 {"type": "sms", "uri": "tel:12"}]))),
            400,
            "invalid_uri",
        ),
        (
            "uri with a bang",
            put.clone(),
            num.clone(),
            Some(services(json!([{"type": "sip", "uri": "sip:a!b@sip.test"}]))),
            400,
            "invalid_uri",
        ),
        ("no services", put.clone(), num.clone(), Some(services(json!([]))), 400, "no_services"),
        ("too many services", put.clone(), num.clone(), Some(services(Value::Array(many))), 400, "too_many_services"),
        ("oversized body", put.clone(), num.clone(), Some(oversized.clone()), 400, "body_too_large"),
        ("truncated json", put.clone(), num.clone(), Some(br#"{"services":"#.to_vec()), 400, "invalid_json"),
        ("not json", put.clone(), num.clone(), Some(b"services=1".to_vec()), 400, "invalid_json"),
        ("empty body", put.clone(), num.clone(), None, 400, "invalid_json"),
        (
            "unknown field",
            put.clone(),
            num.clone(),
            Some(br#"{"services":[{"type":"sip","uri":"sip:a@b.test"}],"x":1}"#.to_vec()),
            400,
            "invalid_json",
        ),
        ("services not a list", put.clone(), num.clone(), Some(br#"{"services":{}}"#.to_vec()), 400, "invalid_json"),
        (
            "key not base64",
            put.clone(),
            key.clone(),
            Some(br#"{"ed25519":"not base64!"}"#.to_vec()),
            400,
            "invalid_key",
        ),
        ("key too short", put.clone(), key.clone(), Some(br#"{"ed25519":"AAAA"}"#.to_vec()), 400, "invalid_key"),
        (
            "key not a point",
            put.clone(),
            key.clone(),
            Some(br#"{"ed25519":"AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#.to_vec()),
            400,
            "invalid_key",
        ),
        ("key wrong field", put.clone(), key.clone(), Some(br#"{"curve25519":"AAAA"}"#.to_vec()), 400, "invalid_json"),
        ("key oversized", put.clone(), key.clone(), Some(oversized), 400, "body_too_large"),
        ("get bad number", Method::GET, "/v1/numbers/abc".into(), None, 400, "invalid_number"),
        ("delete bad number", Method::DELETE, "/v1/numbers/+".into(), None, 400, "invalid_number"),
        ("unknown route", Method::GET, "/v1/nothing".into(), None, 404, "not_found"),
        ("wrong method", Method::POST, num.clone(), None, 405, "method_not_allowed"),
        ("get unregistered", Method::GET, num.clone(), None, 404, "number_not_found"),
        ("delete unregistered", Method::DELETE, num.clone(), None, 404, "number_not_found"),
        (
            "key for unregistered",
            put.clone(),
            key.clone(),
            Some(br#"{"ed25519":"WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY"}"#.to_vec()),
            404,
            "number_not_found",
        ),
    ];
    for (what, method, path, body, status, code) in cases {
        let (got, json) = send(&d, method, &path, Some(&token), body).await;
        assert_eq!(got, status, "{what}: {json}");
        assert_eq!(json["error"]["code"], code, "{what}: {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {json}");
    }

    let (_, health) = send(&d, Method::GET, "/healthz", None, None).await;
    assert_eq!(health["zone_version"], 0, "nothing was written: {health}");
    let (status, _) = send(&d, Method::GET, &num, Some(&token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn missing_or_unknown_tokens_get_401_with_a_bearer_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let token = d.add_provider("acme", &["+44"]);
    let url = d.url(&format!("/v1/numbers/{NUMBER}"));
    let body = services(json!([{"type": "sip", "uri": "sip:a@sip.test"}]));
    let attempts = [
        d.http.put(&url).body(body.clone()),
        d.http.put(&url).bearer_auth("tcd_wrong").body(body.clone()),
        d.http.put(&url).bearer_auth("").body(body.clone()),
        d.http.put(&url).header("authorization", format!("Basic {token}")).body(body.clone()),
        d.http.put(&url).header("authorization", token.clone()).body(body.clone()),
        d.http.get(&url),
        d.http.delete(&url).bearer_auth(format!("{token}x")),
    ];
    for (i, req) in attempts.into_iter().enumerate() {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "attempt {i}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer", "attempt {i}");
        let json: Value = resp.json().await.unwrap();
        assert_eq!(json["error"]["code"], "unauthorized", "attempt {i}");
    }
    let (status, _) = send(&d, Method::PUT, &format!("/v1/numbers/{NUMBER}"), Some(&token), Some(body)).await;
    assert_eq!(status, 200, "the right token works");
}

#[tokio::test]
async fn providers_are_rate_limited_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let env =
        [("TINCAN_DIRECTORY_API__RATE_LIMIT__BURST", "3"), ("TINCAN_DIRECTORY_API__RATE_LIMIT__PER_SECOND", "0.01")];
    let d = Directory::start_with(dir.path(), &env).await;
    let a = d.add_provider("a", &["+44"]);
    let b = d.add_provider("b", &["+49"]);
    let url = d.url(&format!("/v1/numbers/{NUMBER}"));
    for _ in 0..3 {
        assert_eq!(d.http.get(&url).bearer_auth(&a).send().await.unwrap().status().as_u16(), 404);
    }
    let resp = d.http.get(&url).bearer_auth(&a).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&retry), "{retry}");
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["code"], "rate_limited");
    assert_eq!(d.http.get(&url).bearer_auth(&b).send().await.unwrap().status().as_u16(), 404, "per provider");
}
