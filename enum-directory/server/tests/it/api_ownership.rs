//! Prefix and ownership rules: 403 outside a provider's prefixes, 409 for a number another provider holds.

use serde_json::{Value, json};

use crate::harness::Directory;

#[tokio::test]
async fn providers_write_only_their_own_numbers_inside_their_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let a = d.add_provider("a", &["+44"]);
    // Overlapping on purpose (the operator said so with --shared): ownership is then by who holds the number.
    let b = d.add_provider_shared("b", &["+4420", "+49"]);
    let london = d.url("/v1/numbers/+442079460001");
    let berlin = d.url("/v1/numbers/+4915112345678");
    let body = |user: &str| json!({"services": [{"type": "matrix", "uri": format!("matrix:u/{user}:hs.test")}]});
    let key = json!({"ed25519": "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY"});

    let r = d.http.put(&london).bearer_auth(&a).json(&body("alice")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["number"], "+442079460001");
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["provider"], "a");
    assert_eq!(stored["services"][0]["uri"], "matrix:u/alice:hs.test");

    for (what, req) in [
        ("put", d.http.put(&london).bearer_auth(&b).json(&body("mallory"))),
        ("key", d.http.put(format!("{london}/key")).bearer_auth(&b).json(&key)),
        ("delete", d.http.delete(&london).bearer_auth(&b)),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 409, "{what}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "number_held_by_other_provider", "{what}");
    }

    let r = d.http.put(&berlin).bearer_auth(&a).json(&body("bob")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "outside_prefixes");
    let r = d.http.delete(&berlin).bearer_auth(&a).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let got: Value = d.http.get(&london).bearer_auth(&b).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, stored, "the failed writes changed nothing");

    // The holder publishes its key, then gives the number up; then the other provider may take it.
    let r = d.http.put(format!("{london}/key")).bearer_auth(&a).json(&key).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let with_key: Value = r.json().await.unwrap();
    assert_eq!(with_key["key"]["ed25519"], key["ed25519"]);
    assert_eq!(with_key["version"], 2);
    let r = d.http.put(&london).bearer_auth(&a).json(&body("alice2")).send().await.unwrap();
    let replaced: Value = r.json().await.unwrap();
    assert_eq!(replaced["key"], with_key["key"], "PUT of services keeps the key");
    let r = d.http.delete(&london).bearer_auth(&a).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = d.http.put(&london).bearer_auth(&b).json(&body("bob")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let taken: Value = r.json().await.unwrap();
    assert_eq!((taken["provider"].clone(), taken["key"].clone()), (json!("b"), Value::Null));
}
