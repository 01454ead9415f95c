//! The stack wrapper against sipp: MESSAGE both ways, calls placed and received, ringing, answer, busy,
//! cancel, hang-up from either side, an in-dialog request for an unknown dialog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tincan_sip_core::stack::rsip_stack::{RsipStack, StackConfig};
use tincan_sip_core::stack::{
    Incoming, LegEvent, LegEvents, Method, OutgoingRequest, SipStack, StackError, Target, Transport,
};
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::Scenario;
use tincan_testkit::tools;
use tokio::sync::mpsc;

async fn stack() -> (Arc<RsipStack>, mpsc::Receiver<Incoming>, SocketAddr) {
    let addr = free_addr();
    let cfg = StackConfig {
        listen: vec![Target { transport: Transport::Udp, addr }, Target { transport: Transport::Tcp, addr }],
        ..Default::default()
    };
    let (s, rx) = RsipStack::start(cfg).await.unwrap();
    (s, rx, addr)
}

async fn next(rx: &mut mpsc::Receiver<Incoming>) -> Incoming {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("nothing arrived").expect("stack stopped")
}

async fn event(events: &mut LegEvents) -> LegEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("no leg event").expect("leg gone")
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn outgoing(method: Method, to: &str, target: SocketAddr, body: &str) -> OutgoingRequest {
    OutgoingRequest {
        method,
        uri: to.parse().unwrap(),
        from: "<sip:+4420794600001@sip.provider.test>".parse().unwrap(),
        to: format!("<{to}>").parse().unwrap(),
        headers: Vec::new(),
        content_type: (!body.is_empty()).then(|| "text/plain".into()),
        body: body.as_bytes().to_vec(),
        target: Target { transport: Transport::Udp, addr: target },
        call_id: None,
    }
}

const MESSAGE_UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="message uac">
  <send retrans="500"><![CDATA[
MESSAGE sip:+1-212-555-1212;npdi@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Bob" <sip:+15551234567@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:+12125551212@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain;charset=UTF-8
Content-Length: [len]

hello from sipp
]]></send>
  <recv response="202"/>
</scenario>
"#;

#[tokio::test]
async fn a_message_from_sipp_arrives_parsed_and_gets_our_answer() {
    let (_stack, mut rx, addr) = stack().await;
    let scenario = Scenario::new("message-uac", MESSAGE_UAC).unwrap();
    let sipp = scenario.run(scenario.command(addr, free_addr(), 1));
    let app = async {
        let Incoming::Request(req) = next(&mut rx).await else { panic!("expected a request") };
        assert_eq!(req.request.method, Method::Message);
        // The user part keeps its `;npdi` and the host survives (what the stack's own parser loses).
        let uri = req.request.uri.as_sip().unwrap().clone();
        assert_eq!(uri.user.as_deref(), Some("+1-212-555-1212;npdi"));
        assert_eq!(uri.host.to_string(), "127.0.0.1");
        assert_eq!(uri.phone_number().as_deref(), Some("+12125551212"));
        assert_eq!(req.request.from.display_name.as_deref(), Some("Bob"));
        assert_eq!(req.request.from.uri.phone_number().as_deref(), Some("+15551234567"));
        assert_eq!(req.request.content_type().as_deref(), Some("text/plain"));
        assert_eq!(String::from_utf8_lossy(&req.request.body).trim(), "hello from sipp");
        assert_eq!(req.request.source.transport, Transport::Udp);
        req.reply(202, "Accepted");
    };
    let (out, ()) = tokio::join!(sipp, app);
    out.unwrap();
}

const MESSAGE_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="message uas">
  <recv request="MESSAGE"/>
  <send><![CDATA[
SIP/2.0 [$code] Answer
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#;

#[tokio::test]
async fn our_message_reaches_sipp_and_its_status_comes_back() {
    let (stack, _rx, _) = stack().await;
    for code in ["200", "404"] {
        let scenario = Scenario::new("message-uas", &MESSAGE_UAS.replace("[$code]", code)).unwrap();
        let uas = free_addr();
        let guard = scenario.serve(scenario.uas_command(uas), uas, "sipp-uas").await.unwrap();
        let resp = stack.request(outgoing(Method::Message, &format!("sip:+15551234567@{uas}"), uas, "hi")).await;
        let resp = resp.unwrap_or_else(|e| panic!("{e}\n{}", guard.log_tail(30)));
        assert_eq!(resp.code.to_string(), code);
        assert!(tincan_testkit::sip::finished(guard, Duration::from_secs(10)).await, "sipp saw something unexpected");
    }
}

#[tokio::test]
async fn a_message_nobody_answers_times_out() {
    let (stack, _rx, _) = stack().await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = silent.local_addr().unwrap();
    let started = std::time::Instant::now();
    let r = stack.request(outgoing(Method::Message, &format!("sip:x@{to}"), to, "hi")).await;
    assert!(matches!(r, Err(StackError::Timeout(_))), "{r:?}");
    assert!(started.elapsed() >= Duration::from_secs(30), "Timer F is 64*T1");
}

#[tokio::test]
async fn a_call_from_sipp_rings_is_answered_and_hung_up_by_sipp() {
    let (_stack, mut rx, addr) = stack().await;
    let scenario = Scenario::new("unused", "<scenario/>").unwrap();
    let mut cmd = tools::command("sipp");
    cmd.arg(addr.to_string())
        .args(["-sn", "uac", "-i", "127.0.0.1", "-p", &free_addr().port().to_string()])
        .args(["-s", "+4420794600001", "-m", "1", "-d", "300", "-nostdin", "-timeout", "30s", "-timeout_error"])
        .current_dir(scenario.dir());
    let sipp = scenario.run(cmd);
    let app = async {
        let Incoming::Call(leg, mut events) = next(&mut rx).await else { panic!("expected a call") };
        assert_eq!(leg.invite.uri.as_sip().unwrap().user.as_deref(), Some("+4420794600001"));
        assert!(leg.offer().unwrap().contains("m=audio"));
        leg.ring(None).unwrap();
        leg.answer(SDP).unwrap();
        assert!(matches!(event(&mut events).await, LegEvent::Confirmed { sdp: None }));
        assert!(matches!(event(&mut events).await, LegEvent::HungUp));
    };
    let (out, ()) = tokio::join!(sipp, app);
    out.unwrap();
}

/// A call without an offer in its INVITE (RFC 3261 §13.2.1): the 200 must carry ours, the ACK answers it.
const OFFERLESS_UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="offerless uac">
  <send retrans="500"><![CDATA[
INVITE sip:+4420794600001@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+15551234567@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:+4420794600001@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:+15551234567@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="200">
    <action>
      <ereg regexp="m=audio 40000 RTP/AVP 0" search_in="body" check_it="true" assign_to="o"/>
    </action>
  </recv>
  <Reference variables="o"/>
  <send><![CDATA[
ACK sip:+4420794600001@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 2 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio 40010 RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
BYE sip:+4420794600001@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

#[tokio::test]
async fn a_call_without_an_offer_gets_ours_in_the_200_and_the_answer_comes_with_the_confirmation() {
    let (_stack, mut rx, addr) = stack().await;
    let scenario = Scenario::new("offerless-uac", OFFERLESS_UAC).unwrap();
    let sipp = scenario.run(scenario.command(addr, free_addr(), 1));
    let app = async {
        let Incoming::Call(leg, mut events) = next(&mut rx).await else { panic!("expected a call") };
        assert_eq!(leg.offer(), None);
        leg.answer(SDP).unwrap();
        match event(&mut events).await {
            LegEvent::Confirmed { sdp: Some(answer) } => {
                assert!(answer.contains("m=audio 40010 RTP/AVP 0"), "{answer}")
            }
            other => panic!("expected the confirmation with the ACK's answer, got {other:?}"),
        }
        assert!(matches!(event(&mut events).await, LegEvent::HungUp));
    };
    let (out, ()) = tokio::join!(sipp, app);
    out.unwrap();
}

const CANCEL_UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="cancel uac">
  <send retrans="500"><![CDATA[
INVITE sip:+4420794600001@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+15551234567@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:+4420794600001@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:+15551234567@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [auto_media_port] RTP/AVP 0
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send><![CDATA[
CANCEL sip:+4420794600001@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:+15551234567@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:+4420794600001@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <recv response="487"/>
  <send><![CDATA[
ACK sip:+4420794600001@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:+15551234567@[local_ip]:[local_port]>;tag=[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#;

#[tokio::test]
async fn a_call_cancelled_by_sipp_while_ringing() {
    let (_stack, mut rx, addr) = stack().await;
    let scenario = Scenario::new("cancel-uac", CANCEL_UAC).unwrap();
    let sipp = scenario.run(scenario.command(addr, free_addr(), 1));
    let app = async {
        let Incoming::Call(leg, mut events) = next(&mut rx).await else { panic!("expected a call") };
        leg.ring(None).unwrap();
        assert!(matches!(event(&mut events).await, LegEvent::Cancelled));
    };
    let (out, ()) = tokio::join!(sipp, app);
    out.unwrap();
}

#[tokio::test]
async fn a_call_we_reject_busy() {
    let (_stack, mut rx, addr) = stack().await;
    let scenario = Scenario::new(
        "busy-uac",
        &(CANCEL_UAC
            .split("  <send><![CDATA[\nCANCEL")
            .next()
            .unwrap()
            .replace("<recv response=\"180\"/>", "<recv response=\"486\"/>")
            + r#"  <send><![CDATA[
ACK sip:+4420794600001@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:+15551234567@[local_ip]:[local_port]>;tag=[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"#),
    )
    .unwrap();
    let sipp = scenario.run(scenario.command(addr, free_addr(), 1));
    let app = async {
        let Incoming::Call(leg, _events) = next(&mut rx).await else { panic!("expected a call") };
        leg.reject(486, "Busy Here").unwrap();
    };
    let (out, ()) = tokio::join!(sipp, app);
    out.unwrap();
}

#[tokio::test]
async fn our_call_to_sipp_rings_is_answered_and_we_hang_up() {
    let (stack, _rx, _) = stack().await;
    let scenario = Scenario::new("unused", "<scenario/>").unwrap();
    let uas = free_addr();
    let mut cmd = tools::command("sipp");
    cmd.args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas.port().to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error"])
        .current_dir(scenario.dir());
    let guard = scenario.serve(cmd, uas, "sipp-uas").await.unwrap();
    let mut req = outgoing(Method::Invite, &format!("sip:service@{uas}"), uas, "");
    req.content_type = Some("application/sdp".into());
    req.body = SDP.as_bytes().to_vec();
    let (leg, mut events) = stack.invite(req).await.unwrap();
    assert!(leg.invite.from.tag().is_some());
    assert!(matches!(event(&mut events).await, LegEvent::Progress { code: 180, .. }));
    match event(&mut events).await {
        LegEvent::Answered { sdp } => assert!(sdp.unwrap_or_default().contains("m=audio")),
        other => panic!("expected an answer, got {other:?}"),
    }
    leg.hangup().await.unwrap();
    assert!(
        tincan_testkit::sip::finished(guard, Duration::from_secs(15)).await,
        "sipp's uas saw the call end properly"
    );
}

const BUSY_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy uas">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"#;

#[tokio::test]
async fn our_call_to_a_busy_phone_fails_486() {
    let (stack, _rx, _) = stack().await;
    let scenario = Scenario::new("busy-uas", BUSY_UAS).unwrap();
    let uas = free_addr();
    let guard = scenario.serve(scenario.uas_command(uas), uas, "sipp-uas").await.unwrap();
    let mut req = outgoing(Method::Invite, &format!("sip:busy@{uas}"), uas, "");
    req.content_type = Some("application/sdp".into());
    req.body = SDP.as_bytes().to_vec();
    let (_leg, mut events) = stack.invite(req).await.unwrap();
    match event(&mut events).await {
        LegEvent::Failed { code, .. } => assert_eq!(code, 486),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(tincan_testkit::sip::finished(guard, Duration::from_secs(15)).await, "sipp got its ACK");
}

const CHALLENGING_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="challenging uas">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 407 Proxy Authentication Required
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Proxy-Authenticate: Digest realm="carrier.example", nonce="abc", algorithm=SHA-256, qop="auth"
Proxy-Authenticate: Digest realm="carrier.example", nonce="abc", algorithm=MD5, qop="auth"
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"#;

#[tokio::test]
async fn a_challenge_to_our_call_comes_up_with_its_headers() {
    let (stack, _rx, _) = stack().await;
    let scenario = Scenario::new("challenging-uas", CHALLENGING_UAS).unwrap();
    let uas = free_addr();
    let guard = scenario.serve(scenario.uas_command(uas), uas, "sipp-uas").await.unwrap();
    let mut req = outgoing(Method::Invite, &format!("sip:+4930123456@{uas}"), uas, "");
    req.content_type = Some("application/sdp".into());
    req.body = SDP.as_bytes().to_vec();
    let (_leg, mut events) = stack.invite(req).await.unwrap();
    match event(&mut events).await {
        LegEvent::Failed { code, headers, .. } => {
            assert_eq!(code, 407);
            // Both challenges, in order, as sent (SHA-256, which the stack's own parser does not take, first).
            let challenges: Vec<&str> = tincan_sip_core::stack::headers_named(&headers, "Proxy-Authenticate").collect();
            assert_eq!(challenges.len(), 2, "{headers:?}");
            assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
        }
        other => panic!("expected the challenge, got {other:?}"),
    }
    assert!(tincan_testkit::sip::finished(guard, Duration::from_secs(15)).await, "sipp got its ACK");
}

const BYE_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer then bye uas">
  <recv request="INVITE">
    <action>
      <ereg regexp="sip:[^>]*" search_in="hdr" header="Contact:" assign_to="contact"/>
    </action>
  </recv>
  <send><![CDATA[
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
o=- 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [auto_media_port] RTP/AVP 0
]]></send>
  <recv request="ACK"/>
  <pause milliseconds="200"/>
  <send retrans="500"><![CDATA[
BYE [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: 1 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

#[tokio::test]
async fn our_call_hung_up_by_the_phone() {
    let (stack, _rx, _) = stack().await;
    // sipp swaps From/To for a BYE it sends as the callee only with the [last_*] of the ACK; write them swapped.
    let xml = BYE_UAS.replace(
        "[last_From:]\n[last_To:]\n[last_Call-ID:]\nCSeq: 1 BYE",
        "From: [$to]\nTo: [$from]\n[last_Call-ID:]\nCSeq: 1 BYE",
    );
    let xml = xml.replace(
        "  <recv request=\"ACK\"/>",
        "  <recv request=\"ACK\">\n    <action>\n      <ereg regexp=\"^.*$\" search_in=\"hdr\" header=\"From:\" \
         assign_to=\"from\"/>\n      <ereg regexp=\"^.*$\" search_in=\"hdr\" header=\"To:\" assign_to=\"to\"/>\n    \
         </action>\n  </recv>",
    );
    let scenario = Scenario::new("bye-uas", &xml).unwrap();
    let uas = free_addr();
    let guard = scenario.serve(scenario.uas_command(uas), uas, "sipp-uas").await.unwrap();
    let mut req = outgoing(Method::Invite, &format!("sip:phone@{uas}"), uas, "");
    req.content_type = Some("application/sdp".into());
    req.body = SDP.as_bytes().to_vec();
    let (_leg, mut events) = stack.invite(req).await.unwrap();
    assert!(matches!(event(&mut events).await, LegEvent::Answered { .. }));
    assert!(matches!(event(&mut events).await, LegEvent::HungUp));
    assert!(tincan_testkit::sip::finished(guard, Duration::from_secs(15)).await, "sipp got 200 for its BYE");
}

const STRAY_BYE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="stray bye">
  <send retrans="500"><![CDATA[
BYE sip:x@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:a@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:x@[remote_ip]:[remote_port]>;tag=nosuchdialog
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="481"/>
</scenario>
"#;

#[tokio::test]
async fn a_request_for_an_unknown_dialog_gets_481() {
    let (_stack, _rx, addr) = stack().await;
    let scenario = Scenario::new("stray-bye", STRAY_BYE).unwrap();
    scenario.run(scenario.command(addr, free_addr(), 1)).await.unwrap();
}

#[tokio::test]
async fn unparsable_uris_get_400() {
    let (_stack, _rx, addr) = stack().await;
    let xml = MESSAGE_UAC
        .replace("From: \"Bob\" <sip:+15551234567@[local_ip]:[local_port]>", "From: <sip:a@b@c>")
        .replace("<recv response=\"202\"/>", "<recv response=\"400\"/>");
    let scenario = Scenario::new("bad-from", &xml).unwrap();
    scenario.run(scenario.command(addr, free_addr(), 1)).await.unwrap();
}

#[tokio::test]
async fn a_flood_from_one_source_gets_503() {
    let addr = free_addr();
    let cfg = StackConfig {
        listen: vec![Target { transport: Transport::Udp, addr }],
        per_source_rate: 5,
        ..Default::default()
    };
    let (_stack, mut rx) = RsipStack::start(cfg).await.unwrap();
    tokio::spawn(async move {
        while let Some(Incoming::Request(r)) = rx.recv().await {
            r.reply(200, "OK");
        }
    });
    // 40 MESSAGEs at once from one address: five pass (the burst), the rest are refused with Retry-After.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    for i in 0..40 {
        let msg = format!(
            "MESSAGE sip:+4420794600001@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-flood-{i}\r\n\
             From: <sip:+15551234567@{me}>;tag=f{i}\r\nTo: <sip:+4420794600001@{addr}>\r\nCall-ID: flood-{i}\r\n\
             CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        sock.send_to(msg.as_bytes(), addr).await.unwrap();
    }
    let (mut ok, mut refused) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while ok + refused < 40 {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await.expect("all answered").unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.starts_with("SIP/2.0 200") {
            ok += 1;
        } else if text.starts_with("SIP/2.0 503") {
            assert!(text.contains("Retry-After: 5"), "{text}");
            refused += 1;
        }
    }
    assert!((5..=7).contains(&ok), "{ok} passed, {refused} refused");
}
