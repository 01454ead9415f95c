//! Contact key trust, decided against the directory (pure, no I/O).
//!
//! The directory publishes each number's master cross-signing key under DNSSEC. When the key the contact's
//! homeserver returns (`/keys/query`) equals the validated directory key, the client records the contact as
//! verified **locally**, in its own state file. matrix-sdk's `UserIdentity::verify()` is not used: it signs
//! the contact's master key with our user-signing key and uploads that signature, which is a different claim
//! (we checked it ourselves) and is visible to the server; the directory check is repeated instead on every
//! lookup, so a later change is caught.
//!
//! Only an answer that is DNSSEC-validated ([`Validation::Secure`]) and checked against the directory's
//! transparency log can verify a contact: an unsigned answer (accepted with `allow_insecure`) or one no log
//! vouches for is shown as not verified, whatever the keys say.
//!
//! A number can move to another provider (a port), and with it to another Matrix ID and key. When the log
//! proves that the number's last change was such a move ([`PortMove`]) and we verified the number for another
//! Matrix ID before, [`assess_moved`] reports [`KeyStatus::Moved`] — who had it, who has it now, from which
//! provider to which — rather than a new contact or a key change; a key change with no port entry still warns
//! ([`KeyStatus::Changed`], [`KeyStatus::Mismatch`]), and so does a number we verified for one Matrix ID that
//! now leads to another without a port entry ([`KeyStatus::Reassigned`]): it changed hands in a way the log
//! does not show as the number's owner moving it (a provider giving it to someone else, or a takeover).

use crate::route::Validation;
use serde::{Deserialize, Serialize};
use tincan_enum_core::{E164, MasterKey};

/// A contact we verified against the directory, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// The contact's Matrix ID.
    pub user_id: String,
    /// The number it was verified for.
    pub number: E164,
    /// The master key that matched the directory.
    pub key: MasterKey,
    /// When (Unix seconds).
    pub verified_at: u64,
}

/// What we know about a contact's key right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum KeyStatus {
    /// The homeserver's master key equals the DNSSEC-validated directory key.
    Verified {
        /// The key.
        key: MasterKey,
    },
    /// Verified, but with a different key than the one verified before: shown to the user.
    Changed {
        /// The key verified earlier.
        previous: MasterKey,
        /// The key now verified.
        current: MasterKey,
    },
    /// The homeserver's key differs from the directory's: not verified, sending is refused unless forced.
    Mismatch(KeyMismatch),
    /// The directory publishes no key for the number: cannot be verified.
    NoDirectoryKey,
    /// The contact has no cross-signing identity yet: cannot be verified.
    NoIdentity,
    /// The directory's answer was not DNSSEC-validated (insecure answers allowed): not verified, whatever the
    /// keys say.
    InsecureAnswer,
    /// No transparency log is configured, so the directory's answer was not checked against it: not verified.
    NoTransparencyLog,
    /// The contact's homeserver is not a provider on the charter's trust list (or there is no valid list):
    /// not verified, whatever the keys say.
    NotListed {
        /// The contact's Matrix server name.
        server: String,
    },
    /// The number we verified for `previous_user` moved to another provider and now belongs to this Matrix ID,
    /// as a port entry of the transparency log proves. Not verified yet: the new key matches the directory
    /// and is recorded, so the next check of the number shows it verified.
    Moved {
        /// The Matrix ID we verified the number for before.
        previous_user: String,
        /// Its key then.
        previous_key: MasterKey,
        /// The provider the number left (its name at the directory).
        from: String,
        /// The provider it moved to.
        to: String,
        /// The new Matrix ID's key (equal to the directory's).
        key: MasterKey,
    },
    /// The number we verified for `previous_user` now leads to this (other) Matrix ID, and the transparency
    /// log shows no port: the number changed hands without a move its owner made (its provider gave it to
    /// another account, or someone took it over). Warned about as a key change is ([`KeyStatus::Changed`]):
    /// the new key matches the directory and is recorded, so it counts as verified and the next check shows
    /// it verified — the user is told once, and should confirm with the contact that the number is still
    /// theirs.
    Reassigned {
        /// The Matrix ID we verified the number for before.
        previous_user: String,
        /// Its key then.
        previous_key: MasterKey,
        /// The key now verified, of the new Matrix ID.
        key: MasterKey,
    },
}

/// A completed port, as the number's newest transparency-log entry proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMove {
    /// The losing provider's name at the directory.
    pub from: String,
    /// The gaining provider's name.
    pub to: String,
}

/// What the directory says about a contact's key, and how far that answer is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryKey {
    /// The key the directory publishes for the number, if any.
    pub key: Option<MasterKey>,
    /// How the answer was validated.
    pub validation: Validation,
    /// Whether the answer was checked against the directory's transparency log (an answer the log contradicts
    /// never gets here: it is an error).
    pub logged: bool,
}

/// The contact's master key differs from the one the directory vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "the key of {user_id} ({homeserver}) does not match the directory's ({directory}){}",
    .previous.map(|p| format!("; it was verified before as {p}")).unwrap_or_default()
)]
pub struct KeyMismatch {
    /// The contact.
    pub user_id: String,
    /// The directory's key.
    pub directory: MasterKey,
    /// The homeserver's key.
    pub homeserver: MasterKey,
    /// The key we verified earlier, if any.
    pub previous: Option<MasterKey>,
}

impl KeyStatus {
    /// Whether the contact counts as verified now.
    pub fn is_verified(&self) -> bool {
        matches!(self, KeyStatus::Verified { .. } | KeyStatus::Changed { .. } | KeyStatus::Reassigned { .. })
    }
}

/// [`assess`] for a number whose newest log entry may be a port. `earlier` is a record of the number for
/// another Matrix ID, if we have one. When we have no record of `user_id` but verified the number for someone
/// else, a key that would verify is reported, with its record to store (the next check then shows it
/// verified), as [`KeyStatus::Moved`] (not verified) when the log proves the number moved between providers
/// (`port`), and as [`KeyStatus::Reassigned`] (a warning, as a key change) when it does not; anything else is
/// what [`assess`] says (a mismatch stays a mismatch).
#[allow(clippy::too_many_arguments)] // assess's inputs plus the two that make a move
pub fn assess_moved(
    user_id: &str,
    number: &E164,
    stored: Option<&TrustRecord>,
    earlier: Option<&TrustRecord>,
    port: Option<&PortMove>,
    directory: DirectoryKey,
    homeserver: Option<MasterKey>,
    now: u64,
) -> (KeyStatus, Option<TrustRecord>) {
    let (status, record) = assess(user_id, number, stored, directory, homeserver, now);
    let known = stored.is_some_and(|r| r.user_id == user_id);
    match (status, earlier.filter(|e| e.user_id != user_id && &e.number == number), port) {
        (KeyStatus::Verified { key }, Some(earlier), Some(port)) if !known => {
            let moved = KeyStatus::Moved {
                previous_user: earlier.user_id.clone(),
                previous_key: earlier.key,
                from: port.from.clone(),
                to: port.to.clone(),
                key,
            };
            (moved, record)
        }
        (KeyStatus::Verified { key }, Some(earlier), None) if !known => {
            let reassigned =
                KeyStatus::Reassigned { previous_user: earlier.user_id.clone(), previous_key: earlier.key, key };
            (reassigned, record)
        }
        (status, ..) => (status, record),
    }
}

/// Compares the keys and returns the status and the record to store (`Some` when the contact is verified now).
/// Verified needs a DNSSEC-validated answer that was checked against the transparency log.
pub fn assess(
    user_id: &str,
    number: &E164,
    stored: Option<&TrustRecord>,
    directory: DirectoryKey,
    homeserver: Option<MasterKey>,
    now: u64,
) -> (KeyStatus, Option<TrustRecord>) {
    let Some(homeserver) = homeserver else { return (KeyStatus::NoIdentity, None) };
    let Some(key) = directory.key else { return (KeyStatus::NoDirectoryKey, None) };
    if directory.validation != Validation::Secure {
        return (KeyStatus::InsecureAnswer, None);
    }
    let previous = stored.filter(|r| r.user_id == user_id).map(|r| r.key);
    if key != homeserver {
        let m = KeyMismatch { user_id: user_id.to_owned(), directory: key, homeserver, previous };
        return (KeyStatus::Mismatch(m), None);
    }
    if !directory.logged {
        return (KeyStatus::NoTransparencyLog, None);
    }
    let record = TrustRecord { user_id: user_id.to_owned(), number: number.clone(), key: homeserver, verified_at: now };
    match previous {
        Some(p) if p != homeserver => (KeyStatus::Changed { previous: p, current: homeserver }, Some(record)),
        // Keep the first verification time when nothing changed.
        Some(_) => (KeyStatus::Verified { key: homeserver }, Some(stored.cloned().unwrap_or(record))),
        None => (KeyStatus::Verified { key: homeserver }, Some(record)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Three distinct valid ed25519 points.
    pub(crate) fn keys() -> [MasterKey; 3] {
        let mut base = [0x66u8; 32];
        base[0] = 0x58;
        let mut ident = [0u8; 32];
        ident[0] = 1;
        [
            MasterKey::from_bytes(base).unwrap(),
            MasterKey::from_bytes(ident).unwrap(),
            MasterKey::from_bytes([0; 32]).unwrap(),
        ]
    }

    fn n() -> E164 {
        E164::parse("+442079460001").unwrap()
    }

    /// A validated, logged directory answer with `key`.
    fn dir(key: Option<MasterKey>) -> DirectoryKey {
        DirectoryKey { key, validation: Validation::Secure, logged: true }
    }

    #[test]
    fn equal_keys_verify_and_store() {
        let [a, ..] = keys();
        let (s, r) = assess("@a:hs", &n(), None, dir(Some(a)), Some(a), 10);
        assert_eq!(s, KeyStatus::Verified { key: a });
        assert_eq!(r.unwrap().verified_at, 10);
    }

    #[test]
    fn reverification_keeps_first_time() {
        let [a, ..] = keys();
        let (_, r) = assess("@a:hs", &n(), None, dir(Some(a)), Some(a), 10);
        let (s, r2) = assess("@a:hs", &n(), r.as_ref(), dir(Some(a)), Some(a), 20);
        assert!(s.is_verified());
        assert_eq!(r2.unwrap().verified_at, 10);
    }

    #[test]
    fn mismatch_refuses_and_names_both_keys() {
        let [a, b, _] = keys();
        let (s, r) = assess("@a:hs", &n(), None, dir(Some(a)), Some(b), 10);
        assert!(r.is_none());
        let KeyStatus::Mismatch(m) = s else { panic!("{s:?}") };
        assert_eq!((m.directory, m.homeserver, m.previous), (a, b, None));
        assert!(!KeyStatus::Mismatch(m).is_verified());
    }

    #[test]
    fn homeserver_key_change_after_verification_is_a_mismatch_naming_the_old_key() {
        let [a, b, _] = keys();
        let (_, r) = assess("@a:hs", &n(), None, dir(Some(a)), Some(a), 10);
        let (s, _) = assess("@a:hs", &n(), r.as_ref(), dir(Some(a)), Some(b), 20);
        assert!(matches!(s, KeyStatus::Mismatch(KeyMismatch { previous: Some(p), .. }) if p == a));
    }

    #[test]
    fn change_vouched_by_directory_is_shown() {
        let [a, b, _] = keys();
        let (_, r) = assess("@a:hs", &n(), None, dir(Some(a)), Some(a), 10);
        let (s, r2) = assess("@a:hs", &n(), r.as_ref(), dir(Some(b)), Some(b), 20);
        assert_eq!(s, KeyStatus::Changed { previous: a, current: b });
        assert_eq!(r2.unwrap().key, b);
    }

    #[test]
    fn a_record_for_another_user_is_ignored() {
        let [a, b, _] = keys();
        let (_, r) = assess("@old:hs", &n(), None, dir(Some(a)), Some(a), 10);
        let (s, _) = assess("@new:hs", &n(), r.as_ref(), dir(Some(b)), Some(b), 20);
        assert_eq!(s, KeyStatus::Verified { key: b });
    }

    fn port() -> PortMove {
        PortMove { from: "a".into(), to: "b".into() }
    }

    #[test]
    fn a_port_of_a_verified_number_is_a_move_until_rechecked() {
        let [a, b, _] = keys();
        let (_, old) = assess("@old:a.test", &n(), None, dir(Some(a)), Some(a), 10);
        let (s, r) = assess_moved("@new:b.test", &n(), None, old.as_ref(), Some(&port()), dir(Some(b)), Some(b), 20);
        let expected = KeyStatus::Moved {
            previous_user: "@old:a.test".into(),
            previous_key: a,
            from: "a".into(),
            to: "b".into(),
            key: b,
        };
        assert_eq!(s, expected);
        assert!(!s.is_verified(), "a move is not a verification of the new key");
        assert_ne!(s, KeyStatus::Changed { previous: a, current: b }, "not shown as a key change");
        let r = r.expect("the new key is recorded for the re-check");
        assert_eq!((r.user_id.as_str(), r.key), ("@new:b.test", b));
        // The re-check: the new Matrix ID is known now, verified.
        let (s, _) =
            assess_moved("@new:b.test", &n(), Some(&r), old.as_ref(), Some(&port()), dir(Some(b)), Some(b), 30);
        assert_eq!(s, KeyStatus::Verified { key: b });
    }

    #[test]
    fn a_move_needs_the_port_entry_and_matching_keys() {
        let [a, b, c] = keys();
        let (_, old) = assess("@old:a.test", &n(), None, dir(Some(a)), Some(a), 10);
        // No port entry: never Moved (a Matrix ID change with no port entry warns, see below).
        let (s, _) = assess_moved("@new:b.test", &n(), None, old.as_ref(), None, dir(Some(b)), Some(b), 20);
        assert!(!matches!(s, KeyStatus::Moved { .. }), "{s:?}");
        // The homeserver's key is not the directory's: still a mismatch, port or not.
        let (s, r) = assess_moved("@new:b.test", &n(), None, old.as_ref(), Some(&port()), dir(Some(b)), Some(c), 20);
        assert!(matches!(s, KeyStatus::Mismatch(_)) && r.is_none(), "{s:?}");
        // The same Matrix ID whose key changed with a port entry: a key change, not a move.
        let (s, _) =
            assess_moved("@old:a.test", &n(), old.as_ref(), old.as_ref(), Some(&port()), dir(Some(b)), Some(b), 20);
        assert_eq!(s, KeyStatus::Changed { previous: a, current: b });
        // Never verified before: a new contact.
        let (s, _) = assess_moved("@new:b.test", &n(), None, None, Some(&port()), dir(Some(b)), Some(b), 20);
        assert_eq!(s, KeyStatus::Verified { key: b });
    }

    #[test]
    fn a_matrix_id_change_without_a_port_entry_warns_like_a_key_change() {
        let [a, b, _] = keys();
        let (_, old) = assess("@old:a.test", &n(), None, dir(Some(a)), Some(a), 10);
        // The number we verified for @old now leads to @new, and its newest log entry is no port: whoever
        // took it over did not move it by a port, so the user is told, as for a key change.
        let (s, _) = assess_moved("@new:b.test", &n(), None, old.as_ref(), None, dir(Some(b)), Some(b), 20);
        assert_ne!(s, KeyStatus::Verified { key: b }, "a number that changed hands silently shows as verified");
        let expected = KeyStatus::Reassigned { previous_user: "@old:a.test".into(), previous_key: a, key: b };
        assert_eq!(s, expected);
        assert!(s.is_verified(), "warned about as a key change is, not refused");
        // As after a key change, the new key is recorded and the next check shows it verified.
        let (s, r) = assess_moved("@new:b.test", &n(), None, old.as_ref(), None, dir(Some(b)), Some(b), 20);
        assert!(matches!(s, KeyStatus::Reassigned { .. }));
        let r = r.expect("recorded");
        let (s, _) = assess_moved("@new:b.test", &n(), Some(&r), old.as_ref(), None, dir(Some(b)), Some(b), 30);
        assert_eq!(s, KeyStatus::Verified { key: b });
        // A mismatch stays a mismatch, whoever had the number before.
        let [_, _, c] = keys();
        let (s, r) = assess_moved("@new:b.test", &n(), None, old.as_ref(), None, dir(Some(b)), Some(c), 20);
        assert!(matches!(s, KeyStatus::Mismatch(_)) && r.is_none(), "{s:?}");
    }

    #[test]
    fn missing_keys() {
        let [a, ..] = keys();
        assert_eq!(assess("@a:hs", &n(), None, dir(Some(a)), None, 0).0, KeyStatus::NoIdentity);
        assert_eq!(assess("@a:hs", &n(), None, dir(None), Some(a), 0).0, KeyStatus::NoDirectoryKey);
    }

    #[test]
    fn an_insecure_answer_never_verifies() {
        let [a, b, _] = keys();
        let insecure = DirectoryKey { key: Some(a), validation: Validation::Insecure, logged: true };
        assert_eq!(assess("@a:hs", &n(), None, insecure, Some(a), 10), (KeyStatus::InsecureAnswer, None));
        // Not even a verification made earlier carries over, nor does a mismatch claim anything.
        let (_, r) = assess("@a:hs", &n(), None, dir(Some(a)), Some(a), 10);
        assert_eq!(assess("@a:hs", &n(), r.as_ref(), insecure, Some(a), 20), (KeyStatus::InsecureAnswer, None));
        assert_eq!(assess("@a:hs", &n(), None, insecure, Some(b), 10).0, KeyStatus::InsecureAnswer);
        assert!(!KeyStatus::InsecureAnswer.is_verified());
    }

    #[test]
    fn an_answer_no_log_vouches_for_never_verifies_but_a_mismatch_is_still_one() {
        let [a, b, _] = keys();
        let unlogged = DirectoryKey { key: Some(a), validation: Validation::Secure, logged: false };
        assert_eq!(assess("@a:hs", &n(), None, unlogged, Some(a), 10), (KeyStatus::NoTransparencyLog, None));
        assert!(matches!(assess("@a:hs", &n(), None, unlogged, Some(b), 10).0, KeyStatus::Mismatch(_)));
        assert!(!KeyStatus::NoTransparencyLog.is_verified());
    }
}
