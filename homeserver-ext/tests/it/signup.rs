//! Sign-up: the happy path with both homeserver backends against Synapse, and every refusal creating nothing.

use crate::harness::{Api, Ext};
use serde_json::json;
use tincan_testkit::Synapse;

const JWT_SECRET: &str = "test-jwt-secret-0123456789";

fn jwt_config(synapse: Option<&Synapse>, server_name: &str) -> String {
    let hs = synapse.map(|s| s.url()).unwrap_or_else(|| "http://127.0.0.1:9".into());
    format!(
        "server_name = \"{server_name}\"\nhomeserver_url = \"{hs}\"\n\
         [homeserver]\nbackend = \"jwt\"\njwt_secret = \"{JWT_SECRET}\"\n"
    )
}

async fn request(ext: &Ext, phone: &str, secret: &str, attempt: u64) -> (u16, serde_json::Value) {
    ext.post(
        "/_tincan/client/v1/register/request",
        json!({"phone": phone, "client_secret": secret, "send_attempt": attempt}),
    )
    .await
}

async fn verify(ext: &Ext, sid: &str, secret: &str, code: &str) -> (u16, serde_json::Value) {
    ext.post("/_tincan/client/v1/register/verify", json!({"sid": sid, "client_secret": secret, "code": code})).await
}

/// Logs in to Synapse with the login the extension returned; returns (access token, device id).
pub async fn login(synapse: &Synapse, login: &serde_json::Value) -> (String, String) {
    if login["type"] == "m.login.application_service" {
        return (login["access_token"].as_str().unwrap().into(), login["device_id"].as_str().unwrap().into());
    }
    let r = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/login", synapse.url()))
        .json(&json!({"type": "org.matrix.login.jwt", "token": login["token"]}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(status.is_success(), "JWT login: {status} {body}\n{}", synapse.log_tail(30));
    (body["access_token"].as_str().unwrap().into(), body["device_id"].as_str().unwrap().into())
}

/// Full flow for one number through the dev sink: request → code → verify → login → whoami.
pub async fn sign_up(ext: &Ext, synapse: &Synapse, phone: &str, secret: &str) -> (String, String) {
    let (user_id, device, _) = sign_up_full(ext, synapse, phone, secret).await;
    (user_id, device)
}

/// [`sign_up`], returning (user id, access token).
pub async fn sign_up_token(ext: &Ext, synapse: &Synapse, phone: &str, secret: &str) -> (String, String) {
    let (user_id, _, token) = sign_up_full(ext, synapse, phone, secret).await;
    (user_id, token)
}

async fn sign_up_full(ext: &Ext, synapse: &Synapse, phone: &str, secret: &str) -> (String, String, String) {
    let (s, body) = request(ext, phone, secret, 1).await;
    assert_eq!(s, 200, "{body}");
    let code = ext.last_code(phone);
    let (s, v) = verify(ext, body["sid"].as_str().unwrap(), secret, &code).await;
    assert_eq!(s, 200, "{v}\n{}", ext.guard.log_tail(20));
    assert_eq!(v["homeserver_url"], synapse.url());
    let (token, device) = login(synapse, &v["login"]).await;
    let user_id = synapse.whoami(&token).await.unwrap();
    assert_eq!(user_id, v["user_id"].as_str().unwrap());
    (user_id, device, token)
}

#[tokio::test]
async fn jwt_backend_same_number_same_user_new_device() {
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let ext = Ext::start(&jwt_config(Some(&synapse), "hs.test")).await.unwrap();
    let (user1, dev1) = sign_up(&ext, &synapse, "+447911123123", "secretA").await;
    assert!(user1.starts_with("@tc_") && user1.ends_with(":hs.test"), "{user1}");
    assert!(!user1.contains("7911123123"), "localpart must not reveal the number");
    let (user2, dev2) = sign_up(&ext, &synapse, "+447911123123", "secretB").await;
    assert_eq!(user1, user2);
    assert_ne!(dev1, dev2);
    let (other, _) = sign_up(&ext, &synapse, "+447911123124", "secretC").await;
    assert_ne!(other, user1);
}

#[tokio::test]
async fn appservice_backend_same_number_same_user_new_device() {
    let as_token = "as-token-0123456789";
    let hs_token = "hs-token-0123456789";
    let ext_port = tincan_testkit::ports::free_port();
    // Synapse loads the registration file the binary prints.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_tincan-ext"))
        .arg("registration")
        .envs([
            ("TINCAN_EXT_SERVER_NAME", "hs.test"),
            ("TINCAN_EXT_HOMESERVER__BACKEND", "appservice"),
            ("TINCAN_EXT_HOMESERVER__AS_TOKEN", as_token),
            ("TINCAN_EXT_HOMESERVER__HS_TOKEN", hs_token),
            ("TINCAN_EXT_HOMESERVER__EXTENSION_URL", &format!("http://127.0.0.1:{ext_port}")),
            ("TINCAN_EXT_CODES__SECRET", "test-only-code-secret-0123456789abcdef"),
            ("TINCAN_EXT_SMS__BACKEND", "dev"),
            ("TINCAN_EXT_LIMITS__ALLOWED_COUNTRIES", "[\"*\"]"),
        ])
        .output()
        .unwrap();
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let registration = String::from_utf8(printed.stdout).unwrap();
    let synapse = Synapse::builder().appservice(registration).start().await.unwrap();
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"{}\"\n\
         [homeserver]\nbackend = \"appservice\"\nas_token = \"{as_token}\"\nhs_token = \"{hs_token}\"\n\
         extension_url = \"http://127.0.0.1:{ext_port}\"\n",
        synapse.url()
    ))
    .await
    .unwrap();
    let (user1, dev1) = sign_up(&ext, &synapse, "+447911123200", "s1").await;
    let (user2, dev2) = sign_up(&ext, &synapse, "+447911123200", "s2").await;
    assert_eq!(user1, user2);
    assert_ne!(dev1, dev2);
}

#[tokio::test]
async fn refusals_create_nothing() {
    let ext = Ext::start(&format!(
        "{}\n[limits]\nallowed_countries = [\"GB\", \"DE\"]\nblocked_prefixes = [\"+4474001239\"]\n\
         per_number = {{ burst = 5, refill = 5, period_secs = 3600 }}\n",
        jwt_config(None, "hs.test")
    ))
    .await
    .unwrap();

    // Malformed numbers.
    for bad in ["07911123123", "+44", "+44 12", "hello", ""] {
        let (s, b) = request(&ext, bad, "sec", 1).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (400, "M_INVALID_PARAM"), "{bad}: {b}");
    }
    // Bad client secret.
    let (s, b) = request(&ext, "+447400123123", "bad secret!", 1).await;
    assert_eq!((s, b["errcode"].as_str().unwrap()), (400, "M_INVALID_PARAM"));
    // A country outside the allowed list, a blocked prefix, a premium-rate number.
    for denied in ["+33612345678", "+447400123999", "+449098790000"] {
        let (s, b) = request(&ext, denied, "sec", 1).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (403, "M_THREEPID_DENIED"), "{denied}: {b}");
    }
    // Broken JSON.
    let r = ext
        .http
        .post(format!("{}/_tincan/client/v1/register/request", ext.url))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(ext.sms().is_empty(), "no SMS for refused requests");

    // Wrong code five times: the session is dead, even for the right code.
    let (s, b) = request(&ext, "+447400123123", "sec", 1).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["expires_in"], 600);
    let sid = b["sid"].as_str().unwrap().to_owned();
    let code = ext.last_code("+447400123123");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for i in 0..5 {
        let (s, b) = verify(&ext, &sid, "sec", wrong).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (400, "M_THREEPID_AUTH_FAILED"), "attempt {i}: {b}");
    }
    let (s, b) = verify(&ext, &sid, "sec", &code).await;
    assert_eq!((s, b["errcode"].as_str().unwrap()), (429, "M_LIMIT_EXCEEDED"), "{b}");
    // Another client secret cannot use the session.
    let (s, b) = verify(&ext, &sid, "other", &code).await;
    assert_eq!((s, b["errcode"].as_str().unwrap()), (400, "M_NO_VALID_SESSION"), "{b}");

    // Same send_attempt again: same session, no SMS. A higher one too soon: throttled.
    let (_, b1) = request(&ext, "+447400123124", "s2", 1).await;
    let (_, b2) = request(&ext, "+447400123124", "s2", 1).await;
    assert_eq!(b1["sid"], b2["sid"]);
    let (s, b) = request(&ext, "+447400123124", "s2", 2).await;
    assert_eq!((s, b["errcode"].as_str().unwrap()), (429, "M_LIMIT_EXCEEDED"), "{b}");
    assert!(b["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(ext.sms().len(), 2);

    // Per-number bucket: five SMS an hour, the sixth request is refused.
    for i in 0..4 {
        let (s, b) = request(&ext, "+447400123123", &format!("fresh{i}"), 1).await;
        assert_eq!(s, 200, "request {i}: {b}");
    }
    let (s, b) = request(&ext, "+447400123123", "fresh-last", 1).await;
    assert_eq!((s, b["errcode"].as_str().unwrap()), (429, "M_LIMIT_EXCEEDED"), "{b}");
    assert!(b["retry_after_ms"].as_u64().unwrap() > 0);

    // Nothing was created: no account and no binding for any of these numbers, no session for the refused
    // requests.
    let store = tincan_homeserver_ext::store::SqliteStore::connect(&ext.db_url()).await.unwrap();
    use tincan_homeserver_ext::store::{AccountRepository, IdentityRepository, Purpose, SessionRepository};
    for n in ["+447400123123", "+447400123124", "+33612345678", "+447400123999", "+449098790000"] {
        assert!(store.account_by_number(n).await.unwrap().is_none(), "{n}");
        assert!(store.binding(n).await.unwrap().is_none(), "{n}");
    }
    let digest = tincan_homeserver_ext::code::digest;
    for (n, secret) in [
        ("+33612345678", "sec"),
        ("+447400123999", "sec"),
        ("+449098790000", "sec"),
        ("+447400123123", "bad secret!"),
        ("+447400123123", "fresh-last"),
    ] {
        let s = store.session_by_secret(&digest(secret), n, Purpose::Register).await.unwrap();
        assert!(s.is_none(), "a refused request left a session: {n} {secret}");
    }
}

/// `POST unregister` with a body that is not JSON (the fuzz target's find,
/// `homeserver-ext/fuzz/regressions/is_request-unregister-502`) or not an object is refused with 400 before
/// the token goes to the homeserver: without one it used to be a 502, and with Synapse the garbled request
/// released the caller's numbers. An empty body and `{}` still release them.
#[tokio::test]
async fn unregister_refuses_a_body_that_is_not_a_json_object_before_asking_the_homeserver() {
    let found = &include_bytes!("../../fuzz/regressions/is_request-unregister-502")[1..];
    let unregister = |ext: &Ext, token: &str, body: &[u8]| {
        ext.http
            .post(format!("{}/_tincan/client/v1/unregister", ext.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
    };
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap_or_default())
    };

    // No homeserver behind the extension (port 9 is closed): the body is judged without it.
    let alone = Ext::start(&jwt_config(None, "hs.test")).await.unwrap();
    let (s, b) = answer(unregister(&alone, "any-token", found).await.unwrap()).await;
    assert_eq!((s, b["errcode"].as_str()), (400, Some("M_NOT_JSON")), "{b}");
    let (s, b) = answer(unregister(&alone, "any-token", b"[]").await.unwrap()).await;
    assert_eq!((s, b["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{b}");
    let (s, _) = answer(unregister(&alone, "any-token", b"{}").await.unwrap()).await;
    assert_eq!(s, 502, "a well-formed request needs the homeserver");

    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let ext = Ext::start(&jwt_config(Some(&synapse), "hs.test")).await.unwrap();
    let number = "+447911123300";
    let (user_id, token) = sign_up_token(&ext, &synapse, number, "unreg1").await;
    let store = ext.store().await;
    let refused: [(&[u8], &str); 3] = [(found, "M_NOT_JSON"), (b"[1]", "M_BAD_JSON"), (b"null", "M_BAD_JSON")];
    for (body, errcode) in refused {
        let (s, b) = answer(unregister(&ext, &token, body).await.unwrap()).await;
        assert_eq!((s, b["errcode"].as_str()), (400, Some(errcode)), "{}: {b}", String::from_utf8_lossy(body));
        let held = store.accounts_by_user(&user_id).await.unwrap();
        assert_eq!(held.len(), 1, "a refused request releases nothing");
    }
    let (s, b) = answer(unregister(&ext, &token, b"{}").await.unwrap()).await;
    assert_eq!((s, &b["numbers"]), (200, &json!([number])), "{b}");
    assert!(store.accounts_by_user(&user_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn healthz_is_ok_while_the_database_answers_and_503_once_it_is_gone() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let ext = Ext::start_on(Some(pg.url()), &jwt_config(None, "hs.test")).await.unwrap();
    let health = || async {
        let r = ext.http.get(format!("{}/healthz", ext.url)).send().await.unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(health().await, (200, json!({"status": "ok"})));
    // The database dropped under it (its connections cut): the probe says so, the liveness answer does not.
    drop(pg);
    assert_eq!(health().await, (503, json!({"status": "unavailable"})));
    let live = ext.http.get(format!("{}/health", ext.url)).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
}
