//! Media anchored at a real rtpengine (Debian's daemon, userspace mode): sipp places the call and plays the
//! carrier, whose trunk echoes RTP (`-rtp_echo`); the test is the caller's phone on the RTP side and reads
//! rtpengine's per-party packet counters through ng `query`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tincan_sip_core::bencode::{self, Value};
use tincan_sip_core::rtpengine::{NgClient, NgTiming};
use tincan_testkit::ChildGuard;
use tincan_testkit::ports::{free_addr, free_port};
use tincan_testkit::sip::{Rtpengine, Scenario, finished};
use tokio::net::UdpSocket;

use super::{
    CALLER_HANGS_UP, CALLER_REFUSED, CARRIER_ANSWERS, CARRIER_FAILS, NUMBER, Rig, Trunk, amount, carrier, messages,
    trunk,
};

async fn ng_client(rtp: &Rtpengine) -> NgClient {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    NgClient::new(rtp.ng, NgTiming::default(), &mut rng).await.unwrap()
}

async fn rig_with(trunks: &[&Trunk], ng: SocketAddr) -> Rig {
    Rig::start_with(trunks, "10.00", 60, None, &format!("rtpengine = \"{ng}\"\n")).await
}

/// A carrier trunk that answers with SDP for `127.0.0.1:<echo port>` and echoes every RTP packet it gets there.
fn echoing_carrier(t: &Trunk, echo_port: u16) -> (Scenario, ChildGuard) {
    let s = Scenario::new("trunk", CARRIER_ANSWERS).unwrap();
    let mut cmd = s.uas_command(t.addr);
    cmd.args(["-trace_msg", "-rtp_echo", "-mi", "127.0.0.1", "-mp", &echo_port.to_string()]);
    let g = s.spawn(cmd, "trunk").unwrap();
    (s, g)
}

/// The `m=audio` ports of every SDP in a sipp message log.
fn audio_ports(log: &str) -> Vec<u16> {
    log.lines().filter_map(|l| l.strip_prefix("m=audio ")?.split(' ').next()?.parse().ok()).collect()
}

/// rtpengine's local RTP port toward `tag`'s party, and that party's RTP endpoint port, from a raw `query`.
fn ports_of(reply: &bencode::Dict, tag: &str) -> Option<(u16, u16)> {
    let stream = reply
        .get(b"tags".as_slice())?
        .get(tag)?
        .get("medias")?
        .as_list()?
        .first()?
        .get("streams")?
        .as_list()?
        .first()?
        .clone();
    let local = stream.get("local port")?.as_int()?;
    let endpoint = stream.get("endpoint")?.get("port")?.as_int()?;
    Some((u16::try_from(local).ok()?, u16::try_from(endpoint).ok()?))
}

/// Polls `check` every 50 ms for at most `within`.
async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x7469_6e63u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0xffu8, 160));
    p
}

#[tokio::test]
async fn media_flows_through_rtpengine_with_per_leg_counters_and_is_deleted_at_hang_up() {
    let rtp = Rtpengine::start().await.unwrap();
    let ng = ng_client(&rtp).await;
    let a = trunk("cheap", "0.004");
    let rig = rig_with(&[&a], rtp.ng).await;
    let echo_port = free_port();
    let (trunk_scenario, trunk_a) = echoing_carrier(&a, echo_port);
    // The caller's phone: its SDP names this socket's port.
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone_port = phone.local_addr().unwrap().port();
    let caller = Scenario::new("caller", &CALLER_HANGS_UP.replace("[media_port]", "[rtp_port]")).unwrap();
    let mut cmd = caller.command(rig.sip, free_addr(), 1);
    cmd.args(["-key", "number", NUMBER, "-key", "account", &rig.account, "-key", "rtp_port", &phone_port.to_string()])
        .args(["-d", "5000", "-trace_msg"]);
    let talk = async {
        // Once the carrier's answer went through rtpengine, the call holds both parties.
        let (toward_phone, call_id) =
            eventually("rtpengine to hold the answered call", Duration::from_secs(10), async || {
                let calls = ng.list(10).await.ok()?;
                let call_id = calls.first()?.clone();
                let reply = ng.command("query", bencode::dict([("call-id", Value::str(&call_id))])).await.ok()?;
                ports_of(&reply, "out").filter(|(_, e)| *e == echo_port)?;
                let (toward_phone, phone_endpoint) = ports_of(&reply, "in")?;
                assert_eq!(phone_endpoint, phone_port, "rtpengine sends the caller's media to the caller's SDP");
                Some((toward_phone, call_id))
            })
            .await;
        // Ten packets from the phone reach the carrier through rtpengine and come back the same way.
        let relay: SocketAddr = ([127, 0, 0, 1], toward_phone).into();
        for seq in 0..10 {
            phone.send_to(&rtp_packet(seq), relay).await.unwrap();
        }
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(5), phone.recv_from(&mut buf)).await.expect("echo").unwrap();
            assert_eq!(from, relay, "the carrier's media reaches the phone only from rtpengine");
            assert_eq!(n, 172);
        }
        let q = ng.query(&call_id).await.unwrap();
        (q, call_id)
    };
    let (ran, (q, call_id)) = tokio::join!(caller.run(cmd), talk);
    ran.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    assert_eq!(q.tags["in"].rtp_packets, 10, "rtpengine got the phone's ten packets: {q:?}");
    assert_eq!(q.tags["out"].rtp_packets, 10, "and the carrier's ten echoes: {q:?}");
    // Neither side saw the other's media address: the carrier got rtpengine's port, so did the caller.
    let (lo, hi) = rtp.port_range;
    let offered = audio_ports(&messages(trunk_scenario.dir()));
    assert!(!offered.is_empty() && !offered.contains(&phone_port), "{offered:?}");
    assert!(offered.iter().filter(|p| **p != echo_port).all(|p| (lo..=hi).contains(p)), "{offered:?}");
    let answered = audio_ports(&messages(caller.dir()));
    assert!(!answered.contains(&echo_port), "{answered:?}");
    assert!(answered.iter().filter(|p| **p != phone_port).all(|p| (lo..=hi).contains(p)), "{answered:?}");
    // Hung up: the session is gone at rtpengine, and the call was billed as ever.
    eventually("the media session to be deleted", Duration::from_secs(10), async || {
        ng.query(&call_id).await.is_err().then_some(())
    })
    .await;
    assert!(ng.list(10).await.unwrap().is_empty());
    let cdrs = rig.settled(1).await;
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
}

#[tokio::test]
async fn a_call_the_carriers_refuse_leaves_no_media_session() {
    let rtp = Rtpengine::start().await.unwrap();
    let ng = ng_client(&rtp).await;
    let a = trunk("cheap", "0.004");
    let rig = rig_with(&[&a], rtp.ng).await;
    let (sa, trunk_a) = carrier(&a, "trunk-a", &CARRIER_FAILS.replace("CODE", "486"));
    let caller = Scenario::new("caller", &CALLER_REFUSED.replace("EXPECTED", "486")).unwrap();
    rig.call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    // The carrier was offered rtpengine's address (the call was anchored)…
    let (lo, hi) = rtp.port_range;
    let offered = audio_ports(&messages(sa.dir()));
    assert!(!offered.is_empty() && offered.iter().all(|p| (lo..=hi).contains(p)), "{offered:?}");
    // …and the session went with the call.
    eventually("the media session to be deleted", Duration::from_secs(10), async || {
        ng.list(10).await.ok().filter(Vec::is_empty)
    })
    .await;
    assert_eq!(amount(&rig.account().await["held"]), "0.00");
}

#[tokio::test]
async fn without_rtpengine_a_call_is_refused_503_before_any_carrier_and_costs_nothing() {
    let a = trunk("cheap", "0.004");
    // Nothing listens on this ng address: the offer times out after its retransmissions (2 s).
    let rig = rig_with(&[&a], free_addr()).await;
    let (sa, _trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", &CALLER_REFUSED.replace("EXPECTED", "503")).unwrap();
    rig.call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(!super::got_invite(sa.dir()), "no carrier saw the call");
    let acct = rig.account().await;
    assert_eq!(amount(&acct["balance"]), "10.00");
    assert_eq!(amount(&acct["held"]), "0.00", "the hold was released");
}
