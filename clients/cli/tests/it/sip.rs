//! A SIP phone reaching a Tincan user, seen by the real `tincan` binary: the chain (Synapse, `tincan-ext`, the
//! directory) with the `tincan-sip` bridge registered (in process, end-to-bridge encryption on, media at a real
//! rtpengine) holding A's number. A signs up and runs `tincan --json listen`. A phone (sipp) texts A's number
//! and calls it, rings, and gives up (CANCEL): `listen` shows the text from the phone's ghost, the call ringing
//! with the phone's number (confirmed by the homeserver's `m.protocol.pstn` lookup naming that ghost), and its
//! end. The client has no audio: it shows calls, it does not answer them.

use crate::acceptance::{command, sign_up};
use crate::chain::Chain;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_common::{Secret, SystemClock};
use tincan_testkit::ports::{free_addr, free_port};
use tincan_testkit::sip::{Rtpengine, Scenario, finished};

const A_NUM: &str = "+442079460701";
const TAMPERED_NUM: &str = "+442079460705";
/// The phone: not in the directory, a SIP party of the bridge.
const PHONE: &str = "+447400123603";
const DOMAIN: &str = "sip.tincan.test";
const AS_TOKEN: &str = "sip-as-token-for-the-client-test";

/// The bridge's configuration: free ports, state and crypto stores in `dir`, media at `rtpengine`.
fn bridge_config(dir: &std::path::Path, rtpengine: std::net::SocketAddr) -> tincan_sip::config::SipBridgeConfig {
    let port = free_port();
    let mut c = tincan_sip::config::SipBridgeConfig::default();
    c.homeserver.url = "http://127.0.0.1:9".into();
    c.homeserver.server_name = "hs.test".into();
    c.appservice.id = "tincan-sip".into();
    c.appservice.listen = format!("127.0.0.1:{port}");
    c.appservice.url = format!("http://127.0.0.1:{port}");
    c.appservice.as_token = Secret::new(AS_TOKEN);
    c.appservice.hs_token = Secret::new("sip-hs-token-for-the-client-test");
    c.appservice.bot_localpart = "sipbot".into();
    c.database.url = format!("sqlite:{}", dir.join("core.db").display());
    c.sip.domain = DOMAIN.into();
    c.sip.listen = vec![format!("udp:127.0.0.1:{}", free_port())];
    c.sip.nonce_secret = Secret::new("nonce-secret-for-tests-0123456789");
    c.sip.database_url = format!("sqlite:{}", dir.join("sip.db").display());
    c.media.rtpengine_ng = rtpengine.to_string();
    c.media.ring_timeout_secs = 60;
    c.routes.dns_servers = vec!["127.0.0.1:9".into()];
    // Tincan's client joins encrypted rooms only: the portals the bridge opens must be.
    c.encryption.enabled = true;
    c.encryption.store_dir = dir.join("crypto").display().to_string();
    c.encryption.store_passphrase = Secret::new("test fixture passphrase");
    c
}

/// The phone texts A's number.
fn phone_texts(text: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="message">
  <send retrans="500"><![CDATA[
MESSAGE sip:{A_NUM}@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Bob" <sip:{PHONE}@[local_ip]:[local_port];user=phone>;tag=[call_number]
To: <sip:{A_NUM}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

{text}]]></send>
  <recv response="202"/>
</scenario>
"#
    )
}

/// The phone calls A's number with a G.711 offer, rings for `ring_ms`, and gives up (CANCEL, then the 487).
fn phone_calls_and_gives_up(ring_ms: u64) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="phone calls">
  <send retrans="500"><![CDATA[
INVITE sip:{A_NUM}@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Bob" <sip:{PHONE}@[local_ip]:[local_port];user=phone>;tag=[call_number]
To: <sip:{A_NUM}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{PHONE}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 40000 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=sendrecv
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <pause milliseconds="{ring_ms}"/>
  <send><![CDATA[
CANCEL sip:{A_NUM}@[remote_ip]:[remote_port];user=phone SIP/2.0
[last_Via:]
[last_From:]
To: <sip:{A_NUM}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <recv response="487"/>
  <send><![CDATA[
ACK sip:{A_NUM}@[remote_ip]:[remote_port];user=phone SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#
    )
}

/// A running `tincan --json listen`: its JSON lines as they come. Killed when dropped.
struct Listen {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Listen {
    fn start(chain: &Chain, data: &std::path::Path) -> Listen {
        let mut child = command(chain, chain.proxy.addr, data, &["--json", "listen"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tincan listen runs");
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
        Listen { child, lines, seen: Vec::new() }
    }

    /// The first line that satisfies `pred`, within `within`.
    async fn expect(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.seen.iter().find(|l| pred(l)) {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(v)) => self.seen.push(v),
                Ok(None) | Err(_) => {
                    panic!("no {what} from `tincan listen` within {within:?}; its lines: {:?}", self.seen)
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_shows_a_text_and_a_call_from_a_sip_phone_with_its_number_and_the_calls_end() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rtp = Rtpengine::start().await?;
    let mut config = bridge_config(dir.path(), rtp.ng);
    let core = config.core();
    let tokens = Tokens::from_config(&core).expect("tokens configured");
    let registration = registration_yaml(&core, "sip_", &tokens);
    let Some(chain) = Chain::start_with(TAMPERED_NUM, |b| b.appservice(registration)).await? else {
        return Ok(());
    };
    let da = tempfile::tempdir()?;
    let da = da.path();
    let ua = sign_up(&chain, da, A_NUM)["user_id"].as_str().expect("A's Matrix ID").to_owned();
    // The bridge knows A's number as A's (a provider's bridge asks the extension; here it is configured).
    config.homeserver.url = chain.hs.url();
    config.subscribers.static_numbers = BTreeMap::from([(A_NUM.to_owned(), ua.clone())]);
    let bridge = tincan_sip::run::start(config, Arc::new(SystemClock)).await?;
    let sip = bridge.sip_listeners()[0].addr;

    let mut listen = Listen::start(&chain, da);
    let ready = listen.expect("listening line", Duration::from_secs(60), |l| l.get("listening").is_some()).await;
    assert_eq!(ready["listening"]["user_id"], ua.as_str());
    let ghost = format!("@sip_{PHONE}:hs.test");

    // A text from the phone: from its ghost, decrypted.
    let text = Scenario::new("text", &phone_texts("hello A, call you in a second"))?;
    text.run(text.command(sip, free_addr(), 1)).await?;
    let m = listen
        .expect("the phone's text", Duration::from_secs(90), |l| {
            l["message"]["body"] == "hello A, call you in a second"
        })
        .await;
    assert_eq!(
        (m["message"]["sender"].as_str(), m["message"]["encrypted"].as_bool()),
        (Some(ghost.as_str()), Some(true))
    );

    // The phone calls, rings for a while, gives up: the call rings with the phone's number, then ends.
    let call = Scenario::new("call", &phone_calls_and_gives_up(4000))?;
    let phone = call.spawn(call.command(sip, free_addr(), 1), "phone")?;
    let invite =
        listen.expect("the ringing call", Duration::from_secs(60), |l| l["call"]["event"] == "invite").await["call"]
            .clone();
    assert_eq!(
        (invite["sender"].as_str(), invite["encrypted"].as_bool()),
        (Some(ghost.as_str()), Some(true)),
        "{invite}"
    );
    assert_eq!(invite["caller"], json!({"number": PHONE, "known_by": "sip_bridge"}), "{invite}");
    assert_eq!(invite["lifetime_ms"], 60_000, "{invite}");
    assert!(invite["sdp"].as_str().is_some_and(|s| s.contains("UDP/TLS/RTP/SAVPF")), "{invite}");
    let call_id = invite["call_id"].as_str().expect("call_id").to_owned();
    let end = listen
        .expect("the call's end", Duration::from_secs(60), |l| {
            l["call"]["event"] == "hangup" && l["call"]["call_id"] == call_id.as_str()
        })
        .await["call"]
        .clone();
    assert_eq!((end["sender"].as_str(), end["reason"].as_str()), (Some(ghost.as_str()), Some("user_hangup")), "{end}");
    assert_eq!(end["caller"]["number"], PHONE, "{end}");
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone rang, cancelled and got 487");
    // Each event once.
    let invites = listen.seen.iter().filter(|l| l["call"]["event"] == "invite").count();
    assert_eq!(invites, 1, "{:?}", listen.seen);
    drop(listen);
    bridge.stop().await;
    Ok(())
}
