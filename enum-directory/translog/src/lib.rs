//! The directory's transparency log, pure and without I/O.
//!
//! Every change the directory accepts is appended as a leaf to an append-only Merkle tree hashed as in
//! RFC 9162 §2.1 (Certificate Transparency v2): `leaf = SHA-256(0x00 ‖ entry)`, `node = SHA-256(0x01 ‖ left ‖
//! right)`, the empty tree hashes to `SHA-256("")`. The directory signs tree heads ([`SignedTreeHead`], Ed25519);
//! auditors check with [`verify_consistency`] that a later head extends an earlier one, and clients check with
//! [`verify_inclusion`] that the record they resolved is in the log.
//!
//! Proof generation ([`Subtrees`]) works over roots of subtrees: from the leaf hashes themselves
//! ([`inclusion_proof`], [`consistency_proof`], O(n)), or from a [`SubtreeCache`] of complete chunks' roots and
//! the leaf hashes of a few chunks (O(log n), what the directory serves proofs with).

mod cache;
mod entry;
mod frontier;
mod proof;
mod sth;
pub mod wire;

pub use cache::{CachedTree, SubtreeCache};
pub use entry::{LogEntry, PortParty};
pub use frontier::{Frontier, FrontierError};
pub use proof::{
    Hash, Subtrees, consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root, verify_consistency,
    verify_inclusion,
};
pub use sth::{SignedTreeHead, TreeHead, TreeHeadSigner, TreeHeadVerifier};

/// Why a proof or a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A leaf index or tree size is out of range (`index >= size`, `from > to`).
    #[error("out of range: {0}")]
    OutOfRange(&'static str),
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("proof has {got} hashes, expected {expected}")]
    ProofLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes the algorithm consumed.
        expected: usize,
    },
    /// The proof does not lead to the expected root.
    #[error("root mismatch: the proof does not lead to the signed root")]
    RootMismatch,
    /// A signed tree head's signature is not valid for the log's key.
    #[error("bad tree head signature")]
    BadSignature,
    /// A proof needs the hashes of leaves `start..end` and they were not given.
    #[error("the hashes of leaves {start}..{end} are needed")]
    MissingLeaves {
        /// The first leaf.
        start: u64,
        /// One past the last leaf.
        end: u64,
    },
    /// A key or signature could not be decoded.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
