//! Identity Service: Synapse's msisdn delegate flow, and hashed lookups with pepper rotation.

use crate::harness::Ext;
use serde_json::{Value, json};
use tincan_homeserver_ext::store::{IdentityRepository, SqliteStore};
use tincan_testkit::Synapse;

#[tokio::test]
async fn synapse_msisdn_delegate_adds_a_phone_number() {
    let ext_port_holder =
        Ext::start("server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"unused-secret-0123456789\"\n")
            .await
            .unwrap();
    let synapse = Synapse::builder()
        .config(json!({"account_threepid_delegates": {"msisdn": ext_port_holder.url}}))
        .start()
        .await
        .unwrap();
    let ext = ext_port_holder;
    let alice = synapse.register_user("alice", false).await.unwrap();
    let http = reqwest::Client::new();
    let hs = synapse.url();

    let r: Value = http
        .post(format!("{hs}/_matrix/client/v3/account/3pid/msisdn/requestToken"))
        .bearer_auth(&alice.access_token)
        .json(&json!({"client_secret": "alicesecret", "country": "GB", "phone_number": "07911 123555", "send_attempt": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = r["sid"].as_str().unwrap_or_else(|| panic!("{r}\n{}", synapse.log_tail(30))).to_owned();
    let code = ext.last_code("+447911123555");

    // The client submits the code to the URL Synapse gave it (which proxies to us).
    let submit_url = r["submit_url"].as_str().expect("submit_url");
    let s: Value = http
        .post(submit_url)
        .json(&json!({"sid": sid, "client_secret": "alicesecret", "token": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["success"], true, "{s}");

    // /account/3pid/add needs user-interactive auth: first the flows, then the password.
    let add = |auth: Value| {
        http.post(format!("{hs}/_matrix/client/v3/account/3pid/add"))
            .bearer_auth(&alice.access_token)
            .json(&json!({"sid": sid, "client_secret": "alicesecret", "auth": auth}))
            .send()
    };
    let first: Value = add(Value::Null).await.unwrap().json().await.unwrap();
    let session = first["session"].as_str().unwrap_or_else(|| panic!("{first}")).to_owned();
    let password = format!("pw-alice-{}", synapse.port());
    let r = add(json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": password,
        "session": session,
    }))
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}\n{}", r.text().await.unwrap(), synapse.log_tail(30));

    let threepids: Value = http
        .get(format!("{hs}/_matrix/client/v3/account/3pid"))
        .bearer_auth(&alice.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(threepids["threepids"][0]["medium"], "msisdn", "{threepids}");
    assert_eq!(threepids["threepids"][0]["address"], "447911123555");
}

#[tokio::test]
async fn lookup_sha256_with_pepper_and_stale_pepper() {
    let ext = Ext::start("server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"unused-secret-0123456789\"\n")
        .await
        .unwrap();
    // Sign up one number (binds it), without a homeserver: the JWT backend needs none to issue a login.
    let (_, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": "+447911123777", "client_secret": "x", "send_attempt": 1}),
        )
        .await;
    let code = ext.last_code("+447911123777");
    let (s, v) = ext
        .post("/_tincan/client/v1/register/verify", json!({"sid": b["sid"], "client_secret": "x", "code": code}))
        .await;
    assert_eq!(s, 200, "{v}");
    let user_id = v["user_id"].as_str().unwrap().to_owned();

    // An Identity Service token, placed as account/register stores it (the OpenID exchange with Synapse is
    // tested in discovery.rs; this test needs no homeserver).
    let store = SqliteStore::connect(&ext.db_url()).await.unwrap();
    store.add_token(&tincan_homeserver_ext::code::digest("istoken"), "@bob:hs.test", 0).await.unwrap();

    let http = &ext.http;
    let (_, details) = ext.get("/_matrix/identity/v2/hash_details", "istoken").await;
    let pepper = details["lookup_pepper"].as_str().unwrap().to_owned();
    assert_eq!(details["algorithms"], json!(["sha256", "none"]));
    let h = tincan_homeserver_ext::identity::lookup_hash("447911123777", &pepper);
    let miss = tincan_homeserver_ext::identity::lookup_hash("447911123778", &pepper);
    let lookup = |pepper: String, algorithm: &str, addresses: Vec<String>| {
        http.post(format!("{}/_matrix/identity/v2/lookup", ext.url))
            .bearer_auth("istoken")
            .json(&json!({"algorithm": algorithm, "pepper": pepper, "addresses": addresses}))
            .send()
    };
    let r: Value = lookup(pepper.clone(), "sha256", vec![h.clone(), miss]).await.unwrap().json().await.unwrap();
    assert_eq!(r["mappings"], json!({ h.clone(): user_id }));
    // `none`: one batch for every address; two spellings of one number both answer, the rest are left out.
    let addresses =
        ["447911123777 msisdn", "+447911123777 msisdn", "447911123778 msisdn", "banana msisdn", "a@b email"];
    let r: Value =
        lookup(pepper.clone(), "none", addresses.map(String::from).to_vec()).await.unwrap().json().await.unwrap();
    assert_eq!(
        r["mappings"],
        json!({"447911123777 msisdn": user_id.as_str(), "+447911123777 msisdn": user_id.as_str()})
    );

    // Without a token: refused.
    let r = http.get(format!("{}/_matrix/identity/v2/hash_details", ext.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Rotate the pepper (as `tincan-ext rotate-pepper` does): the old one is stale.
    ext.command(&["rotate-pepper"]);
    let r = lookup(pepper.clone(), "sha256", vec![h]).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errcode"], "M_INVALID_PEPPER");
    let new_pepper = store.current_pepper().await.unwrap().unwrap();
    assert_ne!(new_pepper, pepper);
    let h2 = tincan_homeserver_ext::identity::lookup_hash("447911123777", &new_pepper);
    let r: Value = lookup(new_pepper, "sha256", vec![h2.clone()]).await.unwrap().json().await.unwrap();
    assert_eq!(r["mappings"][&h2], user_id.as_str());
}
