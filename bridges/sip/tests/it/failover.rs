//! Next-route failover of Matrix → SIP calls and MESSAGEs (issue #18): two routes for numbers
//! (`routes.fallback`, two sipp trunks on loopback), the first failing in each of the ways that move a call on —
//! 503, not ringing within `routes.invite_timeout_ms` — or answering for the called party (486, 603; 404 to a
//! MESSAGE), which goes back to the caller and leaves the second route untried.

use crate::calls::{
    PHONE, PHONE_200, PHONE_HANGS_UP, TAKES_BYE, alice_calls, alice_sends, dm_with_phone, fill, ghost_sends,
    ghost_sends_in, no_media_left, phone_answers, refuses, spawn_callee, start_with,
};
use crate::harness::Harness;
use crate::messages::message_uas;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::finished;

/// A route that takes the INVITE and never says anything.
const SILENT: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="silent route">
  <recv request="INVITE"/>
</scenario>
"#;

/// A bridge whose numbers go to `first`, then `second`; a route has `invite_timeout_ms` to ring.
async fn two_routes(
    invite_timeout_ms: u64,
) -> (crate::harness::Harness, tincan_testkit::sip::Rtpengine, tincan_sip_core::rtpengine::NgClient, [SocketAddr; 2]) {
    let (first, second) = (free_addr(), free_addr());
    let (h, rtp, ng) = start_with(Some(first), |c| {
        c.routes.fallback.push(format!("sip:{second}"));
        c.routes.invite_timeout_ms = invite_timeout_ms;
    })
    .await;
    (h, rtp, ng, [first, second])
}

/// The INVITEs a sipp peer saw.
fn invites(s: &tincan_testkit::sip::Scenario) -> usize {
    s.messages().matches("INVITE sip:").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_answering_503_is_passed_over_and_the_call_connects_through_the_next() {
    let (h, _rtp, ng, [first, second]) = two_routes(10_000).await;
    let room = dm_with_phone(&h).await;
    let (s1, route1) = spawn_callee(first, &phone_answers(&refuses(503, "Service Unavailable"))).await;
    let hangs_up = fill(PHONE_HANGS_UP).replace("{PHONE}", PHONE);
    let (s2, route2) = spawn_callee(second, &phone_answers(&format!("{PHONE_200}{hangs_up}"))).await;
    alice_calls(&h, &room, "call-503").await;
    let answer = ghost_sends_in(&h, &room, "m.call.answer", "call-503").await;
    assert!(answer["answer"]["sdp"].as_str().unwrap().contains("UDP/TLS/RTP/SAVPF"), "{answer}");
    assert!(finished(route1, Duration::from_secs(30)).await, "the first route got the INVITE and said 503");
    assert!(finished(route2, Duration::from_secs(30)).await, "the second route answered, then hung up");
    assert_eq!((invites(&s1), invites(&s2)), (1, 1), "one INVITE each, the first route's first");
    // The same call went to both: one Call-ID (rtpengine's call), whichever route answers.
    assert_eq!(call_ids(&s1)[0], call_ids(&s2)[0]);
    let hangup = ghost_sends(&h, &room, "m.call.hangup").await;
    assert_eq!(hangup["reason"], "user_hangup");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_answering_486_or_603_is_final_the_caller_sees_it_and_the_next_route_is_never_tried() {
    let (h, _rtp, ng, [first, second]) = two_routes(10_000).await;
    let room = dm_with_phone(&h).await;
    // The second route would answer any call that reached it.
    let (s2, _route2) = spawn_callee(second, &phone_answers(&format!("{PHONE_200}{TAKES_BYE}"))).await;
    for (n, (code, phrase)) in [(486, "Busy Here"), (603, "Decline")].into_iter().enumerate() {
        let (s1, route1) = spawn_callee(first, &phone_answers(&refuses(code, phrase))).await;
        let call = format!("call-{code}");
        alice_calls(&h, &room, &call).await;
        assert!(finished(route1, Duration::from_secs(30)).await, "the first route said {code}");
        assert_eq!(invites(&s1), 1);
        // Alice's client sees the called party refuse: the ghost's m.call.reject, not a hang-up.
        ghost_sends_in(&h, &room, "m.call.reject", &call).await;
        no_media_left(&ng).await;
        assert_eq!(invites(&s2), 0, "{code} is the called party's answer: the second route got no INVITE");
        let events = crate::calls::call_events(&h, &room).await;
        let ghosts: Vec<&str> =
            events.iter().filter(|(s, ..)| s.contains("sip_")).map(|(_, t, _)| t.as_str()).collect();
        assert_eq!(ghosts, vec!["m.call.reject"; n + 1], "no answer, no hang-up from the ghost: {events:?}");
    }
    // Still nothing at the second route after a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(invites(&s2), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_never_rings_is_given_up_after_the_timeout_for_the_next() {
    let (h, _rtp, ng, [first, second]) = two_routes(2_000).await;
    let room = dm_with_phone(&h).await;
    let (s1, route1) = spawn_callee(first, SILENT).await;
    let (s2, route2) = spawn_callee(second, &phone_answers(&format!("{PHONE_200}{TAKES_BYE}"))).await;
    let started = Instant::now();
    alice_calls(&h, &room, "call-silent").await;
    ghost_sends_in(&h, &room, "m.call.answer", "call-silent").await;
    let took = started.elapsed();
    // The configured 2 s, not the INVITE transaction's own timeout (Timer B, 32 s).
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(15), "answered after {took:?}");
    assert!(finished(route1, Duration::from_secs(10)).await, "the first route got the INVITE");
    assert!(invites(&s1) >= 1);
    assert_eq!(invites(&s2), 1);
    alice_sends(
        &h,
        &room,
        "m.call.hangup",
        json!({"call_id": "call-silent", "party_id": "alice-phone", "version": "1", "reason": "user_hangup"}),
    )
    .await;
    assert!(finished(route2, Duration::from_secs(30)).await, "the second route answered, then got BYE");
    no_media_left(&ng).await;
}

/// The MESSAGEs a sipp peer got.
fn messages(s: &tincan_testkit::sip::Scenario) -> usize {
    s.messages().matches("MESSAGE sip:").count()
}

/// The Call-IDs a sipp peer saw.
fn call_ids(s: &tincan_testkit::sip::Scenario) -> Vec<String> {
    s.messages()
        .lines()
        .filter_map(|l| l.split_once(':').filter(|(h, _)| h.eq_ignore_ascii_case("call-id")))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_passes_over_a_route_answering_503_and_stops_at_a_route_answering_404() {
    let (first, second) = (free_addr(), free_addr());
    let h = Harness::start_with(Some(first), |c, _| c.routes.fallback.push(format!("sip:{second}"))).await;
    let room = dm_with_phone(&h).await;
    let ghost = format!("@sip_{PHONE}:hs.test");

    // The first route is out of service: the MESSAGE goes on to the second, which delivers it.
    let (s1, route1) = spawn_callee(first, &message_uas("through the second route", 503)).await;
    let (s2, route2) = spawn_callee(second, &message_uas("through the second route", 200)).await;
    let event = h.say(&room, "through the second route").await;
    assert!(finished(route1, Duration::from_secs(30)).await, "the first route got the MESSAGE and said 503");
    assert!(finished(route2, Duration::from_secs(30)).await, "the second route got it and said 200");
    assert_eq!((messages(&s1), messages(&s2)), (1, 1), "one MESSAGE each");
    assert_eq!(call_ids(&s1)[0], call_ids(&s2)[0], "the same message (one Call-ID) to both routes");
    assert_eq!(
        h.status_of(&room, &event).await,
        json!({"network": "sip", "m.relates_to": {"rel_type": "m.reference", "event_id": event},
               "status": "SUCCESS", "delivered_to_users": [ghost]})
    );

    // A 404 is the called party's answer: final, reported, and the second route never sees the MESSAGE.
    let (s1, route1) = spawn_callee(first, &message_uas("is anyone there", 404)).await;
    let (s2, _route2) = spawn_callee(second, &message_uas("is anyone there", 200)).await;
    let event = h.say(&room, "is anyone there").await;
    assert!(finished(route1, Duration::from_secs(30)).await, "the first route got the MESSAGE and said 404");
    assert_eq!(messages(&s1), 1);
    assert_eq!(
        h.status_of(&room, &event).await,
        json!({"network": "sip", "m.relates_to": {"rel_type": "m.reference", "event_id": event},
               "status": "FAIL_PERMANENT", "reason": "m.foreign_network_error", "message": "SIP 404 Answer"})
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages(&s2), 0, "404 is final: the second route got no MESSAGE");
}
