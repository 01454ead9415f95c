//! Signed tree heads: the log's commitment to its size and root at a point in time.

use crate::{Error, Hash, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What a tree head commits to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// Number of leaves.
    pub tree_size: u64,
    /// When it was signed, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The Merkle tree root, unpadded base64 in JSON.
    #[serde(with = "b64_hash")]
    pub root_hash: Hash,
}

impl TreeHead {
    /// The bytes that are signed: a domain-separation tag, then size, timestamp (big-endian) and root.
    pub fn signing_input(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + 16 + 32);
        v.extend_from_slice(b"tincan-sth-v1\0\0\0");
        v.extend_from_slice(&self.tree_size.to_be_bytes());
        v.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        v.extend_from_slice(&self.root_hash);
        v
    }
}

/// A tree head with the log's Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    /// The signed content.
    #[serde(flatten)]
    pub head: TreeHead,
    /// Ed25519 signature over [`TreeHead::signing_input`], unpadded base64.
    pub signature: String,
}

/// Signs tree heads with the log's key.
#[derive(Debug, Clone)]
pub struct TreeHeadSigner {
    key: SigningKey,
}

impl TreeHeadSigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(seed) }
    }

    /// The verifier for this signer's public key.
    pub fn verifier(&self) -> TreeHeadVerifier {
        TreeHeadVerifier { key: self.key.verifying_key() }
    }

    /// Signs `head`.
    pub fn sign(&self, head: TreeHead) -> SignedTreeHead {
        let signature = B64.encode(self.key.sign(&head.signing_input()).to_bytes());
        SignedTreeHead { head, signature }
    }
}

/// Checks tree head signatures against the log's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHeadVerifier {
    key: VerifyingKey,
}

impl TreeHeadVerifier {
    /// From the log's public key, unpadded (or padded) standard base64.
    pub fn from_base64(key: &str) -> Result<Self> {
        let bytes = B64.decode(key.trim_end_matches('=')).map_err(|_| Error::Malformed("log public key"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::Malformed("log public key"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::Malformed("log public key"))?;
        Ok(Self { key })
    }

    /// The public key, unpadded standard base64.
    pub fn to_base64(&self) -> String {
        B64.encode(self.key.as_bytes())
    }

    /// Verifies `sth`'s signature.
    pub fn verify(&self, sth: &SignedTreeHead) -> Result<()> {
        let sig = B64.decode(sth.signature.trim_end_matches('=')).map_err(|_| Error::Malformed("signature"))?;
        let sig = Signature::from_slice(&sig).map_err(|_| Error::Malformed("signature"))?;
        self.key.verify(&sth.head.signing_input(), &sig).map_err(|_| Error::BadSignature)
    }
}

/// Serde for 32-byte hashes as unpadded base64 (padding accepted when reading), one or a list.
pub(crate) mod b64_hash {
    use super::B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub(crate) fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(h))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        decode(&String::deserialize(d)?)
    }

    fn decode<E: Error>(s: &str) -> Result<[u8; 32], E> {
        let v = B64.decode(s.trim_end_matches('=')).map_err(E::custom)?;
        v.try_into().map_err(|_| E::custom("a hash is 32 bytes"))
    }

    /// The same for a list of hashes.
    pub(crate) mod list {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(hs: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(hs.len()))?;
            for h in hs {
                seq.serialize_element(&B64.encode(h))?;
            }
            seq.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
            Vec::<String>::deserialize(d)?.iter().map(|s| decode(s)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{leaf_hash, root};

    #[test]
    fn sign_verify_and_tamper() {
        let signer = TreeHeadSigner::from_seed(&[7u8; 32]);
        let leaves: Vec<Hash> = (0..5).map(|i| leaf_hash(&[i])).collect();
        let sth = signer.sign(TreeHead { tree_size: 5, timestamp_ms: 1_700_000_000_000, root_hash: root(&leaves) });
        let verifier = TreeHeadVerifier::from_base64(&signer.verifier().to_base64()).unwrap();
        verifier.verify(&sth).unwrap();

        let json = serde_json::to_string(&sth).unwrap();
        let back: SignedTreeHead = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sth);

        let mut bigger = sth.clone();
        bigger.head.tree_size = 6;
        assert_eq!(verifier.verify(&bigger), Err(Error::BadSignature));
        let other = TreeHeadSigner::from_seed(&[8u8; 32]).verifier();
        assert_eq!(other.verify(&sth), Err(Error::BadSignature));
        assert!(TreeHeadVerifier::from_base64("not base64!").is_err());
    }
}
