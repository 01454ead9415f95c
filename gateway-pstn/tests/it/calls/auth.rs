//! Carrier trunks that ask for digest credentials (401 + `WWW-Authenticate`): sipp plays the carrier, checks
//! MD5 answers itself (`verifyauth`) and, for SHA-256 (RFC 8760), records the answer for the test to recompute.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tincan_testkit::sip::{Scenario, finished};

use super::{
    CALLER_HANGS_UP, CALLER_REFUSED, CARRIER_ANSWERS, NUMBER, Rig, Trunk, amount, carrier, got_invite, messages, trunk,
};

const CARRIER_AUTHENTICATES: &str = include_str!("../../scenarios/carrier_authenticates.xml");
const CARRIER_AUTHENTICATES_SHA256: &str = include_str!("../../scenarios/carrier_authenticates_sha256.xml");

/// Test fixture only: the password the sipp carriers expect.
const PASSWORD: &str = "fixture-trunk-password";

/// The cheap carrier's trunk, with credentials: the username in the config file, the password from a
/// `*_FILE` secret (see [`password_env`]).
fn cheap_with_auth() -> Trunk {
    let mut t = trunk("cheap", "0.004");
    t.settings = "[calls.trunks.cheap.auth]\nusername = \"gw\"\n";
    t
}

/// The gateway's environment giving `trunk`'s password from a file in `dir`.
fn password_env(dir: &Path, trunk: &str, password: &str) -> (String, String) {
    let file = dir.join(format!("{trunk}.password"));
    std::fs::write(&file, format!("{password}\n")).unwrap();
    (
        format!("TINCAN_GATEWAY_CALLS__TRUNKS__{}__AUTH__PASSWORD_FILE", trunk.to_ascii_uppercase()),
        file.to_str().unwrap().to_owned(),
    )
}

async fn rig(trunks: &[&Trunk], passwords: &[(&str, &str)], secrets: &Path) -> Rig {
    let env = passwords.iter().map(|(t, p)| password_env(secrets, t, p)).collect();
    Rig::start_with_env(trunks, "10.00", 60, None, "", env).await
}

/// A sipp trunk's message log, lines ending in `\n`.
fn log_of(dir: &Path) -> String {
    messages(dir).replace("\r\n", "\n")
}

/// The INVITEs in a message log from [`log_of`], each as its lines (the first is the rest of the request line,
/// after `INVITE sip:`).
fn invites(log: &str) -> Vec<Vec<&str>> {
    log.split("INVITE sip:").skip(1).map(|m| m.split("\n\n").next().unwrap_or("").lines().collect()).collect()
}

fn header<'a>(message: &[&'a str], name: &str) -> Option<&'a str> {
    message.iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn cseq(message: &[&str]) -> u32 {
    header(message, "CSeq").and_then(|v| v.split_whitespace().next()).unwrap().parse().unwrap()
}

/// `name="value"` or `name=value` of a digest header.
fn param<'a>(h: &'a str, name: &str) -> &'a str {
    let at = h.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in {h}")) + name.len() + 1;
    let rest = &h[at..];
    match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"').unwrap()],
        None => rest.split([',', ' ']).next().unwrap(),
    }
}

fn carrier_with_password(t: &Trunk, name: &str, password: &str) -> (Scenario, tincan_testkit::ChildGuard) {
    carrier(t, name, &CARRIER_AUTHENTICATES.replace("PASSWORD", password))
}

#[tokio::test]
async fn a_trunk_that_challenges_gets_md5_credentials_on_the_same_call_id_and_carries_the_call() {
    let secrets = tempfile::tempdir().unwrap();
    let a = cheap_with_auth();
    let rig = rig(&[&a], &[("cheap", PASSWORD)], secrets.path()).await;
    let (sa, trunk_a) = carrier_with_password(&a, "trunk-a", PASSWORD);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, NUMBER, 1000).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "sipp's verifyauth took the credentials");
    let log = log_of(sa.dir());
    let inv = invites(&log);
    assert_eq!(inv.len(), 2, "{log}");
    assert!(header(&inv[0], "Authorization").is_none());
    let auth = header(&inv[1], "Authorization").unwrap_or_else(|| panic!("{log}"));
    assert_eq!(param(auth, "username"), "gw");
    assert_eq!(param(auth, "algorithm"), "MD5");
    assert_eq!(header(&inv[0], "Call-ID"), header(&inv[1], "Call-ID"), "the retry keeps the Call-ID");
    assert!(cseq(&inv[1]) > cseq(&inv[0]), "the retry's CSeq is higher: {log}");
    assert!(!log.contains(PASSWORD) && !rig.log().contains(PASSWORD), "the password never goes out nor into logs");
    let cdrs = rig.settled(1).await;
    assert_eq!(cdrs[0]["carrier"], "cheap", "{cdrs:?}");
    assert_eq!(amount(&cdrs[0]["charged"]), "0.01");
}

#[tokio::test]
async fn a_wrong_password_fails_over_to_the_next_carrier() {
    let secrets = tempfile::tempdir().unwrap();
    let (a, b) = (cheap_with_auth(), trunk("dear", "0.009"));
    let rig = rig(&[&a, &b], &[("cheap", "not-the-password")], secrets.path()).await;
    let (sa, trunk_a) = carrier_with_password(&a, "trunk-a", PASSWORD);
    let (_sb, trunk_b) = carrier(&b, "trunk-b", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, NUMBER, 1000).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the cheap carrier challenged twice");
    assert!(finished(trunk_b, Duration::from_secs(10)).await, "the dear carrier carried the call");
    // One answer to the first challenge, none to the second: the wrong password is not tried again.
    assert_eq!(invites(&log_of(sa.dir())).len(), 2);
    let cdrs = rig.settled(1).await;
    assert_eq!(cdrs[0]["carrier"], "dear", "{cdrs:?}");
    assert_eq!(amount(&cdrs[0]["charged"]), "0.01");
}

#[tokio::test]
async fn a_wrong_password_on_the_only_carrier_fails_the_call_and_releases_the_hold() {
    let secrets = tempfile::tempdir().unwrap();
    let a = cheap_with_auth();
    let rig = rig(&[&a], &[("cheap", "not-the-password")], secrets.path()).await;
    let (_sa, trunk_a) = carrier_with_password(&a, "trunk-a", PASSWORD);
    // The caller is not asked for credentials it could not give: the gateway answers 503, not the 401.
    let caller = Scenario::new("caller", &CALLER_REFUSED.replace("EXPECTED", "503")).unwrap();
    rig.call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    let acct = rig.account().await;
    assert_eq!(amount(&acct["held"]), "0.00", "the hold was released");
    assert_eq!(amount(&acct["balance"]), "10.00");
    assert!(rig.cdrs().await.is_empty());
}

#[tokio::test]
async fn a_trunk_without_credentials_that_challenges_is_failed_over() {
    let (a, b) = (trunk("cheap", "0.004"), trunk("dear", "0.009"));
    let rig = Rig::start(&[&a, &b], "10.00", 60).await;
    let (sa, trunk_a) = carrier_with_password(&a, "trunk-a", PASSWORD);
    let (sb, trunk_b) = carrier(&b, "trunk-b", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, NUMBER, 500).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_b, Duration::from_secs(10)).await);
    assert!(got_invite(sb.dir()));
    assert_eq!(invites(&log_of(sa.dir())).len(), 1, "no credentials, no retry");
    drop(trunk_a);
}

#[tokio::test]
async fn a_sha256_challenge_offered_first_is_answered_with_sha256() {
    let secrets = tempfile::tempdir().unwrap();
    let a = cheap_with_auth();
    let rig = rig(&[&a], &[("cheap", PASSWORD)], secrets.path()).await;
    let (sa, trunk_a) = carrier(&a, "trunk-a", CARRIER_AUTHENTICATES_SHA256);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, NUMBER, 500).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the carrier saw algorithm=SHA-256");
    let log = log_of(sa.dir());
    let inv = invites(&log);
    let auth = header(&inv[1], "Authorization").unwrap_or_else(|| panic!("{log}"));
    // RFC 8760 / RFC 7616 §3.4.1 with qop=auth, recomputed here from what went on the wire.
    let h = |s: String| hex::encode(Sha256::digest(s.as_bytes()));
    let ha1 = h(format!("gw:{}:{PASSWORD}", param(auth, "realm")));
    let ha2 = h(format!("INVITE:{}", param(auth, "uri")));
    let expected =
        h(format!("{ha1}:{}:{}:{}:auth:{ha2}", param(auth, "nonce"), param(auth, "nc"), param(auth, "cnonce")));
    assert_eq!(param(auth, "response"), expected, "{auth}");
    assert_eq!(param(auth, "qop"), "auth");
    // The digest-uri is the Request-URI of the INVITE it authorizes.
    let request_uri = format!("sip:{}", inv[1][0].split_whitespace().next().unwrap());
    assert_eq!(param(auth, "uri"), request_uri);
    assert_eq!(rig.settled(1).await.len(), 1);
}

#[test]
fn the_trunk_password_is_redacted_in_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[calls]\nlisten_udp = \"127.0.0.1:5999\"\ntrusted_peers = [\"127.0.0.1\"]\n\
         [calls.trunks.cheap]\naddress = \"127.0.0.1:5998\"\n[calls.trunks.cheap.auth]\nusername = \"gw\"\n",
    )
    .unwrap();
    let (k, v) = password_env(dir.path(), "cheap", PASSWORD);
    let out = crate::harness::cli(dir.path(), &["--config", config.to_str().unwrap(), "config", "check"], &[(&k, &v)]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("username = \"gw\"") && text.contains("[redacted]"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    // Without the password the config is refused, naming the key.
    let out = crate::harness::cli(dir.path(), &["--config", config.to_str().unwrap(), "config", "check"], &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && text.contains("calls.trunks.cheap.auth"), "{text}");
}
