//! Calls between SIP phones (sipp) and a scripted Matrix user (Alice, sending `m.call.*` with browser-like
//! SDP through Synapse), media anchored at a real rtpengine: answer, busy/decline, cancel, no answer and
//! hang-up from each side.

use crate::harness::{ALICE_NUMBER, DOMAIN, Harness, enc, wait_for};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tincan_sip_core::rtpengine::{Leg, NgClient, NgTiming};
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::{Rtpengine, Scenario, finished};

pub(crate) const PHONE: &str = "+15551234567";

/// What Chromium writes for an audio-only call (trimmed), with `setup` `actpass` in offers and `active` in
/// answers; with `candidates` false the candidates are trickled instead.
pub(crate) fn browser_sdp(setup: &str, port: u16, candidates: bool) -> String {
    let cand = if candidates {
        format!("a=candidate:1467250027 1 udp 2122260223 127.0.0.1 {port} typ host generation 0\r\n")
    } else {
        String::new()
    };
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
         a=msid-semantic: WMS stream\r\nm=audio {port} UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 127.0.0.1\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\n{cand}a=ice-ufrag:Xk3v\r\na=ice-pwd:VHwX4hW9c1Qn2pHTwqB0Fm3s\r\n\
         a=ice-options:trickle\r\n\
         a=fingerprint:sha-256 9F:0A:22:4E:45:8B:5C:0D:3B:6A:11:77:C0:2E:93:4D:A1:5B:6C:7D:8E:9F:A0:B1:C2:D3:E4:F5:06:17:28:39\r\n\
         a=setup:{setup}\r\na=mid:0\r\na=sendrecv\r\na=msid:stream track\r\na=rtcp-mux\r\n\
         a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1001 cname:tincantest\r\n"
    )
}

/// A phone calling Alice's number: INVITE with a plain G.711 offer, then `after` (the rest of the scenario).
pub(crate) fn phone_calls(after: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="phone calls">
  <send retrans="500"><![CDATA[
INVITE sip:{ALICE_NUMBER}@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Bob" <sip:{PHONE}@[local_ip]:[local_port];user=phone>;tag=[call_number]
To: <sip:{ALICE_NUMBER}@{DOMAIN}>
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
{after}
</scenario>
"#
    )
}

/// The phone takes the 200 (checking rtpengine's plain-RTP SDP) and ACKs it.
pub(crate) const TAKES_200: &str = r#"
  <recv response="200">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="m"/>
      <ereg regexp="c=IN IP4 127\.0\.0\.1" search_in="body" check_it="true" assign_to="c"/>
    </action>
  </recv>
  <Reference variables="m,c"/>
  <send><![CDATA[
ACK sip:{ALICE}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>"#;

pub(crate) const HANGS_UP: &str = r#"
  <pause milliseconds="1000"/>
  <send retrans="500"><![CDATA[
BYE sip:{ALICE}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>"#;

pub(crate) const TAKES_BYE: &str = r#"
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>"#;

/// The phone takes a final failure `code` and ACKs it.
pub(crate) fn takes_failure(code: u16) -> String {
    format!(
        r#"
  <recv response="{code}"/>
  <send><![CDATA[
ACK sip:{ALICE_NUMBER}@[remote_ip]:[remote_port];user=phone SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>"#
    )
}

pub(crate) const CANCELS: &str = r#"
  <pause milliseconds="500"/>
  <send><![CDATA[
CANCEL sip:{ALICE}@[remote_ip]:[remote_port];user=phone SIP/2.0
[last_Via:]
[last_From:]
To: <sip:{ALICE}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>"#;

pub(crate) fn fill(s: &str) -> String {
    s.replace("{ALICE}", ALICE_NUMBER).replace("{DOMAIN}", DOMAIN)
}

/// A phone that receives Alice's call: checks the INVITE's plain-RTP offer, then `after`.
pub(crate) fn phone_answers(after: &str) -> String {
    answers(r"sip:\+442079460001@", after)
}

/// A SIP user agent that receives a call from `from` (a regexp of the From URI): checks the INVITE's
/// plain-RTP offer, rings, then `after`.
pub(crate) fn answers(from: &str, after: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="phone answers">
  <recv request="INVITE">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="m"/>
      <ereg regexp="PCMU/8000" search_in="body" check_it="true" assign_to="p"/>
      <ereg regexp="{from}" search_in="hdr" header="From:" check_it="true" assign_to="f"/>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="rf"/>
      <ereg regexp="sip:[^>]*" search_in="hdr" header="Contact:" assign_to="contact"/>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="icseq"/>
    </action>
  </recv>
  <Reference variables="m,p,f,rf,contact,icseq"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

]]></send>
{after}
</scenario>
"#
    )
}

pub(crate) const PHONE_200: &str = r#"
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 2 2 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 40002 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
]]></send>
  <recv request="ACK"/>"#;

pub(crate) const PHONE_HANGS_UP: &str = r#"
  <pause milliseconds="1000"/>
  <send retrans="500"><![CDATA[
BYE [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{PHONE}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To:[$rf]
Call-ID: [call_id]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>"#;

/// The ringing callee takes a CANCEL, answers it 200 and the INVITE 487, and takes the ACK.
pub(crate) const TAKES_CANCEL: &str = r#"
  <recv request="CANCEL"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [$icseq] INVITE
Content-Length: 0

]]></send>
  <recv request="ACK"/>"#;

/// Runs a sipp phone calling the bridge in the background.
pub(crate) fn spawn_caller(h: &Harness, xml: &str) -> (Scenario, tincan_testkit::process::ChildGuard) {
    let s = Scenario::new("caller", xml).unwrap();
    let g = s.spawn(s.command(h.sip, free_addr(), 1), "phone").unwrap();
    (s, g)
}

/// Runs a sipp phone at `phone` waiting for a call (or a MESSAGE), tracing what it sees
/// ([`Scenario::messages`]).
pub(crate) async fn spawn_callee(phone: SocketAddr, xml: &str) -> (Scenario, tincan_testkit::process::ChildGuard) {
    let s = Scenario::new("callee", xml).unwrap();
    let mut cmd = s.uas_command(phone);
    cmd.arg("-trace_msg");
    let g = s.serve(cmd, phone, "phone").await.unwrap();
    (s, g)
}

/// The callee refuses the call with a final `code`, and takes the ACK.
pub(crate) fn refuses(code: u16, phrase: &str) -> String {
    format!(
        r#"
  <send><![CDATA[
SIP/2.0 {code} {phrase}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>"#
    )
}

pub(crate) async fn start(fallback: Option<SocketAddr>, ring_secs: u64) -> (Harness, Rtpengine, NgClient) {
    start_with(fallback, |c| c.media.ring_timeout_secs = ring_secs).await
}

/// [`start`] with the config changed by `edit` (rtpengine's address is set after it).
pub(crate) async fn start_with(
    fallback: Option<SocketAddr>,
    edit: impl FnOnce(&mut tincan_sip::config::SipBridgeConfig),
) -> (Harness, Rtpengine, NgClient) {
    let rtp = Rtpengine::start().await.unwrap();
    let ng_addr = rtp.ng;
    let h = Harness::start_with(fallback, |c, _| {
        edit(c);
        c.media.rtpengine_ng = ng_addr.to_string();
    })
    .await;
    let ng = NgClient::new(rtp.ng, NgTiming::default(), &mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng())
        .await
        .unwrap();
    (h, rtp, ng)
}

/// The `m.call.*` events of `room`, oldest first, as (sender, type, content).
pub(crate) async fn call_events(h: &Harness, room: &str) -> Vec<(String, String, Value)> {
    let v = h
        .alice(reqwest::Method::GET, &format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=200", enc(room)), None)
        .await;
    let mut out: Vec<(String, String, Value)> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("m.call.")))
        .map(|e| {
            (e["sender"].as_str().unwrap().to_owned(), e["type"].as_str().unwrap().to_owned(), e["content"].clone())
        })
        .collect();
    out.reverse();
    out
}

/// Waits for the `n`th (from 0) `m.call.*` event of `kind` from the ghost whose content `matches`.
pub(crate) async fn ghost_event(
    h: &Harness,
    room: &str,
    kind: &str,
    n: usize,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let ghost = format!("@sip_{PHONE}:hs.test");
    wait_for(kind, Duration::from_secs(30), || async {
        call_events(h, room)
            .await
            .into_iter()
            .filter(|(s, t, c)| *s == ghost && t == kind && matches(c))
            .nth(n)
            .map(|(_, _, c)| c)
    })
    .await
}

/// Waits for an `m.call.*` event of `kind` from the ghost.
pub(crate) async fn ghost_sends(h: &Harness, room: &str, kind: &str) -> Value {
    ghost_event(h, room, kind, 0, |_| true).await
}

pub(crate) async fn alice_sends(h: &Harness, room: &str, kind: &str, content: Value) {
    static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let txn = format!("c{}", TXN.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.alice(reqwest::Method::PUT, &format!("/_matrix/client/v3/rooms/{}/send/{kind}/{txn}", enc(room)), Some(content))
        .await;
}

/// A phone calls Alice: she joins the portal and gets the ghost's invite; returns (room, invite content).
pub(crate) async fn ringing_in_matrix(h: &Harness) -> (String, Value) {
    let room = h.join_invite().await;
    let invite = ghost_sends(h, &room, "m.call.invite").await;
    assert_eq!(invite["version"], "1");
    let sdp = invite["offer"]["sdp"].as_str().unwrap();
    // rtpengine made a WebRTC offer of the phone's G.711 one: ICE, DTLS-SRTP, rtcp-mux, Opus added.
    assert!(sdp.contains("UDP/TLS/RTP/SAVPF"), "{sdp}");
    assert!(sdp.contains("a=fingerprint:") && sdp.contains("a=ice-ufrag:") && sdp.contains("a=rtcp-mux"), "{sdp}");
    assert!(sdp.to_ascii_lowercase().contains("opus/48000"), "{sdp}");
    assert!(sdp.contains("a=candidate:") && sdp.contains("127.0.0.1"), "{sdp}");
    // matrix-js-sdk's peer connections are max-bundle: Chromium refuses an offer without a BUNDLE group.
    assert!(sdp.contains("a=group:BUNDLE "), "{sdp}");
    (room, invite)
}

pub(crate) fn v1(call_id: &Value, party: &str, extra: Value) -> Value {
    let mut c = json!({"call_id": call_id, "party_id": party, "version": "1"});
    c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    c
}

/// Waits until rtpengine anchors `n` calls (a call ringing a phone or Matrix is one).
pub(crate) async fn rtpengine_holds(ng: &NgClient, n: usize) {
    wait_for(&format!("rtpengine to hold {n} calls"), Duration::from_secs(20), || async {
        (ng.list(10).await.unwrap().len() == n).then_some(())
    })
    .await;
}

pub(crate) async fn no_media_left(ng: &NgClient) {
    wait_for("rtpengine to hold no call", Duration::from_secs(10), || async {
        ng.list(100).await.unwrap().is_empty().then_some(())
    })
    .await;
}

/// The phone (the caller) takes the bridge's re-INVITE for Alice's hold (`a=inactive`), then hangs up: its BYE
/// waits for that re-INVITE, so the test decides when the phone hangs up (no pause to race against). The BYE's
/// From and To are the re-INVITE's To and From.
const TAKES_HOLD_THEN_HANGS_UP: &str = r#"
  <recv request="INVITE">
    <action>
      <ereg regexp="a=inactive" search_in="body" check_it="true" assign_to="hd"/>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="bf"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="bt"/>
    </action>
  </recv>
  <Reference variables="hd"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{PHONE}@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 3 3 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 40004 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=inactive
]]></send>
  <recv request="ACK"/>
  <send retrans="500"><![CDATA[
BYE sip:{ALICE}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From:[$bt]
To:[$bf]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_answered_in_matrix_then_hung_up_by_the_phone() {
    let (h, _rtp, ng) = start(None, 60).await;
    let phone_side = fill(&format!("{TAKES_200}{TAKES_HOLD_THEN_HANGS_UP}")).replace("{PHONE}", PHONE);
    let (_s, phone) = spawn_caller(&h, &phone_calls(&phone_side));
    let (room, invite) = ringing_in_matrix(&h).await;
    assert_eq!(ng.list(100).await.unwrap().len(), 1, "the call is anchored at rtpengine while it rings");
    alice_sends(
        &h,
        &room,
        "m.call.answer",
        v1(
            &invite["call_id"],
            "alice-phone",
            json!({"answer": {"type": "answer", "sdp": browser_sdp("active", 45000, true)}}),
        ),
    )
    .await;
    // The ghost picks Alice's answer (her other devices stop ringing).
    let select = ghost_sends(&h, &room, "m.call.select_answer").await;
    assert_eq!(select["selected_party_id"], "alice-phone");
    // While the call is up, rtpengine has both parties: the phone's and Alice's.
    let q = wait_for("rtpengine to hold both legs", Duration::from_secs(10), || async {
        let list = ng.list(10).await.unwrap();
        let q = ng.query(list.first()?).await.ok()?;
        (q.tags.len() == 2).then_some(q)
    })
    .await;
    assert!(q.tags.contains_key("sip") && q.tags.contains_key("mx"), "{q:?}");
    // Only now may the phone hang up: Alice holds (a re-INVITE the phone answers), then the phone sends BYE.
    let sdp = browser_negotiates("actpass", 45000, "inactive");
    let hold = json!({"lifetime": 10000, "description": {"type": "offer", "sdp": sdp}});
    alice_sends(&h, &room, "m.call.negotiate", v1(&invite["call_id"], "alice-phone", hold)).await;
    // The phone got a plain-RTP 200 (checked by the scenario), ACKed, took the hold and hung up.
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone's side of the call");
    let hangup = ghost_sends(&h, &room, "m.call.hangup").await;
    assert_eq!(hangup["reason"], "user_hangup");
    assert_eq!(hangup["call_id"], invite["call_id"]);
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_hung_up_from_matrix_sends_bye() {
    let (h, _rtp, ng) = start(None, 60).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&fill(&format!("{TAKES_200}{TAKES_BYE}"))));
    let (room, invite) = ringing_in_matrix(&h).await;
    alice_sends(
        &h,
        &room,
        "m.call.answer",
        v1(
            &invite["call_id"],
            "alice-phone",
            json!({"answer": {"type": "answer", "sdp": browser_sdp("active", 45002, false)}}),
        ),
    )
    .await;
    alice_sends(
        &h,
        &room,
        "m.call.candidates",
        v1(
            &invite["call_id"],
            "alice-phone",
            json!({"candidates": [
            {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 45002 typ host", "sdpMid": "0", "sdpMLineIndex": 0},
            {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}]}),
        ),
    )
    .await;
    ghost_sends(&h, &room, "m.call.select_answer").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    alice_sends(&h, &room, "m.call.hangup", v1(&invite["call_id"], "alice-phone", json!({"reason": "user_hangup"})))
        .await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone got BYE");
    no_media_left(&ng).await;
    // The ghost does not echo a hang-up of its own.
    assert!(call_events(&h, &room).await.iter().all(|(s, t, _)| !(s.contains("sip_") && t == "m.call.hangup")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_rejected_in_matrix_is_declined_and_busy_is_486() {
    let (h, _rtp, ng) = start(None, 60).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&takes_failure(603)));
    let (room, invite) = ringing_in_matrix(&h).await;
    alice_sends(&h, &room, "m.call.reject", v1(&invite["call_id"], "alice-phone", json!({}))).await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone got 603 Decline");
    no_media_left(&ng).await;

    // A client that says busy with a hang-up before answering: 486 Busy Here.
    let (_s, phone) = spawn_caller(&h, &phone_calls(&takes_failure(486)));
    let second = wait_for("a second invite", Duration::from_secs(30), || async {
        call_events(&h, &room)
            .await
            .into_iter()
            .filter(|(_, t, _)| t == "m.call.invite")
            .map(|(_, _, c)| c)
            .find(|c| c["call_id"] != invite["call_id"])
    })
    .await;
    alice_sends(&h, &room, "m.call.hangup", v1(&second["call_id"], "alice-phone", json!({"reason": "user_busy"})))
        .await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone got 486 Busy Here");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_cancels_hangs_up_in_matrix() {
    let (h, _rtp, ng) = start(None, 60).await;
    let after = format!("{}{}", fill(CANCELS), takes_failure(487));
    let (_s, phone) = spawn_caller(&h, &phone_calls(&after));
    assert!(finished(phone, Duration::from_secs(40)).await, "CANCEL answered, then 487");
    let room = h.join_invite().await;
    let hangup = ghost_sends(&h, &room, "m.call.hangup").await;
    let invite = ghost_sends(&h, &room, "m.call.invite").await;
    assert_eq!(hangup["call_id"], invite["call_id"]);
    assert_eq!(hangup["reason"], "user_hangup");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_nobody_answers_gets_480() {
    let (h, _rtp, ng) = start(None, 3).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&takes_failure(480)));
    assert!(finished(phone, Duration::from_secs(40)).await, "480 after the ring timeout");
    let room = h.join_invite().await;
    let invite = ghost_sends(&h, &room, "m.call.invite").await;
    assert_eq!(invite["lifetime"], 3000);
    let hangup = ghost_sends(&h, &room, "m.call.hangup").await;
    assert_eq!(hangup["reason"], "invite_timeout");
    no_media_left(&ng).await;
}

/// Alice opens a DM with the phone's ghost; returns the room once the ghost joined.
pub(crate) async fn dm_with_phone(h: &Harness) -> String {
    let ghost = format!("@sip_{PHONE}:hs.test");
    let v = h
        .alice(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [ghost], "is_direct": true})),
        )
        .await;
    let room = v["room_id"].as_str().unwrap().to_owned();
    wait_for("the ghost to join", Duration::from_secs(30), || async {
        let m = h
            .alice(reqwest::Method::GET, &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), None)
            .await;
        m["joined"].get(&ghost).map(|_| ())
    })
    .await;
    room
}

pub(crate) async fn alice_calls(h: &Harness, room: &str, call_id: &str) {
    alice_sends(
        h,
        room,
        "m.call.invite",
        json!({"call_id": call_id, "party_id": "alice-phone", "version": "1", "lifetime": 60000,
               "offer": {"type": "offer", "sdp": browser_sdp("actpass", 45004, false)}}),
    )
    .await;
    alice_sends(
        h,
        room,
        "m.call.candidates",
        json!({"call_id": call_id, "party_id": "alice-phone", "version": "1", "candidates": [
            {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 45004 typ host", "sdpMid": "0", "sdpMLineIndex": 0},
            {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}]}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_call_to_a_phone_answered_then_hung_up_by_the_phone() {
    let phone = free_addr();
    let (h, _rtp, ng) = start(Some(phone), 60).await;
    let room = dm_with_phone(&h).await;
    // The phone hangs up once it has taken Alice's hold (below), not after a pause the test could lose a race to.
    let phone_side = format!("{PHONE_200}{}{PHONE_HANGS_UP}", takes_reinvite("inactive", "inactive"));
    let (_s, guard) = spawn_callee(phone, &phone_answers(&fill(&phone_side).replace("{PHONE}", PHONE))).await;
    alice_calls(&h, &room, "call-out-1").await;
    let answer = ghost_sends(&h, &room, "m.call.answer").await;
    assert_eq!(answer["call_id"], "call-out-1");
    let sdp = answer["answer"]["sdp"].as_str().unwrap();
    assert!(
        sdp.contains("UDP/TLS/RTP/SAVPF") && sdp.contains("a=fingerprint:") && sdp.contains("a=ice-ufrag:"),
        "{sdp}"
    );
    // The offer was bundled: an answer without the group is refused by Chromium.
    assert!(sdp.contains("a=group:BUNDLE 0"), "{sdp}");
    let q = ng.query(&ng.list(10).await.unwrap()[0]).await.unwrap();
    assert!(q.tags.contains_key("sip") && q.tags.contains_key("mx"), "{q:?}");
    // Only now may the phone hang up: Alice holds (a re-INVITE the phone answers), then the phone sends BYE.
    let sdp = browser_negotiates("actpass", 45004, "inactive");
    let hold = json!({"lifetime": 10000, "description": {"type": "offer", "sdp": sdp}});
    alice_sends(&h, &room, "m.call.negotiate", v1(&json!("call-out-1"), "alice-phone", hold)).await;
    assert!(finished(guard, Duration::from_secs(30)).await, "the phone answered, took the hold, then hung up");
    let hangup = ghost_sends(&h, &room, "m.call.hangup").await;
    assert_eq!(hangup["reason"], "user_hangup");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_call_hung_up_in_matrix_sends_bye_and_a_busy_phone_rejects() {
    let phone = free_addr();
    let (h, _rtp, ng) = start(Some(phone), 60).await;
    let room = dm_with_phone(&h).await;
    let (_s, guard) = spawn_callee(phone, &phone_answers(&format!("{PHONE_200}{TAKES_BYE}"))).await;
    alice_calls(&h, &room, "call-out-2").await;
    ghost_sends(&h, &room, "m.call.answer").await;
    alice_sends(
        &h,
        &room,
        "m.call.hangup",
        json!({"call_id": "call-out-2", "party_id": "alice-phone", "version": "1", "reason": "user_hangup"}),
    )
    .await;
    assert!(finished(guard, Duration::from_secs(30)).await, "the phone got BYE");
    no_media_left(&ng).await;

    let (_s, guard) = spawn_callee(phone, &phone_answers(&refuses(486, "Busy Here"))).await;
    alice_calls(&h, &room, "call-out-3").await;
    assert!(finished(guard, Duration::from_secs(30)).await, "the phone said busy");
    ghost_sends_in(&h, &room, "m.call.reject", "call-out-3").await;
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_call_hung_up_while_ringing_cancels_the_invite() {
    let phone = free_addr();
    let (h, _rtp, ng) = start(Some(phone), 60).await;
    let room = dm_with_phone(&h).await;
    let (_s, guard) = spawn_callee(phone, &phone_answers(TAKES_CANCEL)).await;
    alice_calls(&h, &room, "call-out-4").await;
    // Let the phone ring first.
    rtpengine_holds(&ng, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    alice_sends(
        &h,
        &room,
        "m.call.hangup",
        json!({"call_id": "call-out-4", "party_id": "alice-phone", "version": "1", "reason": "user_hangup"}),
    )
    .await;
    assert!(finished(guard, Duration::from_secs(30)).await, "the phone got CANCEL");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_sessions_a_crash_left_are_deleted_at_start() {
    let rtp = Rtpengine::start().await.unwrap();
    let ng = NgClient::new(rtp.ng, NgTiming::default(), &mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("sip.db").display());
    // A bridge recorded two calls and crashed: rtpengine still holds one of them, plus a call of another user.
    let store = tincan_sip::store::open(&url).await.unwrap();
    store.add_media_session("crashed-1", 1).await.unwrap();
    store.add_media_session("crashed-2", 2).await.unwrap();
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
    ng.offer("crashed-1", "sip", offer, &Leg::webrtc()).await.unwrap();
    ng.offer("someone-else", "sip", offer, &Leg::plain_rtp()).await.unwrap();
    drop(store);
    let ng_addr = rtp.ng;
    let url2 = url.clone();
    let _h = Harness::start_with(None, move |c, _| {
        c.media.rtpengine_ng = ng_addr.to_string();
        c.sip.database_url = url2;
    })
    .await;
    let left = wait_for("the stale call deleted", Duration::from_secs(20), || async {
        let l = ng.list(100).await.unwrap();
        (!l.contains(&"crashed-1".to_owned())).then_some(l)
    })
    .await;
    assert_eq!(left, vec!["someone-else".to_owned()], "only what the bridge recorded is deleted");
    let store = tincan_sip::store::open(&url).await.unwrap();
    assert!(store.media_sessions().await.unwrap().is_empty(), "forgotten once deleted");
}

/// The phone (the caller) offers again with `a={dir}` (CSeq `cseq`), expects `a={expect}` in the 200, ACKs.
fn caller_reoffers(cseq: u32, dir: &str, expect: &str) -> String {
    format!(
        r#"
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
INVITE sip:{ALICE_NUMBER}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} INVITE
Contact: <sip:{PHONE}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 {cseq} IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 40000 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a={dir}
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="a={expect}" search_in="body" check_it="true" assign_to="d{cseq}"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="m{cseq}"/>
    </action>
  </recv>
  <Reference variables="d{cseq},m{cseq}"/>
  <send><![CDATA[
ACK sip:{ALICE_NUMBER}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>"#
    )
}

/// The phone (the callee) offers again with `a={dir}` (CSeq `cseq` of its own), expects `a={expect}`, ACKs.
pub(crate) fn callee_reoffers(cseq: u32, dir: &str, expect: &str) -> String {
    format!(
        r#"
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
INVITE [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{PHONE}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To:[$rf]
Call-ID: [call_id]
CSeq: {cseq} INVITE
Contact: <sip:[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 2 {cseq}0 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 40002 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a={dir}
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="a={expect}" search_in="body" check_it="true" assign_to="d{cseq}"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="m{cseq}"/>
    </action>
  </recv>
  <Reference variables="d{cseq},m{cseq}"/>
  <send><![CDATA[
ACK [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{PHONE}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To:[$rf]
Call-ID: [call_id]
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Length: 0

]]></send>"#
    )
}

/// The phone takes the bridge's re-INVITE: a plain-RTP offer with `a={expect}`, answered with `a={dir}`.
pub(crate) fn takes_reinvite(expect: &str, dir: &str) -> String {
    format!(
        r#"
  <recv request="INVITE">
    <action>
      <ereg regexp="a={expect}" search_in="body" check_it="true" assign_to="h"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="hm"/>
    </action>
  </recv>
  <Reference variables="h,hm"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{PHONE}@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 3 3 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 40004 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a={dir}
]]></send>
  <recv request="ACK"/>"#
    )
}

/// Waits for the `n`th (from 0) `m.call.*` event of `kind` from the ghost.
async fn ghost_sends_nth(h: &Harness, room: &str, kind: &str, n: usize) -> Value {
    ghost_event(h, room, kind, n, |_| true).await
}

/// What a browser writes when it negotiates again: its SDP with the direction `dir`.
fn browser_negotiates(setup: &str, port: u16, dir: &str) -> String {
    browser_sdp(setup, port, true).replace("a=sendrecv", &format!("a={dir}"))
}

/// The ghost's negotiate of `kind` carries WebRTC SDP with direction `dir`.
fn assert_ghost_negotiates(content: &Value, kind: &str, dir: &str) {
    assert_eq!(content["description"]["type"], kind, "{content}");
    assert!(content["lifetime"].as_u64().is_some_and(|l| l > 0), "{content}");
    let sdp = content["description"]["sdp"].as_str().unwrap();
    assert!(sdp.contains("UDP/TLS/RTP/SAVPF") && sdp.contains("a=fingerprint:"), "{sdp}");
    assert!(sdp.contains("a=group:BUNDLE "), "{sdp}");
    assert!(sdp.contains(&format!("a={dir}")), "{dir} in {sdp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_holds_and_resumes_through_matrix_negotiate_and_a_matrix_hold_reinvites_the_phone() {
    let (h, _rtp, ng) = start(None, 60).await;
    let phone_side = format!(
        "{}{}{}{}{}",
        fill(TAKES_200),
        caller_reoffers(2, "sendonly", "recvonly"),
        caller_reoffers(3, "sendrecv", "sendrecv"),
        takes_reinvite("inactive", "inactive"),
        TAKES_BYE
    );
    let (_s, phone) = spawn_caller(&h, &phone_calls(&phone_side));
    let (room, invite) = ringing_in_matrix(&h).await;
    let call_id = &invite["call_id"];
    let answer = browser_sdp("active", 45010, true);
    alice_sends(
        &h,
        &room,
        "m.call.answer",
        v1(call_id, "alice-phone", json!({"answer": {"type": "answer", "sdp": answer}})),
    )
    .await;
    ghost_sends(&h, &room, "m.call.select_answer").await;

    // The phone holds: its re-INVITE (sendonly) reaches Alice as the ghost's negotiate offer; her answer
    // (recvonly) goes back in the 200 (checked by the scenario).
    let hold = ghost_sends_nth(&h, &room, "m.call.negotiate", 0).await;
    assert_ghost_negotiates(&hold, "offer", "sendonly");
    assert_eq!(hold["party_id"], invite["party_id"]);
    assert_eq!(&hold["call_id"], call_id);
    let sdp = browser_negotiates("active", 45010, "recvonly");
    alice_sends(
        &h,
        &room,
        "m.call.negotiate",
        v1(call_id, "alice-phone", json!({"lifetime": 10000, "description": {"type": "answer", "sdp": sdp}})),
    )
    .await;
    // It resumes.
    let resume = ghost_sends_nth(&h, &room, "m.call.negotiate", 1).await;
    assert_ghost_negotiates(&resume, "offer", "sendrecv");
    let sdp = browser_negotiates("active", 45010, "sendrecv");
    alice_sends(
        &h,
        &room,
        "m.call.negotiate",
        v1(call_id, "alice-phone", json!({"lifetime": 10000, "description": {"type": "answer", "sdp": sdp}})),
    )
    .await;
    // Alice holds (as matrix-js-sdk does: an inactive offer): the phone gets a re-INVITE, its answer comes
    // back as the ghost's.
    let sdp = browser_negotiates("actpass", 45010, "inactive");
    alice_sends(
        &h,
        &room,
        "m.call.negotiate",
        v1(call_id, "alice-phone", json!({"lifetime": 10000, "description": {"type": "offer", "sdp": sdp}})),
    )
    .await;
    let held = ghost_sends_nth(&h, &room, "m.call.negotiate", 2).await;
    assert_ghost_negotiates(&held, "answer", "inactive");
    alice_sends(&h, &room, "m.call.hangup", v1(call_id, "alice-phone", json!({"reason": "user_hangup"}))).await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone held, resumed, was held, got BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_hold_reinvites_the_phone_and_the_phones_hold_reaches_matrix_on_a_call_from_matrix() {
    let phone = free_addr();
    let (h, _rtp, ng) = start(Some(phone), 60).await;
    let room = dm_with_phone(&h).await;
    let hangs_up = fill(PHONE_HANGS_UP).replace("{PHONE}", PHONE).replace("CSeq: 1 BYE", "CSeq: 2 BYE");
    let phone_side = format!(
        "{}{}{}{}",
        fill(PHONE_200),
        takes_reinvite("sendonly", "recvonly"),
        callee_reoffers(1, "inactive", "inactive"),
        hangs_up
    );
    let (_s, guard) = spawn_callee(phone, &phone_answers(&phone_side)).await;
    alice_calls(&h, &room, "call-out-hold").await;
    let answer = ghost_sends(&h, &room, "m.call.answer").await;
    // Alice holds with a sendonly offer: the phone gets a re-INVITE (checked by the scenario) and answers
    // recvonly.
    let sdp = browser_negotiates("actpass", 45004, "sendonly");
    alice_sends(
        &h,
        &room,
        "m.call.negotiate",
        json!({"call_id": "call-out-hold", "party_id": "alice-phone", "version": "1", "lifetime": 10000,
               "description": {"type": "offer", "sdp": sdp}}),
    )
    .await;
    let held = ghost_sends_nth(&h, &room, "m.call.negotiate", 0).await;
    assert_ghost_negotiates(&held, "answer", "recvonly");
    assert_eq!(held["party_id"], answer["party_id"]);
    // The phone puts Alice on hold (inactive): the ghost offers, Alice answers inactive.
    let hold = ghost_sends_nth(&h, &room, "m.call.negotiate", 1).await;
    assert_ghost_negotiates(&hold, "offer", "inactive");
    let sdp = browser_negotiates("active", 45004, "inactive");
    alice_sends(
        &h,
        &room,
        "m.call.negotiate",
        json!({"call_id": "call-out-hold", "party_id": "alice-phone", "version": "1", "lifetime": 10000,
               "description": {"type": "answer", "sdp": sdp}}),
    )
    .await;
    assert!(finished(guard, Duration::from_secs(30)).await, "the phone was held, held, then hung up");
    let hangup = ghost_sends(&h, &room, "m.call.hangup").await;
    assert_eq!(hangup["reason"], "user_hangup");
    no_media_left(&ng).await;
}

/// The ghost's `m.call.*` event of `kind` in the call `call_id`.
pub(crate) async fn ghost_sends_in(h: &Harness, room: &str, kind: &str, call_id: &str) -> Value {
    ghost_event(h, room, kind, 0, |c| c["call_id"] == call_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_when_the_users_call_has_the_lower_id_the_phones_call_gets_486_and_hers_rings_the_phone() {
    let phone_in = free_addr();
    let (h, _rtp, ng) = start(Some(phone_in), 60).await;
    let room = dm_with_phone(&h).await;
    let (_si, answers) = spawn_callee(phone_in, &phone_answers(&format!("{PHONE_200}{TAKES_BYE}"))).await;
    // The phone calls Alice…
    let (_so, calls) = spawn_caller(&h, &phone_calls(&takes_failure(486)));
    let phones = ghost_sends(&h, &room, "m.call.invite").await;
    // …while she calls it, with a call ID lower than any the bridge makes (its IDs are alphanumeric).
    alice_calls(&h, &room, "-glare-a").await;
    // Her call wins, as her own client decides with the ghost's invite: the ghost hangs its call up as
    // replaced, the phone's INVITE is refused busy, and hers rings the phone.
    let hangup = ghost_sends_in(&h, &room, "m.call.hangup", phones["call_id"].as_str().unwrap()).await;
    assert_eq!(hangup["reason"], "replaced");
    assert!(finished(calls, Duration::from_secs(30)).await, "the phone's own call got 486");
    ghost_sends_in(&h, &room, "m.call.answer", "-glare-a").await;
    alice_sends(
        &h,
        &room,
        "m.call.hangup",
        json!({"call_id": "-glare-a", "party_id": "alice-phone", "version": "1", "reason": "user_hangup"}),
    )
    .await;
    assert!(finished(answers, Duration::from_secs(30)).await, "her call reached the phone, then BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_when_the_phones_call_has_the_lower_id_the_users_call_is_replaced_and_she_answers_the_phone() {
    // Nothing listens at the route: a call placed there would not be answered.
    let (h, _rtp, ng) = start(Some(free_addr()), 60).await;
    let room = dm_with_phone(&h).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&fill(&format!("{TAKES_200}{TAKES_BYE}"))));
    let phones = ghost_sends(&h, &room, "m.call.invite").await;
    let call_id = phones["call_id"].as_str().unwrap();
    // Alice calls the phone at the same time, with a call ID higher than any the bridge makes.
    alice_calls(&h, &room, "~glare-b").await;
    let hangup = ghost_sends_in(&h, &room, "m.call.hangup", "~glare-b").await;
    assert_eq!(hangup["reason"], "replaced");
    assert_eq!(ng.list(10).await.unwrap().len(), 1, "no second call was placed to the phone");
    // Her client answers the phone's call instead (matrix-js-sdk's replacedBy), then hangs up.
    alice_sends(
        &h,
        &room,
        "m.call.answer",
        v1(
            &phones["call_id"],
            "alice-phone",
            json!({"answer": {"type": "answer", "sdp": browser_sdp("active", 45020, true)}}),
        ),
    )
    .await;
    ghost_sends_in(&h, &room, "m.call.select_answer", call_id).await;
    alice_sends(&h, &room, "m.call.hangup", v1(&phones["call_id"], "alice-phone", json!({"reason": "user_hangup"})))
        .await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone's call was answered, then BYE");
    no_media_left(&ng).await;
}
