//! The client's trust decisions through the real binary and the real chain: a directory whose transparency log
//! does not back its answer (a record the log never saw, a log that forked for this client) is reported with
//! exit 3 and a `--json` code and nothing is sent; an unsigned answer (the apex DNSKEY stripped on the wire,
//! `--allow-insecure`) is never "verified"; a number that moved to another provider by a logged port shows as
//! `moved`, not as a key change, until the next check verifies the new key.

use crate::acceptance::{sign_up, tincan, tincan_via, whois_verified};
use crate::chain::Chain;
use crate::cli::{err, json, out};
use crate::log_proxy::LogMode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tincan_testkit::directory::TamperProxy;
use tincan_translog::TreeHeadSigner;

/// Numbers of this file (apart from the acceptance test's).
const A_NUM: &str = "+442079460301";
const B_NUM: &str = "+442079460302";
const C_NUM: &str = "+442079460303";
const D_NUM: &str = "+442079460304";
const E_NUM: &str = "+442079460305";
const F_NUM: &str = "+442079460306";
const G_NUM: &str = "+442079460307";
/// A number no test answers for (the DNS proxy needs one to tamper with).
const UNUSED: &str = "+442079460399";

/// Asserts a refused `whois`/`send`: exit 3, the JSON error `code`, and no key status anywhere in the output.
fn refused(o: &std::process::Output, code: &str) {
    assert_eq!(o.status.code(), Some(3), "{}\n{}", out(o), err(o));
    let v = json(o);
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v.get("key_status").is_none(), "{v}");
}

/// Two numbers signed up through the CLI, each with its data dir; the second one's master key.
fn two_signed_up(chain: &Chain, a: &str, b: &str) -> anyhow::Result<(TempDir, TempDir, String)> {
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    sign_up(chain, da.path(), a);
    let vb = sign_up(chain, db.path(), b);
    let kb = vb["master_key"].as_str().expect("the second number's key").to_owned();
    Ok((da, db, kb))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_not_in_the_log_and_a_forked_log_are_reported_and_never_verified() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(UNUSED).await? else { return Ok(()) };
    let (da, db, kb) = two_signed_up(&chain, A_NUM, B_NUM)?;
    let (da, db) = (da.path(), db.path());

    // An honest log: B is verified, and A keeps the log's tree head.
    whois_verified(&chain, da, B_NUM).await;

    // The directory keeps serving B's record in DNS, but its log has no entry for it.
    chain.log.set_mode(LogMode::Unlogged(B_NUM.into()));
    refused(&tincan(&chain, da, &["--json", "whois", B_NUM]), "not_in_log");
    let o = tincan(&chain, da, &["whois", B_NUM]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        err(&o).contains("not backed by its transparency log") && err(&o).contains("no entry in the log"),
        "{}",
        err(&o)
    );
    assert!(!out(&o).contains("verified"), "{}", out(&o));
    refused(&tincan(&chain, da, &["--json", "send", B_NUM, "unlogged"]), "not_in_log");

    // Honest again: consistent with the head seen before, verified.
    chain.log.set_mode(LogMode::Honest);
    let o = tincan(&chain, da, &["--json", "whois", B_NUM]);
    assert_eq!(json(&o)["key_status"], json!({"status": "verified", "key": kb}), "{}", err(&o));

    // The operator forks the log for A: every proof and signature verifies, the record matches DNS, but the tree
    // does not extend the one A saw.
    let signer = TreeHeadSigner::from_seed(&chain.directory.log_signing_seed().await?);
    chain.log.set_mode(LogMode::Fork(signer));
    let o = tincan(&chain, da, &["--json", "whois", B_NUM]);
    refused(&o, "log_forked");
    assert!(json(&o)["error"]["message"].as_str().unwrap().contains("the log forked"), "{}", out(&o));
    refused(&tincan(&chain, da, &["--json", "send", B_NUM, "forked"]), "log_forked");

    // Honest again: A kept the honest head, not the forked one, so this is consistent and goes through.
    chain.log.set_mode(LogMode::Honest);
    let o = tincan(&chain, da, &["--json", "send", B_NUM, "honest"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(json(&o)["key_status"]["status"], "verified");

    // B received only that one: nothing was sent while the log did not back the answer.
    let o = tincan(&chain, db, &["--json", "chat", A_NUM]);
    assert!(o.status.success(), "{}", err(&o));
    let bodies: Vec<String> = out(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["message"]["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bodies, ["honest"], "{}", out(&o));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_answer_is_never_verified_even_with_allow_insecure() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(UNUSED).await? else { return Ok(()) };
    let (dc, _dd, kd) = two_signed_up(&chain, C_NUM, D_NUM)?;
    let dc = dc.path();

    // A man-in-the-middle strips the apex DNSKEY: with --allow-insecure every answer is accepted unsigned. Wait
    // until D's record carries the key (the extension's writes reach DNS asynchronously).
    let stripper = TamperProxy::strip_keys(chain.directory.dns).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let o = tincan_via(&chain, stripper.addr, dc, &["--allow-insecure", "--json", "whois", D_NUM]);
        assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
        let v = json(&o);
        if v["route"]["key"] == kd.as_str() {
            break v;
        }
        assert!(Instant::now() < deadline, "no key for {D_NUM} after 30 s: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The keys match, but the answer is not signed: not verified, and nothing recorded as verified.
    assert_eq!(v["route"]["validation"], "insecure", "{v}");
    assert_eq!(v["key_status"], json!({"status": "insecure_answer"}), "{v}");
    let o = tincan_via(&chain, stripper.addr, dc, &["--allow-insecure", "whois", D_NUM]);
    assert!(out(&o).contains("not verified: the directory's answer is not DNSSEC-validated"), "{}", out(&o));
    let o = tincan(&chain, dc, &["--json", "contacts", "list"]);
    assert_eq!(json(&o), json!([]), "{}", out(&o));
    // Without the flag the stripped answer is refused outright.
    let o = tincan_via(&chain, stripper.addr, dc, &["--json", "whois", D_NUM]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(json(&o).get("key_status").is_none());

    // The same keys through the signed answer: verified.
    let o = tincan(&chain, dc, &["--json", "whois", D_NUM]);
    assert_eq!(json(&o)["key_status"], json!({"status": "verified", "key": kd}), "{}", err(&o));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_number_that_was_ported_shows_as_moved_then_verifies_the_new_key() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(UNUSED).await? else { return Ok(()) };
    // E verified F's number; G signs up with a number of its own, its account about to gain F's number.
    let (de, _df, kf) = two_signed_up(&chain, E_NUM, F_NUM)?;
    let de = de.path();
    let before = whois_verified(&chain, de, F_NUM).await;
    let old_user = before["user_id"].as_str().expect("F's Matrix ID").to_owned();
    let dg = tempfile::tempdir()?;
    let vg = sign_up(&chain, dg.path(), G_NUM);
    let (new_user, kg) = (vg["user_id"].as_str().unwrap().to_owned(), vg["master_key"].as_str().unwrap().to_owned());

    // Another provider ports F's number to G's account and key; the extension's provider releases it (what its
    // extension does for an unlocked number with `porting.unlocked = "release"`).
    let other = chain.directory.add_provider_with("other", &["+44"], &["--shared"])?;
    let http = reqwest::Client::new();
    let body = json!({
        "number": F_NUM,
        "services": [{"type": "matrix", "uri": Chain::matrix_uri(&new_user)}],
        "ed25519": kg,
    });
    let r = http.post(format!("{}/v1/ports", chain.directory.api)).bearer_auth(&other.token).json(&body).send().await?;
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<Value>().await?["id"].as_i64().unwrap();
    let r = http
        .post(format!("{}/v1/ports/{id}/release", chain.directory.api))
        .bearer_auth(&chain.registrar.token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await?);

    // E looks F's number up again: moved, backed by the log's port entry — not verified, not a key change.
    let deadline = Instant::now() + Duration::from_secs(30);
    let moved = loop {
        let o = tincan(&chain, de, &["--json", "whois", F_NUM]);
        assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
        let v = json(&o);
        if v["user_id"] == new_user.as_str() {
            break v;
        }
        assert!(Instant::now() < deadline, "the port is not in DNS after 30 s: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected = json!({
        "status": "moved",
        "previous_user": old_user,
        "previous_key": kf,
        "from": "tincan",
        "to": "other",
        "key": kg,
    });
    assert_eq!(moved["key_status"], expected, "{moved}");
    // The re-check verifies the new key; the old Matrix ID no longer holds the number in E's contacts.
    let o = tincan(&chain, de, &["--json", "whois", F_NUM]);
    assert_eq!(json(&o)["key_status"], json!({"status": "verified", "key": kg}), "{}", err(&o));
    let o = tincan(&chain, de, &["--json", "contacts", "list"]);
    let listed: Vec<String> =
        json(&o).as_array().unwrap().iter().map(|c| c["user_id"].as_str().unwrap().to_owned()).collect();
    assert!(listed.contains(&new_user) && !listed.contains(&old_user), "{listed:?}");
    Ok(())
}
