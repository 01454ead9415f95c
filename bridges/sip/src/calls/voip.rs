//! The Matrix side of a bridged call: `m.call.*` (VoIP v1) contents read and written, and the call's state
//! machine — which SIP action each Matrix event means and which Matrix events each SIP outcome means. No I/O:
//! [`super`] runs one machine per call and does what it says.
//!
//! Mapping (both directions, `ghost` = the SIP party's ghost in the portal):
//!
//! | SIP | Matrix |
//! |---|---|
//! | INVITE to a Tincan number | `m.call.invite` from the caller's ghost |
//! | 200 OK ← | `m.call.answer` (then the ghost's `m.call.select_answer`) |
//! | 486 Busy Here / 603 Decline ← | `m.call.reject`; `m.call.hangup` before the answer: 486 if `user_busy`, else 603 |
//! | CANCEL → | `m.call.hangup` (`user_hangup`) |
//! | 480 ← (nobody answered in `media.ring_timeout_secs`) | `m.call.hangup` (`invite_timeout`) |
//! | BYE ↔ | `m.call.hangup` (`user_hangup`) |
//! | INVITE → (to the route of the ghost's number) | `m.call.invite` to the ghost |
//! | 200 OK → | `m.call.answer` from the ghost |
//! | 486 / 600 / 603 → | `m.call.reject` from the ghost |
//! | 408 / 480 / 487 → | `m.call.hangup` (`invite_timeout`) |
//! | other failures → | `m.call.hangup` (`unknown_error`) |
//! | CANCEL ← | `m.call.hangup` before the answer |
//! | glare: INVITE → ringing while the user calls the phone | the lower call ID wins: the ghost's → the user's call gets the ghost's `m.call.hangup` (`replaced`); the user's → 486 to the phone, the ghost's `m.call.hangup` (`replaced`), INVITE ← |
//! | re-INVITE → (hold: `sendonly`/`inactive`, resume: `sendrecv`) | `m.call.negotiate` offer from the ghost; the user's negotiate answer → 200 |
//! | re-INVITE ← | the user's `m.call.negotiate` offer (Element's hold); the phone's 200 → the ghost's negotiate answer |
//! | 200 OK ← from one of the user's registered SIP devices, ringing in parallel | `m.call.hangup` (`answered_elsewhere`) |

use serde_json::{Value, json};
use tincan_sip_core::sdp::Candidate;

/// The VoIP version the bridge speaks.
pub const VERSION: &str = "1";

/// A VoIP event of the local user, read from its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoipEvent {
    /// `m.call.invite`.
    Invite {
        /// The call.
        call_id: String,
        /// The offer SDP.
        sdp: String,
        /// How long the invite is valid (ms).
        lifetime_ms: u64,
    },
    /// `m.call.candidates`.
    Candidates {
        /// The call.
        call_id: String,
        /// The candidates (an empty `candidate` marks the end).
        candidates: Vec<Candidate>,
    },
    /// `m.call.answer`.
    Answer {
        /// The call.
        call_id: String,
        /// The answering device's party.
        party_id: Option<String>,
        /// The answer SDP.
        sdp: String,
    },
    /// `m.call.select_answer` (the local user, as caller, chose an answer).
    SelectAnswer {
        /// The call.
        call_id: String,
    },
    /// `m.call.reject`.
    Reject {
        /// The call.
        call_id: String,
    },
    /// `m.call.hangup`.
    Hangup {
        /// The call.
        call_id: String,
        /// `reason`, `user_hangup` when absent.
        reason: String,
    },
    /// `m.call.negotiate`: an offer or answer of the established call (hold, resume, new media).
    Negotiate {
        /// The call.
        call_id: String,
        /// The sending device's party.
        party_id: Option<String>,
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP.
        sdp: String,
    },
    /// Not a Matrix event: the bridge resolved glare against this call (the same pair called each other at
    /// once and the other call won), so it ends.
    Replaced {
        /// The call.
        call_id: String,
    },
    /// Call events the bridge does not act on.
    Other {
        /// The call.
        call_id: String,
    },
}

/// Whether a negotiate SDP is an offer or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
}

impl SdpKind {
    /// The `type` of a session description.
    pub fn as_str(self) -> &'static str {
        match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        }
    }
}

/// Why a VoIP event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoipError {
    /// Not an `m.call.*` event type.
    #[error("not a VoIP event: {0}")]
    NotVoip(String),
    /// A required field is missing or of the wrong kind.
    #[error("{event_type} lacks {field}")]
    Missing {
        /// The event type.
        event_type: String,
        /// The field.
        field: &'static str,
    },
}

impl VoipEvent {
    /// Reads an event of type `event_type` with `content`.
    pub fn parse(event_type: &str, content: &Value) -> Result<Self, VoipError> {
        let missing = |field| VoipError::Missing { event_type: event_type.to_owned(), field };
        if !event_type.starts_with("m.call.") {
            return Err(VoipError::NotVoip(event_type.to_owned()));
        }
        let call_id = content["call_id"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| missing("call_id"))?;
        let call_id = call_id.to_owned();
        Ok(match event_type {
            "m.call.invite" => VoipEvent::Invite {
                call_id,
                sdp: content["offer"]["sdp"].as_str().ok_or_else(|| missing("offer.sdp"))?.to_owned(),
                lifetime_ms: content["lifetime"].as_u64().unwrap_or(60_000),
            },
            "m.call.candidates" => VoipEvent::Candidates {
                call_id,
                candidates: content["candidates"]
                    .as_array()
                    .ok_or_else(|| missing("candidates"))?
                    .iter()
                    .map(|c| Candidate {
                        candidate: c["candidate"].as_str().unwrap_or_default().to_owned(),
                        sdp_mid: c["sdpMid"].as_str().map(str::to_owned),
                        sdp_m_line_index: c["sdpMLineIndex"].as_u64().and_then(|i| usize::try_from(i).ok()),
                    })
                    .collect(),
            },
            "m.call.answer" => VoipEvent::Answer {
                call_id,
                party_id: content["party_id"].as_str().map(str::to_owned),
                sdp: content["answer"]["sdp"].as_str().ok_or_else(|| missing("answer.sdp"))?.to_owned(),
            },
            "m.call.negotiate" => VoipEvent::Negotiate {
                call_id,
                party_id: content["party_id"].as_str().map(str::to_owned),
                kind: match content["description"]["type"].as_str() {
                    Some("offer") => SdpKind::Offer,
                    Some("answer") => SdpKind::Answer,
                    _ => return Err(missing("description.type")),
                },
                sdp: content["description"]["sdp"].as_str().ok_or_else(|| missing("description.sdp"))?.to_owned(),
            },
            "m.call.select_answer" => VoipEvent::SelectAnswer { call_id },
            "m.call.reject" => VoipEvent::Reject { call_id },
            "m.call.hangup" => {
                VoipEvent::Hangup { call_id, reason: content["reason"].as_str().unwrap_or("user_hangup").to_owned() }
            }
            _ => VoipEvent::Other { call_id },
        })
    }

    /// The call it belongs to.
    pub fn call_id(&self) -> &str {
        match self {
            VoipEvent::Invite { call_id, .. }
            | VoipEvent::Candidates { call_id, .. }
            | VoipEvent::Answer { call_id, .. }
            | VoipEvent::Negotiate { call_id, .. }
            | VoipEvent::SelectAnswer { call_id }
            | VoipEvent::Reject { call_id }
            | VoipEvent::Hangup { call_id, .. }
            | VoipEvent::Replaced { call_id }
            | VoipEvent::Other { call_id } => call_id,
        }
    }
}

/// An event for the ghost to send: type and content.
pub type Outgoing = (&'static str, Value);

/// Writes the ghost's events of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhostSide {
    /// The Matrix call ID.
    pub call_id: String,
    /// The ghost's party ID in this call.
    pub party_id: String,
}

impl GhostSide {
    fn base(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("call_id".into(), json!(self.call_id));
        m.insert("party_id".into(), json!(self.party_id));
        m.insert("version".into(), json!(VERSION));
        m
    }

    fn with(&self, extra: Value) -> Value {
        let mut m = self.base();
        if let Value::Object(e) = extra {
            m.extend(e);
        }
        Value::Object(m)
    }

    /// `m.call.invite` with `sdp`, valid `lifetime_ms`.
    pub fn invite(&self, sdp: &str, lifetime_ms: u64) -> Outgoing {
        ("m.call.invite", self.with(json!({"lifetime": lifetime_ms, "offer": {"type": "offer", "sdp": sdp}})))
    }

    /// `m.call.answer` with `sdp`.
    pub fn answer(&self, sdp: &str) -> Outgoing {
        ("m.call.answer", self.with(json!({"answer": {"type": "answer", "sdp": sdp}})))
    }

    /// `m.call.negotiate` with an offer or answer `sdp`, valid `lifetime_ms`.
    pub fn negotiate(&self, kind: SdpKind, sdp: &str, lifetime_ms: u64) -> Outgoing {
        (
            "m.call.negotiate",
            self.with(json!({"lifetime": lifetime_ms, "description": {"type": kind.as_str(), "sdp": sdp}})),
        )
    }

    /// `m.call.select_answer` of the answer of `party`.
    pub fn select_answer(&self, party: &str) -> Outgoing {
        ("m.call.select_answer", self.with(json!({"selected_party_id": party})))
    }

    /// `m.call.reject`.
    pub fn reject(&self) -> Outgoing {
        ("m.call.reject", self.with(json!({})))
    }

    /// `m.call.hangup` with `reason`.
    pub fn hangup(&self, reason: &str) -> Outgoing {
        ("m.call.hangup", self.with(json!({"reason": reason})))
    }
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Invited, not answered.
    Ringing,
    /// Answered.
    Up,
    /// Over.
    Ended,
}

/// What the SIP side is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipAction {
    /// Nothing.
    None,
    /// (SIP→Matrix) Answer the phone's INVITE with the SDP rtpengine makes of this Matrix answer.
    Answer {
        /// The answering Matrix party.
        party_id: Option<String>,
        /// Its SDP.
        sdp: String,
    },
    /// (SIP→Matrix) Refuse the INVITE with this status.
    Reject(u16),
    /// (Matrix→SIP) Cancel our INVITE.
    Cancel,
    /// Send BYE.
    Bye,
}

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A phone called a Tincan user: the ghost invited the Matrix user.
    SipToMatrix,
    /// A Matrix user called the ghost.
    MatrixToSip,
}

/// The state of one bridged call as the Matrix side sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallState {
    /// Who placed it.
    pub direction: Direction,
    /// Where it is.
    pub phase: Phase,
    /// The ghost's side.
    pub ghost: GhostSide,
}

impl CallState {
    /// A call in `direction`, ringing.
    pub fn new(direction: Direction, ghost: GhostSide) -> Self {
        Self { direction, phase: Phase::Ringing, ghost }
    }

    /// A Matrix event of this call: what SIP is to do. Candidates are the runner's business (it merges them
    /// into the next SDP), so they do nothing here.
    pub fn on_matrix(&mut self, event: &VoipEvent) -> SipAction {
        use Direction::*;
        use Phase::*;
        let action = match (self.direction, self.phase, event) {
            (_, Ended, _) => SipAction::None,
            (SipToMatrix, Ringing, VoipEvent::Answer { party_id, sdp, .. }) => {
                SipAction::Answer { party_id: party_id.clone(), sdp: sdp.clone() }
            }
            (SipToMatrix, Ringing, VoipEvent::Reject { .. }) => SipAction::Reject(603),
            (SipToMatrix, Ringing, VoipEvent::Hangup { reason, .. }) => {
                SipAction::Reject(if reason == "user_busy" { 486 } else { 603 })
            }
            (MatrixToSip, Ringing, VoipEvent::Hangup { .. }) => SipAction::Cancel,
            (_, Up, VoipEvent::Hangup { .. }) => SipAction::Bye,
            _ => SipAction::None,
        };
        self.phase = match (&action, self.phase) {
            (SipAction::Answer { .. }, _) => Up,
            (SipAction::Reject(_) | SipAction::Cancel | SipAction::Bye, _) => Ended,
            (SipAction::None, p) => p,
        };
        action
    }

    /// (Matrix→SIP) The phone answered: the ghost answers with rtpengine's SDP.
    pub fn sip_answered(&mut self, sdp_for_matrix: &str) -> Vec<Outgoing> {
        if self.phase != Phase::Ringing {
            return Vec::new();
        }
        self.phase = Phase::Up;
        vec![self.ghost.answer(sdp_for_matrix)]
    }

    /// (SIP→Matrix) Our 200 OK went out for the answer of `party`: the ghost selects it, so the user's other
    /// devices stop ringing.
    pub fn selected(&self, party: Option<&str>) -> Vec<Outgoing> {
        party.map(|p| vec![self.ghost.select_answer(p)]).unwrap_or_default()
    }

    /// (Matrix→SIP) Our INVITE failed with `code`.
    pub fn sip_failed(&mut self, code: u16) -> Vec<Outgoing> {
        if self.phase == Phase::Ended {
            return Vec::new();
        }
        self.phase = Phase::Ended;
        vec![match code {
            486 | 600 | 603 => self.ghost.reject(),
            408 | 480 | 487 => self.ghost.hangup("invite_timeout"),
            _ => self.ghost.hangup("unknown_error"),
        }]
    }

    /// The SIP side ended the call (BYE, CANCEL, a dialog failure, or the bridge could not go on): the ghost
    /// hangs up with `reason`.
    pub fn sip_ended(&mut self, reason: &str) -> Vec<Outgoing> {
        if self.phase == Phase::Ended {
            return Vec::new();
        }
        self.phase = Phase::Ended;
        vec![self.ghost.hangup(reason)]
    }

    /// (SIP→Matrix) Glare: the user called the phone while the phone's call to them was ringing, and the
    /// user's call won (the lower call ID, as the VoIP spec and matrix-js-sdk resolve it). The phone's call is
    /// refused busy and the ghost hangs it up as `replaced`.
    pub fn replaced(&mut self) -> (SipAction, Vec<Outgoing>) {
        if self.direction != Direction::SipToMatrix || self.phase != Phase::Ringing {
            return (SipAction::None, Vec::new());
        }
        (SipAction::Reject(486), self.sip_ended("replaced"))
    }

    /// Nobody answered in time.
    pub fn ring_timeout(&mut self) -> (SipAction, Vec<Outgoing>) {
        if self.phase != Phase::Ringing {
            return (SipAction::None, Vec::new());
        }
        let sip = match self.direction {
            Direction::SipToMatrix => SipAction::Reject(480),
            Direction::MatrixToSip => SipAction::Cancel,
        };
        (sip, self.sip_ended("invite_timeout"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ghost() -> GhostSide {
        GhostSide { call_id: "c1".into(), party_id: "g1".into() }
    }

    fn hangup(reason: &str) -> VoipEvent {
        VoipEvent::Hangup { call_id: "c1".into(), reason: reason.into() }
    }

    fn answer() -> VoipEvent {
        VoipEvent::Answer { call_id: "c1".into(), party_id: Some("dev1".into()), sdp: "v=0".into() }
    }

    #[test]
    fn reads_the_v1_events() {
        let inv = json!({"call_id": "c1", "party_id": "p", "version": "1", "lifetime": 30000,
                         "offer": {"type": "offer", "sdp": "v=0\r\n"}});
        assert_eq!(
            VoipEvent::parse("m.call.invite", &inv),
            Ok(VoipEvent::Invite { call_id: "c1".into(), sdp: "v=0\r\n".into(), lifetime_ms: 30000 })
        );
        let cands = json!({"call_id": "c1", "candidates": [
            {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0},
            {"candidate": ""}]});
        match VoipEvent::parse("m.call.candidates", &cands).unwrap() {
            VoipEvent::Candidates { candidates, .. } => {
                assert_eq!(candidates.len(), 2);
                assert_eq!(candidates[0].sdp_mid.as_deref(), Some("0"));
                assert_eq!(candidates[0].sdp_m_line_index, Some(0));
                assert!(candidates[1].candidate.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(VoipEvent::parse("m.call.hangup", &json!({"call_id": "c1"})), Ok(hangup("user_hangup")));
        let neg = json!({"call_id": "c1", "party_id": "p", "version": "1", "lifetime": 10000,
                         "description": {"type": "offer", "sdp": "v=0\r\n"}});
        assert_eq!(
            VoipEvent::parse("m.call.negotiate", &neg),
            Ok(VoipEvent::Negotiate {
                call_id: "c1".into(),
                party_id: Some("p".into()),
                kind: SdpKind::Offer,
                sdp: "v=0\r\n".into()
            })
        );
        assert_eq!(
            VoipEvent::parse("m.call.sdp_stream_metadata_changed", &json!({"call_id": "c1"})),
            Ok(VoipEvent::Other { call_id: "c1".into() })
        );
    }

    #[test]
    fn refuses_what_it_cannot_act_on() {
        assert!(matches!(VoipEvent::parse("m.room.message", &json!({})), Err(VoipError::NotVoip(_))));
        assert!(matches!(
            VoipEvent::parse("m.call.invite", &json!({"call_id": "c1"})),
            Err(VoipError::Missing { field: "offer.sdp", .. })
        ));
        assert!(matches!(
            VoipEvent::parse("m.call.answer", &json!({"call_id": ""})),
            Err(VoipError::Missing { field: "call_id", .. })
        ));
        assert!(matches!(
            VoipEvent::parse(
                "m.call.negotiate",
                &json!({"call_id": "c", "description": {"type": "pranswer", "sdp": ""}})
            ),
            Err(VoipError::Missing { field: "description.type", .. })
        ));
        assert!(matches!(
            VoipEvent::parse("m.call.negotiate", &json!({"call_id": "c", "description": {"type": "answer"}})),
            Err(VoipError::Missing { field: "description.sdp", .. })
        ));
        assert!(matches!(
            VoipEvent::parse("m.call.candidates", &json!({"call_id": "c", "candidates": 3})),
            Err(VoipError::Missing { field: "candidates", .. })
        ));
    }

    #[test]
    fn the_ghost_writes_v1_contents() {
        let (t, c) = ghost().invite("v=0", 60000);
        assert_eq!(t, "m.call.invite");
        assert_eq!(
            c,
            json!({"call_id": "c1", "party_id": "g1", "version": "1", "lifetime": 60000,
                   "offer": {"type": "offer", "sdp": "v=0"}})
        );
        assert_eq!(ghost().select_answer("dev1").1["selected_party_id"], "dev1");
        assert_eq!(
            ghost().negotiate(SdpKind::Answer, "v=0", 30000),
            (
                "m.call.negotiate",
                json!({"call_id": "c1", "party_id": "g1", "version": "1", "lifetime": 30000,
                       "description": {"type": "answer", "sdp": "v=0"}})
            )
        );
        assert_eq!(ghost().hangup("user_busy").1["reason"], "user_busy");
        assert_eq!(ghost().reject().1, json!({"call_id": "c1", "party_id": "g1", "version": "1"}));
    }

    #[test]
    fn a_phone_call_answered_then_hung_up_from_matrix() {
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        assert_eq!(s.on_matrix(&answer()), SipAction::Answer { party_id: Some("dev1".into()), sdp: "v=0".into() });
        assert_eq!(s.phase, Phase::Up);
        assert_eq!(s.selected(Some("dev1"))[0].0, "m.call.select_answer");
        // A second device's late answer changes nothing.
        assert_eq!(s.on_matrix(&answer()), SipAction::None);
        assert_eq!(s.on_matrix(&hangup("user_hangup")), SipAction::Bye);
        assert_eq!(s.phase, Phase::Ended);
        assert!(s.sip_ended("user_hangup").is_empty(), "no hangup echoed back");
    }

    #[test]
    fn a_phone_call_refused_from_matrix() {
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        assert_eq!(s.on_matrix(&VoipEvent::Reject { call_id: "c1".into() }), SipAction::Reject(603));
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        assert_eq!(s.on_matrix(&hangup("user_busy")), SipAction::Reject(486));
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        assert_eq!(s.on_matrix(&hangup("user_hangup")), SipAction::Reject(603));
    }

    #[test]
    fn a_phone_call_nobody_answers() {
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        let (sip, mx) = s.ring_timeout();
        assert_eq!(sip, SipAction::Reject(480));
        assert_eq!(mx[0].1["reason"], "invite_timeout");
        assert_eq!(s.ring_timeout(), (SipAction::None, Vec::new()));
    }

    #[test]
    fn a_phone_call_cancelled_by_the_phone() {
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        let out = s.sip_ended("user_hangup");
        assert_eq!(out[0].0, "m.call.hangup");
        assert_eq!(s.on_matrix(&answer()), SipAction::None, "an answer after the cancel is too late");
    }

    #[test]
    fn a_matrix_call_to_a_phone() {
        let mut s = CallState::new(Direction::MatrixToSip, ghost());
        assert_eq!(s.on_matrix(&VoipEvent::Other { call_id: "c1".into() }), SipAction::None);
        let out = s.sip_answered("v=0 rtpengine");
        assert_eq!(out[0].0, "m.call.answer");
        assert_eq!(out[0].1["answer"]["sdp"], "v=0 rtpengine");
        assert_eq!(s.on_matrix(&hangup("user_hangup")), SipAction::Bye);

        let mut s = CallState::new(Direction::MatrixToSip, ghost());
        assert_eq!(s.on_matrix(&hangup("user_hangup")), SipAction::Cancel);
    }

    #[test]
    fn a_ringing_phone_call_replaced_by_the_users_call() {
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        let (sip, out) = s.replaced();
        assert_eq!(sip, SipAction::Reject(486));
        assert_eq!(out[0].0, "m.call.hangup");
        assert_eq!(out[0].1["reason"], "replaced");
        assert_eq!(s.phase, Phase::Ended);
        // Too late once answered, and never for a call from Matrix.
        let mut s = CallState::new(Direction::SipToMatrix, ghost());
        s.on_matrix(&answer());
        assert_eq!(s.replaced(), (SipAction::None, Vec::new()));
        assert_eq!(CallState::new(Direction::MatrixToSip, ghost()).replaced(), (SipAction::None, Vec::new()));
    }

    #[test]
    fn sip_failures_map_to_reject_or_hangup() {
        let fail = |code| CallState::new(Direction::MatrixToSip, ghost()).sip_failed(code)[0].clone();
        assert_eq!(fail(486).0, "m.call.reject");
        assert_eq!(fail(603).0, "m.call.reject");
        assert_eq!(fail(600).0, "m.call.reject");
        assert_eq!(fail(480).1["reason"], "invite_timeout");
        assert_eq!(fail(408).1["reason"], "invite_timeout");
        assert_eq!(fail(404).1["reason"], "unknown_error");
        assert_eq!(fail(503).1["reason"], "unknown_error");
    }
}
