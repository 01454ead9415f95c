//! Merkle tree hashes and proofs exactly as RFC 9162 §2.1 defines them.

use crate::{Error, Result};
use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of one log entry, `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// The hash of an interior node, `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly less than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH over the given leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// A tree seen through the roots of its subtrees: all proof generation needs. The leaf hashes themselves are one
/// (`[Hash]`, O(n) per proof); [`CachedTree`](crate::CachedTree) answers from cached subtree roots and a few
/// leaves (O(log n)).
pub trait Subtrees {
    /// The number of leaves.
    fn size(&self) -> u64;

    /// MTH of leaves `start..end` (`start < end <= size`).
    fn subtree_root(&self, start: u64, end: u64) -> Result<Hash>;

    /// MTH of the whole tree.
    fn tree_root(&self) -> Result<Hash> {
        match self.size() {
            0 => Ok(empty_root()),
            n => self.subtree_root(0, n),
        }
    }

    /// The audit path (`PATH(m, D[n])`) proving that leaf `index` is in the tree.
    fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>> {
        if index >= self.size() {
            return Err(Error::OutOfRange("leaf index >= tree size"));
        }
        let mut proof = Vec::new();
        path(self, index, 0, self.size(), &mut proof)?;
        Ok(proof)
    }

    /// The consistency proof (`PROOF(m, D[n])`) that the tree of its first `first` leaves is a prefix of it.
    fn consistency_proof(&self, first: u64) -> Result<Vec<Hash>> {
        if first > self.size() {
            return Err(Error::OutOfRange("first tree size > second tree size"));
        }
        let mut proof = Vec::new();
        if first > 0 && first < self.size() {
            subproof(self, first, 0, self.size(), true, &mut proof)?;
        }
        Ok(proof)
    }
}

impl Subtrees for [Hash] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn subtree_root(&self, start: u64, end: u64) -> Result<Hash> {
        self.get(start as usize..end as usize).map(root).ok_or(Error::MissingLeaves { start, end })
    }
}

/// The audit path proving that leaf `index` is in the tree of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Result<Vec<Hash>> {
    leaves.inclusion_proof(index as u64)
}

/// `PATH(m, D[start..end])`, `m` relative to `start`.
fn path<T: Subtrees + ?Sized>(t: &T, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<()> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(t, m, start, start + k, out)?;
        out.push(t.subtree_root(start + k, end)?);
    } else {
        path(t, m - k, start + k, end, out)?;
        out.push(t.subtree_root(start, start + k)?);
    }
    Ok(())
}

/// The consistency proof that the tree of the first `first` leaves is a prefix of `leaves`.
pub fn consistency_proof(leaves: &[Hash], first: usize) -> Result<Vec<Hash>> {
    leaves.consistency_proof(first as u64)
}

/// `SUBPROOF(m, D[start..end], complete)`.
fn subproof<T: Subtrees + ?Sized>(
    t: &T,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<()> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(t.subtree_root(start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(t, m, start, start + k, complete, out)?;
        out.push(t.subtree_root(start + k, end)?);
    } else {
        subproof(t, m - k, start + k, end, false, out)?;
        out.push(t.subtree_root(start, start + k)?);
    }
    Ok(())
}

/// The walk from a node up to the root that both verifications make (RFC 9162 §2.1.3.2 and §2.1.4.2): `fn_` is
/// the node's index and `sn` the last node's, at each level; `step` gets each hash of `path` and whether it is the
/// left sibling. Fails when `path` is longer or shorter than the sizes call for (the counts reported are of the
/// proof, `got` hashes, of which `path` holds all but the first `offset`).
fn walk(
    path: &[Hash],
    mut fn_: u64,
    mut sn: u64,
    got: usize,
    offset: usize,
    mut step: impl FnMut(&Hash, bool),
) -> Result<()> {
    for (used, p) in path.iter().enumerate() {
        if sn == 0 {
            return Err(Error::ProofLength { got, expected: used + offset });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            step(p, true);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            step(p, false);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(Error::ProofLength { got, expected: got + 1 });
    }
    Ok(())
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, tree_size: u64, proof: &[Hash], root: &Hash) -> Result<()> {
    if index >= tree_size {
        return Err(Error::OutOfRange("leaf index >= tree size"));
    }
    let mut r = *leaf;
    walk(proof, index, tree_size - 1, proof.len(), 0, |p, left| {
        r = if left { node_hash(p, &r) } else { node_hash(&r, p) };
    })?;
    if &r != root { Err(Error::RootMismatch) } else { Ok(()) }
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    if first > second {
        return Err(Error::OutOfRange("first tree size > second tree size"));
    }
    if first == second {
        if !proof.is_empty() {
            return Err(Error::ProofLength { got: proof.len(), expected: 0 });
        }
        return if first_root == second_root { Ok(()) } else { Err(Error::RootMismatch) };
    }
    if first == 0 {
        // The empty tree is a prefix of every tree.
        return if proof.is_empty() { Ok(()) } else { Err(Error::ProofLength { got: proof.len(), expected: 0 }) };
    }
    if proof.is_empty() {
        return Err(Error::ProofLength { got: 0, expected: 1 });
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    walk(&path[1..], fn_, sn, proof.len(), 1, |c, left| {
        if left {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    })?;
    if &fr != first_root || &sr != second_root { Err(Error::RootMismatch) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect()
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers() {
        // SHA-256("") and the RFC 6962/9162 leaf/node prefixes.
        assert_eq!(hex(&empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        // Three leaves: root = H(1 ‖ H(1 ‖ l0 ‖ l1) ‖ l2).
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
    }

    #[test]
    fn proof_shapes_match_the_rfc_example() {
        // RFC 9162 §2.1.5, a tree of 7 leaves a…g: the inclusion proof for d is [c, g, l]; the consistency
        // proofs from 3, 4 and 6 leaves are [c, d, g, l], [l] and [i, j, k].
        let l = leaves(7);
        assert_eq!(inclusion_proof(&l, 3).unwrap().len(), 3);
        assert_eq!(consistency_proof(&l, 3).unwrap().len(), 4);
        assert_eq!(consistency_proof(&l, 4).unwrap().len(), 1);
        assert_eq!(consistency_proof(&l, 6).unwrap().len(), 3);
    }

    #[test]
    fn out_of_range() {
        let l = leaves(4);
        assert!(inclusion_proof(&l, 4).is_err());
        assert!(consistency_proof(&l, 5).is_err());
        assert!(verify_inclusion(&l[0], 4, 4, &[], &root(&l)).is_err());
    }

    proptest! {
        #[test]
        fn inclusion_proofs_verify(n in 1usize..200, seed in any::<usize>()) {
            let l = leaves(n);
            let i = seed % n;
            let r = root(&l);
            let p = inclusion_proof(&l, i).unwrap();
            prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &p, &r).is_ok());
            // Wrong leaf, wrong index or a tampered hash must fail.
            let other = leaf_hash(b"not in the log");
            prop_assert!(verify_inclusion(&other, i as u64, n as u64, &p, &r).is_err());
            if n > 1 {
                let j = (i + 1) % n;
                prop_assert!(verify_inclusion(&l[i], j as u64, n as u64, &p, &r).is_err());
                let mut bad = p.clone();
                bad[0][0] ^= 1;
                prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &bad, &r).is_err());
                let mut short = p.clone();
                short.pop();
                prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &short, &r).is_err());
            }
        }

        #[test]
        fn consistency_proofs_verify(n in 1usize..200, seed in any::<usize>()) {
            let l = leaves(n);
            let m = seed % (n + 1);
            let (r1, r2) = (root(&l[..m]), root(&l));
            let p = consistency_proof(&l, m).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &p).is_ok());
            if m > 0 && m < n {
                // A rewritten history (one old leaf changed) is not consistent.
                let mut forged = l.clone();
                forged[m - 1] = leaf_hash(b"rewritten");
                prop_assert!(verify_consistency(m as u64, n as u64, &root(&forged[..m]), &r2, &p).is_err());
                let mut bad = p.clone();
                let last = bad.len() - 1;
                bad[last][5] ^= 0x40;
                prop_assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &bad).is_err());
            }
        }
    }
}
