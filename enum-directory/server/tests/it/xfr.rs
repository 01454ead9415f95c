//! Zone transfer to real secondaries: Knot DNS pulls the zone by AXFR with TSIG, then by IXFR after the
//! directory's NOTIFY; transfers without the key, or with a wrong one, are refused.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tincan_testkit::secondary::KnotSecondary;
use tincan_testkit::tools;

use crate::harness::{APEX, Directory, owner};

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
    let ds = crate::harness::ds(dir);
    let f: Vec<&str> = ds[0].split_whitespace().collect();
    let anchor = dir.join("anchor.conf");
    let conf = format!("trust-anchors {{ \"{APEX}\" static-ds {} {} {} \"{}\"; }};\n", f[3], f[4], f[5], f[6]);
    std::fs::write(&anchor, conf).unwrap();
    anchor
}

fn delv(server: SocketAddr, anchor: &Path, name: &str, rtype: &str) -> String {
    let out = tools::run(tools::command("delv").arg(format!("@{}", server.ip())).args([
        "-p",
        &server.port().to_string(),
        "-a",
        anchor.to_str().unwrap(),
        &format!("+root={APEX}"),
        name,
        rtype,
    ]))
    .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `keys export --format knot` into `dir/knot-keys`; returns that directory.
fn export_keys(dir: &Path) -> std::path::PathBuf {
    let out_dir = dir.join("knot-keys");
    let out = crate::harness::cli(dir, &["keys", "export", "--format", "knot", "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "keys export: {}", String::from_utf8_lossy(&out.stderr));
    out_dir
}

/// The keys `keys export --format knot` wrote, read back from its import.sh as a secondary imports them.
fn exported_keys(dir: &Path) -> Vec<tincan_testkit::secondary::ImportedKey> {
    let out_dir = export_keys(dir);
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
    let keys = exported_keys(dir);
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

#[tokio::test]
async fn knot_signing_online_follows_a_zsk_rollover_exported_at_each_step() {
    let (dir, knot_addr, secret, env) = one_secondary("edge", "unsigned");
    let mut env = env_refs(&env);
    // A short real-time timeline: DNSKEY TTL 4 s + propagation 2 s before the new ZSK signs, as long again before
    // the old one goes.
    env.extend([
        ("TINCAN_DIRECTORY_DNS__ZONE__APEX_TTL", "4"),
        ("TINCAN_DIRECTORY_DNS__ZONE__RECORD_TTL", "4"),
        ("TINCAN_DIRECTORY_DNS__ZONE__NEGATIVE_TTL", "4"),
        ("TINCAN_DIRECTORY_DNS__ROLLOVER__PROPAGATION_DELAY", "2"),
        ("TINCAN_DIRECTORY_DNS__ROLLOVER__CHECK_INTERVAL", "1"),
    ]);
    let numbers = [("+442079460001", "alice")];
    let (d, _token, knot, anchor) = online_signing_edge(dir.path(), &env, knot_addr, &secret, &numbers).await;
    let name = owner("+442079460001");
    let old_zsk = rrsig_tags(knot.addr, &name, "NAPTR");
    assert_eq!(old_zsk.len(), 1);

    // The rollover starts; the operator exports and imports once, and has knotd reload.
    let out = crate::harness::cli(dir.path(), &["keys", "roll", "zsk"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conf = knot.dir().join("knot.conf");
    let import = export_keys(dir.path()).join("import.sh");
    tools::run_ok(tools::command("sh").arg(&import).arg("-c").arg(&conf)).unwrap();
    // Online signing loads its keys when the module starts: a reload (not `zone-keys-load`, which is for zones
    // Knot signs itself) picks up the new key and the timers.
    let reload = || tools::run_ok(tools::command("knotc").arg("-c").arg(&conf).arg("reload")).unwrap();
    reload();
    let dnskeys = |server| dig(server, &["+short", APEX, "DNSKEY"]).lines().filter(|l| !l.is_empty()).count();
    wait_until("Knot publishes the new ZSK", Duration::from_secs(10), || {
        let n = dnskeys(knot.addr);
        (n != 3).then(|| format!("{n} DNSKEY\n{}", knot.log_tail(20)))
    })
    .await;
    let out = delv(knot.addr, &anchor, &name, "NAPTR");
    assert!(out.contains("; fully validated"), "published: {out}");

    // Knot 3.2's online signing takes the keys' states when the module starts and does not act on a timer passing
    // by itself (observed: a key stays "public" past its `active` timer): at each step the operator exports,
    // imports (updating the timers of the keys Knot holds, deleting those that left) and reloads.
    let step = || {
        let import = export_keys(dir.path()).join("import.sh");
        tools::run_ok(tools::command("sh").arg(&import).arg("-c").arg(&conf)).unwrap();
        reload();
    };
    wait_until("Knot signs with the new ZSK", Duration::from_secs(30), || {
        step();
        let tags = rrsig_tags(knot.addr, &name, "NAPTR");
        (tags.is_empty() || tags == old_zsk).then(|| format!("{tags:?}\n{}", knot.log_tail(20)))
    })
    .await;
    assert_eq!(dnskeys(knot.addr), 3, "the old ZSK stays published while signatures by it are cached");
    let out = delv(knot.addr, &anchor, &name, "NAPTR");
    assert!(out.contains("; fully validated"), "new ZSK active: {out}");
    wait_until("Knot removes the old ZSK", Duration::from_secs(30), || {
        step();
        let n = dnskeys(knot.addr);
        (n != 2).then(|| format!("{n} DNSKEY\n{}", knot.log_tail(20)))
    })
    .await;
    let out = delv(knot.addr, &anchor, &name, "NAPTR");
    assert!(out.contains("; fully validated"), "old ZSK removed: {out}");
    let out = delv(knot.addr, &anchor, &owner("+442079460002"), "NAPTR");
    assert!(out.contains("; negative response, fully validated"), "{out}");
    // Knot's keys are the directory's: the same DNSKEY set on both sides.
    let sorted = |server| {
        let mut v: Vec<String> = dig(server, &["+short", APEX, "DNSKEY"]).lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    wait_until("the directory publishes the same DNSKEY set", Duration::from_secs(10), || {
        (sorted(knot.addr) != sorted(d.dns)).then(|| format!("{:?} vs {:?}", sorted(knot.addr), sorted(d.dns)))
    })
    .await;
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
