//! What became of a text sent through one of the provider's bridges (pure, no I/O): the signals a bridge gives
//! in the conversation, judged against the message they may be about.
//!
//! A bridge has two ways to say what happened to a message, and [`Watch::judge`] accepts both:
//! - **Delivered**: the bridge's ghost puts its read receipt on the message (what `tincan-sms` does when the
//!   carrier's delivery report says delivered), or a `com.beeper.message_send_status` event relating to the
//!   message says `SUCCESS` and names the ghost in `delivered_to_users`. (`SUCCESS` alone only says the bridge
//!   handed the message to its network: that is not a delivery, so the wait goes on.)
//! - **Failed**: a message from the ghost starting with ⚠ after ours in the conversation (the bridge's refusal,
//!   a failed delivery report, or a message it could not decrypt), or a `com.beeper.message_send_status` with
//!   `FAIL_RETRIABLE`/`FAIL_PERMANENT` relating to the message. The reason is the bridge's text.
//!
//! A ⚠ notice carries no reference to the message it is about, so only one that comes after the message in the
//! conversation's timeline counts (the timeline is in order; a notice about an earlier message that arrived
//! before ours does not), and only from a bridge that has not shown it sends `com.beeper.message_send_status`:
//! such a bridge (the appservice core, `tincan-sms`) sends the status before its notice, so once a status event
//! was seen in the conversation a bare notice is about some other message (an earlier one still waiting for its
//! report, in a chat) and says nothing of ours.

use serde::Serialize;

/// The event type of a bridge's message status (Beeper's, which mautrix bridges send).
pub const SEND_STATUS_TYPE: &str = "com.beeper.message_send_status";

/// A text's fate as far as the client knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Delivery {
    /// Sent into the conversation; no word from the bridge (yet, or within the wait).
    Sent,
    /// The bridge says the message reached the phone.
    Delivered,
    /// The bridge says it did not, and why.
    Failed {
        /// The bridge's words.
        reason: String,
    },
}

/// What the sync shows of a conversation: one timeline event or one read receipt (the parts that matter here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A timeline event (decrypted when it was encrypted and we hold the key).
    Timeline {
        /// The room.
        room_id: String,
        /// The event.
        event_id: String,
        /// Its sender.
        sender: String,
        /// Its type after decryption (`m.room.message`, `com.beeper.message_send_status`…).
        kind: String,
        /// The text of a message (`content.body`).
        body: Option<String>,
        /// A message status: the event it relates to, its `status`, its reason text and who it reached.
        status: Option<SendStatus>,
    },
    /// Read receipts in a room: `(event, user)` pairs.
    Receipts {
        /// The room.
        room_id: String,
        /// Who read up to which event.
        read: Vec<(String, String)>,
    },
}

/// The content of a `com.beeper.message_send_status` event, as far as it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendStatus {
    /// The message it is about (`m.relates_to.event_id`).
    pub relates_to: String,
    /// `SUCCESS`, `PENDING`, `FAIL_RETRIABLE`, `FAIL_PERMANENT`.
    pub status: String,
    /// `message`, else `error`, else `reason`.
    pub reason: Option<String>,
    /// `delivered_to_users`.
    pub delivered_to: Vec<String>,
}

impl Signal {
    /// A timeline event from its JSON (a sync's `timeline.events` entry, decrypted); `None` without an event ID.
    pub fn from_timeline_json(room_id: &str, ev: &serde_json::Value) -> Option<Signal> {
        let event_id = ev.get("event_id")?.as_str()?.to_owned();
        let sender = ev.get("sender").and_then(|s| s.as_str()).unwrap_or_default().to_owned();
        let kind = ev.get("type").and_then(|s| s.as_str()).unwrap_or_default().to_owned();
        let content = ev.get("content");
        let str_at = |key: &str| content.and_then(|c| c.get(key)).and_then(|v| v.as_str()).map(str::to_owned);
        let body = str_at("body");
        let status = (kind == SEND_STATUS_TYPE)
            .then(|| {
                let relates_to = content?.get("m.relates_to")?.get("event_id")?.as_str()?.to_owned();
                let delivered_to = content
                    .and_then(|c| c.get("delivered_to_users"))
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                Some(SendStatus {
                    relates_to,
                    status: str_at("status").unwrap_or_default(),
                    reason: str_at("message").or_else(|| str_at("error")).or_else(|| str_at("reason")),
                    delivered_to,
                })
            })
            .flatten();
        Some(Signal::Timeline { room_id: room_id.to_owned(), event_id, sender, kind, body, status })
    }

    /// The read receipts of an `m.receipt` ephemeral event's JSON; `None` for other ephemeral events.
    pub fn from_receipt_json(room_id: &str, ev: &serde_json::Value) -> Option<Signal> {
        if ev.get("type")?.as_str()? != "m.receipt" {
            return None;
        }
        let mut read = Vec::new();
        for (event_id, kinds) in ev.get("content")?.as_object()? {
            for kind in ["m.read", "m.read.private"] {
                if let Some(users) = kinds.get(kind).and_then(|u| u.as_object()) {
                    read.extend(users.keys().map(|u| (event_id.clone(), u.clone())));
                }
            }
        }
        Some(Signal::Receipts { room_id: room_id.to_owned(), read })
    }
}

/// One sent message waiting for its bridge's word.
#[derive(Debug, Clone)]
pub struct Watch {
    room_id: String,
    event_id: String,
    ghost: String,
    /// Whether our message has shown up in the timeline: a ⚠ from the ghost counts only after it.
    seen_ours: bool,
    /// Whether a message status event was seen in the room: then the bridge reports by status, and a bare ⚠
    /// notice belongs to the status before it (maybe another message's), not to ours.
    statuses_seen: bool,
}

impl Watch {
    /// Watches `event_id`, sent into `room_id` to the bridge's `ghost`.
    pub fn new(room_id: &str, event_id: &str, ghost: &str) -> Watch {
        Watch {
            room_id: room_id.to_owned(),
            event_id: event_id.to_owned(),
            ghost: ghost.to_owned(),
            seen_ours: false,
            statuses_seen: false,
        }
    }

    /// The room of the watched message.
    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The watched message.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// Takes the next signal (in the order the sync gives them); the final word, when this is it.
    pub fn judge(&mut self, signal: &Signal) -> Option<Delivery> {
        match signal {
            Signal::Receipts { room_id, read } if *room_id == self.room_id => read
                .iter()
                .any(|(event, user)| *event == self.event_id && *user == self.ghost)
                .then_some(Delivery::Delivered),
            Signal::Timeline { room_id, event_id, sender, kind, body, status } if *room_id == self.room_id => {
                if *event_id == self.event_id {
                    self.seen_ours = true;
                    return None;
                }
                if status.is_some() {
                    self.statuses_seen = true;
                }
                if let Some(s) = status.as_ref().filter(|s| s.relates_to == self.event_id) {
                    return match s.status.as_str() {
                        "SUCCESS" if s.delivered_to.contains(&self.ghost) => Some(Delivery::Delivered),
                        "FAIL_RETRIABLE" | "FAIL_PERMANENT" => Some(Delivery::Failed {
                            reason: s.reason.clone().unwrap_or_else(|| "the bridge gave no reason".into()),
                        }),
                        _ => None,
                    };
                }
                let notice = body.as_deref().and_then(|b| b.trim_start().strip_prefix('⚠'));
                match notice {
                    Some(reason)
                        if self.seen_ours
                            && !self.statuses_seen
                            && *sender == self.ghost
                            && kind == "m.room.message" =>
                    {
                        Some(Delivery::Failed { reason: reason.trim().to_owned() })
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const ROOM: &str = "!dm:hs.test";
    const OURS: &str = "$ours";
    const GHOST: &str = "@sms_+447700900123:hs.test";
    const ME: &str = "@alice:hs.test";

    fn message(id: &str, sender: &str, body: &str) -> Signal {
        let ev = json!({"event_id": id, "sender": sender, "type": "m.room.message",
                        "content": {"msgtype": "m.notice", "body": body}});
        Signal::from_timeline_json(ROOM, &ev).unwrap()
    }
    fn receipt(event: &str, user: &str) -> Signal {
        let ev = json!({"type": "m.receipt", "content": {event: {"m.read": {user: {"ts": 1}}}}});
        Signal::from_receipt_json(ROOM, &ev).unwrap()
    }
    fn status(relates: &str, status: &str, delivered: &[&str]) -> Signal {
        let ev = json!({"event_id": "$st", "sender": "@smsbot:hs.test", "type": SEND_STATUS_TYPE,
                        "content": {"m.relates_to": {"rel_type": "m.reference", "event_id": relates},
                                    "status": status, "message": "the carrier said no",
                                    "delivered_to_users": delivered}});
        Signal::from_timeline_json(ROOM, &ev).unwrap()
    }
    fn judge_all(signals: &[Signal]) -> Option<Delivery> {
        let mut w = Watch::new(ROOM, OURS, GHOST);
        signals.iter().find_map(|s| w.judge(s))
    }

    #[test]
    fn the_ghosts_read_receipt_on_the_message_is_a_delivery() {
        assert_eq!(judge_all(&[receipt(OURS, GHOST)]), Some(Delivery::Delivered));
        // Not ours, not the ghost's, not this room.
        assert_eq!(judge_all(&[receipt("$other", GHOST), receipt(OURS, ME)]), None);
        let elsewhere = Signal::Receipts { room_id: "!other:hs.test".into(), read: vec![(OURS.into(), GHOST.into())] };
        assert_eq!(judge_all(&[elsewhere]), None);
    }

    #[test]
    fn a_warning_from_the_ghost_after_the_message_is_a_failure_with_its_reason() {
        let ours = message(OURS, ME, "hello");
        let notice = message("$n", GHOST, "⚠ Not delivered to +447700900123: undeliverable");
        assert_eq!(
            judge_all(&[ours.clone(), notice.clone()]),
            Some(Delivery::Failed { reason: "Not delivered to +447700900123: undeliverable".into() })
        );
        // Before our message (about an earlier one), from someone else, or not a warning: no verdict.
        assert_eq!(judge_all(&[notice.clone(), ours.clone()]), None);
        assert_eq!(judge_all(&[ours.clone(), message("$n", ME, "⚠ typed by me")]), None);
        assert_eq!(judge_all(&[ours.clone(), message("$n", GHOST, "a reply")]), None);
        assert_eq!(judge_all(&[ours, message("$n", GHOST, "ℹ That is 2 SMS")]), None);
    }

    #[test]
    fn message_send_status_events_are_accepted_both_ways() {
        assert_eq!(judge_all(&[status(OURS, "SUCCESS", &[GHOST])]), Some(Delivery::Delivered));
        assert_eq!(
            judge_all(&[status(OURS, "FAIL_PERMANENT", &[])]),
            Some(Delivery::Failed { reason: "the carrier said no".into() })
        );
        // Handed to the network is not delivered; a status of another message says nothing of ours.
        assert_eq!(judge_all(&[status(OURS, "SUCCESS", &[]), status(OURS, "PENDING", &[])]), None);
        assert_eq!(judge_all(&[status("$other", "FAIL_PERMANENT", &[])]), None);
    }

    #[test]
    fn a_notice_after_another_messages_failure_status_is_not_about_ours() {
        // In a chat: ours is sent while an earlier message still waits for its report; the bridge then reports
        // the earlier one failed (status, then its notice). Ours is not failed by that notice.
        let ours = message(OURS, ME, "hello again");
        let earlier = status("$earlier", "FAIL_PERMANENT", &[]);
        let notice = message("$n", GHOST, "⚠ Not delivered: undeliverable");
        assert_eq!(judge_all(&[ours.clone(), earlier.clone(), notice.clone()]), None);
        // Ours is judged by its own status, the notice after it changes nothing.
        let own = status(OURS, "SUCCESS", &[GHOST]);
        assert_eq!(judge_all(&[ours.clone(), earlier, notice.clone(), own]), Some(Delivery::Delivered));
        // A bridge that never sent a status: its notice after ours is still ours.
        assert!(matches!(judge_all(&[ours, notice]), Some(Delivery::Failed { .. })));
    }

    #[test]
    fn signals_from_json_need_an_event_id_and_a_receipt_type() {
        assert_eq!(Signal::from_timeline_json(ROOM, &json!({"type": "m.room.message"})), None);
        assert_eq!(Signal::from_receipt_json(ROOM, &json!({"type": "m.typing", "content": {}})), None);
        let s = serde_json::to_value(Delivery::Failed { reason: "x".into() }).unwrap();
        assert_eq!(s, json!({"status": "failed", "reason": "x"}));
    }

    fn any_signal() -> impl Strategy<Value = Signal> {
        let who = prop_oneof![Just(GHOST), Just(ME), Just("@smsbot:hs.test")];
        let event = prop_oneof![Just(OURS), Just("$a"), Just("$b")];
        let room = prop_oneof![Just(ROOM), Just("!other:hs.test")];
        let body = prop_oneof![Just("⚠ failed"), Just("hi"), Just("ℹ note")];
        let st = prop_oneof![Just("SUCCESS"), Just("PENDING"), Just("FAIL_PERMANENT"), Just("FAIL_RETRIABLE")];
        prop_oneof![
            (room.clone(), event.clone(), who.clone(), body).prop_map(|(r, e, w, b)| Signal::Timeline {
                room_id: r.into(),
                event_id: e.into(),
                sender: w.into(),
                kind: "m.room.message".into(),
                body: Some(b.into()),
                status: None,
            }),
            (room.clone(), event.clone(), who.clone())
                .prop_map(|(r, e, w)| Signal::Receipts { room_id: r.into(), read: vec![(e.into(), w.into())] }),
            (room, event, st, proptest::collection::vec(who, 0..2)).prop_map(|(r, e, s, d)| Signal::Timeline {
                room_id: r.into(),
                event_id: "$status".into(),
                sender: "@smsbot:hs.test".into(),
                kind: SEND_STATUS_TYPE.into(),
                body: None,
                status: Some(SendStatus {
                    relates_to: e.into(),
                    status: s.into(),
                    reason: None,
                    delivered_to: d.into_iter().map(String::from).collect(),
                }),
            }),
        ]
    }

    proptest! {
        #[test]
        fn a_verdict_always_rests_on_a_signal_about_our_message(signals in proptest::collection::vec(any_signal(), 0..8)) {
            let mut w = Watch::new(ROOM, OURS, GHOST);
            let (mut seen_ours, mut statuses_seen) = (false, false);
            for s in &signals {
                let verdict = w.judge(s);
                if let Signal::Timeline { event_id, room_id, .. } = s && event_id == OURS && room_id == ROOM {
                    seen_ours = true;
                }
                if let Signal::Timeline { room_id, status: Some(_), .. } = s && room_id == ROOM {
                    statuses_seen = true;
                }
                let Some(v) = verdict else { continue };
                // Only from this room, and never from our own words.
                match s {
                    Signal::Receipts { room_id, read } => {
                        prop_assert_eq!(room_id, ROOM);
                        prop_assert_eq!(&v, &Delivery::Delivered);
                        prop_assert!(read.iter().any(|(e, u)| e == OURS && u == GHOST));
                    }
                    Signal::Timeline { room_id, sender, status, .. } => {
                        prop_assert_eq!(room_id, ROOM);
                        prop_assert_ne!(sender, ME);
                        match status {
                            Some(st) => prop_assert_eq!(&st.relates_to, OURS),
                            // A bare ⚠ only from the ghost, after our message, from a bridge that sent no status.
                            None => {
                                prop_assert!(seen_ours && !statuses_seen);
                                prop_assert_eq!(sender, GHOST);
                                prop_assert!(matches!(v, Delivery::Failed { .. }), "{:?}", v);
                            }
                        }
                    }
                }
            }
        }
    }
}
