//! The store conformance suite: written once, run against every backend (SQLite and PostgreSQL) by the
//! integration tests. Each check takes a freshly migrated, empty store.

use super::{BillingState, MessageState, MmsAttempt, MmsState, NewMessage, NewMms, NewSegment, Store, StoredPart};
use crate::protocol::dlr::{DeliveryState, id_candidates};
use crate::protocol::reassembly::InboundCoding;
use crate::protocol::segment::Coding;

/// Runs every check in order on one empty store.
pub async fn run(store: &dyn Store) {
    outbox_enqueue_is_idempotent(store).await;
    outbox_claim_retry_submit(store).await;
    outbox_failures(store).await;
    outbox_receipts(store).await;
    outbox_reports_and_billing(store).await;
    rollback_on_drop(store).await;
    inbound_parts(store).await;
    numbers(store).await;
    opt_outs(store).await;
    mms_outbox(store).await;
}

fn message(event: &str, parts: usize) -> NewMessage {
    NewMessage {
        event_id: event.into(),
        sender: "@alice:hs.test".into(),
        source: "+447700900001".into(),
        destination: "+447700900123".into(),
        coding: Coding::Gsm7,
        segments: (0..parts)
            .map(|i| NewSegment { short_message: vec![b'a' + i as u8; 3], esm_class: 0x40, data_coding: 0 })
            .collect(),
        hold: None,
        unit_price: None,
    }
}

async fn outbox_enqueue_is_idempotent(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    let a = tx.outbox().enqueue(&message("$e1", 2), 1_000).await.unwrap();
    assert!(a.created);
    let again = tx.outbox().enqueue(&message("$e1", 5), 2_000).await.unwrap();
    assert_eq!((again.id, again.created), (a.id, false), "one row per Matrix event");
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let m = tx.outbox().by_event("$e1").await.unwrap().unwrap();
    assert_eq!(m.id, a.id);
    assert_eq!((m.parts, m.state, m.billing, m.submitted_parts), (2, MessageState::Queued, BillingState::Free, 0));
    assert_eq!(m.coding, Coding::Gsm7);
    assert_eq!(m.created_at, 1_000);
    assert_eq!(tx.outbox().message(a.id).await.unwrap(), Some(m));
    assert_eq!(tx.outbox().by_event("$nope").await.unwrap(), None);
    assert_eq!(tx.outbox().pending_segments().await.unwrap(), 2);
    // Leave the store empty of due work for the next check.
    for s in tx.outbox().claim(1_000, 10).await.unwrap() {
        tx.outbox().submitted(s.id, "smsc-a", &format!("x{}", s.id.0), 1_001).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn outbox_claim_retry_submit(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    let id = tx.outbox().enqueue(&message("$e2", 3), 10_000).await.unwrap().id;
    assert!(tx.outbox().claim(9_999, 10).await.unwrap().is_empty(), "not due before it was stored");
    let claimed = tx.outbox().claim(10_000, 2).await.unwrap();
    assert_eq!(claimed.iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2], "oldest first, up to the limit");
    assert!(claimed.iter().all(|s| s.attempts == 1 && s.uncertain == 0 && s.message_id == id));
    assert_eq!(claimed[0].destination, "+447700900123");
    assert_eq!(claimed[0].source, "+447700900001");
    assert_eq!(claimed[1].short_message, b"bbb");
    assert_eq!((claimed[1].esm_class, claimed[1].data_coding), (0x40, 0));
    let third = tx.outbox().claim(10_000, 10).await.unwrap();
    assert_eq!(third.len(), 1, "claimed segments are not claimed again");
    assert!(tx.outbox().claim(10_000, 10).await.unwrap().is_empty());

    // Throttled: back in the queue, due later, not uncertain.
    tx.outbox().retry(claimed[0].id, 12_000, "throttled", false).await.unwrap();
    // Link dropped while waiting for the answer: uncertain.
    tx.outbox().retry(claimed[1].id, 10_500, "link down", true).await.unwrap();
    let again = tx.outbox().claim(11_000, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].seq, again[0].attempts, again[0].uncertain), (2, 2, 1));
    assert_eq!(tx.outbox().claim(12_000, 10).await.unwrap().len(), 1, "the throttled one when due");

    tx.outbox().submitted(again[0].id, "smsc-a", "AB12", 12_001).await.unwrap();
    tx.outbox().submitted(third[0].id, "smsc-a", "ab13", 12_002).await.unwrap();
    let m = tx.outbox().message(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.submitted_parts), (MessageState::Queued, 2), "one segment is still out");
    tx.outbox().submitted(claimed[0].id, "smsc-b", "ab14", 12_003).await.unwrap();
    let m = tx.outbox().message(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.submitted_parts), (MessageState::Submitted, 3));
    assert_eq!(tx.outbox().possible_duplicates().await.unwrap(), 1);
    tx.commit().await.unwrap();

    // A process that died while segments were out: they come back uncertain.
    let mut tx = store.begin().await.unwrap();
    tx.outbox().enqueue(&message("$e3", 2), 20_000).await.unwrap();
    let out = tx.outbox().claim(20_000, 10).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.outbox().requeue_unfinished(21_000).await.unwrap(), 2);
    assert_eq!(tx.outbox().requeue_unfinished(21_000).await.unwrap(), 0);
    let back = tx.outbox().claim(21_000, 10).await.unwrap();
    assert_eq!(
        back.iter().map(|s| (s.id, s.uncertain, s.attempts)).collect::<Vec<_>>(),
        out.iter().map(|s| (s.id, 1, 2)).collect::<Vec<_>>()
    );
    for s in back {
        tx.outbox().submitted(s.id, "smsc-a", &format!("r{}", s.id.0), 21_001).await.unwrap();
    }
    assert_eq!(tx.outbox().possible_duplicates().await.unwrap(), 3);
    assert_eq!(tx.outbox().pending_segments().await.unwrap(), 0);
    tx.commit().await.unwrap();
}

async fn outbox_failures(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    let id = tx.outbox().enqueue(&message("$f1", 3), 30_000).await.unwrap().id;
    let first = tx.outbox().claim(30_000, 1).await.unwrap();
    tx.outbox().fail(first[0].id, "ESME_RINVDSTADR: invalid destination", 30_001).await.unwrap();
    let m = tx.outbox().message(id).await.unwrap().unwrap();
    assert_eq!(m.state, MessageState::Failed);
    assert_eq!(m.reason.as_deref(), Some("ESME_RINVDSTADR: invalid destination"));
    assert!(tx.outbox().claim(40_000, 10).await.unwrap().is_empty(), "the rest of a failed message is not sent");
    assert_eq!(tx.outbox().pending_segments().await.unwrap(), 0);
    tx.commit().await.unwrap();
}

async fn outbox_receipts(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    let id = tx.outbox().enqueue(&message("$r1", 2), 50_000).await.unwrap().id;
    let segs = tx.outbox().claim(50_000, 10).await.unwrap();
    tx.outbox().submitted(segs[0].id, "smsc-a", "1A2B", 50_001).await.unwrap();
    // A receipt in decimal for an id the SMSC answered in hexadecimal.
    let found = tx.outbox().receipt(&id_candidates("6699"), DeliveryState::Delivered, None, 50_002).await.unwrap();
    assert_eq!(found, Some(id));
    assert_eq!(tx.outbox().message(id).await.unwrap().unwrap().state, MessageState::Queued);
    // The second part's receipt overtakes its submit_sm_resp.
    let early = tx.outbox().receipt(&id_candidates("99"), DeliveryState::Delivered, None, 50_003).await.unwrap();
    assert_eq!(early, None);
    tx.outbox().submitted(segs[1].id, "smsc-a", "99", 50_004).await.unwrap();
    let m = tx.outbox().message(id).await.unwrap().unwrap();
    assert_eq!(m.state, MessageState::Delivered, "every part delivered, one of them early");

    let id2 = tx.outbox().enqueue(&message("$r2", 1), 60_000).await.unwrap().id;
    let s = tx.outbox().claim(60_000, 10).await.unwrap();
    tx.outbox().submitted(s[0].id, "smsc-a", "m-2", 60_001).await.unwrap();
    tx.outbox().receipt(&id_candidates("m-2"), DeliveryState::Enroute, None, 60_002).await.unwrap();
    assert_eq!(tx.outbox().message(id2).await.unwrap().unwrap().state, MessageState::Submitted, "not final");
    tx.outbox()
        .receipt(&id_candidates("M-2"), DeliveryState::Undeliverable, Some("absent subscriber"), 60_003)
        .await
        .unwrap();
    let m = tx.outbox().message(id2).await.unwrap().unwrap();
    assert_eq!((m.state, m.reason.as_deref()), (MessageState::Failed, Some("absent subscriber")));
    assert_eq!(tx.outbox().receipt(&[], DeliveryState::Delivered, None, 1).await.unwrap(), None);
    tx.commit().await.unwrap();
}

async fn outbox_reports_and_billing(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    let unreported = tx.outbox().unreported(100).await.unwrap();
    assert!(unreported.len() >= 5, "every message so far changed state: {}", unreported.len());
    for m in &unreported {
        tx.outbox().mark_reported(m.id, m.state).await.unwrap();
    }
    assert!(tx.outbox().unreported(100).await.unwrap().is_empty());

    let mut held = message("$b1", 2);
    held.hold = Some("h_1_7".into());
    held.unit_price = Some("0.0425".into());
    let id = tx.outbox().enqueue(&held, 70_000).await.unwrap().id;
    let m = tx.outbox().message(id).await.unwrap().unwrap();
    assert_eq!(
        (m.billing, m.hold.as_deref(), m.unit_price.as_deref()),
        (BillingState::Held, Some("h_1_7"), Some("0.0425"))
    );
    assert_eq!(m.reported_state, None);
    assert!(tx.outbox().billing_due(10).await.unwrap().is_empty(), "still queued: nothing to settle yet");
    for s in tx.outbox().claim(70_000, 10).await.unwrap() {
        tx.outbox().submitted(s.id, "smsc-a", &format!("b{}", s.id.0), 70_001).await.unwrap();
    }
    let due = tx.outbox().billing_due(10).await.unwrap();
    assert_eq!(due.iter().map(|m| (m.id, m.submitted_parts)).collect::<Vec<_>>(), [(id, 2)]);
    tx.outbox().set_billing(id, BillingState::Settled).await.unwrap();
    assert!(tx.outbox().billing_due(10).await.unwrap().is_empty());
    let unreported = tx.outbox().unreported(10).await.unwrap();
    assert_eq!(unreported.iter().map(|m| (m.id, m.state)).collect::<Vec<_>>(), [(id, MessageState::Submitted)]);
    tx.commit().await.unwrap();
}

async fn rollback_on_drop(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    tx.outbox().enqueue(&message("$gone", 1), 1).await.unwrap();
    tx.numbers().add_to_pool(&["+15550000000".into()]).await.unwrap();
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.outbox().by_event("$gone").await.unwrap(), None);
    assert_eq!(tx.numbers().add_to_pool(&["+15550000000".into()]).await.unwrap(), 1, "the first add was rolled back");
    tx.commit().await.unwrap();
}

fn part(seq: u8, at: i64) -> StoredPart {
    StoredPart {
        source: "+447700900123".into(),
        destination: "+447700900001".into(),
        reference: 300,
        total: 3,
        seq,
        coding: InboundCoding::Unsupported(0x06),
        payload: vec![seq; 4],
        received_at: at,
    }
}

async fn inbound_parts(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    assert!(tx.inbound().add_part(&part(2, 5)).await.unwrap());
    assert!(tx.inbound().add_part(&part(1, 6)).await.unwrap());
    assert!(!tx.inbound().add_part(&part(2, 7)).await.unwrap(), "the SMSC sent it again");
    let mut other = part(1, 8);
    other.coding = InboundCoding::Ucs2;
    other.reference = 301;
    assert!(tx.inbound().add_part(&other).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let parts = tx.inbound().parts().await.unwrap();
    assert_eq!(parts, vec![part(2, 5), part(1, 6), other.clone()]);
    let first = tx.inbound().first_part_id("+447700900123", "+447700900001", 300, 3).await.unwrap();
    assert!(first.is_some());
    assert_eq!(tx.inbound().first_part_id("+447700900123", "+447700900001", 999, 3).await.unwrap(), None);
    assert_eq!(tx.inbound().remove("+447700900123", "+447700900001", 300, 3).await.unwrap(), 2);
    assert_eq!(tx.inbound().parts().await.unwrap(), vec![other]);
    tx.commit().await.unwrap();
}

async fn numbers(store: &dyn Store) {
    let pool: Vec<String> = ["+447700900002", "+447700900001", "+447700900003"].map(String::from).to_vec();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.numbers().add_to_pool(&pool).await.unwrap(), 3);
    assert_eq!(tx.numbers().add_to_pool(&pool).await.unwrap(), 0);
    let a1 = tx.numbers().assign("@alice:hs.test", 1).await.unwrap().unwrap();
    let b1 = tx.numbers().assign("@bob:hs.test", 2).await.unwrap().unwrap();
    let a2 = tx.numbers().assign("@alice:hs.test", 3).await.unwrap().unwrap();
    assert_ne!(a1, b1);
    assert_ne!(a1, a2);
    // Lowest first: the number left from the rollback check, then the pool in order.
    assert_eq!([a1.as_str(), b1.as_str(), a2.as_str()], ["+15550000000", "+447700900001", "+447700900002"]);
    let alice = tx.numbers().held_by("@alice:hs.test").await.unwrap();
    assert_eq!(alice.iter().filter(|h| h.is_default).map(|h| h.number.as_str()).collect::<Vec<_>>(), [a1.as_str()]);
    assert_eq!(alice.len(), 2);
    assert!(tx.numbers().set_default("@alice:hs.test", &a2).await.unwrap());
    assert!(!tx.numbers().set_default("@alice:hs.test", &b1).await.unwrap(), "not hers");
    let alice = tx.numbers().held_by("@alice:hs.test").await.unwrap();
    assert_eq!(alice.iter().filter(|h| h.is_default).map(|h| h.number.as_str()).collect::<Vec<_>>(), [a2.as_str()]);
    assert_eq!(tx.numbers().holder(&b1).await.unwrap().as_deref(), Some("@bob:hs.test"));
    assert_eq!(tx.numbers().holder("+19999999999").await.unwrap(), None);
    // The pool (three numbers and the one from the rollback check) runs dry.
    let mut taken = 3;
    while tx.numbers().assign("@carol:hs.test", 4).await.unwrap().is_some() {
        taken += 1;
    }
    assert_eq!(taken, 4);
    assert_eq!(tx.numbers().conversation("@alice:hs.test", "+491").await.unwrap(), None);
    tx.numbers().set_conversation("@alice:hs.test", "+491", &a1).await.unwrap();
    tx.numbers().set_conversation("@alice:hs.test", "+491", &a2).await.unwrap();
    assert_eq!(tx.numbers().conversation("@alice:hs.test", "+491").await.unwrap(), Some(a2));
    tx.commit().await.unwrap();
}

async fn opt_outs(store: &dyn Store) {
    let mut tx = store.begin().await.unwrap();
    assert!(!tx.opt_outs().is_stopped("+491", "+447700900001").await.unwrap());
    tx.opt_outs().stop("+491", "+447700900001", "STOP", 1).await.unwrap();
    tx.opt_outs().stop("+491", "+447700900001", "BAJA", 2).await.unwrap();
    assert!(tx.opt_outs().is_stopped("+491", "+447700900001").await.unwrap());
    assert!(!tx.opt_outs().is_stopped("+491", "+447700900002").await.unwrap(), "per sender number");
    assert!(tx.opt_outs().start("+491", "+447700900001").await.unwrap());
    assert!(!tx.opt_outs().start("+491", "+447700900001").await.unwrap());
    assert!(!tx.opt_outs().is_stopped("+491", "+447700900001").await.unwrap());
    tx.commit().await.unwrap();
}

/// An MMS row is written before the carrier is asked; a repeat while it is still sending counts as another
/// (uncertain) attempt; once answered, a repeat gets the answer and changes nothing; charges come due once
/// answered; possible duplicates count the extra attempts of MMS the carrier took.
async fn mms_outbox(store: &dyn Store) {
    let new = |event: &str, hold: Option<&str>| NewMms {
        event_id: event.into(),
        sender: "@alice:hs.test".into(),
        destination: "+447700900123".into(),
        hold: hold.map(str::to_owned),
    };
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.mms().attempt(&new("$m1", Some("h_1_1")), 1_000).await.unwrap(), MmsAttempt::First);
    assert_eq!(tx.mms().attempt(&new("$m2", None), 1_000).await.unwrap(), MmsAttempt::First);
    assert_eq!(tx.mms().attempt(&new("$m3", Some("h_1_3")), 1_000).await.unwrap(), MmsAttempt::First);
    tx.commit().await.unwrap();

    // $m1: the bridge died while the carrier was asked; asked again, then taken.
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.mms().attempt(&new("$m1", Some("h_1_1")), 2_000).await.unwrap(), MmsAttempt::Again { earlier: 1 });
    assert_eq!(tx.mms().attempt(&new("$m1", Some("h_1_1")), 3_000).await.unwrap(), MmsAttempt::Again { earlier: 2 });
    assert!(tx.mms().billing_due(10).await.unwrap().is_empty(), "nothing is due while sending");
    tx.mms().sent("$m1", "MM1", 3_500).await.unwrap();
    tx.mms().sent("$m2", "MM2", 3_500).await.unwrap();
    tx.mms().failed("$m3", "unsubscribed recipient", 3_600).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let MmsAttempt::Done(m1) = tx.mms().attempt(&new("$m1", Some("h_1_1")), 4_000).await.unwrap() else {
        panic!("an answered MMS is not attempted again")
    };
    assert_eq!((m1.state, m1.sid.as_deref(), m1.attempts), (MmsState::Sent, Some("MM1"), 3));
    let MmsAttempt::Done(m3) = tx.mms().attempt(&new("$m3", Some("h_1_3")), 4_000).await.unwrap() else {
        panic!("a refused MMS is not attempted again")
    };
    assert_eq!((m3.state, m3.reason.as_deref()), (MmsState::Failed, Some("unsubscribed recipient")));
    // A late answer does not overwrite the first.
    tx.mms().failed("$m1", "late", 4_100).await.unwrap();
    assert_eq!(tx.mms().by_event("$m1").await.unwrap().unwrap().state, MmsState::Sent);
    assert_eq!(tx.mms().possible_duplicates().await.unwrap(), 2, "two extra attempts of a taken MMS");
    let due: Vec<(String, MmsState)> =
        tx.mms().billing_due(10).await.unwrap().into_iter().map(|m| (m.event_id, m.state)).collect();
    assert_eq!(
        due,
        [("$m1".to_owned(), MmsState::Sent), ("$m3".to_owned(), MmsState::Failed)],
        "free $m2 is never due"
    );
    tx.mms().set_billing("$m1", BillingState::Settled).await.unwrap();
    tx.mms().set_billing("$m3", BillingState::Released).await.unwrap();
    assert!(tx.mms().billing_due(10).await.unwrap().is_empty());
    assert_eq!(tx.mms().by_event("$m2").await.unwrap().unwrap().billing, BillingState::Free);
    assert_eq!(tx.mms().by_event("$nope").await.unwrap(), None);
    tx.commit().await.unwrap();
}
