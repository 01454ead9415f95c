//! The Identity Service lookup answers a number another provider registered only when the directory's
//! transparency log backs the answer: against the real directory, with [`LogProxy`] in front of its log API as
//! a dishonest operator would run it for this extension, a record DNS serves but the log does not hold, and a
//! log whose tree head is not consistent with the one the extension saw before, are logged and left out of
//! the answer; the honest log is answered before and after, and a fork met first after a restart is caught too
//! (the accepted head is kept in the database).

use crate::harness::{Ext, add_is_token};
use crate::log_proxy::{LogMode, LogProxy};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tincan_homeserver_ext::identity::lookup_hash;
use tincan_homeserver_ext::store::{IdentityRepository, MirrorRepository, SqliteStore};
use tincan_testkit::directory::{APEX, Directory, binary_or_skip};
use tincan_translog::TreeHeadSigner;

/// Provider B's number: registered in the directory, never seen by this extension.
const REMOTE: &str = "+4915112345101";
const REMOTE_USER: &str = "@carol:other.test";

/// A directory (started with `env`) holding provider B's number [`REMOTE`]; returns it and provider A's token.
async fn directory_with_remote(bin: &std::path::Path, env: &[(&str, &str)]) -> (Directory, String) {
    let dir = Directory::start_env(bin, env).await.unwrap();
    let token_a = dir.add_provider("tincan", &["+44"]).unwrap().token;
    let token_b = dir.add_provider("other", &["+49"]).unwrap().token;
    let r = reqwest::Client::new()
        .put(format!("{}/v1/numbers/{REMOTE}", dir.api))
        .bearer_auth(&token_b)
        .json(&json!({"services": [{"type": "matrix", "uri": "matrix:u/carol:other.test"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    (dir, token_a)
}

/// Provider A's extension config: lookups through `dir`'s DNS, checked against its log (at `log_url`, or at the
/// registrar API's own server when `None`).
async fn ext_config(dir: &Directory, token_a: &str, log_url: Option<&str>) -> String {
    let log_url = log_url.map(|u| format!("log_url = \"{u}\"\n")).unwrap_or_default();
    format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"http://127.0.0.1:9\"\n\
         [homeserver]\njwt_secret = \"log-checked-jwt-secret-0123456789\"\n\
         [directory]\nurl = \"{api}\"\ntoken = \"{token_a}\"\ndns_servers = [\"127.0.0.1:{dns}\"]\n\
         apex = \"{APEX}\"\nsync_interval_secs = 1\ntrust_anchor = '''\n{anchor}'''\n\
         log_key = \"{log_key}\"\n{log_url}",
        api = dir.api,
        dns = dir.dns.port(),
        anchor = dir.bind_trust_anchors().unwrap(),
        log_key = dir.log_key().await.unwrap(),
    )
}

/// Waits (up to `deadline`) until the extension's mirror holds [`REMOTE`].
async fn wait_mirrored(store: &SqliteStore, deadline: Instant) {
    while store.mirrored(&[REMOTE.into()]).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the number never reached the mirror");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An Identity Service lookup of `hash` at the extension `url` (200 expected): its mappings.
async fn lookup(http: &reqwest::Client, url: &str, pepper: &str, hash: &str) -> Value {
    let r = http
        .post(format!("{url}/_matrix/identity/v2/lookup"))
        .bearer_auth("log-is")
        .json(&json!({"algorithm": "sha256", "pepper": pepper, "addresses": [hash]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().await.unwrap()["mappings"].clone()
}

#[tokio::test]
async fn a_record_not_in_the_log_and_a_forked_log_are_never_answered() {
    let Some(bin) = binary_or_skip() else { return };
    let (dir, token_a) = directory_with_remote(&bin, &[]).await;
    let http = reqwest::Client::new();
    let log = LogProxy::start(&dir.api).await.unwrap();
    // The extension's database outlives it: it is restarted on it below.
    let state = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", state.path().join("ext.db").display());
    let port = tincan_testkit::ports::free_port();
    let extra = ext_config(&dir, &token_a, Some(&log.url)).await;
    let ext = Ext::start_at(port, Some(&db), &extra).await.unwrap();
    let store = SqliteStore::connect(&ext.db_url()).await.unwrap();
    add_is_token(&store, "log-is", "@a:hs.test").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_mirrored(&store, deadline).await;
    let pepper = store.current_pepper().await.unwrap().unwrap();
    let hash = lookup_hash("4915112345101", &pepper);
    let url = ext.url.clone();
    let (http, url, pepper, hash) = (&http, &url, &pepper, &hash);
    let lookup = move || lookup(http, url, pepper, hash);
    let found = json!({ hash.clone(): REMOTE_USER });

    // An honest log: answered (once DNS serves the record), and the extension keeps the log's tree head.
    while lookup().await != found {
        assert!(Instant::now() < deadline, "never answered with an honest log\n{}", ext.guard.log_tail(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // DNS keeps serving the record, but the log has no entry for it.
    log.set_mode(LogMode::Unlogged(REMOTE.into()));
    assert_eq!(lookup().await, json!({}), "a record the log does not hold is never answered");
    let tail = ext.guard.log_tail(20);
    assert!(tail.contains("not backed by its transparency log") && tail.contains("no entry in the log"), "{tail}");

    log.set_mode(LogMode::Honest);
    assert_eq!(lookup().await, found);

    // The operator forks the log for this extension: the proof and the signature verify and the record matches
    // DNS, but the tree does not extend the head seen before.
    let signer = TreeHeadSigner::from_seed(&dir.log_signing_seed().await.unwrap());
    log.set_mode(LogMode::Fork(signer));
    assert_eq!(lookup().await, json!({}), "an answer from a forked log is never answered");
    let tail = ext.guard.log_tail(20);
    assert!(tail.contains("ERROR") && tail.contains("transparency log forked"), "{tail}");

    // Honest again: the extension kept the honest head, so this is consistent and answered.
    log.set_mode(LogMode::Honest);
    assert_eq!(lookup().await, found);

    // The extension restarts on its database while the operator forks the log for it: the head accepted before
    // the restart is still the one the fork must extend, so it is caught (a witness that forgot it would take
    // the forked head as its first).
    drop(ext);
    log.set_mode(LogMode::Fork(TreeHeadSigner::from_seed(&dir.log_signing_seed().await.unwrap())));
    let ext = Ext::start_at(port, Some(&db), &extra).await.unwrap();
    assert_eq!(lookup().await, json!({}), "a restart does not forget the head the extension accepted");
    let tail = ext.guard.log_tail(20);
    assert!(tail.contains("ERROR") && tail.contains("transparency log forked"), "{tail}");
    log.set_mode(LogMode::Honest);
    assert_eq!(lookup().await, found);
}

/// Each answer costs one inclusion proof; the extension asks for it with its provider token, so a directory whose
/// public per-address limit is tiny (2, nearly no refill) still answers every lookup: the proofs count against
/// the provider's own limit. Without the token, the third lookup's proof got 429 and the number was left out.
#[tokio::test]
async fn lookups_beyond_the_directorys_public_limit_are_still_checked_and_answered() {
    let Some(bin) = binary_or_skip() else { return };
    let env = [
        ("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__BURST", "2"),
        ("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__PER_SECOND", "0.001"),
    ];
    let (dir, token_a) = directory_with_remote(&bin, &env).await;
    let http = reqwest::Client::new();
    // No log_url: the log API is the registrar API's server, which gets the provider's token.
    let extra = ext_config(&dir, &token_a, None).await;
    let ext = Ext::start(&extra).await.unwrap();
    let store = SqliteStore::connect(&ext.db_url()).await.unwrap();
    add_is_token(&store, "log-is", "@a:hs.test").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_mirrored(&store, deadline).await;
    let pepper = store.current_pepper().await.unwrap().unwrap();
    let hash = lookup_hash("4915112345101", &pepper);
    let url = ext.url.clone();
    let (http, url, pepper, hash) = (&http, &url, &pepper, &hash);
    let lookup = move || lookup(http, url, pepper, hash);
    let found = json!({ hash.clone(): REMOTE_USER });
    // The first answer may wait for DNS to serve the record.
    while lookup().await != found {
        assert!(Instant::now() < deadline, "never answered\n{}", ext.guard.log_tail(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..6 {
        assert_eq!(lookup().await, found, "lookup {i} after the first\n{}", ext.guard.log_tail(20));
    }
    // The public limit is real and the lookups did not spend it: an anonymous reader from the same address still
    // gets an answer (the testkit's own anonymous read of the head took one of the 2), then is refused.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(http.get(format!("{}/v1/log/sth", dir.api)).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[0], 200, "the lookups' proofs spent the public bucket: {statuses:?}");
    assert_eq!(statuses[2], 429, "the directory's public limit is in force: {statuses:?}");
}
