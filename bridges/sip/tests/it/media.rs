//! The calls' acceptance test with a real WebRTC client: Alice's matrix-js-sdk (its own call API, in headless
//! Chromium with a fake microphone; `tests/call_browser.mjs`, `tests/call_page.mjs`) calls a SIP phone
//! (baresip, auto-answer, a 440 Hz sine as microphone, G.711 only) through the bridge and takes the phone's
//! call, media anchored at a real rtpengine (ICE and DTLS-SRTP toward Chromium, plain RTP toward baresip,
//! transcoded as needed), and each call is hung up from one side. Media is checked where it went: rtpengine's
//! per-party packet counters (what each side sent it), Chromium's inbound RTP and audio energy, and the audio
//! baresip decoded.

use crate::baresip::Baresip;
use crate::calls::{PHONE, no_media_left};
use crate::harness::{ALICE_NUMBER, Harness};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tincan_sip_core::rtpengine::{CallQuery, NgClient, NgTiming};
use tincan_testkit::node::{JsClient, package_dir};
use tincan_testkit::sip::Rtpengine;

/// RTP packets each party must have sent rtpengine (50 a second at 20 ms packets): two seconds of audio.
const PACKETS: u64 = 100;

/// Whether Chromium, playwright-core and esbuild are here; a skip outside CI, a failure in it.
fn browser_ready() -> bool {
    let modules = package_dir().join("node_modules");
    let ok = ["playwright-core", "esbuild", "matrix-js-sdk"].iter().all(|m| modules.join(m).exists())
        && Path::new("/usr/bin/chromium").exists();
    if !ok {
        assert!(!tincan_testkit::in_ci(), "playwright-core, esbuild, matrix-js-sdk or chromium missing (dev/test)");
        eprintln!("skipped: testkit/node's node_modules or /usr/bin/chromium missing; run dev/test");
    }
    ok
}

struct Call {
    h: Harness,
    rtp: Rtpengine,
    ng: NgClient,
    phone: Baresip,
    browser: JsClient,
}

/// baresip holding [`PHONE`] as the bridge's route for numbers, rtpengine, the bridge, and Alice's client in
/// Chromium, synced.
async fn start() -> Call {
    let phone = Baresip::start(PHONE).await.unwrap();
    let rtp = Rtpengine::start().await.unwrap();
    let ng_addr = rtp.ng;
    let h = Harness::start_with(Some(phone.sip), |c, _| {
        c.media.rtpengine_ng = ng_addr.to_string();
        c.media.ring_timeout_secs = 60;
    })
    .await;
    let ng = NgClient::new(rtp.ng, NgTiming::default(), &mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng())
        .await
        .unwrap();
    let a = &h.alice_account;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/call_browser.mjs");
    let mut browser = JsClient::script(
        &script,
        &json!({"base_url": h.synapse.url(), "user_id": a.user_id, "access_token": a.access_token,
                "device_id": a.device_id, "timeout_ms": 240_000,
                // matrix-js-sdk's log level (`debug` for its call internals), shown when the test fails.
                "log": std::env::var("TINCAN_JS_LOG").ok()}),
    )
    .unwrap();
    browser.expect("ready", Duration::from_secs(90)).await.unwrap();
    Call { h, rtp, ng, phone, browser }
}

impl Call {
    /// Fails with what the browser and baresip said.
    fn fail(&self, what: &str) -> ! {
        let lines: Vec<String> = self.browser.lines().iter().map(Value::to_string).collect();
        // baresip's status line (its bit rates, rewritten in place) is left out.
        let phone = self.phone.log_tail(200);
        let phone: Vec<&str> = phone.lines().filter(|l| !l.contains("] audio=")).collect();
        panic!(
            "{what}\nbrowser:\n{}\nbaresip:\n{}\nrtpengine:\n{}",
            lines.join("\n"),
            phone[phone.len().saturating_sub(40)..].join("\n"),
            self.rtp.log_tail(40)
        );
    }

    /// Waits until matrix-js-sdk says the call is connected (ICE and DTLS up); fails if it ends first.
    async fn connected(&mut self) {
        loop {
            let v = match self.browser.expect_one_of(&["state", "hangup"], Duration::from_secs(60)).await {
                Ok(v) => v,
                Err(e) => self.fail(&format!("waiting for the call to connect: {e}")),
            };
            if v["event"] == "hangup" {
                self.fail(&format!("the call ended before it connected: {v}"));
            }
            match v["state"].as_str() {
                Some("connected") => return,
                Some("ended") => self.fail(&format!("the call ended before it connected: {v}")),
                _ => {}
            }
        }
    }

    /// rtpengine's counters once both Alice (`mx`) and the phone (`sip`) sent it [`PACKETS`] RTP packets.
    async fn media_flowed(&mut self) -> CallQuery {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut last = None;
        loop {
            if let Ok(list) = self.ng.list(10).await
                && let Some(call) = list.first()
                && let Ok(q) = self.ng.query(call).await
            {
                let sent = |tag: &str| q.tags.get(tag).map_or(0, |t| t.rtp_packets);
                if sent("mx") >= PACKETS && sent("sip") >= PACKETS {
                    return q;
                }
                last = Some(q);
            }
            if std::time::Instant::now() > deadline {
                self.browser.command(json!({"stats": true})).unwrap();
                let stats = self.browser.expect("stats", Duration::from_secs(20)).await;
                let raw = match self.ng.list(10).await.ok().and_then(|l| l.first().cloned()) {
                    Some(call) => format!(
                        "{:?}",
                        self.ng
                            .raw(
                                "query",
                                tincan_sip_core::bencode::dict([(
                                    "call-id",
                                    tincan_sip_core::bencode::Value::str(&call)
                                )])
                            )
                            .await
                    ),
                    None => String::new(),
                };
                self.fail(&format!(
                    "rtpengine did not count {PACKETS} packets from each party: {last:?}\nChromium: {stats:?}\nquery: {raw}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Chromium's counters once it received [`PACKETS`] RTP packets with audio in them.
    async fn browser_heard(&mut self) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            self.browser.command(json!({"stats": true})).unwrap();
            let s = self.browser.expect("stats", Duration::from_secs(20)).await.unwrap();
            if s["received"].as_u64().unwrap_or(0) >= PACKETS && s["energy"].as_f64().unwrap_or(0.0) > 0.0 {
                return s;
            }
            if std::time::Instant::now() > deadline {
                self.fail(&format!("Chromium heard nothing: {s}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks media went both ways: each party sent rtpengine audio, and each received and decoded some.
    async fn assert_media_both_ways(&mut self) {
        // (A few of Chromium's first packets may count as errors: they come before DTLS gives rtpengine keys.)
        self.media_flowed().await;
        let heard = self.browser_heard().await;
        assert!(heard["sent"].as_u64().unwrap() >= PACKETS, "{heard}");
        assert_eq!(heard["ice"], "connected", "{heard}");
    }

    /// What baresip decoded in the call, once it ended: the browser's fake microphone beeps, so part of it
    /// is loud (silence and comfort noise are not).
    fn assert_phone_heard(&self) {
        let r = self.phone.received().unwrap();
        assert!(r.samples >= 8000, "baresip decoded under a second of audio: {r:?}");
        assert!(r.loud > 0 && r.peak > 4000, "baresip decoded no audible sound: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_phone_calls_the_browser_audio_flows_both_ways_and_the_phone_hangs_up() {
    if !browser_ready() {
        return;
    }
    let mut c = start().await;
    let to = format!("sip:{ALICE_NUMBER}@{}", c.h.sip);
    c.phone.command("dial", &to).await.unwrap();
    // The page joins the portal the bridge opens and sees the ghost's m.call.invite ring.
    let incoming = match c.browser.expect("incoming", Duration::from_secs(60)).await {
        Ok(v) => v,
        Err(e) => c.fail(&format!("the call did not ring in the browser: {e}")),
    };
    c.browser.command(json!({"answer": true})).unwrap();
    let answered = c.browser.expect("answered", Duration::from_secs(30)).await.unwrap();
    assert_eq!(answered["call_id"], incoming["call_id"]);
    match c.phone.event(&["CALL_ESTABLISHED", "CALL_CLOSED"], Duration::from_secs(60)).await {
        Ok(v) if v["type"] == "CALL_ESTABLISHED" => assert_eq!(v["direction"], "outgoing", "{v}"),
        other => c.fail(&format!("baresip's call was not answered: {other:?}")),
    }
    c.connected().await;
    c.assert_media_both_ways().await;

    c.phone.command("hangup", "").await.unwrap();
    let v = match c.browser.expect("hangup", Duration::from_secs(30)).await {
        Ok(v) => v,
        Err(e) => c.fail(&format!("the browser's call did not end: {e}")),
    };
    assert_eq!((v["party"].as_str(), v["reason"].as_str()), (Some("remote"), Some("user_hangup")), "{v}");
    no_media_left(&c.ng).await;
    c.assert_phone_heard();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_calls_a_sip_phone_audio_flows_both_ways_and_the_browser_hangs_up() {
    if !browser_ready() {
        return;
    }
    let mut c = start().await;
    let room = crate::calls::dm_with_phone(&c.h).await;
    c.browser.command(json!({"call": room})).unwrap();
    c.browser.expect("placed", Duration::from_secs(30)).await.unwrap();
    let up = c.phone.event(&["CALL_ESTABLISHED", "CALL_CLOSED"], Duration::from_secs(60)).await;
    match up {
        Ok(v) if v["type"] == "CALL_ESTABLISHED" => {
            assert!(v["peeruri"].as_str().unwrap().contains(ALICE_NUMBER), "the call comes from Alice's number: {v}");
        }
        other => c.fail(&format!("baresip did not take the call: {other:?}")),
    }
    c.connected().await;
    c.assert_media_both_ways().await;

    c.browser.command(json!({"hangup": true})).unwrap();
    c.browser.expect("hung_up", Duration::from_secs(10)).await.unwrap();
    match c.phone.event(&["CALL_CLOSED"], Duration::from_secs(30)).await {
        Ok(v) => assert_eq!(v["direction"], "incoming", "{v}"),
        Err(e) => c.fail(&format!("baresip's call did not end: {e}")),
    }
    no_media_left(&c.ng).await;
    c.assert_phone_heard();
}
