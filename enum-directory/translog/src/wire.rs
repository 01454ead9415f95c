//! What the directory's log API (`/v1/log/…`) sends, shared by the server, the `audit` command and the lookup
//! library. Hashes are unpadded standard base64 in JSON.

use serde::{Deserialize, Serialize};

use crate::{Error, Hash, Result, SignedTreeHead, leaf_hash, verify_consistency, verify_inclusion};

/// `GET /v1/log/proof/inclusion?number=…[&version=…]`: the latest (or the given version's) entry of a number,
/// where it sits, and the audit path to the current signed tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf index of the entry.
    pub index: u64,
    /// The entry exactly as logged (its leaf hash is `leaf_hash(entry.as_bytes())`).
    pub entry: String,
    /// The audit path, leaf to root.
    #[serde(with = "crate::sth::b64_hash::list")]
    pub proof: Vec<Hash>,
    /// The tree head the proof leads to.
    pub sth: SignedTreeHead,
}

impl InclusionProof {
    /// Checks that the entry is in the tree of [`InclusionProof::sth`] (not the signature: check it with a
    /// [`TreeHeadVerifier`](crate::TreeHeadVerifier) first).
    pub fn verify(&self) -> Result<()> {
        let h = self.sth.head.tree_size;
        verify_inclusion(&leaf_hash(self.entry.as_bytes()), self.index, h, &self.proof, &self.sth.head.root_hash)
    }
}

/// `GET /v1/log/proof/consistency?from=N&to=M`: the proof that the tree of `from` leaves is a prefix of the tree
/// of `to` leaves, with both roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The smaller size.
    pub from: u64,
    /// The larger size.
    pub to: u64,
    /// The root of the first `from` leaves.
    #[serde(with = "crate::sth::b64_hash")]
    pub from_root: Hash,
    /// The root of the first `to` leaves.
    #[serde(with = "crate::sth::b64_hash")]
    pub to_root: Hash,
    /// The proof.
    #[serde(with = "crate::sth::b64_hash::list")]
    pub proof: Vec<Hash>,
}

impl ConsistencyProof {
    /// Checks the proof against the roots it carries (compare those with signed tree heads you trust).
    pub fn verify(&self) -> Result<()> {
        verify_consistency(self.from, self.to, &self.from_root, &self.to_root, &self.proof)
    }

    /// Checks that the proof links the two signed heads (sizes and roots equal theirs) and verifies.
    pub fn verify_between(&self, old: &SignedTreeHead, new: &SignedTreeHead) -> Result<()> {
        if self.from != old.head.tree_size || self.to != new.head.tree_size {
            return Err(Error::OutOfRange("proof sizes differ from the tree heads'"));
        }
        if self.from_root != old.head.root_hash || self.to_root != new.head.root_hash {
            return Err(Error::RootMismatch);
        }
        self.verify()
    }
}

/// One entry of `GET /v1/log/entries`: in clear for whoever may read it, else only its leaf hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEntry {
    /// The leaf index.
    pub index: u64,
    /// The leaf hash.
    #[serde(with = "crate::sth::b64_hash")]
    pub leaf_hash: Hash,
    /// The entry, absent when the caller may not see it (it names a number the caller does not hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
}

/// `GET /v1/log/entries?start=&end=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entries {
    /// Leaves `start..end` (fewer when the range is longer than the page limit: ask again from the last + 1).
    pub entries: Vec<LoggedEntry>,
}

/// The `GET /v1/log/sth` body: the current signed tree head and the log's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SthResponse {
    /// The signed tree head.
    #[serde(flatten)]
    pub sth: SignedTreeHead,
    /// The log's Ed25519 public key (unpadded base64); pin it out of band, this copy is only a convenience.
    pub log_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TreeHead, TreeHeadSigner, consistency_proof, inclusion_proof, root};

    #[test]
    fn proofs_round_trip_through_json_and_verify() {
        let entries: Vec<String> = (0..9).map(|i| format!("{{\"n\":{i}}}")).collect();
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e.as_bytes())).collect();
        let signer = TreeHeadSigner::from_seed(&[1; 32]);
        let head =
            |n: usize| signer.sign(TreeHead { tree_size: n as u64, timestamp_ms: 1, root_hash: root(&leaves[..n]) });
        let p = InclusionProof {
            index: 4,
            entry: entries[4].clone(),
            proof: inclusion_proof(&leaves, 4).unwrap(),
            sth: head(9),
        };
        let back: InclusionProof = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        back.verify().unwrap();
        let mut forged = back.clone();
        forged.entry = "{\"n\":5}".into();
        assert_eq!(forged.verify(), Err(Error::RootMismatch));

        let c = ConsistencyProof {
            from: 3,
            to: 9,
            from_root: root(&leaves[..3]),
            to_root: root(&leaves),
            proof: consistency_proof(&leaves, 3).unwrap(),
        };
        let back: ConsistencyProof = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        back.verify_between(&head(3), &head(9)).unwrap();
        assert!(back.verify_between(&head(4), &head(9)).is_err());
    }
}
