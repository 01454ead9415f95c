//! One store conformance suite, run against SQLite and PostgreSQL.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tincan_appservice::store::{
    self, Completion, Ghost, InboxKind, MessageMapping, Metadata, NewInboxEvent, NewRemoteEvent, Portal, Store,
    UserLogin, WorkQueue,
};
use tincan_appservice::{PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};

fn uid(s: &str) -> OwnedUserId {
    s.try_into().unwrap()
}
fn rid(s: &str) -> OwnedRoomId {
    s.try_into().unwrap()
}
fn eid(s: &str) -> OwnedEventId {
    s.try_into().unwrap()
}
fn ev(kind: InboxKind, n: u32) -> NewInboxEvent {
    NewInboxEvent { kind, json: format!("{{\"n\":{n}}}") }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct SmsMeta {
    did: String,
    parts: u8,
}

/// The suite: every backend must pass it unchanged.
pub async fn suite(s: Arc<dyn Store>) {
    inbox(&*s).await;
    ghosts(&*s).await;
    portals(&*s).await;
    messages(&*s).await;
    remote_queue(&*s).await;
    completions(&*s).await;
    large_batches(&*s).await;
    housekeeping(&*s).await;
    logins(&*s).await;
}

/// Logins: one per user, replaced by a new one, deleted once; management rooms map to their user.
async fn logins(s: &dyn Store) {
    let alice = uid("@alice:hs.test");
    assert_eq!(s.user_login(&alice).await.unwrap(), None);
    let mut login = UserLogin {
        user_id: alice.clone(),
        remote_id: RemoteUserId::new("+4930"),
        metadata: Metadata(serde_json::json!({"from": "+4930"})),
    };
    s.upsert_user_login(&login).await.unwrap();
    assert_eq!(s.user_login(&alice).await.unwrap().as_ref(), Some(&login));
    login.remote_id = RemoteUserId::new("+4931");
    login.metadata = Metadata(serde_json::json!({"from": "+4931"}));
    s.upsert_user_login(&login).await.unwrap();
    assert_eq!(s.user_login(&alice).await.unwrap().as_ref(), Some(&login));
    assert_eq!(s.user_login(&uid("@bob:hs.test")).await.unwrap(), None);
    assert!(s.delete_user_login(&alice).await.unwrap());
    assert!(!s.delete_user_login(&alice).await.unwrap());
    assert_eq!(s.user_login(&alice).await.unwrap(), None);

    assert_eq!(s.management_room(&rid("!m:hs.test")).await.unwrap(), None);
    s.set_management_room(&rid("!m:hs.test"), &alice).await.unwrap();
    assert_eq!(s.management_room(&rid("!m:hs.test")).await.unwrap(), Some(alice));
}

/// Pruning deletes finished rows older than the cutoff and transactions left without events; pending rows stay.
async fn housekeeping(s: &dyn Store) {
    // Everything from the parts before is finished by t=1,000 except what is still pending.
    let pending_before = s.pending_count().await.unwrap();
    let remote_pending_before = s.remote_pending_count().await.unwrap();
    assert!(
        s.record_transaction("h1", &[ev(InboxKind::Timeline, 51), ev(InboxKind::Timeline, 52)], 1_000).await.unwrap()
    );
    assert!(s.record_transaction("h2", &[ev(InboxKind::Timeline, 53)], 1_000).await.unwrap());
    let fresh: Vec<i64> = s.pending_after(0, 1_000).await.unwrap().iter().map(|e| e.seq).rev().take(3).collect();
    let (e53, e52, e51) = (fresh[0], fresh[1], fresh[2]);
    s.mark_done(e51, 1_500).await.unwrap();
    s.mark_done(e53, 2_500).await.unwrap();
    let one = || NewRemoteEvent { portal: key("@alice:hs.test", "+49555"), json: "{}".into() };
    let queued = s.queue_remote(&[one(), one()], 1_000).await.unwrap();
    s.complete_remote(queued[0], None, 1_500).await.unwrap();

    let pruned = s.prune_done(2_000).await.unwrap();
    assert!(pruned.inbox_events >= 1 && pruned.remote_events >= 1, "{pruned:?}");
    assert!(!s.transaction_seen("empty").await.unwrap(), "a transaction without events, received at 12, went");
    assert!(s.transaction_seen("h1").await.unwrap(), "h1 still has a pending event");
    assert!(s.transaction_seen("h2").await.unwrap(), "h2's event was done after the cutoff");
    assert_eq!(s.prune_done(2_000).await.unwrap(), store::Pruned::default(), "nothing older is left");
    assert_eq!(s.pending_count().await.unwrap(), pending_before + 1, "e52 and the earlier pending rows stay");
    assert_eq!(s.pending_after(0, 1_000).await.unwrap().last().map(|e| e.seq), Some(e52));
    assert_eq!(s.remote_pending_count().await.unwrap(), remote_pending_before + 1);

    // Once h1's last event is done and old enough, h1 goes too.
    s.mark_done(e52, 2_600).await.unwrap();
    let pruned = s.prune_done(3_000).await.unwrap();
    assert_eq!((pruned.inbox_events, pruned.transactions), (2, 2), "e52, e53; h1, h2: {pruned:?}");
    assert!(!s.transaction_seen("h1").await.unwrap());
    assert_eq!(s.pending_count().await.unwrap(), pending_before);
    // For the reopen checks: a transaction recorded after the last pruning.
    assert!(s.record_transaction("kept", &[], 5_000).await.unwrap());
}

async fn inbox(s: &dyn Store) {
    assert!(!s.transaction_seen("t1").await.unwrap());
    let events = [ev(InboxKind::Timeline, 1), ev(InboxKind::Timeline, 2), ev(InboxKind::Ephemeral, 3)];
    assert!(s.record_transaction("t1", &events, 10).await.unwrap());
    assert!(s.transaction_seen("t1").await.unwrap());
    // A retried txnId records nothing.
    assert!(!s.record_transaction("t1", &[ev(InboxKind::Timeline, 99)], 11).await.unwrap());
    assert!(s.record_transaction("t2", &[ev(InboxKind::Timeline, 4)], 12).await.unwrap());
    assert!(s.record_transaction("empty", &[], 12).await.unwrap());
    let pending = s.pending_after(0, 100).await.unwrap();
    let ns: Vec<&str> = pending.iter().map(|e| e.json.as_str()).collect();
    assert_eq!(ns, ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"]);
    assert_eq!(pending[2].kind, InboxKind::Ephemeral);
    assert_eq!(pending[3].txn_id, "t2");
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(s.pending_count().await.unwrap(), 4);
    // Paging and limits.
    let after = s.pending_after(pending[1].seq, 1).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, pending[2].seq);
    s.mark_done(pending[0].seq, 20).await.unwrap();
    s.mark_done(pending[2].seq, 20).await.unwrap();
    let left: Vec<i64> = s.pending_after(0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, [pending[1].seq, pending[3].seq]);
    assert_eq!(s.pending_count().await.unwrap(), 2);
    // Done together with a message mapping (one commit).
    let m = MessageMapping {
        portal: key("@alice:hs.test", "+491"),
        remote_id: RemoteMessageId::new("out-inbox"),
        event_id: eid("$inbox"),
        room_id: rid("!inbox:hs.test"),
        sender: uid("@alice:hs.test"),
        metadata: Metadata(serde_json::json!({})),
    };
    s.complete_inbox(pending[1].seq, Some(&m), 21).await.unwrap();
    assert_eq!(s.message_by_event(&m.portal, &eid("$inbox")).await.unwrap().as_ref(), Some(&m));
    let left: Vec<i64> = s.pending_after(0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, [pending[3].seq]);
    s.complete_inbox(pending[3].seq, None, 22).await.unwrap();
    assert_eq!(s.pending_count().await.unwrap(), 0);
    // Concurrent deliveries of one txnId: exactly one records.
    let fresh = futures::future::join_all((0..8).map(|_| s.record_transaction("race", &events, 30))).await;
    assert_eq!(fresh.into_iter().map(|r| r.unwrap()).filter(|f| *f).count(), 1);
    assert_eq!(s.pending_count().await.unwrap(), 3);
}

async fn ghosts(s: &dyn Store) {
    let r = RemoteUserId::new("+4915112345678");
    assert_eq!(s.ghost(&r).await.unwrap(), None);
    let mut g = Ghost {
        remote_id: r.clone(),
        user_id: uid("@sms_+4915112345678:hs.test"),
        display_name: Some("Bob".into()),
        avatar_url: None,
        registered: false,
        metadata: Metadata::from_typed(&SmsMeta { did: "+4930".into(), parts: 2 }),
    };
    s.upsert_ghost(&g).await.unwrap();
    assert_eq!(s.ghost(&r).await.unwrap().as_ref(), Some(&g));
    g.registered = true;
    g.avatar_url = Some("mxc://hs.test/a".into());
    s.upsert_ghost(&g).await.unwrap();
    let back = s.ghost(&r).await.unwrap().unwrap();
    assert_eq!(back, g);
    assert_eq!(back.metadata.typed::<SmsMeta>(), Some(SmsMeta { did: "+4930".into(), parts: 2 }));
}

fn key(user: &str, chat: &str) -> PortalKey {
    PortalKey { receiver: uid(user), chat: RemoteChatId::new(chat) }
}

async fn portals(s: &dyn Store) {
    let k = key("@alice:hs.test", "+491");
    assert_eq!(s.portal(&k).await.unwrap(), None);
    let mut p = Portal {
        key: k.clone(),
        room_id: None,
        other_user: RemoteUserId::new("+491"),
        is_group: false,
        metadata: Metadata::default(),
    };
    s.upsert_portal(&p).await.unwrap();
    assert_eq!(s.portal(&k).await.unwrap().unwrap().room_id, None);
    p.room_id = Some(rid("!a:hs.test"));
    s.upsert_portal(&p).await.unwrap();
    assert_eq!(s.portal_by_room(&rid("!a:hs.test")).await.unwrap().unwrap().key, k);
    // Same chat, other receiver: a separate portal.
    let k2 = key("@bob:hs.test", "+491");
    let p2 = Portal {
        key: k2.clone(),
        room_id: Some(rid("!b:hs.test")),
        other_user: RemoteUserId::new("+491"),
        is_group: false,
        metadata: Metadata::default(),
    };
    s.upsert_portal(&p2).await.unwrap();
    assert_eq!(s.portal_by_room(&rid("!b:hs.test")).await.unwrap().unwrap().key, k2);
    assert_eq!(s.portal_by_room(&rid("!a:hs.test")).await.unwrap().unwrap().key, k);
    // A room re-bound to another portal leaves the old one without a room.
    let p3 = Portal {
        key: key("@alice:hs.test", "+492"),
        room_id: Some(rid("!a:hs.test")),
        other_user: RemoteUserId::new("+492"),
        is_group: false,
        metadata: Metadata::default(),
    };
    s.upsert_portal(&p3).await.unwrap();
    assert_eq!(s.portal(&k).await.unwrap().unwrap().room_id, None);
    assert_eq!(s.portal_by_room(&rid("!a:hs.test")).await.unwrap().unwrap().key, p3.key);
    s.delete_portal(&p3.key).await.unwrap();
    assert_eq!(s.portal(&p3.key).await.unwrap(), None);
    assert_eq!(s.portal_by_room(&rid("!a:hs.test")).await.unwrap(), None);
    // The group flag is kept, with and without a room.
    let mut g = Portal {
        key: key("@alice:hs.test", "group-1"),
        room_id: Some(rid("!g:hs.test")),
        other_user: RemoteUserId::new("+493"),
        is_group: true,
        metadata: Metadata(serde_json::json!({"mms": true})),
    };
    s.upsert_portal(&g).await.unwrap();
    assert_eq!(s.portal_by_room(&rid("!g:hs.test")).await.unwrap().as_ref(), Some(&g));
    g.room_id = None;
    s.upsert_portal(&g).await.unwrap();
    assert_eq!(s.portal(&g.key).await.unwrap().as_ref(), Some(&g));
    g.is_group = false;
    s.upsert_portal(&g).await.unwrap();
    assert!(!s.portal(&g.key).await.unwrap().unwrap().is_group);
}

async fn messages(s: &dyn Store) {
    let k = key("@alice:hs.test", "+491");
    let m = MessageMapping {
        portal: k.clone(),
        remote_id: RemoteMessageId::new("r1"),
        event_id: eid("$e1"),
        room_id: rid("!b:hs.test"),
        sender: uid("@alice:hs.test"),
        metadata: Metadata(serde_json::json!({"segments": 3})),
    };
    assert!(s.insert_message(&m).await.unwrap());
    assert!(!s.insert_message(&m).await.unwrap(), "same remote id twice");
    let mut other = m.clone();
    other.remote_id = RemoteMessageId::new("r2");
    assert!(!s.insert_message(&other).await.unwrap(), "same event id twice");
    assert_eq!(s.message_by_remote(&k, &RemoteMessageId::new("r1")).await.unwrap().as_ref(), Some(&m));
    assert_eq!(s.message_by_event(&k, &eid("$e1")).await.unwrap().as_ref(), Some(&m));
    // Scoped to the portal: the same event ID asked for in another portal is not found.
    assert_eq!(s.message_by_event(&key("@bob:hs.test", "+491"), &eid("$e1")).await.unwrap(), None);
    assert_eq!(s.message_by_remote(&key("@bob:hs.test", "+491"), &RemoteMessageId::new("r1")).await.unwrap(), None);
    assert_eq!(s.message_by_event(&k, &eid("$nope")).await.unwrap(), None);
}

async fn remote_queue(s: &dyn Store) {
    let a = key("@alice:hs.test", "+491");
    let b = key("@alice:hs.test", "+492");
    let new = |k: &PortalKey, n: u32| NewRemoteEvent { portal: k.clone(), json: format!("{{\"r\":{n}}}") };
    assert_eq!(s.remote_pending_count().await.unwrap(), 0);
    assert!(s.queue_remote(&[], 1).await.unwrap().is_empty());
    let seqs = s.queue_remote(&[new(&a, 1), new(&b, 2)], 100).await.unwrap();
    let more = s.queue_remote(&[new(&a, 3)], 101).await.unwrap();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1] && seqs[1] < more[0], "{seqs:?} {more:?}");
    let pending = s.remote_pending_after(0, 100).await.unwrap();
    let got: Vec<(&PortalKey, &str, i64)> = pending.iter().map(|e| (&e.portal, e.json.as_str(), e.queued_at)).collect();
    assert_eq!(got, [(&a, "{\"r\":1}", 100), (&b, "{\"r\":2}", 100), (&a, "{\"r\":3}", 101)]);
    assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), [seqs[0], seqs[1], more[0]]);
    assert_eq!(s.remote_pending_after(seqs[0], 1).await.unwrap()[0].seq, seqs[1]);
    assert_eq!(s.remote_pending_count().await.unwrap(), 3);

    // Done together with the mapping it produced.
    let m = MessageMapping {
        portal: a.clone(),
        remote_id: RemoteMessageId::new("q1"),
        event_id: eid("$q1"),
        room_id: rid("!qa:hs.test"),
        sender: uid("@sms_+491:hs.test"),
        metadata: Metadata(serde_json::json!({})),
    };
    s.complete_remote(seqs[0], Some(&m), 200).await.unwrap();
    assert_eq!(s.message_by_remote(&a, &RemoteMessageId::new("q1")).await.unwrap().as_ref(), Some(&m));
    assert_eq!(s.message_by_event(&a, &eid("$q1")).await.unwrap().unwrap().remote_id, m.remote_id);
    // Done without a mapping (a receipt, a typing notice), and done with a mapping already recorded.
    s.complete_remote(seqs[1], None, 201).await.unwrap();
    s.complete_remote(more[0], Some(&m), 202).await.unwrap();
    assert_eq!(s.remote_pending_count().await.unwrap(), 0);
    assert!(s.remote_pending_after(0, 100).await.unwrap().is_empty());

    // Positions keep growing after everything is done.
    let later = s.queue_remote(&[new(&b, 4)], 300).await.unwrap();
    assert!(later[0] > more[0]);
    assert_eq!(s.remote_pending_after(0, 100).await.unwrap()[0].json, "{\"r\":4}");
    s.complete_remote(later[0], None, 301).await.unwrap();
}

/// Rows of both queues marked done together, with their mappings, in one call; everything else stays as it was.
async fn completions(s: &dyn Store) {
    let (inbox_before, remote_before) = (s.pending_count().await.unwrap(), s.remote_pending_count().await.unwrap());
    let events: Vec<NewInboxEvent> = (60..63).map(|n| ev(InboxKind::Timeline, n)).collect();
    assert!(s.record_transaction("c1", &events, 400).await.unwrap());
    let inbox: Vec<i64> = s.pending_after(0, 1_000).await.unwrap().iter().rev().take(3).map(|e| e.seq).collect();
    let a = key("@alice:hs.test", "+49777");
    let queued = s.queue_remote(&vec![NewRemoteEvent { portal: a.clone(), json: "{}".into() }; 2], 400).await.unwrap();
    let mapping = |id: &str, event: &str| MessageMapping {
        portal: a.clone(),
        remote_id: RemoteMessageId::new(id),
        event_id: eid(event),
        room_id: rid("!c:hs.test"),
        sender: uid("@alice:hs.test"),
        metadata: Metadata(serde_json::json!({})),
    };
    let done = |queue, seq, mapping| Completion { queue, seq, mapping };
    s.complete_all(&[], 450).await.unwrap();
    s.complete_all(
        &[
            done(WorkQueue::Remote, queued[0], Some(mapping("c-remote", "$c-remote"))),
            done(WorkQueue::Inbox, inbox[2], Some(mapping("c-inbox", "$c-inbox"))),
            done(WorkQueue::Inbox, inbox[1], None),
            // The same message again: ignored, like insert_message.
            done(WorkQueue::Remote, queued[1], Some(mapping("c-remote", "$c-other"))),
        ],
        450,
    )
    .await
    .unwrap();
    assert_eq!(s.pending_count().await.unwrap(), inbox_before + 1, "only the third inbox event is left");
    assert_eq!(s.pending_after(inbox[1], 10).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [inbox[0]]);
    assert_eq!(s.remote_pending_count().await.unwrap(), remote_before);
    let m = s.message_by_remote(&a, &RemoteMessageId::new("c-remote")).await.unwrap().unwrap();
    assert_eq!(m.event_id, "$c-remote", "the first mapping of a remote message stays");
    assert!(s.message_by_event(&a, &eid("$c-other")).await.unwrap().is_none());
    assert_eq!(s.message_by_event(&a, &eid("$c-inbox")).await.unwrap().unwrap().remote_id.as_str(), "c-inbox");
    s.complete_all(&[done(WorkQueue::Inbox, inbox[0], None)], 460).await.unwrap();
    assert_eq!(s.pending_count().await.unwrap(), inbox_before);
}

/// Batches larger than one multi-row statement takes (the store splits them): a transaction's 600 events keep
/// their order and `last_seq` is the last of them; 600 inbox rows and 300 mappings are marked and recorded in
/// one call, a mapping repeated across the split ignored as in one call of `insert_message`.
async fn large_batches(s: &dyn Store) {
    let pending_before = s.pending_count().await.unwrap();
    let before = s.last_seq().await.unwrap();
    let events: Vec<NewInboxEvent> =
        (0..600).map(|n| ev(if n % 7 == 0 { InboxKind::Ephemeral } else { InboxKind::Timeline }, 1_000 + n)).collect();
    assert!(s.record_transaction("large", &events, 600).await.unwrap());
    let recorded: Vec<_> = s.pending_after(before, 1_000).await.unwrap();
    let got: Vec<(InboxKind, &str)> = recorded.iter().map(|e| (e.kind, e.json.as_str())).collect();
    let want: Vec<(InboxKind, &str)> = events.iter().map(|e| (e.kind, e.json.as_str())).collect();
    assert_eq!(got, want, "every event once, in the order given");
    assert!(recorded.iter().all(|e| e.txn_id == "large"));
    assert!(recorded.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(s.last_seq().await.unwrap(), recorded.last().unwrap().seq);
    assert!(!s.record_transaction("large", &events, 601).await.unwrap(), "a retry records nothing");
    assert_eq!(s.pending_count().await.unwrap(), pending_before + 600);

    let a = key("@alice:hs.test", "+49888");
    let mapping = |n: usize, event: String| MessageMapping {
        portal: a.clone(),
        remote_id: RemoteMessageId::new(format!("big-{n}")),
        event_id: eid(&event),
        room_id: rid("!big:hs.test"),
        sender: uid("@alice:hs.test"),
        metadata: Metadata(serde_json::json!({"n": n})),
    };
    let done: Vec<Completion> = recorded
        .iter()
        .enumerate()
        .map(|(i, e)| {
            // Every other row has a mapping; row 598 repeats the remote ID of row 0, under another event.
            let mapping = match i {
                598 => Some(mapping(0, "$big-again".into())),
                i if i % 2 == 0 => Some(mapping(i, format!("$big-{i}"))),
                _ => None,
            };
            Completion { queue: WorkQueue::Inbox, seq: e.seq, mapping }
        })
        .collect();
    s.complete_all(&done, 700).await.unwrap();
    assert_eq!(s.pending_count().await.unwrap(), pending_before);
    for i in (0..598).step_by(2) {
        let m = s.message_by_remote(&a, &RemoteMessageId::new(format!("big-{i}"))).await.unwrap();
        assert_eq!(m.map(|m| m.event_id.to_string()), Some(format!("$big-{i}")), "mapping {i}");
    }
    assert!(s.message_by_event(&a, &eid("$big-again")).await.unwrap().is_none(), "the first mapping of big-0 stays");
    assert_eq!(s.message_by_event(&a, &eid("$big-0")).await.unwrap().unwrap().metadata.0["n"], 0);
}

#[tokio::test]
async fn sqlite_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("bridge.db").display());
    suite(store::connect(&url, 4).await.unwrap()).await;
    // Reopening keeps state and does not re-run migrations destructively.
    let again = store::connect(&url, 4).await.unwrap();
    assert!(again.transaction_seen("kept").await.unwrap());
}

#[tokio::test]
async fn postgres_passes_the_store_suite() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    suite(store::connect(pg.url(), 4).await.unwrap()).await;
    let again = store::connect(pg.url(), 4).await.unwrap();
    assert!(again.transaction_seen("kept").await.unwrap());
}
