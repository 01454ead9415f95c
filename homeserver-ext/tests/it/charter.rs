//! `[charter]`: the extension works only with a directory on the charter's trust list, checked at start and at
//! every refresh while serving.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tincan_charter::keys::SecretKey;
use tincan_charter::list::{ListInput, Service, TrustList, TrustedDirectory, TrustedProvider};
use tincan_charter::signed::{Envelope, Root};
use tincan_common::Clock as _;

const DIRECTORY_URL: &str = "http://127.0.0.1:1/";

/// Publishes list `version` into `repo`, naming a directory at `directory_url`.
fn publish(repo: &Path, key: &SecretKey, root: &[u8], version: u64, directory_url: &str) {
    let now = tincan_common::SystemClock.now();
    let directory = TrustedDirectory {
        id: "d".into(),
        apex: "e164.tincan.test.".into(),
        ds: vec![format!("e164.tincan.test. 3600 IN DS 1 15 2 {}", "00".repeat(32))],
        api_url: directory_url.parse().unwrap(),
        log_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
        dns: vec![],
    };
    let provider = TrustedProvider {
        name: "Test".into(),
        homeservers: vec!["hs.test".into()],
        ext_url: "http://127.0.0.1:2/".parse().unwrap(),
        directory: "d".into(),
        provider_id: "test".into(),
        prefixes: vec!["+44".into()],
        services: vec![Service::Matrix],
    };
    let input = ListInput { directories: vec![directory], providers: vec![provider] };
    let list = TrustList::new(input, version, now + Duration::from_secs(3600)).unwrap();
    let mut env = Envelope::new(&list);
    env.sign(key);
    std::fs::create_dir_all(repo).unwrap();
    std::fs::write(repo.join("1.root.json"), root).unwrap();
    std::fs::write(repo.join("trust-list.json"), env.to_bytes()).unwrap();
}

/// A charter key and its self-signed root (written to `dir/root.json`).
fn charter(dir: &Path) -> (SecretKey, Vec<u8>) {
    let key = SecretKey::generate_os();
    let expires = tincan_common::SystemClock.now() + Duration::from_secs(86_400);
    let root = Root::new(1, expires, &[key.public()], 1, &[key.public()], 1).unwrap();
    let mut env = Envelope::new(&root);
    env.sign(&key);
    std::fs::write(dir.join("root.json"), env.to_bytes()).unwrap();
    (key, env.to_bytes())
}

fn config(dir: &Path, refresh_secs: u64) -> std::path::PathBuf {
    let file = dir.join("ext.toml");
    let port = tincan_testkit::ports::free_port();
    std::fs::write(
        &file,
        format!(
            "server_name = \"hs.test\"\nlisten = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{db}?mode=rwc\"\n\
             [codes]\nsecret = \"test-only-code-secret-0123456789abcdef\"\n\
             [limits]\nallowed_countries = [\"*\"]\n\
             [homeserver]\njwt_secret = \"supersecret-0123456789\"\n\
             [sms]\nbackend = \"dev\"\ndev_file = \"{sms}\"\n\
             [directory]\nurl = \"{DIRECTORY_URL}\"\ntoken = \"provider-token\"\n\
             [charter]\nurl = \"file://{repo}/\"\nroot_file = \"{root}\"\nstate_dir = \"{state}\"\nrefresh_secs = {refresh_secs}\n",
            db = dir.join("ext.db").display(),
            sms = dir.join("sms.jsonl").display(),
            repo = dir.join("repo").display(),
            root = dir.join("root.json").display(),
            state = dir.join("charter-state").display(),
        ),
    )
    .unwrap();
    file
}

/// Runs `tincan-ext serve` until it exits or `limit` passes (then kills it); the status (`None`: still running
/// at the limit) and the output. `during` runs once, `after` into the run.
fn serve(
    config: &Path,
    limit: Duration,
    after: Duration,
    during: impl FnOnce(),
) -> (Option<std::process::ExitStatus>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tincan-ext"))
        .args(["--config", config.to_str().unwrap(), "serve", "--dev-sms"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::options().append(true).open(&out).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut during = Some(during);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > after
            && let Some(f) = during.take()
        {
            f();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&out).unwrap())
}

#[test]
fn the_extension_refuses_a_directory_not_on_the_list_and_serves_with_one_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, root) = charter(tmp.path());
    let file = config(tmp.path(), 3600);

    // The list names another directory: the extension does not start.
    publish(&tmp.path().join("repo"), &key, &root, 1, "http://127.0.0.1:3/");
    let (status, log) = serve(&file, Duration::from_secs(20), Duration::MAX, || {});
    assert!(status.is_some_and(|s| !s.success()), "started with an unlisted directory: {status:?}\n{log}");
    assert!(log.contains("is not on the charter's trust list"), "{log}");

    // Listed: it serves.
    publish(&tmp.path().join("repo"), &key, &root, 2, DIRECTORY_URL);
    let (status, log) = serve(&file, Duration::from_secs(3), Duration::MAX, || {});
    assert!(status.is_none(), "stopped although the directory is listed: {status:?}\n{log}");
    assert!(log.contains("listening"), "{log}");
}

#[test]
fn the_extension_stops_when_a_newer_list_drops_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, root) = charter(tmp.path());
    let file = config(tmp.path(), 1);
    let repo = tmp.path().join("repo");
    publish(&repo, &key, &root, 1, DIRECTORY_URL);
    let (status, log) = serve(&file, Duration::from_secs(20), Duration::from_secs(2), || {
        publish(&repo, &key, &root, 2, "http://127.0.0.1:3/");
    });
    assert!(status.is_some_and(|s| !s.success()), "still serving a directory the list dropped: {status:?}\n{log}");
    assert!(log.contains("listening") && log.contains("is not on the charter's trust list"), "{log}");
}
