//! Registration lock (issue #22): a SIM-swap attacker with the SMS code and no PIN gets nothing, the owner with
//! the PIN gets in, wrong PINs are slowed down and capped per account, and after the lapse (no device active
//! for `registration_lock.lapse_secs`) the code alone works again. Sign-in through the Tincan API against
//! Synapse (JWT), and through the Identity Service (`3pid/bind` cannot move a locked number). Time is the
//! injected clock.

use crate::harness::{Api, Local, add_is_token};
use serde_json::{Value, json};
use std::time::Duration;
use tincan_common::Secret;
use tincan_homeserver_ext::config::ExtConfig;
use tincan_testkit::Synapse;

const JWT_SECRET: &str = "registration-lock-jwt-0123456789";
const NUMBER: &str = "+447911123800";
const PIN: &str = "482916";
const DAY: Duration = Duration::from_secs(86_400);

fn config(synapse: &Synapse) -> ExtConfig {
    let mut c = ExtConfig { server_name: "hs.test".into(), homeserver_url: synapse.url(), ..ExtConfig::default() };
    c.homeserver.jwt_secret = Secret::new(JWT_SECRET);
    c.registration_lock.secret = Secret::new("test-only-registration-lock-pepper-0123456789");
    c.registration_lock.max_failures = 3;
    c.limits.per_number.burst = 100;
    c.limits.verify_per_number.burst = 100;
    c
}

/// Requests a code for `NUMBER` in a new session and verifies it, with `pin` if given.
async fn sign_in(ext: &Local, secret: &str, pin: Option<&str>) -> (u16, Value) {
    let (s, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": NUMBER, "client_secret": secret, "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let sid = b["sid"].as_str().unwrap().to_owned();
    verify(ext, &sid, secret, pin).await
}

async fn verify(ext: &Local, sid: &str, secret: &str, pin: Option<&str>) -> (u16, Value) {
    let mut body = json!({"sid": sid, "client_secret": secret, "code": ext.last_code(NUMBER)});
    if let Some(pin) = pin {
        body["pin"] = json!(pin);
    }
    ext.post("/_tincan/client/v1/register/verify", body).await
}

const MALLORY: &str = "@mallory:hs.test";

/// Validates `NUMBER` through the Identity Service (the v1 paths a homeserver's msisdn delegate uses): the
/// session and the answer to the code.
async fn validate_is(ext: &Local, secret: &str) -> (String, (u16, Value)) {
    let (s, b) = ext
        .post(
            "/_matrix/identity/api/v1/validate/msisdn/requestToken",
            json!({"client_secret": secret, "country": "GB", "phone_number": NUMBER, "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let sid = b["sid"].as_str().unwrap().to_owned();
    let answer = ext
        .post(
            "/_matrix/identity/api/v1/validate/msisdn/submitToken",
            json!({"sid": sid, "client_secret": secret, "token": ext.last_code(NUMBER)}),
        )
        .await;
    (sid, answer)
}

async fn bind(ext: &Local, sid: &str, secret: &str) -> (u16, Value) {
    let body = json!({"sid": sid, "client_secret": secret, "mxid": MALLORY});
    ext.post_auth("/_matrix/identity/v2/3pid/bind", "mallory-is", body).await
}

async fn put_lock(ext: &Local, token: &str, pin: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/_tincan/client/v1/registration_lock", ext.url))
        .bearer_auth(token)
        .json(&json!({"pin": pin}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn errcode(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["errcode"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn a_sim_swap_with_the_code_alone_gets_nothing_until_the_lock_lapses() {
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    // Synapse checks the JWT's expiry against real time.
    let now = tincan_common::Clock::unix_seconds(&tincan_common::SystemClock);
    let ext = Local::start(config(&synapse), now).await.unwrap();

    // The owner signs up, logs in to Synapse and sets a PIN.
    let (s, owner) = sign_in(&ext, "owner-1", None).await;
    assert_eq!(s, 200, "{owner}");
    let user_id = owner["user_id"].as_str().unwrap().to_owned();
    let (token, _) = crate::signup::login(&synapse, &owner["login"]).await;
    let (s, b) = put_lock(&ext, &token, PIN).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = ext.get("/_tincan/client/v1/registration_lock", &token).await;
    assert_eq!((s, &b["enabled"]), (200, &json!(true)), "{b}");

    // The attacker has the number's SMS: the right code without the PIN is refused, and the session stays
    // usable (no login is minted, nothing consumed).
    let (s, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": NUMBER, "client_secret": "attacker", "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let attacker_sid = b["sid"].as_str().unwrap().to_owned();
    let answer = verify(&ext, &attacker_sid, "attacker", None).await;
    assert_eq!(errcode(&answer), (403, "IO.TINCAN.REGISTRATION_LOCKED"), "{answer:?}");
    assert!(answer.1.get("login").is_none());
    // A wrong PIN is judged; the next attempt must wait (whatever the address).
    let answer = verify(&ext, &attacker_sid, "attacker", Some("000000")).await;
    assert_eq!(errcode(&answer), (403, "IO.TINCAN.WRONG_PIN"), "{answer:?}");
    let answer = verify(&ext, &attacker_sid, "attacker", Some("111111")).await;
    assert_eq!(errcode(&answer), (429, "M_LIMIT_EXCEEDED"), "{answer:?}");

    // Through the Identity Service the attacker validates the number with the code alone (to bind it to their
    // own Matrix ID): refused while the lock holds, and the session is not validated.
    add_is_token(&*ext.app.store, "mallory-is", MALLORY).await;
    let (sid, answer) = validate_is(&ext, "mallory-1").await;
    assert_eq!(errcode(&answer), (403, "IO.TINCAN.REGISTRATION_LOCKED"), "{answer:?}");
    let answer = bind(&ext, &sid, "mallory-1").await;
    assert_eq!(errcode(&answer), (400, "M_SESSION_NOT_VALIDATED"), "{answer:?}");

    // The owner on a new device, with the PIN, after the wait: in, as the same account.
    ext.clock.advance(Duration::from_secs(3));
    let (s, b) = sign_in(&ext, "owner-2", Some(PIN)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user_id"], user_id.as_str());

    // Wrong PINs are capped: after 3 (waiting out each slow-down), even the right PIN is refused.
    for (i, wait) in [(1, 0), (2, 2), (3, 4)] {
        ext.clock.advance(Duration::from_secs(wait));
        let answer = sign_in(&ext, &format!("attacker-{i}"), Some("999999")).await;
        assert_eq!(errcode(&answer), (403, "IO.TINCAN.WRONG_PIN"), "wrong PIN {i}: {answer:?}");
    }
    ext.clock.advance(Duration::from_secs(3600));
    let answer = sign_in(&ext, "owner-3", Some(PIN)).await;
    assert_eq!(errcode(&answer), (429, "M_LIMIT_EXCEEDED"), "after the cap: {answer:?}");

    // Seven days without an active device: the lock lapses and the code alone signs in (a user who lost every
    // device gets back in), and the lapsed lock is gone.
    ext.clock.advance(7 * DAY);
    let (s, b) = sign_in(&ext, "after-lapse", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user_id"], user_id.as_str());
    assert!(ext.app.store.registration_lock(&user_id).await.unwrap().is_none());
    let (sid, answer) = validate_is(&ext, "mallory-2").await;
    assert_eq!(answer.0, 200, "a validation after the lapse: {answer:?}");
    let answer = bind(&ext, &sid, "mallory-2").await;
    assert_eq!(answer.0, 200, "a bind after the lapse: {answer:?}");
}

#[tokio::test]
async fn concurrent_wrong_pins_are_judged_once() {
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    // Synapse checks the JWT's expiry against real time.
    let now = tincan_common::Clock::unix_seconds(&tincan_common::SystemClock);
    let ext = Local::start(config(&synapse), now).await.unwrap();
    let (s, owner) = sign_in(&ext, "owner", None).await;
    assert_eq!(s, 200, "{owner}");
    let (token, _) = crate::signup::login(&synapse, &owner["login"]).await;
    let (s, _) = put_lock(&ext, &token, PIN).await;
    assert_eq!(s, 200);
    // Ten sessions with the right code each, then ten wrong PINs at once.
    let mut sids = Vec::new();
    for i in 0..10 {
        let secret = format!("burst-{i}");
        let (s, b) = ext
            .post(
                "/_tincan/client/v1/register/request",
                json!({"phone": NUMBER, "client_secret": secret, "send_attempt": 1}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        sids.push((b["sid"].as_str().unwrap().to_owned(), secret, ext.last_code(NUMBER)));
    }
    let answers = futures::future::join_all(sids.iter().map(|(sid, secret, code)| {
        ext.post(
            "/_tincan/client/v1/register/verify",
            json!({"sid": sid, "client_secret": secret, "code": code, "pin": "000000"}),
        )
    }))
    .await;
    let judged = answers.iter().filter(|a| errcode(a) == (403, "IO.TINCAN.WRONG_PIN")).count();
    assert_eq!(judged, 1, "{answers:?}");
    assert!(answers.iter().all(|a| errcode(a) == (403, "IO.TINCAN.WRONG_PIN") || a.0 == 429), "{answers:?}");
}

/// The OpenID provider page (stock clients' sign-in) enforces the lock too: the right code alone shows the
/// PIN field and issues nothing; the code with the PIN sends the browser back with an authorization code.
#[tokio::test]
async fn the_openid_provider_page_asks_for_the_pin() {
    use crate::oidc::{Browser, REDIRECT, Rp, local_provider_with, query_param, test_keys};
    let secret = "test-only-registration-lock-pepper-0123456789";
    let keys = test_keys();
    let ext = local_provider_with(&keys, 1_700_000_000, |c| {
        c.server_name = "hs.test".into();
        c.registration_lock.secret = Secret::new(secret);
    })
    .await;
    // The number's account, made through the Tincan API, with a lock.
    let (s, b) = sign_in(&ext, "owner", None).await;
    assert_eq!(s, 200, "{b}");
    let user_id = b["user_id"].as_str().unwrap();
    let hash = tincan_homeserver_ext::registration_lock::hash_pin(secret.as_bytes(), PIN, &[7; 16]).unwrap();
    ext.app.store.set_registration_lock(user_id, &hash, ext.app.now()).await.unwrap();

    let rp = Rp::new(REDIRECT);
    let mut browser = Browser::new();
    let page = browser.get(&rp.authorize_url(&ext.url, &[])).await;
    let page = browser.submit(&ext.url, &page, "/oauth2/authorize/phone", &[("phone", NUMBER)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let code = ext.last_code(NUMBER);
    let locked = browser.submit(&ext.url, &page, "/oauth2/authorize/code", &[("code", &code)]).await;
    assert_eq!((locked.status, locked.location.as_deref()), (403, None), "{}", locked.body);
    assert!(locked.body.contains("name=\"pin\"") && locked.body.contains("registration lock"), "{}", locked.body);
    let done = browser.submit(&ext.url, &locked, "/oauth2/authorize/code", &[("code", &code), ("pin", PIN)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let location = done.location.unwrap();
    assert!(location.starts_with(REDIRECT) && query_param(&location, "code").is_some(), "{location}");
}

/// Synapse's msisdn delegate (`account_threepid_delegates.msisdn` = the extension) attaches a validated number
/// to a Synapse account (`3pid/add`, as registration does): for a number under a registration lock, the SMS
/// code relayed by Synapse is refused and the number is not attached to the attacker's account; the owner
/// sends the code with the PIN to the Identity Service itself (Synapse relays no PIN) and the number attaches.
/// (The lapse is in the test above.)
#[tokio::test]
async fn synapse_msisdn_validation_of_a_locked_number_needs_the_pin() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ext_url = format!("http://{}", listener.local_addr().unwrap());
    let synapse =
        Synapse::builder().config(json!({"account_threepid_delegates": {"msisdn": ext_url}})).start().await.unwrap();
    let now = tincan_common::Clock::unix_seconds(&tincan_common::SystemClock);
    let ext = Local::start_on(config(&synapse), now, None, listener).await.unwrap();
    // The number's owner signed up here and set a lock.
    let (s, b) = sign_in(&ext, "owner", None).await;
    assert_eq!(s, 200, "{b}");
    let owner = b["user_id"].as_str().unwrap();
    let secret = "test-only-registration-lock-pepper-0123456789";
    let hash = tincan_homeserver_ext::registration_lock::hash_pin(secret.as_bytes(), PIN, &[7; 16]).unwrap();
    ext.app.store.set_registration_lock(owner, &hash, ext.app.now()).await.unwrap();

    let mallory = synapse.register_user("mallory", false).await.unwrap();
    let hs = synapse.url();
    let http = reqwest::Client::new();
    let password = format!("pw-mallory-{}", synapse.port());
    // requestToken through Synapse, then the code to the submit_url it gives (Synapse relays it to us).
    let request = |client_secret: &'static str| {
        let (http, hs, token) = (&http, &hs, &mallory.access_token);
        async move {
            let r: Value = http
                .post(format!("{hs}/_matrix/client/v3/account/3pid/msisdn/requestToken"))
                .bearer_auth(token)
                .json(&json!({"client_secret": client_secret, "country": "GB", "phone_number": "07911 123800", "send_attempt": 1}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                r["sid"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned(),
                r["submit_url"].as_str().unwrap().to_owned(),
            )
        }
    };
    // `3pid/add` with user-interactive auth (the flows, then the password): the answer's status.
    let add = |sid: String, client_secret: &'static str| {
        let (http, hs, token, password) = (&http, &hs, &mallory.access_token, &password);
        async move {
            let post = |auth: Value| {
                http.post(format!("{hs}/_matrix/client/v3/account/3pid/add"))
                    .bearer_auth(token)
                    .json(&json!({"sid": sid, "client_secret": client_secret, "auth": auth}))
                    .send()
            };
            let first: Value = post(Value::Null).await.unwrap().json().await.unwrap();
            let session = first["session"].as_str().unwrap_or_else(|| panic!("{first}")).to_owned();
            let r = post(json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "mallory"},
                "password": password,
                "session": session,
            }))
            .await
            .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let threepids = || async {
        let r: Value = http
            .get(format!("{hs}/_matrix/client/v3/account/3pid"))
            .bearer_auth(&mallory.access_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["threepids"].as_array().cloned().unwrap_or_default()
    };

    // The SIM-swap attacker has the SMS code and no PIN: Synapse's relay of the code is refused, and the
    // number cannot be added to their Synapse account.
    let (sid, submit_url) = request("mallory-1").await;
    let r = http
        .post(&submit_url)
        .json(&json!({"sid": sid, "client_secret": "mallory-1", "token": ext.last_code(NUMBER)}))
        .send()
        .await
        .unwrap();
    let relayed = (r.status().as_u16(), r.text().await.unwrap());
    assert!(relayed.0 >= 400, "the code alone validated a locked number: {relayed:?}");
    let (s, b) = add(sid.clone(), "mallory-1").await;
    assert!(s >= 400, "a locked number was added: {s} {b}\n{}", synapse.log_tail(20));
    assert_eq!(threepids().await, Vec::<Value>::new());
    // Sent to the Identity Service itself, the code alone says why.
    let (s, b) = ext
        .post(
            "/_matrix/identity/api/v1/validate/msisdn/submitToken",
            json!({"sid": sid, "client_secret": "mallory-1", "token": ext.last_code(NUMBER)}),
        )
        .await;
    assert_eq!((s, b["errcode"].as_str()), (403, Some("IO.TINCAN.REGISTRATION_LOCKED")), "{b}");

    // With the PIN (sent with the code to the Identity Service) the number is added.
    let (sid, _) = request("owner-2").await;
    let (s, b) = ext
        .post(
            "/_matrix/identity/api/v1/validate/msisdn/submitToken",
            json!({"sid": sid, "client_secret": "owner-2", "token": ext.last_code(NUMBER), "pin": PIN}),
        )
        .await;
    assert_eq!((s, &b["success"]), (200, &json!(true)), "{b}");
    let (s, b) = add(sid, "owner-2").await;
    assert_eq!(s, 200, "{b}\n{}", synapse.log_tail(20));
    let added = threepids().await;
    assert_eq!((added.len(), &added[0]["address"]), (1, &json!("447911123800")), "{added:?}");
}

/// A device in use at the homeserver keeps the lock even when nothing reported activity to the extension (a
/// stock Matrix client signed in through the OpenID provider never calls the status endpoint): before the lock
/// is judged lapsed, the extension asks Synapse's admin API when the account's devices were last seen. The lock
/// lapses a week after that.
#[tokio::test]
async fn a_device_in_use_at_the_homeserver_keeps_the_lock_past_the_lapse() {
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let admin = synapse.register_user("admin", true).await.unwrap();
    let mut c = config(&synapse);
    c.homeserver.admin_token = Secret::new(&admin.access_token);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    a_device_in_use_keeps_the_lock(&synapse, c, listener).await;
}

/// [`a_device_in_use_at_the_homeserver_keeps_the_lock_past_the_lapse`] with the appservice backend: the
/// extension asks with the appservice's own token (`GET /_matrix/client/v3/devices?user_id=…`), no admin token.
#[tokio::test]
async fn with_the_appservice_backend_a_device_in_use_keeps_the_lock_past_the_lapse() {
    let (as_token, hs_token) = ("lock-as-token-0123456789", "lock-hs-token-0123456789");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registration = json!({
        "id": "tincan-ext",
        "url": format!("http://{}", listener.local_addr().unwrap()),
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": "tincan",
        "rate_limited": false,
        "namespaces": {"users": [{"exclusive": true, "regex": "@tc_.*:hs\\.test"}], "aliases": [], "rooms": []},
    });
    let synapse = Synapse::builder().appservice(registration.to_string()).start().await.unwrap();
    let mut c = config(&synapse);
    c.homeserver.backend = tincan_homeserver_ext::config::HomeserverBackend::Appservice;
    c.homeserver.as_token = Secret::new(as_token);
    c.homeserver.hs_token = Secret::new(hs_token);
    a_device_in_use_keeps_the_lock(&synapse, c, listener).await;
}

/// The owner signs in on `synapse` through an extension configured with `c` (serving on `listener`) and uses the
/// device; the lock was set eight days ago and nothing reported activity since. The homeserver's record of the
/// device keeps the lock (the attacker with the code is refused); a week with no device seen lapses it.
async fn a_device_in_use_keeps_the_lock(synapse: &Synapse, c: ExtConfig, listener: tokio::net::TcpListener) {
    // Synapse records devices' activity in real time: the extension's clock starts at it.
    let now = tincan_common::Clock::unix_seconds(&tincan_common::SystemClock);
    let ext = Local::start_on(c, now, None, listener).await.unwrap();
    let (s, owner) = sign_in(&ext, "owner", None).await;
    assert_eq!(s, 200, "{owner}");
    let user_id = owner["user_id"].as_str().unwrap().to_owned();
    let (token, _) = crate::signup::login(synapse, &owner["login"]).await;
    // The lock was set eight days ago, and nothing has reported to the extension since…
    let secret = "test-only-registration-lock-pepper-0123456789";
    let hash = tincan_homeserver_ext::registration_lock::hash_pin(secret.as_bytes(), PIN, &[7; 16]).unwrap();
    let set_at = ext.app.now() - 8 * DAY.as_secs() as i64;
    ext.app.store.set_registration_lock(&user_id, &hash, set_at).await.unwrap();
    // …but the account's device is in use at the homeserver now.
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/_matrix/client/v3/sync?timeout=0", synapse.url())).bearer_auth(&token).send().await;
    assert_eq!(r.unwrap().status().as_u16(), 200);
    let devices = format!("{}/_matrix/client/v3/devices", synapse.url());
    let mut seen = Value::Null;
    for _ in 0..100 {
        let r: Value = http.get(&devices).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        seen = r["devices"][0]["last_seen_ts"].clone();
        if seen.is_i64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.is_i64(), "Synapse never recorded the device's activity");

    // The attacker with the code alone is refused, and the homeserver's record is now the lock's activity.
    let answer = sign_in(&ext, "attacker-1", None).await;
    assert_eq!(errcode(&answer), (403, "IO.TINCAN.REGISTRATION_LOCKED"), "{answer:?}");
    let lock = ext.app.store.registration_lock(&user_id).await.unwrap().expect("the lock holds");
    assert!(
        lock.last_active_at >= now as i64 - 60,
        "activity {} not taken from the homeserver (now {now})",
        lock.last_active_at
    );

    // A week with no device seen: the lock lapses and the code alone signs in.
    ext.clock.advance(7 * DAY + Duration::from_secs(60));
    let (s, b) = sign_in(&ext, "after-lapse", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user_id"], user_id.as_str());
    assert!(ext.app.store.registration_lock(&user_id).await.unwrap().is_none());
}
