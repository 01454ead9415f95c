//! The one routing decision for reaching a number (pure, no I/O): which way a text or a call to a phone number
//! goes, so the user never picks. [`TincanClient::send_to_number`](crate::TincanClient::send_to_number), the
//! CLI's `send` and the bindings all go through [`decide`].
//!
//! The order, best first:
//! 1. **Matrix** (Tincan) when the DNSSEC-validated directory names a Matrix user for the number. A contact
//!    whose key matches the directory goes without a word; one that cannot be verified (no key published, no
//!    cross-signing identity yet, an unsigned answer, no transparency log) goes with a [`Warning`]; a key that
//!    contradicts the directory is refused ([`Refusal::KeyMismatch`]) unless the user forces it. A Matrix record
//!    is never downgraded to a bridge, whatever bridges exist: that would let whoever blocks the Matrix path
//!    read the message.
//! 2. **SIP** through the provider's SIP bridge when the directory publishes SIP URIs for the number.
//! 3. **SMS** (texts) through the provider's SMS bridge; **PSTN** (calls) through the SIP bridge's gateway.
//!    Bridges are found through the homeserver's third-party lookup (`m.protocol.pstn`).
//! 4. Otherwise not reachable, with the reason ([`Unreachable`]).
//!
//! A directory answer that fails validation or the transparency log never gets here: it is an error of the
//! lookup, and nothing is sent any other way. The decision is made afresh for every message, so a contact who
//! joins Tincan is reached over Matrix from the next message on.

use crate::route::{Route, Validation};
use crate::trust::{KeyMismatch, KeyStatus};
use serde::Serialize;

/// What the user wants to do with the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Send a text.
    Text,
    /// Place a call.
    Call,
}

/// Which of the provider's bridges a ghost user belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeKind {
    /// The SMS bridge (texts to the phone network).
    Sms,
    /// The SIP bridge (SIP peers; calls to the phone network through the gateway).
    Sip,
}

/// A ghost user a bridge answered the third-party lookup with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeGhost {
    /// The bridge.
    pub kind: BridgeKind,
    /// The ghost's Matrix ID.
    pub user_id: String,
}

/// Why a Matrix contact is reached without being verified against the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// Not verified (no key published, no identity yet, an unsigned answer, no transparency log, or we are
    /// not signed in to check): the key status says which.
    Unverified {
        /// The status, when it could be checked.
        key_status: Option<KeyStatus>,
    },
    /// The key contradicts the directory and the user forced the send.
    ForcedMismatch(KeyMismatch),
}

/// Where a message or call goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Decision {
    /// End-to-end encrypted over Matrix to the directory's user.
    Matrix {
        /// The contact.
        user_id: String,
        /// Set when the contact is not verified.
        warning: Option<Warning>,
    },
    /// Through the SIP bridge to the directory's SIP URI (not end-to-end encrypted).
    Sip {
        /// The bridge's ghost for the number.
        ghost: String,
        /// The SIP URI the directory publishes.
        uri: String,
    },
    /// A text through the SMS bridge (not end-to-end encrypted).
    Sms {
        /// The bridge's ghost for the number.
        ghost: String,
    },
    /// A call through the SIP bridge to the phone network (not end-to-end encrypted).
    Pstn {
        /// The bridge's ghost for the number.
        ghost: String,
    },
}

/// A route in one word, for output (`--json`'s `route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// [`Decision::Matrix`].
    Matrix,
    /// [`Decision::Sip`].
    Sip,
    /// [`Decision::Sms`].
    Sms,
    /// [`Decision::Pstn`].
    Pstn,
}

impl Decision {
    /// The route in one word.
    pub fn route(&self) -> RouteKind {
        match self {
            Decision::Matrix { .. } => RouteKind::Matrix,
            Decision::Sip { .. } => RouteKind::Sip,
            Decision::Sms { .. } => RouteKind::Sms,
            Decision::Pstn { .. } => RouteKind::Pstn,
        }
    }

    /// Whether the route goes through one of the provider's bridges (whose ghost reports what became of a
    /// message, see [`delivery`](crate::delivery)).
    pub fn is_bridged(&self) -> bool {
        !matches!(self, Decision::Matrix { .. })
    }

    /// Whether the route is end-to-end encrypted.
    pub fn is_end_to_end_encrypted(&self) -> bool {
        matches!(self, Decision::Matrix { .. })
    }

    /// The Matrix user the message goes to (the contact or a bridge's ghost).
    pub fn user_id(&self) -> &str {
        match self {
            Decision::Matrix { user_id, .. } => user_id,
            Decision::Sip { ghost, .. } | Decision::Sms { ghost } | Decision::Pstn { ghost } => ghost,
        }
    }
}

/// Why nothing can reach the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// Not on Matrix, and the homeserver knows no bridge for the number (for this intent).
    NoBridge,
    /// SIP URIs only, but no SIP bridge answered for the number.
    SipWithoutBridge,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unreachable::NoBridge => "not on the network, and no bridge of the provider reaches the number",
            Unreachable::SipWithoutBridge => "reachable by SIP only, and the provider has no SIP bridge for it",
        })
    }
}

/// Why [`decide`] sends nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The contact's key contradicts the directory (not forced).
    KeyMismatch(Box<KeyMismatch>),
    /// No way to the number.
    Unreachable(Unreachable),
}

/// What [`decide`] knows about the number.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The validated directory route; `None` when no directory is configured.
    pub directory: Option<&'a Route>,
    /// The contact's key status, when the route is Matrix and we could check it.
    pub key_status: Option<&'a KeyStatus>,
    /// The ghosts the homeserver's third-party lookup returned for the number.
    pub bridges: &'a [BridgeGhost],
    /// Send to a Matrix contact whose key contradicts the directory anyway.
    pub force: bool,
}

/// The route for `intent` to a number, from what is known about it (see the module doc for the order).
pub fn decide(intent: Intent, facts: Facts<'_>) -> Result<Decision, Refusal> {
    if let Some(Route::Matrix { user_id, validation, .. }) = facts.directory {
        let warning = match facts.key_status {
            Some(KeyStatus::Mismatch(m)) if !facts.force => return Err(Refusal::KeyMismatch(Box::new(m.clone()))),
            Some(KeyStatus::Mismatch(m)) => Some(Warning::ForcedMismatch(m.clone())),
            Some(s) if s.is_verified() && *validation == Validation::Secure => None,
            other => Some(Warning::Unverified { key_status: other.cloned() }),
        };
        return Ok(Decision::Matrix { user_id: user_id.clone(), warning });
    }
    // The first ghost of each bridge, so the answer does not depend on the order the homeserver lists them in
    // beyond that (a homeserver lists one ghost per bridge).
    let ghost = |kind| facts.bridges.iter().find(|g| g.kind == kind).map(|g| g.user_id.clone());
    if let Some(Route::Sip { uris, .. }) = facts.directory
        && let Some(uri) = uris.first()
    {
        return match ghost(BridgeKind::Sip) {
            Some(ghost) => Ok(Decision::Sip { ghost, uri: uri.clone() }),
            None => match (intent, ghost(BridgeKind::Sms)) {
                // A SIP-only number may still take SMS through the phone network.
                (Intent::Text, Some(ghost)) => Ok(Decision::Sms { ghost }),
                _ => Err(Refusal::Unreachable(Unreachable::SipWithoutBridge)),
            },
        };
    }
    let fallback = match intent {
        Intent::Text => ghost(BridgeKind::Sms).map(|ghost| Decision::Sms { ghost }),
        Intent::Call => ghost(BridgeKind::Sip).map(|ghost| Decision::Pstn { ghost }),
    };
    fallback.ok_or(Refusal::Unreachable(Unreachable::NoBridge))
}

/// The bridge a ghost belongs to, from its localpart's prefix (`sms_`, `sip_`: the bridges' registrations).
pub fn bridge_kind_of(user_id: &str) -> Option<BridgeKind> {
    let localpart = user_id.strip_prefix('@')?.split(':').next()?;
    if localpart.starts_with("sms_") {
        Some(BridgeKind::Sms)
    } else if localpart.starts_with("sip_") {
        Some(BridgeKind::Sip)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::tests::keys;
    use proptest::prelude::*;
    use tincan_enum_core::E164;

    fn matrix(validation: Validation) -> Route {
        Route::Matrix { user_id: "@bob:hs.test".into(), key: Some(keys()[0]), validation }
    }
    fn sip() -> Route {
        Route::Sip { uris: vec!["sip:+442079460001@sip.test".into()], validation: Validation::Secure }
    }
    fn tel() -> Route {
        let n = E164::parse("+442079460001").unwrap();
        Route::Tel { sms: Some(n.clone()), voice: Some(n), validation: Validation::Secure }
    }
    fn none() -> Route {
        Route::None { validation: Validation::Secure }
    }
    fn ghost(kind: BridgeKind) -> BridgeGhost {
        let prefix = match kind {
            BridgeKind::Sms => "sms_",
            BridgeKind::Sip => "sip_",
        };
        BridgeGhost { kind, user_id: format!("@{prefix}+442079460001:hs.test") }
    }
    fn mismatch() -> KeyMismatch {
        let [a, b, ..] = keys();
        KeyMismatch { user_id: "@bob:hs.test".into(), directory: a, homeserver: b, previous: None }
    }
    fn facts<'a>(
        directory: Option<&'a Route>,
        key_status: Option<&'a KeyStatus>,
        bridges: &'a [BridgeGhost],
    ) -> Facts<'a> {
        Facts { directory, key_status, bridges, force: false }
    }

    #[test]
    fn a_verified_matrix_contact_goes_over_matrix_without_warning() {
        let verified = KeyStatus::Verified { key: keys()[0] };
        let all = [ghost(BridgeKind::Sms), ghost(BridgeKind::Sip)];
        let d = decide(Intent::Text, facts(Some(&matrix(Validation::Secure)), Some(&verified), &all)).unwrap();
        assert_eq!(d, Decision::Matrix { user_id: "@bob:hs.test".into(), warning: None });
        assert!(d.is_end_to_end_encrypted());
    }

    #[test]
    fn an_unverified_matrix_contact_goes_over_matrix_with_a_warning() {
        for status in [KeyStatus::NoDirectoryKey, KeyStatus::NoIdentity, KeyStatus::NoTransparencyLog] {
            let d = decide(Intent::Text, facts(Some(&matrix(Validation::Secure)), Some(&status), &[])).unwrap();
            let Decision::Matrix { warning: Some(Warning::Unverified { key_status }), .. } = d else { panic!("{d:?}") };
            assert_eq!(key_status, Some(status));
        }
        // Not signed in to check: still Matrix, unverified.
        let d = decide(Intent::Text, facts(Some(&matrix(Validation::Secure)), None, &[])).unwrap();
        assert!(matches!(d, Decision::Matrix { warning: Some(Warning::Unverified { key_status: None }), .. }));
        // An unsigned answer never goes without a warning, whatever the key status says.
        let verified = KeyStatus::Verified { key: keys()[0] };
        let d = decide(Intent::Text, facts(Some(&matrix(Validation::Insecure)), Some(&verified), &[])).unwrap();
        assert!(matches!(d, Decision::Matrix { warning: Some(Warning::Unverified { .. }), .. }), "{d:?}");
    }

    #[test]
    fn a_key_mismatch_is_refused_unless_forced_and_never_falls_back() {
        let status = KeyStatus::Mismatch(mismatch());
        let all = [ghost(BridgeKind::Sms), ghost(BridgeKind::Sip)];
        let route = matrix(Validation::Secure);
        assert_eq!(
            decide(Intent::Text, facts(Some(&route), Some(&status), &all)),
            Err(Refusal::KeyMismatch(Box::new(mismatch())))
        );
        let forced = Facts { force: true, ..facts(Some(&route), Some(&status), &all) };
        let d = decide(Intent::Text, forced).unwrap();
        assert_eq!(
            d,
            Decision::Matrix { user_id: "@bob:hs.test".into(), warning: Some(Warning::ForcedMismatch(mismatch())) }
        );
    }

    #[test]
    fn sip_then_sms_then_pstn() {
        let all = [ghost(BridgeKind::Sms), ghost(BridgeKind::Sip)];
        let sip_route = sip();
        let d = decide(Intent::Text, facts(Some(&sip_route), None, &all)).unwrap();
        assert_eq!(
            d,
            Decision::Sip { ghost: ghost(BridgeKind::Sip).user_id, uri: "sip:+442079460001@sip.test".into() }
        );
        // SIP-only number, no SIP bridge: a text still goes by SMS, a call cannot go.
        let sms_only = [ghost(BridgeKind::Sms)];
        let d = decide(Intent::Text, facts(Some(&sip_route), None, &sms_only)).unwrap();
        assert_eq!(d, Decision::Sms { ghost: ghost(BridgeKind::Sms).user_id });
        assert_eq!(
            decide(Intent::Call, facts(Some(&sip_route), None, &sms_only)),
            Err(Refusal::Unreachable(Unreachable::SipWithoutBridge))
        );
        for route in [tel(), none()] {
            let d = decide(Intent::Text, facts(Some(&route), None, &all)).unwrap();
            assert_eq!(d, Decision::Sms { ghost: ghost(BridgeKind::Sms).user_id });
            let d = decide(Intent::Call, facts(Some(&route), None, &all)).unwrap();
            assert_eq!(d, Decision::Pstn { ghost: ghost(BridgeKind::Sip).user_id });
            assert!(!d.is_end_to_end_encrypted());
        }
        // No directory configured: bridges only.
        let d = decide(Intent::Text, facts(None, None, &all)).unwrap();
        assert!(matches!(d, Decision::Sms { .. }));
    }

    #[test]
    fn nothing_reaches_a_number_without_matrix_or_bridges() {
        for route in [tel(), none()] {
            for intent in [Intent::Text, Intent::Call] {
                assert_eq!(
                    decide(intent, facts(Some(&route), None, &[])),
                    Err(Refusal::Unreachable(Unreachable::NoBridge))
                );
            }
        }
        // A text with only the SIP bridge and no SIP record: SMS is the way for texts, and there is none.
        let sip_bridge = [ghost(BridgeKind::Sip)];
        assert_eq!(
            decide(Intent::Text, facts(Some(&none()), None, &sip_bridge)),
            Err(Refusal::Unreachable(Unreachable::NoBridge))
        );
    }

    #[test]
    fn ghosts_are_classified_by_prefix() {
        assert_eq!(bridge_kind_of("@sms_+4915112345678:hs.test"), Some(BridgeKind::Sms));
        assert_eq!(bridge_kind_of("@sip_+4915112345678:hs.test"), Some(BridgeKind::Sip));
        assert_eq!(bridge_kind_of("@bob:hs.test"), None);
        assert_eq!(bridge_kind_of("sms_x:hs.test"), None);
    }

    fn any_route() -> impl Strategy<Value = Route> {
        prop_oneof![
            Just(matrix(Validation::Secure)),
            Just(matrix(Validation::Insecure)),
            Just(sip()),
            Just(tel()),
            Just(none())
        ]
    }
    fn any_status() -> impl Strategy<Value = Option<KeyStatus>> {
        prop_oneof![
            Just(None),
            Just(Some(KeyStatus::Verified { key: keys()[0] })),
            Just(Some(KeyStatus::Changed { previous: keys()[1], current: keys()[0] })),
            Just(Some(KeyStatus::Mismatch(mismatch()))),
            Just(Some(KeyStatus::NoDirectoryKey)),
            Just(Some(KeyStatus::NoIdentity)),
            Just(Some(KeyStatus::InsecureAnswer)),
            Just(Some(KeyStatus::NoTransparencyLog)),
            Just(Some(KeyStatus::Moved {
                previous_user: "@old:a.test".into(),
                previous_key: keys()[1],
                from: "a".into(),
                to: "b".into(),
                key: keys()[0],
            })),
            Just(Some(KeyStatus::Reassigned {
                previous_user: "@old:hs.test".into(),
                previous_key: keys()[1],
                key: keys()[0],
            })),
        ]
    }
    fn any_bridges() -> impl Strategy<Value = Vec<BridgeGhost>> {
        proptest::collection::vec(prop_oneof![Just(ghost(BridgeKind::Sms)), Just(ghost(BridgeKind::Sip))], 0..4)
    }

    proptest! {
        #[test]
        fn properties_of_the_decision(
            route in proptest::option::of(any_route()),
            status in any_status(),
            bridges in any_bridges(),
            force: bool,
            call: bool,
        ) {
            let intent = if call { Intent::Call } else { Intent::Text };
            let f = Facts { directory: route.as_ref(), key_status: status.as_ref(), bridges: &bridges, force };
            let d = decide(intent, f);
            match (&route, &d) {
                // A Matrix record is never downgraded to a bridge.
                (Some(Route::Matrix { .. }), Ok(Decision::Matrix { .. }) | Err(Refusal::KeyMismatch(_))) => {}
                (Some(Route::Matrix { .. }), other) => prop_assert!(false, "Matrix record downgraded: {other:?}"),
                // Matrix only when the directory says so.
                (_, Ok(Decision::Matrix { .. })) => prop_assert!(false, "Matrix without a record"),
                _ => {}
            }
            match &d {
                // A bridge route names a ghost the lookup returned, of the right bridge.
                Ok(Decision::Sms { ghost }) => {
                    prop_assert!(bridges.iter().any(|g| &g.user_id == ghost && g.kind == BridgeKind::Sms));
                    prop_assert_eq!(intent, Intent::Text);
                }
                Ok(Decision::Sip { ghost, .. } | Decision::Pstn { ghost }) => {
                    prop_assert!(bridges.iter().any(|g| &g.user_id == ghost && g.kind == BridgeKind::Sip));
                }
                // Silence about an unverified contact only with a verified key on a signed answer.
                Ok(Decision::Matrix { warning: None, .. }) => {
                    prop_assert!(status.as_ref().is_some_and(KeyStatus::is_verified));
                    prop_assert_eq!(route.as_ref().map(Route::validation), Some(Validation::Secure));
                }
                Ok(Decision::Matrix { warning: Some(_), .. }) => {}
                // A mismatch is refused only when not forced.
                Err(Refusal::KeyMismatch(_)) => prop_assert!(!force),
                // Unreachable only when no bridge for the intent exists.
                Err(Refusal::Unreachable(_)) => {
                    let wanted = match intent { Intent::Text => BridgeKind::Sms, Intent::Call => BridgeKind::Sip };
                    prop_assert!(!bridges.iter().any(|g| g.kind == wanted), "{bridges:?}");
                }
            }
            // The order the homeserver lists ghosts in does not change the decision.
            let mut reversed = bridges.clone();
            reversed.reverse();
            let again = decide(intent, Facts { bridges: &reversed, ..f });
            prop_assert_eq!(d, again);
        }
    }
}
