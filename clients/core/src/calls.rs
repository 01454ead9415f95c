//! Call signalling in our rooms (pure, no I/O): the Matrix VoIP events (`m.call.invite`, `answer`,
//! `select_answer`, `negotiate`, `hangup`, `reject`) read from the timeline, as
//! [`TincanClient::calls`](crate::TincanClient::calls) hands them out.
//!
//! The client core carries no audio: an app with a media stack answers and hangs up with these events (a
//! WebRTC peer connection of its own); the terminal client only shows them. A call from a phone through the
//! provider's SIP bridge rings as its ghost's `m.call.invite`; who is calling is the ghost's number once the
//! homeserver's `m.protocol.pstn` lookup names that ghost for it (see [`Caller`]).

use serde::Serialize;
use tincan_enum_core::E164;

/// One VoIP event in one of our rooms (decrypted when it was encrypted and we hold the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallSignal {
    /// The room.
    pub room_id: String,
    /// The event.
    pub event_id: String,
    /// Who sent it.
    pub sender: String,
    /// The call it belongs to (`content.call_id`).
    pub call_id: String,
    /// The sender's client in the call (`content.party_id`, VoIP v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub party_id: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: CallSignalKind,
    /// Who the sender is by number, when we know it (see [`Caller`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
    /// Whether it arrived end-to-end encrypted.
    pub encrypted: bool,
    /// Origin server time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// What a VoIP event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CallSignalKind {
    /// A call rings (`m.call.invite`).
    Invite {
        /// How long it rings before the caller gives up (`lifetime`), milliseconds.
        lifetime_ms: u64,
        /// Whether the offer has video.
        video: bool,
        /// The offer's SDP.
        sdp: String,
    },
    /// The callee's client answered (`m.call.answer`).
    Answer {
        /// The answer's SDP.
        sdp: String,
    },
    /// The caller picked the answering client (`m.call.select_answer`): the callee's other clients stop ringing.
    SelectAnswer {
        /// The client that has the call.
        selected_party_id: String,
    },
    /// New media during the call (`m.call.negotiate`: hold, resume).
    Negotiate {
        /// `offer` or `answer`.
        description_type: String,
        /// Its SDP.
        sdp: String,
    },
    /// The call ended, or was given up before an answer (`m.call.hangup`).
    Hangup {
        /// Why (`user_hangup`, `invite_timeout`, `answered_elsewhere`, `user_busy`…), when given.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The callee refused the call before answering (`m.call.reject`).
    Reject,
}

impl CallSignalKind {
    /// The event's name (`invite`, `answer`, `select_answer`, `negotiate`, `hangup`, `reject`).
    pub fn name(&self) -> &'static str {
        match self {
            CallSignalKind::Invite { .. } => "invite",
            CallSignalKind::Answer { .. } => "answer",
            CallSignalKind::SelectAnswer { .. } => "select_answer",
            CallSignalKind::Negotiate { .. } => "negotiate",
            CallSignalKind::Hangup { .. } => "hangup",
            CallSignalKind::Reject => "reject",
        }
    }

    /// Whether the call is over with this event.
    pub fn ends_the_call(&self) -> bool {
        matches!(self, CallSignalKind::Hangup { .. } | CallSignalKind::Reject)
    }
}

/// Who is behind a call's sender, by number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The number.
    pub number: E164,
    /// How we know it.
    pub known_by: CallerSource,
}

/// How a caller's number is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerSource {
    /// A contact verified through the directory.
    VerifiedContact,
    /// A SIP party through the provider's SIP bridge: the homeserver's `m.protocol.pstn` lookup of the number
    /// names the sender as the bridge's ghost for it (the bridge's word on the caller's identity, as the SIP
    /// network gave it: not verified end to end).
    SipBridge,
    /// A phone through the provider's SMS bridge, confirmed the same way.
    SmsBridge,
}

/// The VoIP events this module reads.
const TYPES: [&str; 6] =
    ["m.call.invite", "m.call.answer", "m.call.select_answer", "m.call.negotiate", "m.call.hangup", "m.call.reject"];

impl CallSignal {
    /// The VoIP event in a timeline event's JSON (as decrypted), if it is one. Trickled candidates
    /// (`m.call.candidates`) are not signals of their own: an app gathers them with the SDP it takes.
    pub fn from_timeline_json(room_id: &str, event: &serde_json::Value, encrypted: bool) -> Option<CallSignal> {
        let kind = event["type"].as_str().filter(|t| TYPES.contains(t))?;
        let content = &event["content"];
        let call_id = content["call_id"].as_str().filter(|c| !c.is_empty())?.to_owned();
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let kind = match kind {
            "m.call.invite" => {
                let sdp = text(&content["offer"]["sdp"])?;
                let video = sdp.lines().any(|l| l.starts_with("m=video "));
                CallSignalKind::Invite { lifetime_ms: content["lifetime"].as_u64().unwrap_or(0), video, sdp }
            }
            "m.call.answer" => CallSignalKind::Answer { sdp: text(&content["answer"]["sdp"])? },
            "m.call.select_answer" => {
                CallSignalKind::SelectAnswer { selected_party_id: text(&content["selected_party_id"])? }
            }
            "m.call.negotiate" => CallSignalKind::Negotiate {
                description_type: text(&content["description"]["type"])?,
                sdp: text(&content["description"]["sdp"])?,
            },
            "m.call.hangup" => CallSignalKind::Hangup { reason: text(&content["reason"]) },
            _ => CallSignalKind::Reject,
        };
        Some(CallSignal {
            room_id: room_id.to_owned(),
            event_id: text(&event["event_id"])?,
            sender: text(&event["sender"])?,
            call_id,
            party_id: text(&content["party_id"]),
            kind,
            caller: None,
            encrypted,
            timestamp_ms: event["origin_server_ts"].as_u64().unwrap_or(0),
        })
    }
}

/// The number a bridge's ghost stands for, from its localpart (`@sip_+447400123603:hs`, `@sms_+4477…:hs`: the
/// bridges' namespaces); `None` for any other user, and for a ghost of a SIP address. A claim to be confirmed
/// with the homeserver's lookup before it is believed.
pub fn ghost_number(user_id: &str) -> Option<E164> {
    let localpart = user_id.strip_prefix('@')?.split(':').next()?;
    let number = localpart.strip_prefix("sip_").or_else(|| localpart.strip_prefix("sms_"))?;
    E164::parse(number).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOM: &str = "!portal:hs.test";

    fn event(kind: &str, content: serde_json::Value) -> serde_json::Value {
        json!({"type": kind, "event_id": "$e", "sender": "@sip_+447400123603:hs.test",
               "origin_server_ts": 1_700_000_000_000u64, "content": content})
    }

    #[test]
    fn an_invite_rings_with_its_lifetime_and_offer() {
        let ev = event(
            "m.call.invite",
            json!({"call_id": "c1", "party_id": "p1", "version": "1", "lifetime": 60000,
                   "offer": {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}}),
        );
        let s = CallSignal::from_timeline_json(ROOM, &ev, true).unwrap();
        assert_eq!((s.call_id.as_str(), s.party_id.as_deref(), s.encrypted), ("c1", Some("p1"), true));
        assert_eq!(s.timestamp_ms, 1_700_000_000_000);
        let CallSignalKind::Invite { lifetime_ms, video, .. } = &s.kind else { panic!("{s:?}") };
        assert_eq!((*lifetime_ms, *video), (60000, false));
        let out = serde_json::to_value(&s).unwrap();
        assert_eq!((out["event"].as_str(), out["lifetime_ms"].as_u64()), (Some("invite"), Some(60000)));
    }

    #[test]
    fn hangups_and_rejects_end_the_call() {
        let hangup = event("m.call.hangup", json!({"call_id": "c1", "party_id": "p1", "reason": "user_hangup"}));
        let s = CallSignal::from_timeline_json(ROOM, &hangup, false).unwrap();
        assert_eq!(s.kind, CallSignalKind::Hangup { reason: Some("user_hangup".into()) });
        assert!(s.kind.ends_the_call());
        let reject = CallSignal::from_timeline_json(ROOM, &event("m.call.reject", json!({"call_id": "c1"})), false);
        assert_eq!(reject.map(|s| s.kind), Some(CallSignalKind::Reject));
        let select = event("m.call.select_answer", json!({"call_id": "c1", "selected_party_id": "a"}));
        let s = CallSignal::from_timeline_json(ROOM, &select, false).unwrap();
        assert!(!s.kind.ends_the_call());
        assert_eq!(s.kind.name(), "select_answer");
    }

    #[test]
    fn other_events_and_malformed_calls_are_not_signals() {
        let none = |ev: serde_json::Value| CallSignal::from_timeline_json(ROOM, &ev, false);
        assert_eq!(none(event("m.room.message", json!({"body": "hi", "call_id": "c1"}))), None);
        assert_eq!(none(event("m.call.candidates", json!({"call_id": "c1", "candidates": []}))), None);
        assert_eq!(none(event("m.call.invite", json!({"call_id": "c1"}))), None, "an invite without an offer");
        assert_eq!(none(event("m.call.hangup", json!({"call_id": ""}))), None);
        assert_eq!(none(event("m.call.hangup", json!({}))), None);
    }

    #[test]
    fn ghost_numbers_come_from_the_bridges_namespaces_only() {
        assert_eq!(ghost_number("@sip_+447400123603:hs.test").map(|n| n.to_string()), Some("+447400123603".into()));
        assert_eq!(ghost_number("@sms_+447400123601:hs.test").map(|n| n.to_string()), Some("+447400123601".into()));
        assert_eq!(ghost_number("@sip_sip=3abob=40example.com:hs.test"), None);
        assert_eq!(ghost_number("@+447400123603:hs.test"), None);
        assert_eq!(ghost_number("@bob:hs.test"), None);
    }
}
