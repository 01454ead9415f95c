//! Identity Service validations are good for a bounded time (`codes.validated_ttl_secs`, 24 h), a bind uses
//! one up, and a bind that moves a number to another Matrix ID needs a validation made after the binding it
//! replaces and within `codes.rebind_within_secs`. Time comes from the injected clock.

use crate::harness::{Api, Local};
use serde_json::{Value, json};
use std::time::Duration;
use tincan_common::Secret;
use tincan_homeserver_ext::config::ExtConfig;

const NUMBER: &str = "+447911123500";
const HOUR: Duration = Duration::from_secs(3600);

/// Validates `NUMBER` in a new session with `secret` (the v1 paths the homeserver's delegate uses); its sid.
async fn validate(ext: &Local, secret: &str) -> String {
    let (s, b) = ext
        .post(
            "/_matrix/identity/api/v1/validate/msisdn/requestToken",
            json!({"client_secret": secret, "country": "GB", "phone_number": NUMBER, "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let sid = b["sid"].as_str().unwrap().to_owned();
    let code = ext.last_code(NUMBER);
    let (s, b) = ext
        .post(
            "/_matrix/identity/api/v1/validate/msisdn/submitToken",
            json!({"sid": sid, "client_secret": secret, "token": code}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    sid
}

async fn get_validated(ext: &Local, sid: &str, secret: &str) -> (u16, Value) {
    ext.get(&format!("/_matrix/identity/api/v1/3pid/getValidated3pid?sid={sid}&client_secret={secret}"), "").await
}

async fn bind(ext: &Local, token: &str, mxid: &str, sid: &str, secret: &str) -> (u16, Value) {
    ext.post_auth("/_matrix/identity/v2/3pid/bind", token, json!({"sid": sid, "client_secret": secret, "mxid": mxid}))
        .await
}

async fn owner(ext: &Local) -> Option<String> {
    ext.app.store.binding(NUMBER).await.unwrap().map(|b| b.user_id)
}

#[tokio::test]
async fn validations_expire_are_used_up_and_a_move_needs_a_fresh_one() {
    let mut config = ExtConfig { server_name: "hs.test".into(), ..ExtConfig::default() };
    config.homeserver.jwt_secret = Secret::new("threepid-secret-0123456789");
    let ext = Local::start(config, 1_700_000_000).await.unwrap();
    let (alice, mallory) = ("@alice:hs.test", "@mallory:hs.test");
    for (token, user) in [("alice-is", alice), ("mallory-is", mallory)] {
        crate::harness::add_is_token(&*ext.app.store, token, user).await;
    }

    // A validation answers getValidated3pid for 24 hours, then no more.
    let sid = validate(&ext, "m0").await;
    ext.clock.advance(23 * HOUR);
    let (s, b) = get_validated(&ext, &sid, "m0").await;
    assert_eq!((s, &b["address"]), (200, &json!("447911123500")), "{b}");
    ext.clock.advance(HOUR + Duration::from_secs(1));
    let (s, b) = get_validated(&ext, &sid, "m0").await;
    assert_eq!((s, &b["errcode"]), (400, &json!("M_SESSION_EXPIRED")), "a day-old validation: {b}");
    let (s, b) = bind(&ext, "mallory-is", mallory, &sid, "m0").await;
    assert_eq!((s, &b["errcode"]), (400, &json!("M_SESSION_EXPIRED")), "{b}");
    assert_eq!(owner(&ext).await, None);

    // Mallory validates the number while she holds it; then it passes to Alice, who binds it.
    let old = validate(&ext, "m1").await;
    ext.clock.advance(Duration::from_secs(60));
    let a1 = validate(&ext, "a1").await;
    let (s, b) = bind(&ext, "alice-is", alice, &a1, "a1").await;
    assert_eq!((s, &b["mxid"]), (200, &json!(alice)), "{b}");
    // The bind used the validation up.
    let (s, b) = bind(&ext, "alice-is", alice, &a1, "a1").await;
    assert_eq!((s, &b["errcode"]), (400, &json!("M_NO_VALID_SESSION")), "a second bind with one validation: {b}");
    let (s, b) = get_validated(&ext, &a1, "a1").await;
    assert_eq!((s, &b["errcode"]), (400, &json!("M_NO_VALID_SESSION")), "{b}");

    // Mallory's validation from before Alice's binding, still within its 24 hours, cannot take the number.
    ext.clock.advance(Duration::from_secs(60));
    let (s, b) = bind(&ext, "mallory-is", mallory, &old, "m1").await;
    assert_eq!((s, &b["errcode"]), (400, &json!("M_SESSION_NOT_VALIDATED")), "a stale validation moved it: {b}");
    assert_eq!(owner(&ext).await.as_deref(), Some(alice));

    // Nor can one made after it but older than rebind_within_secs (10 minutes).
    let late = validate(&ext, "m2").await;
    ext.clock.advance(Duration::from_secs(11 * 60));
    let (s, b) = bind(&ext, "mallory-is", mallory, &late, "m2").await;
    assert_eq!((s, &b["errcode"]), (400, &json!("M_SESSION_NOT_VALIDATED")), "{b}");
    assert_eq!(owner(&ext).await.as_deref(), Some(alice));

    // A fresh validation (Mallory has the number now) moves it.
    let fresh = validate(&ext, "m3").await;
    ext.clock.advance(Duration::from_secs(60));
    let (s, b) = bind(&ext, "mallory-is", mallory, &fresh, "m3").await;
    assert_eq!((s, &b["mxid"]), (200, &json!(mallory)), "{b}");
    assert_eq!(owner(&ext).await.as_deref(), Some(mallory));
}
