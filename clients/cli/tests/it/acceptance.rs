//! The acceptance path through the real binary (sign-up through the extension excepted: accounts come
//! from Synapse's admin API here): verified through the directory with no manual step, "hi" delivered
//! decrypted, a wrong directory key warned about and nothing sent, a number not on Matrix named with its
//! route, a tampered answer a validation error, and the state surviving restarts (every command is a new
//! process).

use crate::cli::{err, json, out, tincan};
use crate::dns::{Directory, Entry};
use serde_json::Value;
use std::path::Path;
use tincan_enum_core::MasterKey;
use tincan_testkit::{RegisteredUser, Synapse};

const A_NUM: &str = "+442079460201";
const B_NUM: &str = "+442079460202";
const WRONG_KEY_NUM: &str = "+442079460203";
const SIP_NUM: &str = "+442079460204";
const TAMPERED_NUM: &str = "+442079460205";
const NOBODY: &str = "+442079460299";

fn login(hs: &Synapse, data: &Path, u: &RegisteredUser) -> MasterKey {
    let o = tincan(
        data,
        &[
            "--json",
            "login-token",
            "--homeserver",
            &hs.url(),
            "--user-id",
            &u.user_id,
            "--device-id",
            &u.device_id,
            "--access-token",
            &u.access_token,
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    MasterKey::from_base64(json(&o)["master_key"].as_str().expect("a master key")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_by_number_through_the_cli() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let (ua, ub) = (hs.register_user("alice", false).await?, hs.register_user("bob", false).await?);
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let ka = login(&hs, da.path(), &ua);
    let kb = login(&hs, db.path(), &ub);
    let mut wrong = [0x66u8; 32];
    wrong[0] = 0x58;
    let dir = Directory::serve(
        &[
            Entry::matrix(A_NUM, &ua.user_id, Some(ka)),
            Entry::matrix(B_NUM, &ub.user_id, Some(kb)),
            Entry::matrix(WRONG_KEY_NUM, &ub.user_id, Some(MasterKey::from_bytes(wrong)?)),
            Entry::sip(SIP_NUM, "sip:+442079460204@sip.test"),
            Entry::matrix(TAMPERED_NUM, &ua.user_id, Some(ka)),
        ],
        Some(TAMPERED_NUM),
    )
    .await?;
    let anchor = dir.anchor_file()?;
    let addr = dir.addr.to_string();
    let with_dir = |data: &Path, args: &[&str]| {
        let mut all = vec!["--dns", addr.as_str(), "--trust-anchor", anchor.to_str().unwrap()];
        all.extend_from_slice(args);
        tincan(data, &all)
    };

    // whois: verified through the directory, both ways, no manual step.
    let o = with_dir(da.path(), &["whois", B_NUM]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains(&ub.user_id) && out(&o).contains("fully validated"), "{}", out(&o));
    assert!(out(&o).contains("verified through the directory"), "{}", out(&o));
    let o = with_dir(db.path(), &["--json", "whois", A_NUM]);
    assert_eq!(json(&o)["key_status"]["status"], "verified", "{}", out(&o));

    // send by number; B reads it in `chat` (history, then stdin closes).
    let o = with_dir(da.path(), &["send", B_NUM, "hi"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("verified"), "{}", out(&o));
    let o = with_dir(db.path(), &["--json", "chat", A_NUM]);
    assert!(o.status.success(), "{}", err(&o));
    let lines: Vec<Value> = out(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let hi = lines
        .iter()
        .find_map(|l| l.get("message").filter(|m| m["body"] == "hi"))
        .unwrap_or_else(|| panic!("hi in B's chat:\n{}\n{}", out(&o), err(&o)));
    assert_eq!(hi["encrypted"], true);
    assert_eq!(hi["sender"], ua.user_id.as_str());

    // A directory key that is not the contact's: warned before sending, nothing sent.
    let o = with_dir(da.path(), &["whois", WRONG_KEY_NUM]);
    assert!(out(&o).contains("NOT VERIFIED"), "{}", out(&o));
    let o = with_dir(da.path(), &["send", WRONG_KEY_NUM, "secret"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("WARNING") && err(&o).contains("NOT sent"), "{}", err(&o));

    // Not on Matrix: said so, with the route.
    let o = with_dir(da.path(), &["send", SIP_NUM, "hello"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("not reachable on the network yet") && err(&o).contains("sip:+442079460204@sip.test"));
    let o = with_dir(da.path(), &["--json", "whois", NOBODY]);
    assert_eq!(json(&o)["route"]["kind"], "none");

    // Tampered answer: a validation error, never a route.
    let o = with_dir(da.path(), &["--json", "whois", TAMPERED_NUM]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"]["code"], "dnssec_validation_failed", "{}", out(&o));
    assert!(!out(&o).contains(&ua.user_id));

    // Restarts keep the session and the verified contacts.
    let o = tincan(da.path(), &["--json", "status"]);
    assert_eq!(json(&o)["user_id"], ua.user_id.as_str());
    let o = tincan(da.path(), &["--json", "contacts", "list"]);
    let list = json(&o);
    assert!(list.as_array().unwrap().iter().any(|r| r["user_id"] == ub.user_id.as_str()), "{list}");
    Ok(())
}
