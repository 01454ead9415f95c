//! Identity Service lookups cannot walk the directory (issue #14 item 9): numbers looked up are budgeted per
//! token, per user, per client IP and per other homeserver; `algorithm: none` is off unless configured; a token names the
//! homeserver that vouched for it and expires. Time comes from the injected clock. Mirror hits resolve on a
//! bounded number of slots shared by all lookups, shown against the real directory's DNS.

use crate::dns_counter::{DnsCounter, owner_name, serves_naptr};
use crate::harness::{Api, Ext, Local, add_is_token};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tincan_common::Secret;
use tincan_homeserver_ext::config::{BucketConfig, ExtConfig};
use tincan_homeserver_ext::identity::{lookup_hash, msisdn_address};
use tincan_homeserver_ext::store::{IdentityRepository, MirrorRepository, SqliteStore};
use tincan_testkit::Synapse;
use tincan_testkit::directory::{APEX, Directory, binary_or_skip};

const NOW: u64 = 1_700_000_000;

fn config() -> ExtConfig {
    let mut c = ExtConfig { server_name: "hs.test".into(), ..ExtConfig::default() };
    c.homeserver.jwt_secret = Secret::new("lookup-limits-secret-0123456789");
    c
}

fn hourly(n: u32) -> BucketConfig {
    BucketConfig { burst: n, refill: n, period_secs: 3600 }
}

/// A `sha256` lookup of `n` made-up hashes with `token`, from client address `from` (the test's loopback peer
/// is a trusted proxy, so `X-Forwarded-For` names the client).
async fn lookup(ext: &Local, token: &str, from: &str, n: usize) -> (u16, Value) {
    let (_, details) = ext.get("/_matrix/identity/v2/hash_details", token).await;
    let pepper = details["lookup_pepper"].as_str().expect("a pepper").to_owned();
    let addresses: Vec<String> = (0..n).map(|i| format!("made-up-hash-{i}")).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/_matrix/identity/v2/lookup", ext.url))
        .bearer_auth(token)
        .header("x-forwarded-for", from)
        .json(&json!({"algorithm": "sha256", "pepper": pepper, "addresses": addresses}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assert_limited((status, body): (u16, Value), what: &str) {
    assert_eq!(status, 429, "{what}: {body}");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{what}: {body}");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{what}: {body}");
}

#[tokio::test]
async fn lookup_budgets_per_user_ip_and_homeserver_are_exact() {
    let mut c = config();
    c.limits.trusted_proxies = vec!["127.0.0.1".into()];
    c.limits.lookup_per_user = hourly(10);
    c.limits.lookup_per_ip = hourly(15);
    c.limits.lookup_per_homeserver = hourly(6);
    let ext = Local::start(c, NOW).await.unwrap();
    for (token, user) in
        [("a", "@alice:hs.test"), ("b", "@bob:hs.test"), ("c", "@carol:other.test"), ("d", "@dave:other.test")]
    {
        add_is_token(&*ext.app.store, token, user).await;
    }
    let (ip1, ip2, ip3) = ("192.0.2.1", "192.0.2.2", "192.0.2.3");

    // Per user: 10 numbers an hour, counted exactly; a request the budget cannot cover whole takes nothing.
    assert_eq!(lookup(&ext, "a", ip1, 4).await.0, 200);
    assert_eq!(lookup(&ext, "a", ip1, 4).await.0, 200);
    assert_limited(lookup(&ext, "a", ip1, 3).await, "alice's 11th to 13th numbers");
    assert_eq!(lookup(&ext, "a", ip1, 2).await.0, 200, "alice's 9th and 10th numbers");
    assert_limited(lookup(&ext, "a", ip1, 1).await, "alice's 11th number");

    // Per client IP: 15, whoever asks (bob has 10 of his own).
    assert_eq!(lookup(&ext, "b", ip1, 4).await.0, 200);
    assert_limited(lookup(&ext, "b", ip1, 2).await, "the address's 15th and 16th numbers");
    assert_eq!(lookup(&ext, "b", ip1, 1).await.0, 200, "the address's 15th number");
    assert_limited(lookup(&ext, "b", ip1, 1).await, "the address's 16th number");
    assert_eq!(lookup(&ext, "b", ip2, 1).await.0, 200, "bob from another address");

    // Another homeserver's users share its budget (6), from any address; ours are not counted there.
    assert_eq!(lookup(&ext, "c", ip2, 4).await.0, 200);
    assert_limited(lookup(&ext, "d", ip3, 4).await, "other.test's 5th to 8th numbers");
    assert_eq!(lookup(&ext, "d", ip3, 2).await.0, 200, "other.test's 5th and 6th numbers");
    assert_limited(lookup(&ext, "c", ip2, 1).await, "other.test's 7th number");

    // An hour later the budgets are full again.
    ext.clock.advance(Duration::from_secs(3600));
    assert_eq!(lookup(&ext, "a", ip1, 10).await.0, 200);
    assert_limited(lookup(&ext, "a", ip1, 1).await, "alice's 11th number of the new hour");
}

/// Issue 14 item 9 asks for a budget per token: one token cannot spend more than `limits.lookup_per_token`, even
/// when its user's budget has room, and the user's other tokens have budgets of their own (up to the user's).
#[tokio::test]
async fn lookup_budget_per_token_is_exact() {
    let mut c = config();
    c.limits.trusted_proxies = vec!["127.0.0.1".into()];
    c.limits.lookup_per_token = hourly(5);
    c.limits.lookup_per_user = hourly(12);
    let ext = Local::start(c, NOW).await.unwrap();
    for token in ["a1", "a2", "a3"] {
        add_is_token(&*ext.app.store, token, "@alice:hs.test").await;
    }
    let ip = "192.0.2.1";
    assert_eq!(lookup(&ext, "a1", ip, 4).await.0, 200);
    assert_limited(lookup(&ext, "a1", ip, 2).await, "the token's 5th and 6th numbers");
    assert_eq!(lookup(&ext, "a1", ip, 1).await.0, 200, "the token's 5th number");
    assert_limited(lookup(&ext, "a1", ip, 1).await, "the token's 6th number");
    assert_eq!(lookup(&ext, "a2", ip, 5).await.0, 200, "alice's second token has its own 5");
    assert_limited(lookup(&ext, "a2", ip, 1).await, "the second token's 6th number");
    // The user's budget (12) still spans her tokens: 10 spent, the third token gets 2, not 5.
    assert_limited(lookup(&ext, "a3", ip, 3).await, "alice's 13th number, on a fresh token");
    assert_eq!(lookup(&ext, "a3", ip, 2).await.0, 200, "alice's 11th and 12th numbers");
    ext.clock.advance(Duration::from_secs(3600));
    assert_eq!(lookup(&ext, "a1", ip, 5).await.0, 200, "an hour later the token's budget is full again");
}

#[tokio::test]
async fn lookup_none_is_refused_unless_configured() {
    let ext = Local::start(config(), NOW).await.unwrap();
    add_is_token(&*ext.app.store, "a", "@alice:hs.test").await;
    let (_, details) = ext.get("/_matrix/identity/v2/hash_details", "a").await;
    assert_eq!(details["algorithms"], json!(["sha256"]));
    let body = json!({"algorithm": "none", "pepper": details["lookup_pepper"], "addresses": ["447911123777 msisdn"]});
    let (status, b) = ext.post_auth("/_matrix/identity/v2/lookup", "a", body.clone()).await;
    assert_eq!((status, b["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{b}");

    let mut c = config();
    c.identity.lookup_allow_none = true;
    let ext = Local::start(c, NOW).await.unwrap();
    add_is_token(&*ext.app.store, "a", "@alice:hs.test").await;
    let (_, details) = ext.get("/_matrix/identity/v2/hash_details", "a").await;
    assert_eq!(details["algorithms"], json!(["sha256", "none"]));
    let body = json!({"algorithm": "none", "pepper": details["lookup_pepper"], "addresses": ["447911123777 msisdn"]});
    let (status, b) = ext.post_auth("/_matrix/identity/v2/lookup", "a", body).await;
    assert_eq!((status, &b["mappings"]), (200, &json!({})), "{b}");
}

#[tokio::test]
async fn is_tokens_name_their_homeserver_and_expire() {
    let synapse = Synapse::builder().start().await.unwrap();
    let mut c = config();
    c.homeserver_url = synapse.url();
    c.identity.token_ttl_secs = 3600;
    let ext = Local::start(c, NOW).await.unwrap();
    let alice = synapse.register_user("alice", false).await.unwrap();
    let openid: Value = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/user/{}/openid/request_token", synapse.url(), alice.user_id))
        .bearer_auth(&alice.access_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, reg) = ext.post("/_matrix/identity/v2/account/register", openid).await;
    assert_eq!(status, 200, "{reg}");
    let token = reg["token"].as_str().unwrap().to_owned();
    let owner = ext.app.store.token_user(&tincan_homeserver_ext::code::digest(&token), ext.app.now()).await.unwrap();
    let owner = owner.expect("the token is stored");
    assert_eq!((owner.user_id.as_str(), owner.server_name.as_str()), (alice.user_id.as_str(), "hs.test"));

    ext.clock.advance(Duration::from_secs(3599));
    let (status, account) = ext.get("/_matrix/identity/v2/account", &token).await;
    assert_eq!((status, account["user_id"].as_str()), (200, Some(alice.user_id.as_str())));
    ext.clock.advance(Duration::from_secs(1));
    for path in ["/_matrix/identity/v2/account", "/_matrix/identity/v2/hash_details"] {
        let (status, b) = ext.get(path, &token).await;
        assert_eq!((status, b["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "{path} after the expiry: {b}");
    }
}

/// Mirror hits are resolved on `identity.lookup_resolve_concurrency` slots shared by every lookup, on the real
/// resolver path: the real directory holds 36 of another provider's numbers, and the extension's validating
/// lookup asks its DNS through [`DnsCounter`], which holds every query 40 ms. Three lookups of 12 numbers each
/// at once never have more than the 3 configured numbers' queries in flight (exactly 3 at the peak), and
/// every number is answered (bounded, not dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_resolve_on_the_shared_slots_against_the_real_directory() {
    let Some(bin) = binary_or_skip() else { return };
    let dir = Directory::start(&bin).await.unwrap();
    let ours = dir.add_provider("tincan", &["+44"]).unwrap();
    let other = dir.add_provider("other", &["+49"]).unwrap();
    let numbers: Vec<String> = (0..36).map(|i| format!("+4915112346{i:03}")).collect();
    for (i, n) in numbers.iter().enumerate() {
        other.put_number(n, &[("matrix", &format!("matrix:u/user{i}:other.test"))]).await.unwrap();
    }
    // The directory's DNS serves them all (zone writes are not instant).
    let names: Vec<_> = numbers.iter().map(|n| owner_name(n, APEX)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in &names {
        while !serves_naptr(dir.dns, name).await {
            assert!(Instant::now() < deadline, "the directory never served {name}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let dns = DnsCounter::start(dir.dns, names.iter().cloned().collect(), Duration::from_millis(40)).await.unwrap();
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"http://127.0.0.1:9\"\n\
         [homeserver]\njwt_secret = \"lookup-limits-secret-0123456789\"\n\
         [identity]\nlookup_resolve_concurrency = 3\n\
         [directory]\nurl = \"{api}\"\ntoken = \"{token}\"\ndns_servers = [\"{dns}\"]\n\
         apex = \"{APEX}\"\nsync_interval_secs = 1\ntrust_anchor = '''\n{anchor}'''\nlog_key = \"{log_key}\"\n",
        api = dir.api,
        token = ours.token,
        dns = dns.addr,
        anchor = dir.bind_trust_anchors().unwrap(),
        log_key = dir.log_key().await.unwrap(),
    ))
    .await
    .unwrap();
    let store = SqliteStore::connect(&ext.db_url()).await.unwrap();
    add_is_token(&store, "bound", "@a:hs.test").await;
    while store.mirrored(&numbers).await.unwrap().len() < numbers.len() {
        assert!(Instant::now() < deadline + Duration::from_secs(30), "the numbers never reached the mirror");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pepper = store.current_pepper().await.unwrap().unwrap();
    let http = reqwest::Client::new();
    let lookup = |part: &[String]| {
        let hashes: Vec<String> = part.iter().map(|n| lookup_hash(msisdn_address(n), &pepper)).collect();
        let request = http
            .post(format!("{}/_matrix/identity/v2/lookup", ext.url))
            .bearer_auth("bound")
            .json(&json!({"algorithm": "sha256", "pepper": pepper, "addresses": hashes}));
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.unwrap()["mappings"].as_object().cloned().unwrap_or_default()
        }
    };
    let answers = tokio::join!(lookup(&numbers[..12]), lookup(&numbers[12..24]), lookup(&numbers[24..]));
    for (i, mappings) in [&answers.0, &answers.1, &answers.2].into_iter().enumerate() {
        assert_eq!(mappings.len(), 12, "lookup {i} answered {mappings:?}\n{}", ext.guard.log_tail(20));
    }
    let hash = lookup_hash(msisdn_address(&numbers[30]), &pepper);
    assert_eq!(answers.2[&hash], "@user30:other.test");
    assert!(dns.queries() >= 72, "every number's NAPTR and TXT went to the directory: {}", dns.queries());
    assert_eq!(dns.peak(), 3, "numbers with a DNS query in flight at once, over three concurrent lookups");
}
