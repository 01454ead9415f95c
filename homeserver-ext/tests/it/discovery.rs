//! Contact discovery across providers, against the real directory and Synapse: an Identity Service token from
//! `account/register` (the user's OpenID token checked with Synapse), then a `sha256` lookup that finds a local
//! number and a number another provider registered in the directory (mirrored, resolved through
//! DNSSEC-validated DNS); a stale pepper is `M_INVALID_PEPPER`; a directory answer that does not validate is
//! never returned; `account/logout` ends the token.

use crate::harness::{Api, Ext};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tincan_homeserver_ext::identity::lookup_hash;
use tincan_homeserver_ext::store::{IdentityRepository, MirrorRepository, SqliteStore};
use tincan_testkit::Synapse;
use tincan_testkit::directory::{APEX, Directory, binary_or_skip};

const SECRET: &str = "discovery-jwt-secret-0123456789";
/// Provider B's number: registered in the directory, never seen by this extension.
const REMOTE: &str = "+4915112345001";
const REMOTE_USER: &str = "@bob:other.test";

fn ext_config(synapse: &Synapse, dir: &Directory, token: &str, anchor: &str, log_key: &str) -> String {
    format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"{hs}\"\n\
         [homeserver]\njwt_secret = \"{SECRET}\"\n\
         [directory]\nurl = \"{api}\"\ntoken = \"{token}\"\ndns_servers = [\"127.0.0.1:{dns}\"]\n\
         apex = \"{APEX}\"\nsync_interval_secs = 1\nsync_page_size = 2\ntrust_anchor = '''\n{anchor}'''\n\
         log_key = \"{log_key}\"\n\
         [identity]\nlookup_allow_none = true\n",
        hs = synapse.url(),
        api = dir.api,
        dns = dir.dns.port(),
    )
}

/// Polls `f` until it returns `Some` (the mirror syncs every second in the background).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn lookup_finds_local_and_directory_only_numbers_with_a_registered_token() {
    let Some(bin) = binary_or_skip() else { return };
    let dir = Directory::start(&bin).await.unwrap();
    let token_a = dir.add_provider("tincan", &["+44"]).unwrap().token;
    let token_b = dir.add_provider("other", &["+49"]).unwrap().token;
    let http = reqwest::Client::new();
    // Provider B registers its user's number; a few more of A's range make the listing span several pages.
    let put = |number: &str, token: &str, uri: &str| {
        http.put(format!("{}/v1/numbers/{number}", dir.api))
            .bearer_auth(token)
            .json(&json!({"services": [{"type": "matrix", "uri": uri}]}))
            .send()
    };
    let r = put(REMOTE, &token_b, "matrix:u/bob:other.test").await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    for i in 0..3 {
        let r = put(&format!("+44791112390{i}"), &token_a, &format!("matrix:u/x{i}:hs.test")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let anchor = dir.bind_trust_anchors().unwrap();
    let log_key = dir.log_key().await.unwrap();

    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": SECRET, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let ext = Ext::start(&ext_config(&synapse, &dir, &token_a, &anchor, &log_key)).await.unwrap();
    let local = "+447911123002";
    let (user_id, access_token) = crate::signup::sign_up_token(&ext, &synapse, local, "disc1").await;

    // account/register with the user's OpenID token, validated by Synapse's openid/userinfo.
    let openid: Value = http
        .post(format!("{}/_matrix/client/v3/user/{user_id}/openid/request_token", synapse.url()))
        .bearer_auth(&access_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openid["matrix_server_name"], "hs.test", "{openid}");
    let (s, reg) = ext.post("/_matrix/identity/v2/account/register", openid.clone()).await;
    assert_eq!(s, 200, "{reg}\n{}", ext.guard.log_tail(20));
    let is_token = reg["token"].as_str().unwrap().to_owned();
    let (_, account) = ext.get("/_matrix/identity/v2/account", &is_token).await;
    assert_eq!(account["user_id"], user_id.as_str());
    // A made-up OpenID token is refused, and stores nothing.
    let mut forged = openid.clone();
    forged["access_token"] = json!("forged-openid-token");
    let (s, b) = ext.post("/_matrix/identity/v2/account/register", forged).await;
    assert_eq!((s, b["errcode"].as_str().unwrap()), (401, "M_UNAUTHORIZED"), "{b}");

    // Endpoints the spec marks "requires authentication" refuse a request without the token.
    for (method, path) in [
        ("GET", "/_matrix/identity/v2/hash_details"),
        ("POST", "/_matrix/identity/v2/lookup"),
        ("GET", "/_matrix/identity/v2/account"),
        ("POST", "/_matrix/identity/v2/account/logout"),
        ("POST", "/_matrix/identity/v2/3pid/bind"),
        ("POST", "/_matrix/identity/v2/3pid/unbind"),
        ("POST", "/_matrix/identity/v2/validate/msisdn/requestToken"),
        ("POST", "/_matrix/identity/v2/validate/msisdn/submitToken"),
        ("GET", "/_matrix/identity/v2/3pid/getValidated3pid?sid=x&client_secret=y"),
        ("POST", "/_matrix/identity/v2/terms"),
    ] {
        let url = format!("{}{path}", ext.url);
        let req = if method == "GET" { http.get(&url) } else { http.post(&url).json(&json!({})) };
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} {path}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["errcode"], "M_MISSING_TOKEN", "{method} {path}: {b}");
        let req = if method == "GET" { http.get(&url) } else { http.post(&url).json(&json!({})) };
        let r = req.bearer_auth("not-a-token").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} {path} with an unknown token");
    }
    assert!(ext.sms().len() == 1, "no SMS went out for the refused requestToken");

    let (_, details) = ext.get("/_matrix/identity/v2/hash_details", &is_token).await;
    let pepper = details["lookup_pepper"].as_str().unwrap().to_owned();
    let lookup = |pepper: String, algorithm: &'static str, addresses: Vec<String>| {
        http.post(format!("{}/_matrix/identity/v2/lookup", ext.url))
            .bearer_auth(&is_token)
            .json(&json!({"algorithm": algorithm, "pepper": pepper, "addresses": addresses}))
            .send()
    };
    let h_local = lookup_hash("447911123002", &pepper);
    let h_remote = lookup_hash("4915112345001", &pepper);
    let h_unknown = lookup_hash("4915112345002", &pepper);
    let addresses = vec![h_local.clone(), h_remote.clone(), h_unknown.clone()];
    let mappings = eventually("the directory-only number in a lookup", || {
        let req = lookup(pepper.clone(), "sha256", addresses.clone());
        let h = h_remote.clone();
        async move {
            let r: Value = req.await.unwrap().json().await.unwrap();
            r["mappings"].get(&h).is_some().then(|| r["mappings"].clone())
        }
    })
    .await;
    assert_eq!(mappings, json!({ h_local.clone(): user_id, h_remote.clone(): REMOTE_USER }));
    let r: Value =
        lookup(pepper.clone(), "none", vec!["4915112345001 msisdn".into()]).await.unwrap().json().await.unwrap();
    assert_eq!(r["mappings"], json!({"4915112345001 msisdn": REMOTE_USER}));

    // The mirror holds numbers and hashes only, and every listed number across the pages.
    let store = SqliteStore::connect(&ext.db_url()).await.unwrap();
    let mirrored = eventually("all five listed numbers in the mirror", || {
        let store = &store;
        async move { Some(store.mirror_range("", None).await.unwrap()).filter(|m| m.len() == 5) }
    })
    .await;
    assert!(mirrored.iter().any(|e| e.number == REMOTE && e.lookup_hash == h_remote));

    // A rotated pepper: the old one is stale; the mirror was re-hashed with the bindings.
    ext.command(&["rotate-pepper"]);
    let r = lookup(pepper.clone(), "sha256", vec![h_remote.clone()]).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["errcode"], "M_INVALID_PEPPER");
    let pepper2 = store.current_pepper().await.unwrap().unwrap();
    let h_remote2 = lookup_hash("4915112345001", &pepper2);
    let r: Value = lookup(pepper2.clone(), "sha256", vec![h_remote2.clone()]).await.unwrap().json().await.unwrap();
    assert_eq!(r["mappings"], json!({ h_remote2.clone(): REMOTE_USER }));

    // A number B gives up leaves the mirror at the next sync.
    let r = http.delete(format!("{}/v1/numbers/{REMOTE}", dir.api)).bearer_auth(&token_b).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eventually("the deleted number to leave the mirror", || {
        let store = &store;
        async move { store.mirrored(&[REMOTE.into()]).await.unwrap().is_empty().then_some(()) }
    })
    .await;
    let r = put(REMOTE, &token_b, "matrix:u/bob:other.test").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Another extension trusting the wrong key mirrors the number but never answers it.
    let wrong_anchor = format!("{APEX} IN DS 12345 13 2 {}\n", "AB".repeat(32));
    let wrong = Ext::start(&ext_config(&synapse, &dir, &token_a, &wrong_anchor, &log_key)).await.unwrap();
    let wrong_store = SqliteStore::connect(&wrong.db_url()).await.unwrap();
    crate::harness::add_is_token(&wrong_store, "wrong-is", "@w:hs.test").await;
    eventually("the second extension's mirror", || {
        let s = &wrong_store;
        async move { (!s.mirrored(&[REMOTE.into()]).await.unwrap().is_empty()).then_some(()) }
    })
    .await;
    let wrong_pepper = wrong_store.current_pepper().await.unwrap().unwrap();
    let r: Value = http
        .post(format!("{}/_matrix/identity/v2/lookup", wrong.url))
        .bearer_auth("wrong-is")
        .json(&json!({"algorithm": "sha256", "pepper": wrong_pepper,
            "addresses": [lookup_hash("4915112345001", &wrong_pepper)]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["mappings"], json!({}), "an answer that does not validate is never returned");
    assert!(wrong.guard.log_tail(50).contains("validated lookup failed"), "{}", wrong.guard.log_tail(50));

    // account/logout ends the token.
    let r = http
        .post(format!("{}/_matrix/identity/v2/account/logout", ext.url))
        .bearer_auth(&is_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http.get(format!("{}/_matrix/identity/v2/account", ext.url)).bearer_auth(&is_token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
