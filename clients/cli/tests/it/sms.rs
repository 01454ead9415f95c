//! The SMS fall-back end to end, through the real `tincan` binary and real peers: the chain (Synapse,
//! `tincan-ext`, the directory) with the `tincan-sms` bridge registered (in process, end-to-bridge encryption on)
//! and bound to the smpp34 SMSC peer. A and B sign up. A texts a number the directory does not know: the client
//! finds the bridge's ghost through the homeserver's `m.protocol.pstn` lookup and texts it in an encrypted DM;
//! the SMSC gets the `submit_sm` (GSM 7-bit, from A's number out of the bridge's pool); its delivery receipt
//! makes `--json` say `delivered`; the phone's reply (an MO `deliver_sm`) is read, decrypted, with `tincan chat`.
//! An undeliverable text says `failed` with the carrier's reason (exit 4). B's number, on Matrix, never goes by
//! SMS.

use crate::acceptance::{command, sign_up, tincan, whois_verified};
use crate::chain::Chain;
use crate::cli::{err, out};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_common::{Secret, SystemClock};
use tincan_sms::protocol::gsm7;
use tincan_testkit::smsc::Smsc;

const A_NUM: &str = "+442079460601";
const B_NUM: &str = "+442079460602";
const TAMPERED_NUM: &str = "+442079460605";
/// Not in the directory: reached by SMS.
const PHONE: &str = "+447400123601";
/// Not in the directory, and the carrier cannot deliver to it.
const LOST: &str = "+447400123602";
/// The bridge's pool of sender numbers.
const DIDS: [&str; 2] = ["+447400000601", "+447400000602"];
const AS_TOKEN: &str = "sms-as-token-for-the-client-test";
const HS_TOKEN: &str = "sms-hs-token-for-the-client-test";

fn digits(n: &str) -> &str {
    n.trim_start_matches('+')
}

/// The bridge's configuration: the SMSC peer, the pool, state and crypto stores in `dir`.
fn bridge_config(dir: &std::path::Path, smsc_port: u16) -> tincan_sms::config::Config {
    let port = tincan_testkit::ports::free_port();
    let mut c = tincan_sms::config::Config::default();
    c.homeserver.url = "http://127.0.0.1:9".into();
    c.homeserver.server_name = "hs.test".into();
    c.appservice.id = "tincan-sms".into();
    c.appservice.listen = format!("127.0.0.1:{port}");
    c.appservice.url = format!("http://127.0.0.1:{port}");
    c.appservice.as_token = Secret::new(AS_TOKEN);
    c.appservice.hs_token = Secret::new(HS_TOKEN);
    c.appservice.bot_localpart = "smsbot".into();
    c.database.url = format!("sqlite:{}", dir.join("core.db").display());
    c.sms.database_url = format!("sqlite:{}", dir.join("sms.db").display());
    c.sms.listen = format!("127.0.0.1:{}", tincan_testkit::ports::free_port());
    c.sms.numbers = DIDS.map(String::from).to_vec();
    // End-to-bridge encryption: Tincan's client texts the ghost in no other kind of room.
    c.encryption.enabled = true;
    c.encryption.store_dir = dir.join("crypto").display().to_string();
    c.encryption.store_passphrase = Secret::new("test fixture passphrase");
    c.sms.smsc = vec![tincan_sms::link::SmscConfig {
        name: "peer".into(),
        address: format!("127.0.0.1:{smsc_port}"),
        system_id: "tincan".into(),
        password: Secret::new("pw"),
        window: 10,
        reconnect_min_ms: 100,
        reconnect_max_ms: 500,
        response_timeout_secs: 5,
        ..Default::default()
    }];
    c
}

/// `GET path` on the homeserver as the bridge's ghost `ghost` (the appservice's token).
async fn as_ghost(hs: &str, ghost: &str, path: &str) -> Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{hs}{path}{sep}user_id={}", tincan_testkit::matrix::enc(ghost));
    let r = reqwest::Client::new().get(url).bearer_auth(AS_TOKEN).send().await.expect("homeserver answers");
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// `tincan --json send NUMBER TEXT --wait 60`: exit code and JSON.
fn send(chain: &Chain, data: &std::path::Path, number: &str, text: &str) -> (Option<i32>, Value) {
    let o = tincan(chain, data, &["--json", "send", number, text, "--wait", "60"]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", out(&o), err(&o)));
    (o.status.code(), v)
}

/// `tincan --json chat NUMBER` (history, stdin closed) until a message satisfies `pred`, for at most 60 s.
async fn read_in_chat(chain: &Chain, data: &std::path::Path, number: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = tincan(chain, data, &["--json", "chat", number]);
        assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
        let found = out(&o)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|l| l.get("message").filter(|m| pred(m)).cloned());
        if let Some(m) = found {
            return m;
        }
        assert!(Instant::now() < deadline, "not in the chat with {number} after 60 s:\n{}\n{}", out(&o), err(&o));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A running `tincan --json chat NUMBER --wait 60`: lines typed into it, its JSON lines read as they come.
struct Chat {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Chat {
    fn start(chain: &Chain, data: &std::path::Path, number: &str) -> Chat {
        let mut child = command(chain, chain.proxy.addr, data, &["--json", "chat", number, "--wait", "60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tincan chat runs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"not_json": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Chat { child, stdin, lines, seen: Vec::new() }
    }

    fn say(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("chat open");
        writeln!(stdin, "{text}").and_then(|()| stdin.flush()).expect("chat reads stdin");
    }

    /// The `n`th line (from 1, counting every line the chat printed) that satisfies `pred`, within 60 s. The
    /// chat prints what it hears and the bridge's reports as they come, in no fixed order between the two.
    async fn nth(&mut self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.seen.iter().filter(|l| pred(l)).nth(n - 1) {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) | Err(_) => panic!("no {what} from the chat within 60 s; its lines: {:?}", self.seen),
            }
        }
    }

    /// The first line that satisfies `pred`.
    async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.nth(what, 1, pred).await
    }

    /// The `n`th `sent` line: its event ID.
    async fn sent(&mut self, n: usize) -> String {
        let sent = self.nth("sent line", n, |l| l.get("sent").is_some()).await;
        sent["sent"]["event_id"].as_str().expect("event_id").to_owned()
    }

    /// The `delivery` line of the text `event_id`.
    async fn delivery(&mut self, event_id: &str) -> Value {
        self.expect("delivery line", |l| l["delivery"]["event_id"] == event_id).await["delivery"].clone()
    }

    /// Closes stdin and waits for the chat to end: every line it printed, and its stderr.
    async fn finish(mut self) -> (Vec<Value>, String) {
        drop(self.stdin.take());
        let mut child = self.child;
        let (status, stderr) = tokio::task::spawn_blocking(move || {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            (child.wait().expect("chat ends"), stderr)
        })
        .await
        .expect("waited");
        assert!(status.success(), "{stderr}");
        // The reader ends with stdout.
        while let Some(v) = self.lines.recv().await {
            self.seen.push(v);
        }
        (self.seen, stderr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_off_the_network_is_texted_through_the_sms_bridge_and_its_reply_read_decrypted() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let smsc = Smsc::start().await?;
    smsc.set(json!({"dlr": "tlv", "dlr_state": {digits(LOST): "UNDELIV"}})).await;
    let config = bridge_config(dir.path(), smsc.port);
    let mut core = config.core();
    let tokens = Tokens::from_config(&core).expect("tokens configured");
    let registration = registration_yaml(&core, "sms_", &tokens);
    let Some(chain) = Chain::start_with(TAMPERED_NUM, |b| {
        // Polled syncs must see new receipts, not a cached answer.
        b.appservice(registration).config(json!({"caches": {"sync_response_cache_duration": 0}}))
    })
    .await?
    else {
        return Ok(());
    };
    core.homeserver.url = chain.hs.url();
    let store = tincan_sms::store::open(&config.sms.database_url).await?;
    let sms = tincan_sms::bridge::SmsBridge::new(
        config.sms.clone(),
        "hs.test",
        store,
        Arc::new(tincan_sms::billing::Free),
        Arc::new(SystemClock),
    );
    let bridge = tincan_appservice::Bridge::builder(core).start(Arc::new(sms.clone())).await?;

    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (da, db) = (da.path(), db.path());
    let ua = sign_up(&chain, da, A_NUM)["user_id"].as_str().expect("A's Matrix ID").to_owned();
    sign_up(&chain, db, B_NUM);
    whois_verified(&chain, da, B_NUM).await;

    // Not in the directory: by SMS, through the ghost the homeserver's lookup names; delivered per the receipt.
    let text = "Hello from Tincan {ok} €5";
    let (code, sent) = send(&chain, da, PHONE, text);
    assert_eq!(code, Some(0), "{sent}");
    let ghost = format!("@sms_{PHONE}:hs.test");
    assert_eq!((sent["route"].as_str(), sent["status"].as_str()), (Some("sms"), Some("delivered")), "{sent}");
    assert_eq!((sent["user_id"].as_str(), sent["decision"]["via"].as_str()), (Some(ghost.as_str()), Some("sms")));
    // The SMSC got it: from A's number out of the pool, to the number, GSM 7-bit, the text exactly.
    let submit = smsc.wait_submits(1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(
        (submit["source_addr"].as_str(), submit["destination_addr"].as_str()),
        (Some(digits(DIDS[0])), Some(digits(PHONE)))
    );
    assert_eq!(submit["data_coding"], 0, "{submit}");
    assert_eq!(hex::decode(submit["sm"].as_str().unwrap_or_default())?, gsm7::encode(text)?);
    // The DM is encrypted, and the server holds the text only as ciphertext.
    let room = sent["room_id"].as_str().expect("room").to_owned();
    let room_path = format!("/_matrix/client/v3/rooms/{}", tincan_testkit::matrix::enc(&room));
    let hs = chain.hs.url();
    as_ghost(&hs, &ghost, &format!("{room_path}/state/m.room.encryption/")).await;

    // The phone replies: A reads it decrypted, from the ghost.
    let reply = "Hi A, got it";
    smsc.control(json!({"cmd": "deliver", "source": digits(PHONE), "dest": digits(DIDS[0]),
                        "hex": hex::encode(gsm7::encode(reply)?)}))
        .await?;
    let got = read_in_chat(&chain, da, PHONE, |m| m["body"] == reply).await;
    assert_eq!((got["sender"].as_str(), got["encrypted"].as_bool()), (Some(ghost.as_str()), Some(true)), "{got}");
    let page = as_ghost(&hs, &ghost, &format!("{room_path}/messages?dir=b&limit=100")).await;
    let messages: Vec<&Value> =
        page["chunk"].as_array().expect("chunk").iter().filter(|e| e.get("state_key").is_none()).collect();
    assert!(messages.iter().any(|e| e["sender"] == ua.as_str()) && messages.iter().any(|e| e["sender"] == ghost));
    for e in &messages {
        assert!(e["type"] != "m.room.message", "a message in clear on the server: {e}");
        assert!(!e.to_string().contains("Tincan") && !e.to_string().contains(reply), "plaintext on the server: {e}");
    }

    // Undeliverable: failed, with the carrier's reason, exit 4.
    let (code, failed) = send(&chain, da, LOST, "are you there?");
    assert_eq!(code, Some(4), "{failed}");
    assert_eq!((failed["route"].as_str(), failed["status"].as_str()), (Some("sms"), Some("failed")), "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("undeliverable"), "{failed}");

    // B is on Matrix: over Matrix, end-to-end encrypted, and nothing more reaches the SMSC.
    let (code, matrix) = send(&chain, da, B_NUM, "over matrix");
    assert_eq!(code, Some(0), "{matrix}");
    assert_eq!((matrix["route"].as_str(), matrix["status"].as_str()), (Some("matrix"), Some("sent")), "{matrix}");
    let got = read_in_chat(&chain, db, A_NUM, |m| m["body"] == "over matrix").await;
    assert_eq!(got["encrypted"], true);
    assert_eq!(smsc.submits().len(), 2, "only PHONE's and LOST's texts went by SMS: {:?}", smsc.submits());

    // `chat` streams the bridge's word on each text as it comes, while the chat goes on.
    let mut chat = Chat::start(&chain, da, PHONE);
    chat.expect("the chat line", |l| l.get("chat").is_some()).await;
    chat.say("first by chat");
    let first = chat.sent(1).await;
    let report = chat.delivery(&first).await;
    assert_eq!((report["route"].as_str(), report["status"].as_str()), (Some("sms"), Some("delivered")), "{report}");
    // A text the carrier does not report on stays waiting, and a later one that fails does not take it along:
    // the failure's ⚠ notice comes after the second text in the room, but belongs to the third one's status.
    smsc.set(json!({"dlr": "none"})).await;
    chat.say("second, never reported");
    let second = chat.sent(2).await;
    smsc.wait_submits(4, Duration::from_secs(30)).await;
    smsc.set(json!({"dlr": "tlv", "dlr_state": {digits(PHONE): "UNDELIV"}})).await;
    chat.say("third, undeliverable");
    let third = chat.sent(3).await;
    let report = chat.delivery(&third).await;
    assert_eq!((report["route"].as_str(), report["status"].as_str()), (Some("sms"), Some("failed")), "{report}");
    assert!(report["reason"].as_str().unwrap_or_default().contains("undeliverable"), "{report}");
    chat.expect("the bridge's notice", |l| {
        l["message"]["body"].as_str().is_some_and(|b| b.starts_with('⚠')) && l["message"]["sender"] == ghost
    })
    .await;
    // The notice has reached the second text's watch by now; give it a moment to (wrongly) print.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (lines, stderr) = chat.finish().await;
    let reports: Vec<&Value> = lines.iter().filter_map(|l| l.get("delivery")).collect();
    assert_eq!(reports.len(), 2, "one report each for the first and third text, none for the second: {lines:?}");
    assert!(reports.iter().all(|r| r["event_id"] != second.as_str()), "{lines:?}");
    assert!(stderr.contains("1 text(s) left without the bridge's word"), "{stderr}");
    sms.stop().await;
    bridge.stop().await;
    Ok(())
}
