//! Random paths and bodies thrown at the API: always a 4xx with the typed error shape, never a 5xx.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::harness::Directory;

/// Percent-encodes everything but unreserved characters and `+`, so any string becomes one path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "\\+[0-9]{0,17}", "\\+44[0-9 ().-]{0,14}", "[+0-9a-zA-Z%]{0,20}",]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let service =
        ("(matrix|sip|sms|voice|fax|MATRIX|)", ".{0,40}").prop_map(|(t, u)| serde_json::json!({"type": t, "uri": u}));
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::collection::vec(service, 0..20)
            .prop_map(|s| serde_json::json!({"services": s}).to_string().into_bytes()),
        ".{0,60}".prop_map(|k| serde_json::json!({"ed25519": k}).to_string().into_bytes()),
        "[\\[\\]{}\":,a-z0-9 ]{0,80}".prop_map(String::into_bytes),
    ]
}

#[test]
fn random_paths_and_bodies_never_give_a_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = rt.block_on(Directory::start(dir.path()));
    let token = d.add_provider("fuzz", &["+1", "+44", "+49"]);
    let mut runner = TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
    let strategy = (0..5u8, segment(), body());
    runner
        .run(&strategy, |(op, seg, body)| {
            let path = format!("/v1/numbers/{}", encode(&seg));
            let (status, json) = rt.block_on(async {
                let req = match op {
                    0 => d.http.put(d.url(&path)).body(body),
                    1 => d.http.put(d.url(&format!("{path}/key"))).body(body),
                    2 => d.http.get(d.url(&path)),
                    3 => d.http.delete(d.url(&path)),
                    _ => d.http.put(d.url("/v1/numbers/+442079460001")).body(body),
                };
                let resp = req.bearer_auth(&token).send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            });
            prop_assert!(status < 500, "{status} for {path}: {json}");
            if status >= 400 {
                prop_assert!(json["error"]["code"].is_string(), "{status} for {path}: {json}");
            }
            Ok(())
        })
        .unwrap();
}
