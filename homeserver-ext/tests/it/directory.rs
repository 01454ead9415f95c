//! Publishing to the real ENUM directory (`tincan-directory`): sign-up publishes number → Matrix ID, the
//! directory answers a DNSSEC-validated NAPTR for it (checked with delv), and `PUT keys/master` publishes the
//! user's master key only when the homeserver confirms it is theirs.
//!
//! The directory binary is another crate's, found by [`tincan_testkit::directory::binary`]; without it the test
//! is skipped (a failure under `CI=true`).

use crate::harness::Ext;
use serde_json::{Value, json};
use tincan_testkit::Synapse;
use tincan_testkit::directory::{Directory, binary_or_skip};

#[tokio::test]
async fn sign_up_publishes_a_validated_naptr_and_the_master_key() {
    let Some(bin) = binary_or_skip() else { return };
    let dir = Directory::start(&bin).await.unwrap();
    let registrar = dir.add_provider("tincan", &["+44"]).unwrap();
    let token = registrar.token.clone();

    let secret = "dir-jwt-secret-0123456789";
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": secret, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"{}\"\n\
         [homeserver]\njwt_secret = \"{secret}\"\n[directory]\nurl = \"{}\"\ntoken = \"{token}\"\n",
        synapse.url(),
        dir.api
    ))
    .await
    .unwrap();
    let number = "+447911123001";
    let (user_id, _) = crate::signup::sign_up(&ext, &synapse, number, "d1").await;

    // The registrar holds the record…
    let http = reqwest::Client::new();
    let rec = registrar.get(number).await.unwrap().expect("the number is registered");
    let uri = format!("matrix:u/{}", user_id.trim_start_matches('@'));
    assert_eq!(rec["services"][0]["uri"], uri.as_str(), "{rec}");

    // …and DNS answers it, validated up to the trust anchor.
    let text = dir.delv(number, "NAPTR").unwrap();
    assert!(text.contains("; fully validated"), "{text}");
    assert!(text.contains(&uri), "{text}");

    // Master key: a key that is not the user's is refused; the real one is published.
    let (s, v) = crate::signup::sign_up_token(&ext, &synapse, number, "d2").await;
    let _ = s;
    let access_token = v;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
    };
    let master = b64(signing.verifying_key().as_bytes());
    let other = b64(ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key().as_bytes());
    let put = |key: String| {
        http.put(format!("{}/_tincan/client/v1/keys/master", ext.url))
            .bearer_auth(&access_token)
            .json(&json!({"ed25519": key}))
            .send()
    };
    // Before any upload, no key is the user's.
    let r = put(master.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(format!("{}/_matrix/client/v3/keys/device_signing/upload", synapse.url()))
        .bearer_auth(&access_token)
        .json(&json!({"master_key": {
            "user_id": user_id,
            "usage": ["master"],
            "keys": {format!("ed25519:{master}"): master},
        }}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = put(other).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    let r = put(master.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let rec = registrar.get(number).await.unwrap().expect("the number is registered");
    assert_eq!(rec["key"]["ed25519"], master.as_str(), "{rec}");

    // Unregistering removes the record from the directory (and DNS).
    let r =
        http.post(format!("{}/_tincan/client/v1/unregister", ext.url)).bearer_auth(&access_token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["numbers"], json!([number]));
    assert!(registrar.get(number).await.unwrap().is_none());
    let text = dir.delv(number, "NAPTR").unwrap();
    assert!(!text.contains(&uri), "{text}");
}
