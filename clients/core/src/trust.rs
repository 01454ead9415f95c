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
        matches!(self, KeyStatus::Verified { .. } | KeyStatus::Changed { .. })
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
