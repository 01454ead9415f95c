//! Property test of what reaches the OpenID provider from the network: random form bodies, content types and
//! client credentials against the token endpoint and the sign-in pages (with and without a live sign-in behind
//! them). The token endpoint always answers a 4xx with an RFC 6749 error code and never a token; the pages answer
//! a page (the next form, or the refusal shown on it), never a 5xx and never a redirect with a code.

use crate::harness::Local;
use crate::oidc::{Browser, REDIRECT, Rp, TestKeys, form, test_keys};
use base64::Engine;
use proptest::prelude::*;

const TOKEN_ERRORS: &[&str] =
    &["invalid_request", "invalid_client", "invalid_grant", "unsupported_grant_type", "slow_down"];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        Just(String::new()),
        Just("authorization_code".to_owned()),
        Just("synapse".to_owned()),
        Just("synapse-client-secret-0123456789".to_owned()),
        Just("https://rp.test/callback".to_owned()),
        Just("+447911123601".to_owned()),
        Just("123456".to_owned()),
        "[A-Za-z0-9_~.-]{43,130}",
        "\\PC{0,20}",
    ]
}

fn form_fields() -> impl Strategy<Value = Vec<(String, String)>> {
    let names = prop::sample::select(vec![
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "client_id",
        "client_secret",
        "req",
        "phone",
        "x",
    ]);
    prop::collection::vec((names.prop_map(str::to_owned), value()), 0..8)
}

#[derive(Debug, Clone)]
enum Body {
    Form(Vec<(String, String)>),
    Raw(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => form_fields().prop_map(Body::Form),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Body::Raw),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        Some("application/x-www-form-urlencoded"),
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        Some("application/json"),
        Some("text/plain"),
        None,
    ])
}

fn authorization() -> impl Strategy<Value = Option<String>> {
    let b64 = |s: String| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
    prop_oneof![
        Just(None),
        "[ -~]{0,30}".prop_map(Some),
        "[ -~]{0,30}".prop_map(move |s| Some(b64(s))),
        Just(Some(b64("synapse:synapse-client-secret-0123456789".to_owned()))),
    ]
}

struct World {
    _keys: TestKeys,
    rt: tokio::runtime::Runtime,
    ext: Local,
    http: reqwest::Client,
    /// A live sign-in (its form id and browser cookie), so that bodies also reach the number and code checks.
    req: String,
    cookie: String,
}

fn world() -> World {
    let keys = test_keys();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ext = rt.block_on(crate::oidc::local_provider(&keys, 1_000_000));
    let (req, cookie) = rt.block_on(async {
        let mut b = Browser::new();
        let page = b.get(&Rp::new(REDIRECT).authorize_url(&ext.url, &[])).await;
        let (_, hidden) = form(&page.body, "/oauth2/authorize/phone").expect("the number form");
        (hidden.into_iter().find(|(k, _)| k == "req").unwrap().1, b.cookie_header())
    });
    World { _keys: keys, rt, ext, http: reqwest::Client::new(), req, cookie }
}

#[test]
fn random_requests_get_typed_refusals() {
    let w = world();
    let config = ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(path in prop::sample::select(vec!["/oauth2/token", "/oauth2/authorize/phone", "/oauth2/authorize/code"]),
                         body in body(), ctype in content_type(), auth in authorization(), live in any::<bool>())| {
        let (status, text) = w.rt.block_on(async {
            let mut req = w.http.post(format!("{}{path}", w.ext.url));
            if let Some(c) = ctype {
                req = req.header("content-type", c);
            }
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            if live {
                req = req.header("cookie", &w.cookie);
            }
            req = match &body {
                Body::Form(f) => {
                    let mut s = url::form_urlencoded::Serializer::new(String::new());
                    if live {
                        s.append_pair("req", &w.req);
                    }
                    req.body(s.extend_pairs(f).finish())
                }
                Body::Raw(b) => req.body(b.clone()),
            };
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        });
        if path == "/oauth2/token" {
            prop_assert!((400..500).contains(&status), "{path} answered {status}: {text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let e = v["error"].as_str().unwrap_or_default();
            prop_assert!(TOKEN_ERRORS.contains(&e), "{e}");
        } else {
            // A page: the next form (200) or a refusal shown on a page; never a redirect to the client, since
            // no random body carries the code that was sent.
            prop_assert!(status == 200 || (400..500).contains(&status), "{path} answered {status}: {text}");
            prop_assert!(text.starts_with("<!DOCTYPE html>"), "{text}");
        }
    });
}
