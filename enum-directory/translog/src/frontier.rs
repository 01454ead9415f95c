//! The log's right edge: the roots of the perfect subtrees that make up a tree of `n` leaves (one per set bit
//! of `n`, largest first). It is all that is needed to append a leaf and to compute the root, in O(log n), so
//! the storage keeps it beside the leaves instead of re-hashing the whole log on every change.

use std::ops::Range;

use crate::proof::{Hash, empty_root, node_hash};

/// The compact state of a tree: its size and the roots of its perfect subtrees, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

/// Why stored frontier bytes cannot be a frontier of the stated size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frontier of a tree of {size} leaves needs {expected} hashes")]
pub struct FrontierError {
    size: u64,
    expected: u32,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier from its stored form: the size and the concatenated subtree roots.
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<Self, FrontierError> {
        let expected = size.count_ones();
        if bytes.len() != 32 * expected as usize {
            return Err(FrontierError { size, expected });
        }
        let roots = bytes.chunks_exact(32).map(|c| c.try_into().expect("chunks of 32")).collect();
        Ok(Self { size, roots })
    }

    /// The stored form of the subtree roots (size is stored beside it).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.roots.concat()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees the tree is made of, leftmost (largest) first: their leaf ranges and roots.
    pub fn subtrees(&self) -> impl Iterator<Item = (Range<u64>, Hash)> + '_ {
        let mut start = 0;
        (0..u64::BITS).rev().filter(|b| self.size >> b & 1 == 1).zip(&self.roots).map(move |(b, h)| {
            let range = start..start + (1 << b);
            start = range.end;
            (range, *h)
        })
    }

    /// Appends a leaf (its [`leaf_hash`](crate::leaf_hash)).
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        // Every trailing one bit of the old size is a subtree of the same size as the one being carried.
        while n & 1 == 1 {
            let left = self.roots.pop().expect("one root per set bit");
            h = node_hash(&left, &h);
            n >>= 1;
        }
        self.roots.push(h);
        self.size += 1;
    }

    /// The Merkle tree hash of the whole tree (RFC 9162 MTH).
    pub fn root(&self) -> Hash {
        let mut it = self.roots.iter().rev();
        let Some(last) = it.next() else { return empty_root() };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{leaf_hash, root};

    #[test]
    fn matches_the_full_tree_hash_at_every_size() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), empty_root());
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.size(), i as u64 + 1);
            assert_eq!(f.root(), root(&leaves[..=i]), "size {}", i + 1);
            let mut end = 0;
            for (range, h) in f.subtrees() {
                assert_eq!((range.start, h), (end, root(&leaves[range.start as usize..range.end as usize])));
                end = range.end;
            }
            assert_eq!(end, f.size());
            let back = Frontier::from_bytes(f.size(), &f.to_bytes()).unwrap();
            assert_eq!(back, f);
        }
        assert!(Frontier::from_bytes(3, &[0u8; 32]).is_err());
    }
}
