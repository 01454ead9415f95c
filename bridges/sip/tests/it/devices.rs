//! Calls and messages to a Tincan number reach the user's registered SIP devices as well as their Matrix
//! clients (issue #18: "the first to answer wins, the rest stop ringing"): sipp phones register as Alice's
//! devices with digest credentials, then a sipp phone calls or texts her number.

use crate::calls::{
    CANCELS, PHONE, PHONE_200, PHONE_HANGS_UP, TAKES_200, TAKES_BYE, TAKES_CANCEL, alice_sends, answers, browser_sdp,
    callee_reoffers, fill, ghost_sends, no_media_left, phone_calls, refuses, ringing_in_matrix, rtpengine_holds,
    spawn_callee, spawn_caller, start, takes_failure, takes_reinvite, v1,
};
use crate::harness::{
    ALICE_DEVICE, ALICE_DEVICE_PASSWORD, ALICE_NUMBER, ALICE_SOFTPHONE, ALICE_SOFTPHONE_PASSWORD, DOMAIN, Harness,
    wait_for,
};
use crate::messages::{message_uac, message_uas_from};
use serde_json::json;
use std::time::Duration;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::{Scenario, finished};

/// The caller's number in the From of the device's INVITE or MESSAGE.
pub(crate) const FROM_THE_PHONE: &str = r"sip:\+15551234567@";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_every_device_and_matrix_the_first_device_to_answer_wins_and_the_rest_stop() {
    let (h, _rtp, ng) = start(None, 60).await;
    let (desk, soft) = (free_addr(), free_addr());
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    h.register_device(ALICE_SOFTPHONE, ALICE_SOFTPHONE_PASSWORD, soft).await;
    // The desk phone answers, holds (a re-INVITE the bridge carries to the caller) and hangs up (a BYE the
    // bridge carries too); the softphone rings until it is cancelled.
    let hangs_up = fill(PHONE_HANGS_UP).replace("{PHONE}", PHONE).replace("CSeq: 1 BYE", "CSeq: 2 BYE");
    let desk_side = format!("{PHONE_200}{}{hangs_up}", callee_reoffers(1, "sendonly", "recvonly"));
    let (_sd, desk) = spawn_callee(desk, &answers(FROM_THE_PHONE, &desk_side)).await;
    let (_ss, soft) = spawn_callee(soft, &answers(FROM_THE_PHONE, TAKES_CANCEL)).await;
    // The caller gets the desk phone's answer (as plain RTP through rtpengine), is put on hold, gets BYE.
    let caller_side = format!("{}{}{TAKES_BYE}", fill(TAKES_200), takes_reinvite("sendonly", "recvonly"));
    let (_s, phone) = spawn_caller(&h, &phone_calls(&caller_side));
    // Alice's Matrix clients rang too, and stop: the ghost hangs its invite up as answered elsewhere.
    let (room, invite) = ringing_in_matrix(&h).await;
    let hangup = ghost_sends(&h, &room, "m.call.hangup").await;
    assert_eq!(hangup["call_id"], invite["call_id"]);
    assert_eq!(hangup["reason"], "answered_elsewhere");
    assert!(finished(soft, Duration::from_secs(30)).await, "the softphone was cancelled");
    assert!(finished(desk, Duration::from_secs(30)).await, "the desk phone answered, held, hung up");
    assert!(finished(phone, Duration::from_secs(30)).await, "the caller talked to the desk phone, was held, got BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_answer_cancels_the_ringing_device() {
    let (h, _rtp, ng) = start(None, 60).await;
    let desk = free_addr();
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    let (_sd, desk) = spawn_callee(desk, &answers(FROM_THE_PHONE, TAKES_CANCEL)).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&fill(&format!("{TAKES_200}{TAKES_BYE}"))));
    let (room, invite) = ringing_in_matrix(&h).await;
    // Both ring: rtpengine anchors the Matrix leg and the desk phone's.
    rtpengine_holds(&ng, 2).await;
    let answer = json!({"answer": {"type": "answer", "sdp": browser_sdp("active", 45030, true)}});
    alice_sends(&h, &room, "m.call.answer", v1(&invite["call_id"], "alice-phone", answer)).await;
    ghost_sends(&h, &room, "m.call.select_answer").await;
    assert!(finished(desk, Duration::from_secs(30)).await, "the desk phone was cancelled");
    assert_eq!(ng.list(10).await.unwrap().len(), 1, "only the Matrix leg's media is left");
    alice_sends(&h, &room, "m.call.hangup", v1(&invite["call_id"], "alice-phone", json!({"reason": "user_hangup"})))
        .await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the caller got Alice's answer, then BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_cancel_stops_the_devices_and_a_device_declining_refuses_the_call_everywhere() {
    let (h, _rtp, ng) = start(None, 60).await;
    let desk = free_addr();
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    // The caller gives up while the desk phone rings: the desk phone is cancelled too.
    let (_sd, desk_guard) = spawn_callee(desk, &answers(FROM_THE_PHONE, TAKES_CANCEL)).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&format!("{}{}", fill(CANCELS), takes_failure(487))));
    assert!(finished(phone, Duration::from_secs(40)).await, "CANCEL answered, then 487");
    assert!(finished(desk_guard, Duration::from_secs(30)).await, "the desk phone was cancelled");
    no_media_left(&ng).await;

    // Alice declines on the desk phone (603): the caller gets 603 and Matrix stops ringing.
    let (_sd, desk_guard) = spawn_callee(desk, &answers(FROM_THE_PHONE, &refuses(603, "Decline"))).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&takes_failure(603)));
    assert!(finished(phone, Duration::from_secs(30)).await, "the caller got the desk phone's 603");
    assert!(finished(desk_guard, Duration::from_secs(30)).await, "the desk phone declined");
    let room = h.join_invite().await;
    let hangups = wait_for("both ghost invites hung up", Duration::from_secs(30), || async {
        let events = crate::calls::call_events(&h, &room).await;
        let n = events.iter().filter(|(_, t, _)| t == "m.call.hangup").count();
        (n == 2).then_some(events)
    })
    .await;
    let invites = hangups.iter().filter(|(_, t, _)| t == "m.call.invite").count();
    assert_eq!(invites, 2, "{hangups:?}");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_fail_end_only_their_own_branch_and_the_call_is_answered_in_matrix() {
    let (h, _rtp, ng) = start(None, 60).await;
    let (desk, soft) = (free_addr(), free_addr());
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    h.register_device(ALICE_SOFTPHONE, ALICE_SOFTPHONE_PASSWORD, soft).await;
    // The desk phone is busy in another call (486), the softphone's side is out of service (503): neither is
    // the call's answer — the other branches (here Alice's Matrix clients) ring on.
    let (_sd, desk) = spawn_callee(desk, &answers(FROM_THE_PHONE, &refuses(486, "Busy Here"))).await;
    let (_ss, soft) = spawn_callee(soft, &answers(FROM_THE_PHONE, &refuses(503, "Service Unavailable"))).await;
    let (_s, phone) = spawn_caller(&h, &phone_calls(&fill(&format!("{TAKES_200}{TAKES_BYE}"))));
    let (room, invite) = ringing_in_matrix(&h).await;
    assert!(finished(desk, Duration::from_secs(30)).await, "the desk phone refused 486");
    assert!(finished(soft, Duration::from_secs(30)).await, "the softphone refused 503");
    // Their branches' media is closed; the Matrix leg's is left, and Matrix still rings.
    rtpengine_holds(&ng, 1).await;
    let events = crate::calls::call_events(&h, &room).await;
    assert!(events.iter().all(|(_, t, _)| t != "m.call.hangup"), "{events:?}");
    let answer = json!({"answer": {"type": "answer", "sdp": browser_sdp("active", 45032, true)}});
    alice_sends(&h, &room, "m.call.answer", v1(&invite["call_id"], "alice-phone", answer)).await;
    let select = ghost_sends(&h, &room, "m.call.select_answer").await;
    assert_eq!(select["selected_party_id"], "alice-phone");
    alice_sends(&h, &room, "m.call.hangup", v1(&invite["call_id"], "alice-phone", json!({"reason": "user_hangup"})))
        .await;
    assert!(finished(phone, Duration::from_secs(30)).await, "the caller got Alice's answer (not a 486/503), then BYE");
    no_media_left(&ng).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_tincan_number_reaches_matrix_and_the_registered_device() {
    let h = Harness::start(None).await;
    let desk = free_addr();
    h.register_device(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, desk).await;
    let to_alice = format!(r"sip:\+442079460001@{}", DOMAIN.replace('.', "\\."));
    let (_device, device_guard) =
        spawn_callee(desk, &message_uas_from(FROM_THE_PHONE, &to_alice, "see you at 8", 200)).await;
    let s = Scenario::new("text", &message_uac("text/plain;charset=UTF-8", "see you at 8", ALICE_NUMBER, 202)).unwrap();
    s.run(s.command(h.sip, free_addr(), 1)).await.unwrap();
    assert!(finished(device_guard, Duration::from_secs(30)).await, "the desk phone got a copy");
    let room = h.join_invite().await;
    let seen = wait_for("the message in Matrix", Duration::from_secs(30), || async {
        let m = h.messages(&room).await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(seen[0], (format!("@sip_{PHONE}:hs.test"), "m.text".into(), "see you at 8".into()));
}
