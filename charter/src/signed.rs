//! The signed envelope every charter file uses, and the root: which keys may sign what, and how many must.
//!
//! A file is `{"signed": BODY, "signatures": [{"keyid": …, "sig": …}]}`. Each signature is Ed25519 over
//! `tincan-charter/v1\0` followed by the exact bytes of `BODY` as they appear in the file (kept verbatim, so no
//! canonical JSON is needed). `BODY` names its own type (`tincan-charter-root` or `tincan-charter-list`), so a
//! signature over a list can never pass as one over a root. A signature counts only once per key, only if the key
//! is one of the role's, and only if it verifies; the role needs `threshold` of them.

use crate::error::CharterError;
use crate::keys::{PublicKey, SecretKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ed25519_dalek::Signature as EdSignature;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

/// The prefix of every signed message (domain separation).
const CONTEXT: &[u8] = b"tincan-charter/v1\0";
/// `type` of a root body.
pub const ROOT_TYPE: &str = "tincan-charter-root";
/// `type` of a trust-list body.
pub const LIST_TYPE: &str = "tincan-charter-list";

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The signing key's id.
    pub keyid: String,
    /// The Ed25519 signature, unpadded base64.
    pub sig: String,
}

/// A signed file: the body verbatim and its signatures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The body, exactly as signed.
    pub signed: Box<RawValue>,
    /// The signatures.
    pub signatures: Vec<Signature>,
}

impl Envelope {
    /// An unsigned envelope around `body`.
    pub fn new<T: Serialize>(body: &T) -> Self {
        let text = serde_json::to_string_pretty(body).expect("serializable");
        Envelope { signed: RawValue::from_string(text).expect("valid JSON"), signatures: Vec::new() }
    }

    /// Parses a file.
    pub fn parse(bytes: &[u8], what: &'static str) -> Result<Self, CharterError> {
        serde_json::from_slice(bytes).map_err(|e| CharterError::Malformed { what, reason: e.to_string() })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("serializable");
        v.push(b'\n');
        v
    }

    /// The typed body.
    pub fn body<T: DeserializeOwned>(&self, what: &'static str) -> Result<T, CharterError> {
        serde_json::from_str(self.signed.get()).map_err(|e| CharterError::Malformed { what, reason: e.to_string() })
    }

    fn message(&self) -> Vec<u8> {
        let mut m = CONTEXT.to_vec();
        m.extend_from_slice(self.signed.get().as_bytes());
        m
    }

    /// Adds (or replaces) the signature of `key`.
    pub fn sign(&mut self, key: &SecretKey) {
        let keyid = key.public().keyid();
        let sig = B64.encode(key.sign(&self.message()));
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(Signature { keyid, sig });
    }

    /// The ids of the keys among `keys` whose signatures verify (each counted once).
    pub fn valid_signers(&self, keys: &BTreeMap<String, PublicKey>, allowed: &[String]) -> BTreeSet<String> {
        let msg = self.message();
        let mut valid = BTreeSet::new();
        for s in &self.signatures {
            if !allowed.contains(&s.keyid) || valid.contains(&s.keyid) {
                continue;
            }
            let Some(key) = keys.get(&s.keyid) else { continue };
            let Some(sig) = B64.decode(s.sig.trim_end_matches('=')).ok().and_then(|b| EdSignature::from_slice(&b).ok())
            else {
                continue;
            };
            if key.0.verify_strict(&msg, &sig).is_ok() {
                valid.insert(s.keyid.clone());
            }
        }
        valid
    }
}

/// The roles a root defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleName {
    /// Signs roots (the next root needs the threshold of the current root's and of its own root keys).
    Root,
    /// Signs trust lists.
    List,
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RoleName::Root => "root",
            RoleName::List => "list",
        })
    }
}

/// The keys of a role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    /// Key ids (each in the root's `keys`).
    pub keyids: Vec<String>,
    /// Signatures needed, at least 1 and at most the number of keys.
    pub threshold: u32,
}

/// The roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Who signs roots.
    pub root: RoleKeys,
    /// Who signs trust lists.
    pub list: RoleKeys,
}

/// The charter's root of trust: shipped with clients, rotated by signing version N+1 with the keys of N.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Always [`ROOT_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// 1, 2, … (each root is published as `N.root.json`).
    pub version: u64,
    /// After this, the root is not trusted until a newer one is found.
    #[serde(with = "crate::timefmt")]
    pub expires: SystemTime,
    /// Key id → public key.
    pub keys: BTreeMap<String, PublicKey>,
    /// The roles.
    pub roles: Roles,
}

impl Root {
    /// A root naming these keys.
    pub fn new(
        version: u64,
        expires: SystemTime,
        root_keys: &[PublicKey],
        root_threshold: u32,
        list_keys: &[PublicKey],
        list_threshold: u32,
    ) -> Result<Self, CharterError> {
        let mut keys = BTreeMap::new();
        for k in root_keys.iter().chain(list_keys) {
            keys.insert(k.keyid(), *k);
        }
        let ids = |ks: &[PublicKey]| {
            let set: BTreeSet<String> = ks.iter().map(PublicKey::keyid).collect();
            set.into_iter().collect::<Vec<_>>()
        };
        let root = Root {
            kind: ROOT_TYPE.into(),
            version,
            expires,
            keys,
            roles: Roles {
                root: RoleKeys { keyids: ids(root_keys), threshold: root_threshold },
                list: RoleKeys { keyids: ids(list_keys), threshold: list_threshold },
            },
        };
        root.validate()?;
        Ok(root)
    }

    /// Checks the root's own consistency.
    pub fn validate(&self) -> Result<(), CharterError> {
        let bad = |m: String| Err(CharterError::InvalidRoot(m));
        if self.kind != ROOT_TYPE {
            return bad(format!("type is {:?}, expected {ROOT_TYPE:?}", self.kind));
        }
        if self.version == 0 {
            return bad("version 0 (versions start at 1)".into());
        }
        for (id, key) in &self.keys {
            if *id != key.keyid() {
                return bad(format!("key id {id} does not match its key"));
            }
        }
        for (name, role) in [(RoleName::Root, &self.roles.root), (RoleName::List, &self.roles.list)] {
            let distinct: BTreeSet<&String> = role.keyids.iter().collect();
            if role.threshold == 0 || role.threshold as usize > distinct.len() {
                return bad(format!(
                    "the {name} role's threshold is {} with {} distinct key(s)",
                    role.threshold,
                    distinct.len()
                ));
            }
            if let Some(id) = role.keyids.iter().find(|id| !self.keys.contains_key(*id)) {
                return bad(format!("the {name} role names key {id}, which the root does not list"));
            }
        }
        Ok(())
    }

    /// The role's keys.
    pub fn role(&self, role: RoleName) -> &RoleKeys {
        match role {
            RoleName::Root => &self.roles.root,
            RoleName::List => &self.roles.list,
        }
    }

    /// Checks that `env` carries the role's threshold of valid signatures.
    pub fn verify(&self, role: RoleName, env: &Envelope) -> Result<usize, CharterError> {
        let keys = self.role(role);
        let valid = env.valid_signers(&self.keys, &keys.keyids).len();
        if valid < keys.threshold as usize {
            return Err(CharterError::Threshold { role, valid, threshold: keys.threshold });
        }
        Ok(valid)
    }

    /// The public key of a role's key id, to check that a signer belongs to the role.
    pub fn check_signer(&self, role: RoleName, key: &PublicKey) -> Result<(), CharterError> {
        let id = key.keyid();
        if self.role(role).keyids.contains(&id) { Ok(()) } else { Err(CharterError::NotARoleKey { keyid: id, role }) }
    }

    /// Parses and checks a self-signed root file: well-formed, consistent, signed by its own root threshold.
    /// (Trusting it is the caller's business: a shipped root, or the next one of a trusted root.)
    pub fn from_envelope(env: &Envelope) -> Result<Self, CharterError> {
        let root: Root = env.body("root")?;
        root.validate()?;
        root.verify(RoleName::Root, env)?;
        Ok(root)
    }

    /// Verifies the root that follows `self`: version + 1, signed by the threshold of this root's root keys
    /// and of its own.
    pub fn verify_next(&self, env: &Envelope) -> Result<Root, CharterError> {
        let next: Root = env.body("root")?;
        next.validate()?;
        if next.version != self.version + 1 {
            return Err(CharterError::RootVersion { expected: self.version + 1, found: next.version });
        }
        self.verify(RoleName::Root, env)?;
        next.verify(RoleName::Root, env)?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(2_000_000_000)
    }

    #[test]
    fn threshold_counts_distinct_valid_keys_of_the_role() {
        let [a, b, c] = [SecretKey::generate_os(), SecretKey::generate_os(), SecretKey::generate_os()];
        let root = Root::new(1, t(), &[a.public()], 1, &[a.public(), b.public()], 2).unwrap();
        let mut env = Envelope::new(&serde_json::json!({"type": "x"}));
        env.sign(&a);
        env.sign(&a); // the same key twice counts once
        assert!(matches!(
            root.verify(RoleName::List, &env),
            Err(CharterError::Threshold { valid: 1, threshold: 2, .. })
        ));
        env.sign(&c); // not a key of the role
        assert!(matches!(root.verify(RoleName::List, &env), Err(CharterError::Threshold { valid: 1, .. })));
        env.sign(&b);
        assert_eq!(root.verify(RoleName::List, &env).unwrap(), 2);
        // A signature over other content does not verify.
        let mut forged = Envelope::new(&serde_json::json!({"type": "y"}));
        forged.signatures = env.signatures.clone();
        assert!(matches!(root.verify(RoleName::List, &forged), Err(CharterError::Threshold { valid: 0, .. })));
    }

    #[test]
    fn a_threshold_above_the_key_count_is_refused() {
        let a = SecretKey::generate_os();
        assert!(matches!(Root::new(1, t(), &[a.public()], 2, &[a.public()], 1), Err(CharterError::InvalidRoot(_))));
        assert!(matches!(Root::new(1, t(), &[a.public()], 1, &[a.public()], 0), Err(CharterError::InvalidRoot(_))));
    }

    #[test]
    fn the_next_root_needs_both_old_and_new_root_keys() {
        let [a, b] = [SecretKey::generate_os(), SecretKey::generate_os()];
        let r1 = Root::new(1, t(), &[a.public()], 1, &[a.public()], 1).unwrap();
        let r2 = Root::new(2, t(), &[b.public()], 1, &[b.public()], 1).unwrap();
        let mut env = Envelope::new(&r2);
        env.sign(&b);
        assert!(matches!(r1.verify_next(&env), Err(CharterError::Threshold { role: RoleName::Root, .. })));
        env.sign(&a);
        assert_eq!(r1.verify_next(&env).unwrap(), r2);
        // Skipping a version is refused.
        let r3 = Root::new(3, t(), &[a.public()], 1, &[a.public()], 1).unwrap();
        let mut env = Envelope::new(&r3);
        env.sign(&a);
        assert!(matches!(r1.verify_next(&env), Err(CharterError::RootVersion { expected: 2, found: 3 })));
    }

    #[test]
    fn the_file_round_trips_byte_for_byte() {
        let a = SecretKey::generate_os();
        let root = Root::new(1, t(), &[a.public()], 1, &[a.public()], 1).unwrap();
        let mut env = Envelope::new(&root);
        env.sign(&a);
        let bytes = env.to_bytes();
        let back = Envelope::parse(&bytes, "root").unwrap();
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(Root::from_envelope(&back).unwrap(), root);
    }
}
