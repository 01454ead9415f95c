//! Identity Service: Synapse's msisdn delegate flow, and hashed lookups with pepper rotation.

use crate::harness::{Api, Ext};
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
    let ext = Ext::start(
        "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"unused-secret-0123456789\"\n\
         [identity]\nlookup_allow_none = true\n",
    )
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
    crate::harness::add_is_token(&store, "istoken", "@bob:hs.test").await;

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

/// Binds a few hundred numbers through one `App` (the server) while another on the same database (the
/// `rotate-pepper` command) rotates the pepper several times: afterwards every number is found by its hash
/// under the current pepper. A bind that read the pepper before a rotation committed and stored its hash after
/// used to be lost to lookups.
async fn binds_race_pepper_rotation(database_url: &str) {
    use std::sync::Arc;
    use tincan_homeserver_ext::app::App;
    use tincan_homeserver_ext::config::ExtConfig;
    use tincan_homeserver_ext::identity::{bind_number, lookup_hash, msisdn_address, rotate_pepper};
    use tincan_homeserver_ext::store::Binding;

    let app = |_| async {
        let config = ExtConfig { database_url: database_url.to_owned(), ..ExtConfig::default() };
        Arc::new(App::from_config(config, Arc::new(tincan_common::SystemClock)).await.unwrap())
    };
    let (server, command) = (app(0).await, app(1).await);
    let numbers: Vec<String> = (0..300).map(|i| format!("+4479111{i:05}")).collect();
    let binds = numbers.iter().map(|n| {
        let server = server.clone();
        let b = Binding { number: n.clone(), user_id: format!("@u{}:hs.test", &n[1..]) };
        tokio::spawn(async move { bind_number(&server, &b).await.unwrap() })
    });
    let binds: Vec<_> = binds.collect();
    let rotations = tokio::spawn(async move {
        for _ in 0..8 {
            rotate_pepper(&command).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    for b in binds {
        b.await.unwrap();
    }
    rotations.await.unwrap();

    let pepper = server.store.current_pepper().await.unwrap().unwrap();
    let hashes: Vec<String> = numbers.iter().map(|n| lookup_hash(msisdn_address(n), &pepper)).collect();
    let found = server.store.lookup_hashes(&hashes).await.unwrap();
    let found: std::collections::HashSet<&str> = found.iter().map(|(h, _)| h.as_str()).collect();
    let lost: Vec<&String> =
        numbers.iter().zip(&hashes).filter(|(_, h)| !found.contains(h.as_str())).map(|(n, _)| n).collect();
    assert!(
        lost.is_empty(),
        "{} of {} bound numbers not found under the current pepper: {lost:?}",
        lost.len(),
        numbers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_binds_racing_pepper_rotation_stay_findable() {
    let dir = tempfile::tempdir().unwrap();
    binds_race_pepper_rotation(&format!("sqlite://{}?mode=rwc", dir.path().join("ext.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_binds_racing_pepper_rotation_stay_findable() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    binds_race_pepper_rotation(pg.url()).await;
}
