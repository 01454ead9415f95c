//! The acceptance through the real binary and the real chain (Synapse + `tincan-ext` + `tincan-directory`
//! behind a tampering DNS proxy, see the core's `chain.rs`): two numbers sign up with `register`/`verify`; each
//! sees the other verified through the directory with no manual step; "hi" is delivered decrypted; a wrong
//! directory key is warned about and nothing is sent; a number not on Matrix is named with its route; a tampered
//! answer is a validation error, never a route; `contacts import` finds who is on the network through the
//! extension's Identity Service; and the state survives restarts (every command is a new process).

use crate::chain::Chain;
use crate::cli::{err, json, out};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tincan_client_core::MasterKey;

const A_NUM: &str = "+442079460201";
const B_NUM: &str = "+442079460202";
const WRONG_KEY_NUM: &str = "+442079460203";
const SIP_NUM: &str = "+442079460204";
const TAMPERED_NUM: &str = "+442079460205";
const NOBODY: &str = "+442079460299";

/// `tincan --data-dir DATA --ext … --dns PROXY --trust-anchor FILE --log-url … --log-key … ARGS…`, no stdin.
pub(crate) fn tincan(chain: &Chain, data: &Path, args: &[&str]) -> Output {
    tincan_via(chain, chain.proxy.addr, data, args)
}

/// [`tincan`] with `dns` as the DNS server.
pub(crate) fn tincan_via(chain: &Chain, dns: SocketAddr, data: &Path, args: &[&str]) -> Output {
    command(chain, dns, data, args).stdin(Stdio::null()).output().expect("tincan runs")
}

/// The `tincan` command of [`tincan_via`], stdin and stdout left to the caller.
pub(crate) fn command(chain: &Chain, dns: SocketAddr, data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tincan"));
    cmd.arg("--data-dir")
        .arg(data)
        .args(["--ext", &chain.ext.url, "--dns", &dns.to_string(), "--trust-anchor"])
        .arg(&chain.anchor_file)
        .args(["--log-url", &chain.log.url, "--log-key", &chain.log_key])
        .args(args)
        .env_remove("TINCAN_CLI_EXT_URL")
        .env_remove("TINCAN_CLI_DNS")
        .env_remove("TINCAN_CLI_TRUST_ANCHOR")
        .env_remove("TINCAN_CLI_LOG_URL")
        .env_remove("TINCAN_CLI_LOG_KEY")
        .env_remove("TINCAN_CLI_KEY_FILE");
    cmd
}

/// `register` then `verify` with the SMS code; the `verify` JSON.
pub(crate) fn sign_up(chain: &Chain, data: &Path, number: &str) -> Value {
    let o = tincan(chain, data, &["register", number]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("tincan verify CODE"), "{}", out(&o));
    let code = chain.ext.code(number).expect("an SMS code");
    let o = tincan(chain, data, &["--json", "verify", &code]);
    assert!(o.status.success(), "{}\n{}", err(&o), chain.ext.log_tail(20));
    json(&o)
}

/// `whois --json` until the key status is `verified` (the extension's writes reach DNS asynchronously).
pub(crate) async fn whois_verified(chain: &Chain, data: &Path, number: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = tincan(chain, data, &["--json", "whois", number]);
        if o.status.success() && json(&o)["key_status"]["status"] == "verified" {
            return json(&o);
        }
        assert!(Instant::now() < deadline, "{number} not verified after 30 s: {}\n{}", out(&o), err(&o));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_numbers_through_the_cli_and_the_real_directory() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(TAMPERED_NUM).await? else { return Ok(()) };
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (da, db) = (da.path(), db.path());

    // Sign-up: a wrong code is refused, the right one signs in and publishes the key for the number.
    let o = tincan(&chain, da, &["register", A_NUM]);
    assert!(o.status.success(), "{}", err(&o));
    let o = tincan(&chain, da, &["verify", "000000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("the extension refused"), "{}", err(&o));
    let code = chain.ext.code(A_NUM)?;
    let o = tincan(&chain, da, &["--json", "verify", &code]);
    assert!(o.status.success(), "{}", err(&o));
    let va = json(&o);
    assert_eq!(va["new_account"], true);
    assert_eq!(va["published_for"], json!([A_NUM]));
    let vb = sign_up(&chain, db, B_NUM);
    assert_eq!(vb["published_for"], json!([B_NUM]));
    let (ua, ub) = (va["user_id"].as_str().unwrap().to_owned(), vb["user_id"].as_str().unwrap().to_owned());
    let kb = MasterKey::from_base64(vb["master_key"].as_str().expect("B's master key"))?;

    // The provider's own records: a wrong key for B's account, a SIP-only number, A's account under a number
    // whose answers the proxy tampers with.
    let mut wrong = [0x66u8; 32];
    wrong[0] = 0x58;
    chain.registrar.put_number(WRONG_KEY_NUM, &[("matrix", &Chain::matrix_uri(&ub))]).await?;
    chain.registrar.put_key(WRONG_KEY_NUM, &MasterKey::from_bytes(wrong)?.to_base64()).await?;
    chain.registrar.put_number(SIP_NUM, &[("sip", "sip:+442079460204@sip.test")]).await?;
    chain.registrar.put_number(TAMPERED_NUM, &[("matrix", &Chain::matrix_uri(&ua))]).await?;
    chain.registrar.put_key(TAMPERED_NUM, va["master_key"].as_str().unwrap()).await?;

    // whois: verified through the directory, both ways, no manual step.
    whois_verified(&chain, da, B_NUM).await;
    whois_verified(&chain, db, A_NUM).await;
    let o = tincan(&chain, da, &["whois", B_NUM]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains(&ub) && out(&o).contains("fully validated"), "{}", out(&o));
    assert!(out(&o).contains("verified through the directory"), "{}", out(&o));

    // send by number, to a verified contact; B reads it in `chat` (history, then stdin closes).
    let o = tincan(&chain, da, &["--json", "send", B_NUM, "hi"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(json(&o)["key_status"], json!({"status": "verified", "key": kb.to_base64()}), "{}", out(&o));
    assert_eq!(json(&o)["user_id"], ub.as_str());
    let o = tincan(&chain, db, &["--json", "chat", A_NUM]);
    assert!(o.status.success(), "{}", err(&o));
    let lines: Vec<Value> = out(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let hi = lines
        .iter()
        .find_map(|l| l.get("message").filter(|m| m["body"] == "hi"))
        .unwrap_or_else(|| panic!("hi in B's chat:\n{}\n{}", out(&o), err(&o)));
    assert_eq!(hi["encrypted"], true);
    assert_eq!(hi["sender"], ua.as_str());
    assert_eq!(hi["sender_number"], A_NUM);

    // A directory key that is not the contact's: warned before sending, nothing sent.
    let o = tincan(&chain, da, &["whois", WRONG_KEY_NUM]);
    assert!(out(&o).contains("NOT VERIFIED"), "{}", out(&o));
    let o = tincan(&chain, da, &["send", WRONG_KEY_NUM, "secret"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("WARNING") && err(&o).contains("NOT sent"), "{}", err(&o));

    // Not on Matrix: said so, with the route found.
    let o = tincan(&chain, da, &["send", SIP_NUM, "hello"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not reachable on the network yet"), "{}", err(&o));
    assert!(err(&o).contains("SIP sip:+442079460204@sip.test"), "{}", err(&o));
    let o = tincan(&chain, da, &["whois", SIP_NUM]);
    assert!(out(&o).contains("SIP sip:+442079460204@sip.test (DNSSEC: fully validated)"), "{}", out(&o));
    assert!(out(&o).contains("not reachable on the network yet"), "{}", out(&o));
    let o = tincan(&chain, da, &["--json", "whois", NOBODY]);
    assert_eq!(json(&o)["route"]["kind"], "none");
    let o = tincan(&chain, da, &["send", NOBODY, "hello"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("none (not in the directory)"), "{}", err(&o));
    // No bridge serves it either (this chain has none): chat says so too, and opens nothing.
    for args in [&["send", NOBODY, "hello"][..], &["chat", NOBODY]] {
        let o = tincan(&chain, da, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains("no bridge of the provider reaches the number"), "{args:?}: {}", err(&o));
    }

    // Tampered answer: a validation error, never a route.
    let o = tincan(&chain, da, &["--json", "whois", TAMPERED_NUM]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"]["code"], "dnssec_validation_failed", "{}", out(&o));
    assert!(!out(&o).contains(&ua), "{}", out(&o));
    let o = tincan(&chain, da, &["whois", TAMPERED_NUM]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("DNSSEC validation failed, no route shown"), "{}", err(&o));
    assert!(out(&o).is_empty() && !err(&o).contains(&ua), "{}{}", out(&o), err(&o));

    // Contact import (vCard) through the Identity Service: B is found, the others are reported as not on it.
    let vcf = da.join("contacts.vcf");
    std::fs::write(
        &vcf,
        format!(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bob\r\nTEL;TYPE=cell:{B_NUM}\r\nEND:VCARD\r\n\
             BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Nobody\r\nTEL:{NOBODY}\r\nTEL:{SIP_NUM}\r\nTEL:12\r\nEND:VCARD\r\n"
        ),
    )?;
    let o = tincan(&chain, da, &["contacts", "import", vcf.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("1 of 3 numbers are on the network"), "{}", out(&o));
    assert!(out(&o).contains(&format!("{B_NUM}  {ub}")), "{}", out(&o));
    assert!(out(&o).contains(&format!("{NOBODY}  not on the network")), "{}", out(&o));
    assert!(err(&o).contains("looking up 3/3") && err(&o).contains("skipped (not an international number): 12"));
    let o = tincan(&chain, da, &["--json", "contacts", "import", vcf.to_str().unwrap()]);
    let v = json(&o);
    assert_eq!(v["found"], json!([{"number": B_NUM, "user_id": ub}]), "{v}");
    assert_eq!(v["not_found"], json!([NOBODY, SIP_NUM]), "{v}");

    // Restarts keep the session and the verified contacts.
    let o = tincan(&chain, da, &["--json", "status"]);
    assert_eq!(json(&o)["user_id"], ua.as_str());
    assert_eq!(json(&o)["number"], A_NUM);
    let o = tincan(&chain, da, &["--json", "contacts", "list"]);
    let list = json(&o);
    let b_rec = list.as_array().unwrap().iter().find(|r| r["user_id"] == ub.as_str());
    assert_eq!(b_rec.map(|r| r["key"].clone()), Some(json!(kb.to_base64())), "{list}");
    let o = tincan(&chain, da, &["--json", "whois", B_NUM]);
    assert_eq!(json(&o)["key_status"], json!({"status": "verified", "key": kb.to_base64()}));
    Ok(())
}
