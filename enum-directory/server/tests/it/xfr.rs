//! Zone transfer to real secondaries: Knot DNS pulls the zone by AXFR with TSIG, then by IXFR after the
//! directory's NOTIFY; transfers without the key, or with a wrong one, are refused.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tincan_directory::storage::{KeyRole, KeyState};
use tincan_testkit::secondary::KnotSecondary;
use tincan_testkit::tools;

use crate::harness::{APEX, Directory, delv, owner};

const KEY_NAME: &str = "tincan-xfr";

/// A fresh random TSIG secret, base64.
pub fn secret() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The environment configuring one secondary `name` at `addr` (secret read from a file, as operators do).
pub fn secondary_env(dir: &Path, name: &str, addr: SocketAddr, secret: &str, flavour: &str) -> Vec<(String, String)> {
    let file = dir.join(format!("{name}.tsig"));
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let up = name.to_ascii_uppercase();
    let p = format!("TINCAN_DIRECTORY_XFR__SECONDARIES__{up}__");
    vec![
        (format!("{p}ADDRESS"), addr.to_string()),
        (format!("{p}TSIG_KEY"), KEY_NAME.to_owned()),
        (format!("{p}TSIG_SECRET_FILE"), file.display().to_string()),
        (format!("{p}FLAVOUR"), flavour.to_owned()),
        ("TINCAN_DIRECTORY_XFR__NOTIFY__DEBOUNCE_MS".into(), "50".into()),
        ("TINCAN_DIRECTORY_XFR__NOTIFY__INITIAL_BACKOFF_MS".into(), "200".into()),
    ]
}

/// A data dir, a free loopback address for the secondary `name`, a TSIG secret, and the environment configuring
/// the directory with that secondary.
fn one_secondary(name: &str, flavour: &str) -> (tempfile::TempDir, SocketAddr, String, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], tincan_testkit::ports::free_port()));
    let secret = secret();
    let env = secondary_env(dir.path(), name, addr, &secret, flavour);
    (dir, addr, secret, env)
}

/// `env` as `Directory::start_with` takes it.
fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub async fn put(d: &Directory, token: &str, number: &str, user: &str) {
    let body = json!({"services": [{"type": "matrix", "uri": format!("matrix:u/{user}:hs.test")}]});
    let r = d.http.put(d.url(&format!("/v1/numbers/{number}"))).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = tools::run(
        tools::command("dig")
            .args(["+time=5", "+tries=1", "-p", &server.port().to_string()])
            .arg(format!("@{}", server.ip()))
            .args(args),
    )
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Polls `server` until `name NAPTR` contains `needle`.
async fn wait_answer(server: SocketAddr, name: &str, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = dig(server, &["+short", name, "NAPTR"]);
        if out.contains(needle) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never answered {needle:?}; last: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn knot_pulls_by_axfr_then_ixfr_after_notify() {
    let (dir, knot_addr, secret, env) = one_secondary("knot", "unsigned");
    let d = Directory::start_with(dir.path(), &env_refs(&env)).await;
    let token = d.add_provider("acme", &["+44"]);
    put(&d, &token, "+442079460001", "alice").await;
    put(&d, &token, "+442079460002", "bob").await;

    let mut knot = KnotSecondary::builder(APEX, d.dns, KEY_NAME, &secret).listen(knot_addr).start().await.unwrap();
    let first = knot.wait_serial(2, Duration::from_secs(30)).await.unwrap();
    wait_answer(knot.addr, &owner("+442079460001"), "alice").await;
    wait_answer(knot.addr, &owner("+442079460002"), "bob").await;
    assert!(knot.log().contains("AXFR, incoming"), "{}", knot.log_tail(30));

    // A change: the directory sends NOTIFY, Knot asks for IXFR and gets only the difference.
    put(&d, &token, "+442079460001", "carol").await;
    wait_answer(knot.addr, &owner("+442079460001"), "carol").await;
    let second = knot.wait_serial(first + 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(second, first + 1);
    let log = knot.log();
    assert!(log.contains("IXFR, incoming"), "no IXFR in Knot's log:\n{log}");
    assert!(log.to_ascii_lowercase().contains("notify, incoming"), "no NOTIFY in Knot's log:\n{log}");
    assert!(!dig(knot.addr, &["+short", &owner("+442079460001"), "NAPTR"]).contains("alice"));
    wait_answer(knot.addr, &owner("+442079460002"), "bob").await;

    // A deletion travels too.
    let r = d.http.delete(d.url("/v1/numbers/+442079460002")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    knot.wait_serial(second + 1, Duration::from_secs(10)).await.unwrap();
    let gone = dig(knot.addr, &[&owner("+442079460002"), "NAPTR"]);
    assert!(gone.contains("NXDOMAIN"), "{gone}");
}

#[tokio::test]
async fn numbers_imported_beside_the_server_reach_knot_by_notify_and_ixfr() {
    let (dir, knot_addr, secret, env) = one_secondary("knot", "unsigned");
    let d = Directory::start_with(dir.path(), &env_refs(&env)).await;
    let token = d.add_provider("acme", &["+44"]);
    put(&d, &token, "+442079460001", "alice").await;
    let mut knot = KnotSecondary::builder(APEX, d.dns, KEY_NAME, &secret).listen(knot_addr).start().await.unwrap();
    let first = knot.wait_serial(1, Duration::from_secs(30)).await.unwrap();
    wait_answer(knot.addr, &owner("+442079460001"), "alice").await;
    let notifies = |log: &str| log.to_ascii_lowercase().matches("notify, incoming").count();
    let before = notifies(&knot.log());

    // Another process writes: the server's journal follower publishes it and announces it like an API change
    // (Knot's own SOA refresh is an hour away, so only a NOTIFY brings it).
    let file = dir.path().join("numbers.jsonl");
    let line = json!({"e164": "+442079460005", "services": [{"type": "matrix", "uri": "matrix:u/dave:hs.test"}]});
    std::fs::write(&file, line.to_string()).unwrap();
    let out = crate::harness::cli(dir.path(), &["numbers", "import", "--provider", "acme", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = knot.wait_serial(first + 1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(second, first + 1, "one journal version, one serial");
    wait_answer(knot.addr, &owner("+442079460005"), "dave").await;
    let log = knot.log();
    assert!(notifies(&log) > before, "no new NOTIFY in Knot's log:\n{log}");
    assert!(log.contains("IXFR, incoming"), "no IXFR in Knot's log:\n{log}");
}

#[tokio::test]
async fn transfers_without_the_right_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret();
    // A secondary at 127.0.0.1 (the address dig sends from), never started: nobody acknowledges NOTIFY.
    let addr = SocketAddr::from(([127, 0, 0, 1], tincan_testkit::ports::free_port()));
    let env = secondary_env(dir.path(), "knot", addr, &secret, "unsigned");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Directory::start_with(dir.path(), &env).await;
    let token = d.add_provider("acme", &["+44"]);
    put(&d, &token, "+442079460001", "alice").await;

    let unsigned = dig(d.dns, &[APEX, "AXFR"]);
    assert!(unsigned.contains("Transfer failed") && !unsigned.contains("NAPTR"), "{unsigned}");
    let ixfr = dig(d.dns, &[APEX, "IXFR=1"]);
    assert!(!ixfr.contains("NAPTR"), "{ixfr}");
    let wrong = crate::xfr::secret();
    let wrong_key = dig(d.dns, &["-y", &format!("hmac-sha256:{KEY_NAME}:{wrong}"), APEX, "AXFR"]);
    assert!(!wrong_key.contains("NAPTR"), "{wrong_key}");
    let other_name = dig(d.dns, &["-y", &format!("hmac-sha256:someone-else:{secret}"), APEX, "AXFR"]);
    assert!(!other_name.contains("NAPTR"), "{other_name}");
    // The right key transfers the zone (dig checks every message's TSIG).
    let right = dig(d.dns, &["-y", &format!("hmac-sha256:{KEY_NAME}:{secret}"), APEX, "AXFR"]);
    assert!(right.contains("NAPTR") && right.contains("alice"), "{right}");
    assert!(!right.contains("failed") && !right.contains("tsig verify failure"), "{right}");

    // /metrics counts them.
    let metrics = d.http.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |series: &str| -> u64 {
        metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or_else(|| panic!("{metrics}"))
    };
    assert!(value("tincan_directory_transfers_total{kind=\"refused\"}") >= 3, "{metrics}");
    assert_eq!(value("tincan_directory_transfers_total{kind=\"axfr\"}"), 1, "{metrics}");
    // IXFR from version 0 is incremental (SOA 1, SOA 0, SOA 1 + the number, SOA 1); from a serial the journal
    // cannot reach (newer than ours) it is the whole zone (SOA, records, SOA).
    let soas = |out: &str| out.lines().filter(|l| l.split_whitespace().nth(3) == Some("SOA")).count();
    let key = format!("hmac-sha256:{KEY_NAME}:{secret}");
    let incremental = dig(d.dns, &["-y", &key, APEX, "IXFR=0"]);
    assert_eq!(soas(&incremental), 4, "{incremental}");
    assert!(incremental.contains("alice"), "{incremental}");
    let whole = dig(d.dns, &["-y", &key, APEX, "IXFR=1000"]);
    assert_eq!(soas(&whole), 2, "{whole}");
    assert!(whole.contains("alice") && whole.contains("\tNS\t"), "{whole}");
}

/// A loopback address (127.77.x.y) whose port 53 is free right now: ldns-walk only talks to port 53, and other
/// test runs on the machine may hold a fixed one.
fn free_loopback_53() -> SocketAddr {
    use ring::rand::SecureRandom as _;
    for _ in 0..50 {
        let mut b = [0u8; 2];
        ring::rand::SystemRandom::new().fill(&mut b).unwrap();
        let addr = SocketAddr::from(([127, 77, 1 + b[0] % 250, 1 + b[1] % 250], 53));
        let free = std::net::UdpSocket::bind(addr).is_ok() && std::net::TcpListener::bind(addr).is_ok();
        if free {
            return addr;
        }
    }
    panic!("no free 127.77.x.y:53");
}

/// delv's trust-anchors file for the directory's DS (`keys ds`).
fn anchor_file(dir: &Path) -> std::path::PathBuf {
    anchor_file_for(dir, &crate::harness::ds(dir))
}

/// delv's trust-anchors file for the DS set `ds` (`<apex> IN DS <tag> <alg> 2 <HEX>` lines).
fn anchor_file_for(dir: &Path, ds: &[String]) -> std::path::PathBuf {
    let mut conf = String::from("trust-anchors {\n");
    for line in ds {
        let f: Vec<&str> = line.split_whitespace().collect();
        conf.push_str(&format!("  \"{}\" static-ds {} {} {} \"{}\";\n", f[0], f[3], f[4], f[5], f[6]));
    }
    conf.push_str("};\n");
    let anchor = dir.join("anchor.conf");
    std::fs::write(&anchor, conf).unwrap();
    anchor
}

/// Runs `keys export --format knot` into `dir/knot-keys` with the directory's config `env` (the timers follow its
/// rollover schedule); returns that directory.
fn export_keys(dir: &Path, env: &[(&str, &str)]) -> std::path::PathBuf {
    let out_dir = dir.join("knot-keys");
    let args = ["keys", "export", "--format", "knot", "--out", out_dir.to_str().unwrap()];
    let out = crate::harness::cli_env(dir, &args, env);
    assert!(out.status.success(), "keys export: {}", String::from_utf8_lossy(&out.stderr));
    out_dir
}

/// The keys `keys export --format knot` wrote, read back from its import.sh as a secondary imports them.
fn exported_keys(dir: &Path, env: &[(&str, &str)]) -> Vec<tincan_testkit::secondary::ImportedKey> {
    let out_dir = export_keys(dir, env);
    let script = std::fs::read_to_string(out_dir.join("import.sh")).unwrap();
    let keys: Vec<_> = script
        .lines()
        .filter(|l| l.starts_with("keymgr "))
        .map(|l| {
            // keymgr "$@" APEX set TAG TIMERS… >/dev/null 2>&1 || keymgr "$@" APEX import-pem FILE ARGS…
            let (update, import) = l.split_once(" || ").unwrap();
            assert!(update.contains(" set ") && update.contains(" publish="), "{l}");
            let f: Vec<&str> = import.split_whitespace().collect();
            assert_eq!((f[1], f[2], f[3]), ("\"$@\"", APEX, "import-pem"), "{l}");
            tincan_testkit::secondary::ImportedKey {
                pem: out_dir.join(f[4]),
                args: f[5..].iter().map(|s| s.to_string()).collect(),
            }
        })
        .collect();
    assert_eq!(keys.len(), 2, "a KSK and a ZSK:\n{script}");
    for k in &keys {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&k.pem).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", k.pem.display());
    }
    keys
}

/// The directory with `env` and `numbers` (number, user), and a Knot secondary at `knot_addr` signing online with
/// the exported keys, serving all of them; the provider's token and delv's trust-anchor file.
async fn online_signing_edge(
    dir: &Path,
    env: &[(&str, &str)],
    knot_addr: SocketAddr,
    secret: &str,
    numbers: &[(&str, &str)],
) -> (Directory, String, KnotSecondary, std::path::PathBuf) {
    let d = Directory::start_with(dir, env).await;
    let token = d.add_provider("acme", &["+44"]);
    for (n, user) in numbers {
        put(&d, &token, n, user).await;
    }
    let keys = exported_keys(dir, env);
    let anchor = anchor_file(dir);
    let mut knot =
        KnotSecondary::builder(APEX, d.dns, KEY_NAME, secret).listen(knot_addr).onlinesign(keys).start().await.unwrap();
    knot.wait_serial(numbers.len() as u32, Duration::from_secs(30)).await.unwrap();
    for (n, user) in numbers {
        wait_answer(knot.addr, &owner(n), user).await;
    }
    (d, token, knot, anchor)
}

#[tokio::test]
async fn knot_signing_online_with_the_exported_keys_validates_and_cannot_be_walked() {
    let dir = tempfile::tempdir().unwrap();
    // ldns-walk only talks to port 53: Knot gets a loopback address of its own.
    let knot_addr = free_loopback_53();
    let secret = secret();
    let env = secondary_env(dir.path(), "edge", knot_addr, &secret, "unsigned");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Knot transfers from 127.0.0.1, not from its listening address.
    env.push(("TINCAN_DIRECTORY_XFR__SECONDARIES__EDGE__ALLOW_FROM", "[\"127.0.0.1\"]"));
    let numbers = [("+442079460001", "alice"), ("+442079460007", "grace")];
    let (d, token, knot, anchor) = online_signing_edge(dir.path(), &env, knot_addr, &secret, &numbers).await;

    let out = delv(knot.addr, &anchor, &owner("+442079460001"), "NAPTR");
    assert!(out.contains("; fully validated") && out.contains("alice"), "{out}\n{}", knot.log_tail(20));
    let out = delv(knot.addr, &anchor, &owner("+442079460002"), "NAPTR");
    assert!(out.contains("; negative response, fully validated"), "{out}");
    let out = delv(knot.addr, &anchor, &owner("+442079460001"), "TXT");
    assert!(out.contains("; negative response, fully validated"), "{out}");
    // A change reaches the edge and still validates.
    put(&d, &token, "+442079460001", "carol").await;
    wait_answer(knot.addr, &owner("+442079460001"), "carol").await;
    let out = delv(knot.addr, &anchor, &owner("+442079460001"), "NAPTR");
    assert!(out.contains("; fully validated") && out.contains("carol"), "{out}");

    let walk = tokio::process::Command::new(tools::require("ldns-walk"))
        .args(["-f", &format!("@{}", knot_addr.ip()), APEX])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), walk.wait_with_output()).await;
    let text = match out {
        Ok(Ok(o)) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        _ => String::from("(walk still running after 10 s; killed)"),
    };
    for n in ["+442079460001", "+442079460007"] {
        assert!(!text.contains(&owner(n)) && !text.contains(&n[1..]), "walk revealed {n}:\n{text}");
    }
    assert!(!text.contains("4.4.e164.tincan.test"), "{text}");
}

#[tokio::test]
async fn nsd_receives_the_presigned_nsec3_flavour_and_it_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret();
    let dig_addr = SocketAddr::from(([127, 0, 0, 1], tincan_testkit::ports::free_port()));
    let env = secondary_env(dir.path(), "legacy", dig_addr, &secret, "nsec3");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Directory::start_with(dir.path(), &env).await;
    let token = d.add_provider("acme", &["+44", "+1"]);
    for (n, u) in [("+442079460001", "alice"), ("+442079460002", "bob"), ("+12025550123", "dave")] {
        put(&d, &token, n, u).await;
    }
    let r = d
        .http
        .put(d.url("/v1/numbers/+442079460001/key"))
        .bearer_auth(&token)
        .json(&json!({"ed25519": "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let anchor_ds = crate::harness::ds(dir.path()).join("\n") + "\n";
    let ds_file = dir.path().join("ds.anchor");
    std::fs::write(&ds_file, &anchor_ds).unwrap();

    // An NSD secondary pulls the NSEC3 copy with TSIG; its copy is then transferred out and verified.
    let mut nsd =
        tincan_testkit::secondary::NsdSecondary::start(APEX, d.dns, KEY_NAME, &secret, dig_addr).await.unwrap();
    let zone = nsd.wait_zone(Duration::from_secs(60)).await.unwrap();
    let text = std::fs::read_to_string(&zone).unwrap();
    assert!(text.contains("NSEC3PARAM") && text.contains("NSEC3") && !text.contains("\tNSEC\t"), "{text}");
    let out = tools::run(tools::command("ldns-verify-zone").arg("-k").arg(&ds_file).arg(&zone)).unwrap();
    assert!(
        out.status.success(),
        "ldns-verify-zone:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tools::run(tools::command("dnssec-verify").args(["-o", APEX]).arg(&zone)).unwrap();
    assert!(
        out.status.success(),
        "dnssec-verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_first_nsec3_copy_is_made_at_start_and_the_first_request_waits_for_it() {
    let (dir, nsd_addr, secret, env) = one_secondary("legacy", "nsec3");
    crate::harness::add_provider(dir.path(), "acme", &["+44"]);
    let file = dir.path().join("numbers.jsonl");
    let lines: Vec<String> = (1..=3)
        .map(|i| json!({"e164": format!("+44207946000{i}"), "services": [{"type": "matrix", "uri": format!("matrix:u/u{i}:hs.test")}]}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = crate::harness::cli(dir.path(), &["numbers", "import", "--provider", "acme", file.to_str().unwrap()]);
    assert!(out.status.success(), "numbers import: {}", String::from_utf8_lossy(&out.stderr));

    // No secondary has asked yet: the copy is made because one is configured.
    let d = Directory::start_with(dir.path(), &env_refs(&env)).await;
    wait_until("the first NSEC3 copy", Duration::from_secs(30), || {
        let log = plain_log(&d);
        let ready =
            log.lines().any(|l| l.contains("first NSEC3 copy ready for the secondaries") && l.contains("numbers=3"));
        (!ready).then_some(log)
    })
    .await;
    let mut nsd =
        tincan_testkit::secondary::NsdSecondary::start(APEX, d.dns, KEY_NAME, &secret, nsd_addr).await.unwrap();
    let zone = std::fs::read_to_string(nsd.wait_zone(Duration::from_secs(60)).await.unwrap()).unwrap();
    assert!(zone.contains("u3:hs.test"), "{zone}");
    let log = plain_log(&d);
    assert_eq!(log.matches("signed the NSEC3 copy").count(), 1, "one copy, made at start:\n{log}");
}

/// Key tags of the RRSIGs over `name rtype` in `server`'s answer.
fn rrsig_tags(server: SocketAddr, name: &str, rtype: &str) -> Vec<u16> {
    dig(server, &["+dnssec", "+norec", name, rtype])
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"RRSIG") && f.get(4) == Some(&rtype)).then(|| f[10].parse().unwrap())
        })
        .collect()
}

/// Polls until `check` returns `None`; fails with `what` and its last answer after `within`.
async fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> Option<String>) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let Some(last) = check() else { return };
        assert!(std::time::Instant::now() < deadline, "{what}; last: {last}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `keys status`: the states of the keys of `role` (oldest first) and the DS set the parent must publish now.
fn key_status(dir: &Path, env: &[(&str, &str)], role: KeyRole) -> (Vec<String>, Vec<String>) {
    let out = crate::harness::cli_env(dir, &["keys", "status"], env);
    assert!(out.status.success(), "keys status: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (keys, ds) = text.split_once("DS set the parent must publish now:\n").expect(&text);
    let states = keys
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f[0] == role.as_str())
        .map(|f| {
            // "<role> <alg> tag <tag> <state> created <t> <state> since <t>[; <next event> at <t>]"
            assert_eq!(f[4], f[7], "{text}");
            f[4].to_owned()
        })
        .collect();
    (states, ds.lines().map(str::to_owned).collect())
}

/// What a validating resolver gets from `server` for the apex DNSKEY set and `name`: the DNSKEY key tags (sorted),
/// and the key tags of the RRSIGs over the DNSKEY set and over `name`'s NAPTR.
fn signing_view(server: SocketAddr, name: &str) -> (Vec<u16>, Vec<u16>, Vec<u16>) {
    let out = dig(server, &["+multiline", "+norec", APEX, "DNSKEY"]);
    let mut tags: Vec<u16> = out
        .lines()
        .filter_map(|l| l.split("key id = ").nth(1))
        .map(|t| t.trim().trim_end_matches(')').trim().parse().unwrap())
        .collect();
    tags.sort_unstable();
    (tags, rrsig_tags(server, APEX, "DNSKEY"), rrsig_tags(server, name, "NAPTR"))
}

/// A rollover of `role` through its whole timeline in real time, on a short schedule, with a Knot secondary signing
/// online with the exported keys. At every step the operator follows the documented procedure (`keys export`,
/// `import.sh`, `knotc reload`: Knot 3.2 does not act on a timer passing by itself) until Knot publishes and signs
/// with what the directory does; then a positive and a negative answer from Knot validate with the DS set the
/// parent publishes now (from `keys status`) and with the previous step's, and are signed by keys of the previous
/// step's DNSKEY set (a resolver holding it in cache validates them).
async fn knot_follows_a_rollover(role: KeyRole) {
    let (dir, knot_addr, secret, env) = one_secondary("edge", "unsigned");
    let mut env = env_refs(&env);
    // DNSKEY TTL 8 s + propagation 6 s before a new ZSK signs and before an old one or an old KSK goes; parent DS
    // TTL 12 s + propagation before a new KSK replaces the old one. Each step must stay put while it is checked
    // (four delv runs, digs, an export and Knot reloads): with half these times a loaded machine took longer than
    // a step and the directory moved on meanwhile.
    env.extend([
        ("TINCAN_DIRECTORY_DNS__ZONE__APEX_TTL", "8"),
        ("TINCAN_DIRECTORY_DNS__ZONE__RECORD_TTL", "8"),
        ("TINCAN_DIRECTORY_DNS__ZONE__NEGATIVE_TTL", "8"),
        ("TINCAN_DIRECTORY_DNS__ROLLOVER__PROPAGATION_DELAY", "6"),
        ("TINCAN_DIRECTORY_DNS__ROLLOVER__PARENT_DS_TTL", "12"),
        ("TINCAN_DIRECTORY_DNS__ROLLOVER__CHECK_INTERVAL", "1"),
    ]);
    let numbers = [("+442079460001", "alice")];
    let (d, _token, knot, _anchor) = online_signing_edge(dir.path(), &env, knot_addr, &secret, &numbers).await;
    let name = owner("+442079460001");
    let negative = owner("+442079460002");
    let conf = knot.dir().join("knot.conf");
    // Online signing loads its keys when the module starts: a reload (not `zone-keys-load`, which is for zones
    // Knot signs itself) picks up the new keys and the timers.
    let reload = || tools::run_ok(tools::command("knotc").arg("-c").arg(&conf).arg("reload")).unwrap();
    let operator_step = || {
        let import = export_keys(dir.path(), &env).join("import.sh");
        tools::run_ok(tools::command("sh").arg(&import).arg("-c").arg(&conf)).unwrap();
        reload();
    };
    let same = |what: &str| {
        let (edge, directory) = (signing_view(knot.addr, &name), signing_view(d.dns, &name));
        (edge != directory).then(|| format!("{what}: Knot {edge:?}, directory {directory:?}\n{}", knot.log_tail(20)))
    };
    let (_, ds) = key_status(dir.path(), &env, role);
    assert_eq!(ds, crate::harness::ds(dir.path()));
    let mut previous = crate::rollover::Seen { ds, dnskey_tags: signing_view(d.dns, &name).0 };
    assert_eq!(signing_view(knot.addr, &name), signing_view(d.dns, &name), "Knot signs with the directory's keys");

    let out = crate::harness::cli_env(dir.path(), &["keys", "roll", role.as_str()], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (i, step) in crate::rollover::timeline(role).into_iter().enumerate() {
        wait_until(&format!("the directory reaches \"{}\"", step.name), Duration::from_secs(60), || {
            let (states, _) = key_status(dir.path(), &env, role);
            (states != step.states.map(KeyState::as_str)).then(|| format!("{states:?}"))
        })
        .await;
        let (_, ds) = key_status(dir.path(), &env, role);
        assert_eq!(ds.len(), step.ds, "{}: the DS set the parent must publish: {ds:?}", step.name);
        assert_eq!(ds, crate::harness::ds(dir.path()), "{}: `keys status` and `keys ds` agree", step.name);
        if i > 0 {
            // The timers exported at the previous step already say when this one happens: reloaded now, without a
            // new export, Knot takes the same step (a reload for any other reason leaves it consistent too).
            let what = format!("{}: Knot reloaded with the previous step's export", step.name);
            wait_until(&what, Duration::from_secs(10), || {
                reload();
                same(&what)
            })
            .await;
        }
        let what = format!("{}: Knot after the operator's export, import and reload", step.name);
        wait_until(&what, Duration::from_secs(30), || {
            operator_step();
            same(&what)
        })
        .await;
        let (dnskey_tags, _, _) = signing_view(knot.addr, &name);
        assert_eq!(dnskey_tags.len(), step.dnskeys, "{}", step.name);
        let anchors = [("now", &ds), ("previous step's", &previous.ds)];
        for (which, set) in anchors {
            let anchor = anchor_file_for(dir.path(), set);
            let out = delv(knot.addr, &anchor, &name, "NAPTR");
            assert!(out.contains("; fully validated") && out.contains("alice"), "{}, {which} DS: {out}", step.name);
            let out = delv(knot.addr, &anchor, &negative, "NAPTR");
            assert!(out.contains("; negative response, fully validated"), "{}, {which} DS: {out}", step.name);
        }
        for n in [&name, &negative] {
            let tags = rrsig_tags(knot.addr, n, "NAPTR");
            let tags = if tags.is_empty() { rrsig_tags(knot.addr, n, "NSEC") } else { tags };
            assert!(!tags.is_empty(), "{}: {n} unsigned", step.name);
            assert!(
                tags.iter().all(|t| previous.dnskey_tags.contains(t)),
                "{}: {n} signed by {tags:?}, not all in the previous DNSKEY set {:?}",
                step.name,
                previous.dnskey_tags
            );
        }
        let (states, _) = key_status(dir.path(), &env, role);
        assert_eq!(
            states,
            step.states.map(KeyState::as_str),
            "{}: the directory moved on while the step was checked",
            step.name
        );
        previous = crate::rollover::Seen { ds, dnskey_tags };
    }
}

#[tokio::test]
async fn knot_signing_online_follows_a_zsk_rollover_exported_at_each_step() {
    knot_follows_a_rollover(KeyRole::Zsk).await;
}

#[tokio::test]
async fn knot_signing_online_follows_a_ksk_rollover_exported_at_each_step() {
    knot_follows_a_rollover(KeyRole::Ksk).await;
}

/// The directory's log without terminal colours.
fn plain_log(d: &Directory) -> String {
    let raw = std::fs::read_to_string(d.data_dir.join("serve.log")).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Answers every NOTIFY on `sock` with NOERROR: the first `unsigned` ones without a TSIG, the rest with the
/// request's own TSIG echoed back (a replay that cannot verify as an answer).
async fn spoof_notify_answers(sock: tokio::net::UdpSocket, unsigned: usize) {
    let mut buf = vec![0u8; 4096];
    for n in 0.. {
        let Ok((len, from)) = sock.recv_from(&mut buf).await else { return };
        let mut answer = buf[..len].to_vec();
        answer[2] |= 0x80; // QR
        if n < unsigned {
            // Keep the header and the question, drop the records (the TSIG).
            let req = hickory_proto::op::Message::from_vec(&buf[..len]).unwrap();
            let mut m = hickory_proto::op::Message::response(req.metadata.id, req.metadata.op_code);
            m.metadata.authoritative = true;
            m.add_queries(req.queries.clone());
            answer = m.to_vec().unwrap();
        }
        let _ = sock.send_to(&answer, from).await;
    }
}

#[tokio::test]
async fn notify_answers_count_only_when_signed_with_the_secondarys_key() {
    let (dir, knot_addr, secret, mut env) = one_secondary("knot", "unsigned");
    let spoof = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let spoof_addr = spoof.local_addr().unwrap();
    tokio::spawn(spoof_notify_answers(spoof, 1));
    env.extend(secondary_env(dir.path(), "spoofed", spoof_addr, &crate::xfr::secret(), "unsigned"));
    let d = Directory::start_with(dir.path(), &env_refs(&env)).await;
    let token = d.add_provider("acme", &["+44"]);
    let mut knot = KnotSecondary::builder(APEX, d.dns, KEY_NAME, &secret).listen(knot_addr).start().await.unwrap();
    put(&d, &token, "+442079460001", "alice").await;
    knot.wait_serial(1, Duration::from_secs(30)).await.unwrap();

    // Knot answers with the key: acknowledged at once. The spoofed answers (unsigned, then a replayed TSIG) are
    // failed attempts, retried with the backoff.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = plain_log(&d);
        let line = |needle: &str, what: &str| log.lines().any(|l| l.contains(needle) && l.contains(what));
        let knot_ok = line("NOTIFY acknowledged", "secondary=knot ");
        let unsigned = line("NOTIFY not acknowledged", "carries no TSIG");
        let replayed = line("NOTIFY not acknowledged", "MAC does not verify");
        let retried = line("NOTIFY not acknowledged", "secondary=spoofed attempt=3");
        if knot_ok && unsigned && replayed && retried {
            assert!(!line("NOTIFY acknowledged", "secondary=spoofed "), "{log}");
            assert!(!line("NOTIFY not acknowledged", "secondary=knot "), "{log}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A UDP query for the apex SOA carrying a TSIG record with a key name the directory does not know (the MAC is
/// zeros: a bad key is refused before any MAC is checked).
fn bad_key_query(id: u16) -> Vec<u8> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii(APEX).unwrap(), RecordType::SOA));
    let mut b = m.to_vec().unwrap();
    let arcount = u16::from_be_bytes([b[10], b[11]]) + 1;
    b[10..12].copy_from_slice(&arcount.to_be_bytes());
    let name = |out: &mut Vec<u8>, labels: &[&str]| {
        for l in labels {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    };
    name(&mut b, &["no-such-key"]);
    b.extend_from_slice(&250u16.to_be_bytes()); // TSIG
    b.extend_from_slice(&255u16.to_be_bytes()); // class ANY
    b.extend_from_slice(&0u32.to_be_bytes());
    let mut rdata = Vec::new();
    name(&mut rdata, &["hmac-sha256"]);
    rdata.extend_from_slice(&[0; 6]); // time signed
    rdata.extend_from_slice(&300u16.to_be_bytes()); // fudge
    rdata.extend_from_slice(&32u16.to_be_bytes());
    rdata.extend_from_slice(&[0; 32]); // MAC
    rdata.extend_from_slice(&id.to_be_bytes()); // original id
    rdata.extend_from_slice(&[0; 4]); // error, other length
    b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    b.extend_from_slice(&rdata);
    b
}

/// Sends one [`bad_key_query`] per id from `from` to `server` and counts the answers that come back within a
/// second of the previous one (each a refusal: NOTAUTH).
async fn bad_key_answers(from: std::net::IpAddr, server: SocketAddr, ids: std::ops::Range<u16>) -> usize {
    let sock = tokio::net::UdpSocket::bind(SocketAddr::new(from, 0)).await.unwrap();
    sock.connect(server).await.unwrap();
    let sent = ids.len();
    for id in ids {
        sock.send(&bad_key_query(id)).await.unwrap();
    }
    let (mut answers, mut buf) = (0, vec![0u8; 4096]);
    while answers < sent
        && let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await
    {
        assert!(n >= 12 && buf[3] & 0x0f == 9, "NOTAUTH: {:?}", &buf[..n]);
        answers += 1;
    }
    answers
}

/// Issue 14 item 16: TSIG-signed queries over UDP go through response-rate limiting like the rest (they used to
/// be handed to the transfer code before it, so a flood of them was answered whole), and the warning each bogus
/// key logs is rate limited (one per request let anyone fill the log).
#[tokio::test]
async fn tsig_signed_udp_queries_are_rate_limited_and_bad_key_warnings_are_too() {
    let (dir, _, _, mut env) = one_secondary("knot", "unsigned");
    for (k, v) in [("EXEMPT_LOOPBACK", "false"), ("RESPONSES_PER_SECOND", "1"), ("BURST", "5"), ("SLIP", "0")] {
        env.push((format!("TINCAN_DIRECTORY_DNS__SERVER__RRL__{k}"), v.to_owned()));
    }
    // One bucket per address, so the addresses of 127.0.1.0/24 below stand for a hundred clients.
    env.push(("TINCAN_DIRECTORY_DNS__SERVER__RRL__IPV4_PREFIX".into(), "32".into()));
    let d = Directory::start_with(dir.path(), &env_refs(&env)).await;

    // 100 from one client: the burst of 5 (and a token or two refilled meanwhile) is answered, the rest dropped.
    let one = bad_key_answers([127, 0, 0, 2].into(), d.dns, 0..100).await;
    assert!((5..=8).contains(&one), "{one} of 100 TSIG-signed queries from one client answered");

    // One each from 100 clients: all answered (each is within its burst), but only a few warnings are logged.
    let mut answered = 0;
    for i in 0..100u8 {
        answered += bad_key_answers([127, 0, 1, i + 1].into(), d.dns, 0..1).await;
    }
    assert_eq!(answered, 100);
    let log = plain_log(&d);
    let warnings = log.lines().filter(|l| l.contains("TSIG with an unknown key refused")).count();
    assert!((1..=20).contains(&warnings), "{warnings} warnings for {} bad keys:\n{log}", one + answered);
    let metrics = d.http.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tincan_directory_transfers_total{kind=\"refused\"}")?.trim().parse::<u64>().ok())
        .unwrap();
    assert_eq!(refused, (one + answered) as u64, "every refusal is counted, logged or not");
}
