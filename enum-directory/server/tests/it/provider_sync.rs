//! `provider sync`: the directory's providers from the charter's verified trust list.

use std::path::Path;
use std::time::{Duration, SystemTime};
use tincan_charter::keys::SecretKey;
use tincan_charter::list::{ListInput, Service, TrustList, TrustedDirectory, TrustedProvider};
use tincan_charter::signed::{Envelope, Root};
use tincan_common::Clock as _;

use crate::harness::{APEX, add_provider, cli};
use tincan_directory::storage;

fn now() -> SystemTime {
    tincan_common::SystemClock.now()
}

/// A charter for one test: one key for both roles, its root, and lists published into a `file://` repository.
pub struct Charter {
    key: SecretKey,
    pub root: Vec<u8>,
}

impl Charter {
    pub fn new() -> Charter {
        let key = SecretKey::generate_os();
        let root = Root::new(1, now() + Duration::from_secs(86_400), &[key.public()], 1, &[key.public()], 1).unwrap();
        let mut env = Envelope::new(&root);
        env.sign(&key);
        Charter { key, root: env.to_bytes() }
    }

    /// Publishes list `version` naming the directory at `apex` and these providers (id, prefixes).
    fn publish(&self, repo: &Path, version: u64, apex: &str, providers: &[(&str, &[&str])]) {
        self.publish_with(repo, version, apex, &[ds_of(apex)], providers);
    }

    /// Publishes list `version` naming the directory at `apex` with the DS set `ds`, and no provider.
    pub fn publish_ds(&self, repo: &Path, version: u64, apex: &str, ds: &[String]) {
        self.publish_with(repo, version, apex, ds, &[]);
    }

    fn publish_with(&self, repo: &Path, version: u64, apex: &str, ds: &[String], providers: &[(&str, &[&str])]) {
        let list = list(version, apex, ds, providers);
        let mut env = Envelope::new(&list);
        env.sign(&self.key);
        std::fs::create_dir_all(repo).unwrap();
        std::fs::write(repo.join("1.root.json"), &self.root).unwrap();
        std::fs::write(repo.join("root.json"), &self.root).unwrap();
        std::fs::write(repo.join("trust-list.json"), env.to_bytes()).unwrap();
    }
}

fn sync(data: &Path, repo: &Path, root: &Path, extra: &[&str]) -> std::process::Output {
    let url = format!("file://{}/", repo.display());
    let mut args = vec!["provider", "sync", "--charter-url", &url, "--charter-root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli(data, &args)
}

fn providers(data: &Path) -> String {
    String::from_utf8(cli(data, &["provider", "list"]).stdout).unwrap()
}

#[test]
fn provider_sync_imports_the_listed_providers_and_never_goes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo, root) = (tmp.path().join("data"), tmp.path().join("repo"), tmp.path().join("root.json"));
    let charter = Charter::new();
    std::fs::write(&root, &charter.root).unwrap();
    add_provider(&data, "beta", &["+4930"]);
    add_provider(&data, "legacy", &["+33"]);
    charter.publish(&repo, 2, APEX, &[("alpha", &["+44"]), ("beta", &["+49"])]);

    // A dry run changes nothing.
    let out = sync(&data, &repo, &root, &["--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(providers(&data), "beta\t+4930\nlegacy\t+33\n");

    // Added (its token printed once), prefixes set from the list, the unlisted one reported and kept.
    let out = sync(&data, &repo, &root, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (name, token) = stdout.trim_end().split_once('\t').unwrap();
    assert_eq!(name, "alpha");
    assert!(token.starts_with("tcd_") && token.len() > 40, "{token}");
    assert!(err.contains("not on the list (kept; --suspend-unlisted) legacy"), "{err}");
    assert!(err.contains("1 added, 1 updated, 0 unchanged, 1 unlisted"), "{err}");
    assert_eq!(providers(&data), "alpha\t+44\nbeta\t+49\nlegacy\t+33\n");

    // Again: nothing to do; with --suspend-unlisted the unlisted provider loses its prefixes.
    let out = sync(&data, &repo, &root, &["--suspend-unlisted"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "no new token");
    assert_eq!(providers(&data), "alpha\t+44\nbeta\t+49\nlegacy\t\n");

    // An older list (replayed) is refused, and nothing changes.
    charter.publish(&repo, 1, APEX, &[("alpha", &["+44"])]);
    let out = sync(&data, &repo, &root, &["--suspend-unlisted"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rollback"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(providers(&data), "alpha\t+44\nbeta\t+49\nlegacy\t\n");

    // A list that does not name this directory: refused, nothing changes.
    charter.publish(&repo, 3, "other.test.", &[("alpha", &["+44"])]);
    let out = sync(&data, &repo, &root, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not on the charter's trust list"), "{err}");
    assert_eq!(providers(&data), "alpha\t+44\nbeta\t+49\nlegacy\t\n");
}

#[test]
fn provider_sync_refuses_a_list_the_root_did_not_sign() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo, root) = (tmp.path().join("data"), tmp.path().join("repo"), tmp.path().join("root.json"));
    let trusted = Charter::new();
    std::fs::write(&root, &trusted.root).unwrap();
    // Another charter's repository (its own root and list) at the URL.
    Charter::new().publish(&repo, 1, APEX, &[("alpha", &["+44"])]);
    let out = sync(&data, &repo, &root, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("list role needs 1 valid signature(s) of its keys, found 0"), "{err}");
    assert_eq!(providers(&data), "");
}

/// A list naming the directory at [`APEX`] with these providers (id, prefixes); not signed (for the library).
fn list_of(providers: &[(&str, &[&str])]) -> TrustList {
    list(1, APEX, &[ds_of(APEX)], providers)
}

/// A DS record clients read for `apex`.
fn ds_of(apex: &str) -> String {
    format!("{apex} 3600 IN DS 1 15 2 {}", "00".repeat(32))
}

/// List `version`, valid for an hour, naming the directory at `apex` with the DS set `ds` and these providers
/// (id, prefixes).
fn list(version: u64, apex: &str, ds: &[String], providers: &[(&str, &[&str])]) -> TrustList {
    let directory = TrustedDirectory {
        id: "d".into(),
        apex: apex.into(),
        ds: ds.to_vec(),
        api_url: "http://127.0.0.1:1/".parse().unwrap(),
        log_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
        dns: vec![],
    };
    let providers = providers
        .iter()
        .map(|(id, prefixes)| TrustedProvider {
            name: format!("Provider {id}"),
            homeservers: vec![format!("{id}.test")],
            ext_url: format!("http://{id}.test/").parse().unwrap(),
            directory: "d".into(),
            provider_id: (*id).into(),
            prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            services: vec![Service::Matrix],
        })
        .collect();
    TrustList::new(ListInput { directories: vec![directory], providers }, version, now() + Duration::from_secs(3600))
        .unwrap()
}

/// Issue 14 item 17 and `provider sync`: a `provider add` that is checking and adding while a sync runs must end
/// up either refused (it ran after the sync) or suspended by `--suspend-unlisted` (it ran before): never holding a
/// range the list gives another provider. The add here holds the prefix lock, has checked `+33` against the
/// prefixes then taken (alpha's `+44` only) and added `legacy +33`, uncommitted, while a sync of a list giving
/// alpha `+44` and `+33` starts. A sync that planned from its own read and wrote later planned without `legacy`
/// (not yet committed), then wrote alpha's `+33` after the add committed: both held `+33`.
async fn a_sync_waits_for_a_concurrent_add_and_plans_with_it(s: std::sync::Arc<dyn storage::Storage>) {
    use tincan_directory::storage::{self as st, TokenHash};
    let mut tx = s.begin().await.unwrap();
    tx.providers().add("alpha", TokenHash::of("ta"), &["+44".parse().unwrap()]).await.unwrap();
    tx.commit().await.unwrap();

    let mut add = s.begin().await.unwrap();
    add.providers().lock_prefixes().await.unwrap();
    let taken: Vec<st::Prefix> = add.providers().list().await.unwrap().into_iter().flat_map(|p| p.prefixes).collect();
    assert!(!taken.iter().any(|p| p.overlaps(&"+33".parse().unwrap())), "+33 is free before the sync");
    add.providers().add("legacy", TokenHash::of("tl"), &["+33".parse().unwrap()]).await.unwrap();

    let list = list_of(&[("alpha", &["+44", "+33"])]);
    let syncing = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut n = 0;
            tincan_directory::provider_sync::sync(&*s, &list, APEX, true, false, || {
                n += 1;
                Some(format!("t{n}"))
            })
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    add.commit().await.unwrap();
    let (plan, _) = tokio::time::timeout(Duration::from_secs(10), syncing).await.unwrap().unwrap();
    assert_eq!(plan.unlisted, ["legacy"], "the sync planned with the add it waited for");

    let mut tx = s.begin_read().await.unwrap();
    let now: Vec<(String, Vec<String>)> = tx
        .providers()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.prefixes.iter().map(|q| q.as_str().to_owned()).collect()))
        .collect();
    assert_eq!(
        now,
        [("alpha".to_owned(), vec!["+33".to_owned(), "+44".to_owned()]), ("legacy".to_owned(), vec![])],
        "no two providers hold +33"
    );
}

#[tokio::test]
async fn sqlite_provider_sync_plans_and_writes_under_the_prefix_lock() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
    let s = storage::open(&url, std::sync::Arc::new(tincan_common::MockClock::at(1_700_000_000))).await.unwrap();
    a_sync_waits_for_a_concurrent_add_and_plans_with_it(s).await;
}

#[tokio::test]
async fn postgres_provider_sync_plans_and_writes_under_the_prefix_lock() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let s = storage::open(pg.url(), std::sync::Arc::new(tincan_common::MockClock::at(1_700_000_000))).await.unwrap();
    a_sync_waits_for_a_concurrent_add_and_plans_with_it(s).await;
}
