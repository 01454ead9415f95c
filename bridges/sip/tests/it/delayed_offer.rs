//! A phone's re-INVITE without SDP in an established call (RFC 3261 §14.2, RFC 3264 §4: a session refresh, or
//! a phone asking for a fresh offer): the bridge answers 200 with its offer from rtpengine and takes the
//! phone's answer from the ACK into rtpengine, whichever side placed the call; Matrix is not asked anything.
//! The same on a call a registered device answered, from the caller or from the device: the other side is not
//! asked. And a phone's first INVITE without SDP (RFC 3261 §13.2.1, a "delayed offer"): the call rings, and
//! whoever answers (Alice in Matrix, or her registered desk phone) the 200 carries rtpengine's offer and the
//! ACK's answer moves the phone's media.

use crate::calls::{
    PHONE, PHONE_200, PHONE_HANGS_UP, TAKES_200, TAKES_BYE, alice_calls, alice_sends, answers, browser_sdp,
    call_events, dm_with_phone, fill, ghost_sends, no_media_left, phone_answers, phone_calls, ringing_in_matrix,
    spawn_callee, spawn_caller, start, v1,
};
use crate::devices::FROM_THE_PHONE;
use crate::harness::{ALICE_DEVICE, ALICE_DEVICE_PASSWORD, wait_for};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tincan_sip_core::bencode::{self, Value};
use tincan_sip_core::rtpengine::NgClient;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::finished;
use tokio::net::UdpSocket;

/// The re-INVITE without a body, CSeq `cseq`; the 200 must carry a plain-RTP offer on loopback, and the ACK
/// answers it with PCMU at `port`. `dialog` is the request line's target and the From/To lines, which differ
/// between the phone as caller and as callee.
fn asks_for_an_offer(cseq: u32, port: u16, dialog: &str) -> String {
    format!(
        r#"
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
INVITE {dialog}
CSeq: {cseq} INVITE
Contact: <sip:{PHONE}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="om"/>
      <ereg regexp="c=IN IP4 127\.0\.0\.1" search_in="body" check_it="true" assign_to="oc"/>
      <ereg regexp="application/sdp" search_in="hdr" header="Content-Type:" check_it="true" assign_to="ot"/>
    </action>
  </recv>
  <Reference variables="om,oc,ot"/>
  <send><![CDATA[
ACK {dialog}
CSeq: {cseq} ACK
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 7 {cseq} IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio {port} RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
]]></send>"#
    )
}

/// A phone calling Alice's number with an INVITE without a body (a delayed offer): it rings, takes a 200 that
/// must carry a plain-RTP offer on loopback with G.711, answers it in its ACK with PCMU at `port`, then `after`.
fn phone_calls_without_an_offer(port: u16, after: &str) -> String {
    let scenario = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="phone calls without an offer">
  <send retrans="500"><![CDATA[
INVITE sip:{{ALICE}}@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Bob" <sip:{PHONE}@[local_ip]:[local_port];user=phone>;tag=[call_number]
To: <sip:{{ALICE}}@{{DOMAIN}}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{PHONE}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <recv response="200">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="om"/>
      <ereg regexp="c=IN IP4 127\.0\.0\.1" search_in="body" check_it="true" assign_to="oc"/>
      <ereg regexp="PCMU/8000" search_in="body" check_it="true" assign_to="op"/>
      <ereg regexp="application/sdp" search_in="hdr" header="Content-Type:" check_it="true" assign_to="ot"/>
    </action>
  </recv>
  <Reference variables="om,oc,op,ot"/>
  <send><![CDATA[
ACK sip:{{ALICE}}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 7 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio {port} RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
]]></send>
{after}
</scenario>
"#
    );
    fill(&scenario)
}

/// The phone called in: it is the dialog's caller (From and To as the 200 to its INVITE had them).
const AS_CALLER: &str = "sip:{ALICE}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]";

/// The phone was called: it is the dialog's callee (its own tag in From, the bridge's From as To).
const AS_CALLEE: &str = "[$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{PHONE}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To:[$rf]
Call-ID: [call_id]";

/// The stream of the party `tag` at rtpengine: (its media port from its SDP, rtpengine's port toward it).
async fn party_stream(ng: &NgClient, call: &str, tag: &str) -> Option<(i64, i64)> {
    let reply = ng.raw("query", bencode::dict([("call-id", Value::str(call))])).await.ok()?;
    let stream = reply.get(b"tags".as_slice())?.get(tag)?.get("medias")?.as_list()?.first()?.get("streams")?;
    let rtp = stream.as_list()?.first()?;
    let advertised = rtp.get("advertised endpoint")?.get("port")?.as_int()?;
    Some((advertised, rtp.get("local port")?.as_int()?))
}

/// After the phone's offer-less re-INVITE: rtpengine sends the phone's media to `phone_media`'s port (the
/// answer in the ACK) and counts what the phone sends it there.
async fn rtpengine_took_the_answer_and_media_flows(ng: &NgClient, phone_media: &UdpSocket) {
    the_answer_in_the_ack_moves_the_media(ng, "sip", phone_media).await;
}

/// After an offer-less re-INVITE from the party `tag`: rtpengine sends that party's media to `media`'s port (the
/// answer in its ACK) and counts what is sent to it from there; returns rtpengine's call.
async fn the_answer_in_the_ack_moves_the_media(ng: &NgClient, tag: &str, media: &UdpSocket) -> String {
    let port = i64::from(media.local_addr().unwrap().port());
    let (call, local) = wait_for("rtpengine to take the answer from the ACK", Duration::from_secs(30), || async {
        for call in ng.list(10).await.ok()? {
            if let Some((advertised, local)) = party_stream(ng, &call, tag).await
                && advertised == port
            {
                return Some((call, local));
            }
        }
        None
    })
    .await;
    let before = ng.query(&call).await.unwrap().tags[tag].rtp_packets;
    // 50 PCMU packets of 20 ms (RTP version 2, payload type 0, one SSRC) from the port the phone answered with.
    let to = format!("127.0.0.1:{local}");
    for seq in 0u16..50 {
        let mut packet = vec![0x80, 0x00];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        packet.extend_from_slice(&0x7a11_ce00u32.to_be_bytes());
        packet.extend_from_slice(&[0xff; 160]);
        media.send_to(&packet, &to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("rtpengine to count the media", Duration::from_secs(10), || async {
        let now = ng.query(&call).await.ok()?.tags.get(tag)?.rtp_packets;
        (now >= before + 50).then_some(())
    })
    .await;
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_invite_without_sdp_from_a_phone_that_called_gets_an_offer_and_its_ack_answer_moves_the_media() {
    let (h, _rtp, ng) = start(None, 60).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let phone_side = format!("{}{}{TAKES_BYE}", fill(TAKES_200), asks_for_an_offer(2, port, &fill(AS_CALLER)));
    let (_s, phone) = spawn_caller(&h, &phone_calls(&phone_side.replace("{PHONE}", PHONE)));
    let (room, invite) = ringing_in_matrix(&h).await;
    let answer = browser_sdp("active", 45030, true);
    alice_sends(
        &h,
        &room,
        "m.call.answer",
        v1(&invite["call_id"], "alice-phone", json!({"answer": {"type": "answer", "sdp": answer}})),
    )
    .await;
    ghost_sends(&h, &room, "m.call.select_answer").await;
    rtpengine_took_the_answer_and_media_flows(&ng, &media).await;
    // Matrix was not asked to negotiate: the offer came from rtpengine's view of the call.
    let events = call_events(&h, &room).await;
    assert!(events.iter().all(|(_, t, _)| t != "m.call.negotiate"), "{events:?}");
    alice_sends(&h, &room, "m.call.hangup", v1(&invite["call_id"], "alice-phone", json!({"reason": "user_hangup"})))
        .await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone re-INVITEd, ACKed with its answer, got BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_invite_without_sdp_from_a_phone_that_was_called_gets_an_offer_and_its_ack_answer_moves_the_media() {
    let phone = free_addr();
    let (h, _rtp, ng) = start(Some(phone), 60).await;
    let room = dm_with_phone(&h).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let dialog = AS_CALLEE.replace("{PHONE}", PHONE);
    let phone_side = format!("{PHONE_200}{}{TAKES_BYE}", asks_for_an_offer(1, port, &dialog));
    let (_s, guard) = spawn_callee(phone, &phone_answers(&phone_side.replace("{PHONE}", PHONE))).await;
    alice_calls(&h, &room, "call-out-delayed").await;
    ghost_sends(&h, &room, "m.call.answer").await;
    rtpengine_took_the_answer_and_media_flows(&ng, &media).await;
    let events = call_events(&h, &room).await;
    assert!(events.iter().all(|(_, t, _)| t != "m.call.negotiate"), "{events:?}");
    alice_sends(
        &h,
        &room,
        "m.call.hangup",
        json!({"call_id": "call-out-delayed", "party_id": "alice-phone", "version": "1", "reason": "user_hangup"}),
    )
    .await;
    assert!(finished(guard, Duration::from_secs(30)).await, "the phone re-INVITEd, ACKed with its answer, got BYE");
    no_media_left(&ng).await;
}

/// The device waits for the test's go (an OPTIONS in its dialog, [`go`]) before it goes on (hangs up), so the
/// call lasts until the test has seen what it checks.
const WAITS_FOR_THE_GO: &str = r#"
  <recv request="OPTIONS"/>"#;

/// Sends the sipp at `to` an OPTIONS in its dialog `call_id` (sipp matches requests to calls by Call-ID): the
/// go [`WAITS_FOR_THE_GO`] waits for.
async fn go(to: SocketAddr, call_id: &str) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = socket.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKtestgo\r\nFrom: <sip:test@{me}>;tag=go\r\n\
         To: <sip:{to}>\r\nCall-ID: {call_id}\r\nCSeq: 99 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(options.as_bytes(), to).await.unwrap();
}

/// The device's BYE (CSeq `cseq`) once it has the go.
fn device_hangs_up_on_the_go(cseq: u32) -> String {
    let bye = fill(PHONE_HANGS_UP).replace("{PHONE}", PHONE).replace("CSeq: 1 BYE", &format!("CSeq: {cseq} BYE"));
    format!("{WAITS_FOR_THE_GO}{bye}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_invite_without_sdp_from_the_caller_in_a_device_call_gets_an_offer_and_its_ack_answer_moves_the_media() {
    let (h, _rtp, ng) = start(None, 60).await;
    let desk = free_addr();
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    // The desk phone answers and waits; a re-INVITE reaching it would fail its scenario (it is not asked).
    let desk_side = format!("{PHONE_200}{}", device_hangs_up_on_the_go(1));
    let (_sd, desk_guard) = spawn_callee(desk, &answers(FROM_THE_PHONE, &desk_side)).await;
    let caller_side = format!("{}{}{TAKES_BYE}", fill(TAKES_200), asks_for_an_offer(2, port, &fill(AS_CALLER)));
    let (_s, phone) = spawn_caller(&h, &phone_calls(&caller_side.replace("{PHONE}", PHONE)));
    // The caller's party in the device's rtpengine call now sends to the port of the ACK's answer.
    let call = the_answer_in_the_ack_moves_the_media(&ng, "sip", &media).await;
    go(desk, &call).await;
    assert!(finished(desk_guard, Duration::from_secs(30)).await, "the desk phone answered, was not asked, hung up");
    assert!(finished(phone, Duration::from_secs(30)).await, "the caller re-INVITEd, ACKed with its answer, got BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_invite_without_sdp_from_the_device_in_a_device_call_gets_an_offer_and_its_ack_answer_moves_the_media() {
    let (h, _rtp, ng) = start(None, 60).await;
    let desk = free_addr();
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let dialog = AS_CALLEE.replace("{PHONE}", PHONE);
    let desk_side = format!("{PHONE_200}{}{}", asks_for_an_offer(1, port, &dialog), device_hangs_up_on_the_go(2));
    let (_sd, desk_guard) = spawn_callee(desk, &answers(FROM_THE_PHONE, &desk_side)).await;
    // The caller answers nothing but the BYE: a re-INVITE reaching it would fail its scenario (it is not asked).
    let (_s, phone) = spawn_caller(&h, &phone_calls(&fill(&format!("{TAKES_200}{TAKES_BYE}"))));
    // The device's party in its rtpengine call now sends to the port of the ACK's answer.
    let call = the_answer_in_the_ack_moves_the_media(&ng, "dev", &media).await;
    go(desk, &call).await;
    assert!(
        finished(desk_guard, Duration::from_secs(30)).await,
        "the desk phone re-INVITEd, ACKed its answer, hung up"
    );
    assert!(
        finished(phone, Duration::from_secs(30)).await,
        "the caller talked to the desk phone, was not asked, got BYE"
    );
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_without_sdp_answered_in_matrix_gets_an_offer_in_the_200_and_its_ack_answer_moves_the_media() {
    let (h, _rtp, ng) = start(None, 60).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    let (_s, phone) = spawn_caller(&h, &phone_calls_without_an_offer(port, &fill(TAKES_BYE)));
    // It rings in Matrix with a WebRTC offer made of the stand-in for the phone's media.
    let (room, invite) = ringing_in_matrix(&h).await;
    let answer = browser_sdp("active", 45040, true);
    alice_sends(
        &h,
        &room,
        "m.call.answer",
        v1(&invite["call_id"], "alice-phone", json!({"answer": {"type": "answer", "sdp": answer}})),
    )
    .await;
    ghost_sends(&h, &room, "m.call.select_answer").await;
    // The 200 carried rtpengine's offer (checked by the scenario); the ACK's answer is where media goes now.
    rtpengine_took_the_answer_and_media_flows(&ng, &media).await;
    let events = call_events(&h, &room).await;
    assert!(events.iter().all(|(_, t, _)| t != "m.call.negotiate"), "{events:?}");
    alice_sends(&h, &room, "m.call.hangup", v1(&invite["call_id"], "alice-phone", json!({"reason": "user_hangup"})))
        .await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone called without SDP, ACKed its answer, got BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_without_sdp_answered_by_a_registered_device_gets_an_offer_in_the_200_and_its_ack_answer_moves_the_media()
 {
    let (h, _rtp, ng) = start(None, 60).await;
    let desk = free_addr();
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = media.local_addr().unwrap().port();
    // The desk phone is offered G.711 (from the stand-in), answers, and waits for the test's go to hang up.
    let desk_side = format!("{PHONE_200}{}", device_hangs_up_on_the_go(1));
    let (_sd, desk_guard) = spawn_callee(desk, &answers(FROM_THE_PHONE, &desk_side)).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls_without_an_offer(port, &fill(TAKES_BYE)));
    // The caller's party in the device's rtpengine call sends to the port of the ACK's answer.
    let call = the_answer_in_the_ack_moves_the_media(&ng, "sip", &media).await;
    go(desk, &call).await;
    assert!(finished(desk_guard, Duration::from_secs(30)).await, "the desk phone answered and hung up");
    assert!(finished(phone, Duration::from_secs(30)).await, "the phone called without SDP, ACKed its answer, got BYE");
    no_media_left(&ng).await;
}
