//! The ng client against Debian's rtpengine daemon in userspace mode.

use std::net::UdpSocket;
use std::time::Duration;
use tincan_sip_core::rtpengine::{Leg, NgClient, NgError, NgTiming};
use tincan_sip_core::sdp;
use tincan_testkit::sip::Rtpengine;

fn phone_offer(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
    )
}

fn plain_answer(port: u16) -> String {
    format!(
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

async fn client(rtp: &Rtpengine) -> NgClient {
    NgClient::new(rtp.ng, NgTiming::default(), &mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng())
        .await
        .unwrap()
}

fn media_port(sdp: &str) -> u16 {
    sdp.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap()
}

/// An RTP packet (PCMU) with sequence number `seq`.
fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xff, 160));
    p
}

#[tokio::test]
async fn offer_to_webrtc_gets_ice_dtls_and_opus() {
    let rtp = Rtpengine::start().await.unwrap();
    let ng = client(&rtp).await;
    ng.ping().await.unwrap();
    let out = ng.offer("it-webrtc", "from1", &phone_offer(40000), &Leg::webrtc().transcode(&["opus"])).await.unwrap();
    assert!(out.contains("UDP/TLS/RTP/SAVPF"), "{out}");
    assert!(out.contains("a=ice-ufrag:") && out.contains("a=fingerprint:") && out.contains("a=rtcp-mux"), "{out}");
    assert!(sdp::has_candidates(&out), "rtpengine's own candidates: {out}");
    assert!(sdp::audio_codecs(&out).contains(&"OPUS".to_owned()), "{out}");
    assert!(ng.list(100).await.unwrap().contains(&"it-webrtc".to_owned()));
}

#[tokio::test]
async fn a_plain_call_counts_packets_per_leg_and_deletes_at_once() {
    let rtp = Rtpengine::start().await.unwrap();
    let ng = client(&rtp).await;
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
    let to_b = ng.offer("it-plain", "ta", &phone_offer(pa), &Leg::plain_rtp()).await.unwrap();
    let to_a = ng.answer("it-plain", "ta", "tb", &plain_answer(pb), &Leg::plain_rtp()).await.unwrap();
    // Each side sends to the port rtpengine gave it.
    for seq in 0..5 {
        a.send_to(&rtp_packet(seq), ("127.0.0.1", media_port(&to_a))).unwrap();
        b.send_to(&rtp_packet(seq), ("127.0.0.1", media_port(&to_b))).unwrap();
    }
    // And each receives what the other sent.
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        assert_eq!(b.recv(&mut buf).unwrap(), 172, "A's packet reached B");
        assert_eq!(a.recv(&mut buf).unwrap(), 172, "B's packet reached A");
    }
    // A query right after the packets arrive can see a counter one short (CI saw 4 of 5
    // once): ask until both legs have counted five, then assert exactly five.
    let mut q = ng.query("it-plain").await.unwrap();
    for _ in 0..50 {
        if q.tags["ta"].rtp_packets >= 5 && q.tags["tb"].rtp_packets >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        q = ng.query("it-plain").await.unwrap();
    }
    assert_eq!(q.tags["ta"].rtp_packets, 5, "{q:?}");
    assert_eq!(q.tags["tb"].rtp_packets, 5, "{q:?}");
    ng.delete("it-plain").await.unwrap();
    assert!(!ng.list(100).await.unwrap().contains(&"it-plain".to_owned()), "deleted without delay");
    // Deleting again (as a restart does for calls it cannot know the state of) is not an error.
    ng.delete("it-plain").await.unwrap();
    assert!(matches!(ng.query("it-plain").await, Err(NgError::Refused { .. })));
}

#[tokio::test]
async fn a_dead_rtpengine_times_out_after_retransmissions() {
    let mut rtp = Rtpengine::start().await.unwrap();
    let timing = NgTiming { retransmit_after: Duration::from_millis(100), retransmissions: 2 };
    let ng =
        NgClient::new(rtp.ng, timing, &mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng()).await.unwrap();
    ng.ping().await.unwrap();
    rtp.kill();
    match ng.ping().await {
        Err(NgError::Timeout { command, waited }) => {
            assert_eq!(command, "ping");
            assert_eq!(waited, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn refusals_carry_rtpengine_reason() {
    let rtp = Rtpengine::start().await.unwrap();
    let ng = client(&rtp).await;
    match ng.answer("no-such-call", "x", "y", &plain_answer(4000), &Leg::plain_rtp()).await {
        Err(NgError::Refused { command, reason }) => {
            assert_eq!(command, "answer");
            assert!(!reason.is_empty());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let bogus = ng.command("no-such-command", Default::default()).await;
    assert!(matches!(bogus, Err(NgError::Refused { .. })), "{bogus:?}");
}

#[tokio::test]
async fn concurrent_commands_share_one_socket() {
    let rtp = Rtpengine::start().await.unwrap();
    let ng = client(&rtp).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let ng = ng.clone();
            tokio::spawn(async move {
                ng.offer(&format!("it-many-{i}"), "f", &phone_offer(41000 + i), &Leg::plain_rtp()).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let listed = ng.list(1000).await.unwrap();
    assert_eq!(listed.iter().filter(|c| c.starts_with("it-many-")).count(), 40);
}
