//! Proofs in O(log n) over a large log: the roots of its complete chunks of leaves, and the roots of every complete
//! aligned subtree above them, kept in memory ([`SubtreeCache`], two hashes per chunk). A proof then needs the leaf
//! hashes of at most three chunks besides ([`SubtreeCache::windows`]): the one holding the leaf it is about, and the
//! last, incomplete one of each tree size involved.
//!
//! The cache only grows by whole chunks of leaves in order; leaves never change once appended, so it stays right
//! for as long as the storage it was filled from keeps them (a caller that may see a different log, e.g. a restored
//! backup, checks the root it gives against the stored one and starts over when they differ).

use std::ops::Range;

use crate::proof::{Subtrees, root};
use crate::{Error, Frontier, Hash, Result, node_hash};

/// Roots of the complete chunks of a log and of every complete aligned subtree made of them.
#[derive(Debug, Clone)]
pub struct SubtreeCache {
    chunk_bits: u32,
    /// `levels[h][i]`: the root of leaves `i << (chunk_bits + h)` up to the next such boundary.
    levels: Vec<Vec<Hash>>,
}

impl SubtreeCache {
    /// An empty cache for chunks of `2^chunk_bits` leaves (at most 2^20).
    pub fn new(chunk_bits: u32) -> Self {
        Self { chunk_bits: chunk_bits.min(20), levels: vec![Vec::new()] }
    }

    /// Leaves per chunk.
    pub fn chunk_len(&self) -> u64 {
        1 << self.chunk_bits
    }

    /// The leaves covered: the complete chunks taken so far, from leaf 0.
    pub fn covered(&self) -> u64 {
        (self.levels[0].len() as u64) << self.chunk_bits
    }

    /// What the cache should cover to serve a tree of `size` leaves: all its complete chunks.
    pub fn wanted(&self, size: u64) -> u64 {
        size >> self.chunk_bits << self.chunk_bits
    }

    /// Forgets everything (the log it was filled from is not the one being served any more).
    pub fn clear(&mut self) {
        self.levels = vec![Vec::new()];
    }

    /// Takes the next leaves, from [`covered`](Self::covered) on: whole chunks only.
    pub fn extend(&mut self, leaves: &[Hash]) -> Result<()> {
        let chunk = self.chunk_len() as usize;
        if !leaves.len().is_multiple_of(chunk) {
            return Err(Error::OutOfRange("the cache takes whole chunks of leaves"));
        }
        for c in leaves.chunks_exact(chunk) {
            let mut h = root(c);
            let mut level = 0;
            loop {
                self.levels[level].push(h);
                let row = &self.levels[level];
                if row.len() % 2 == 1 {
                    break;
                }
                h = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
                level += 1;
                if self.levels.len() == level {
                    self.levels.push(Vec::new());
                }
            }
        }
        Ok(())
    }

    /// Whether the cache holds the log `frontier` is the right edge of: every complete subtree of at least a chunk
    /// it is made of is cached with the same root (false too when the cache does not cover them yet).
    pub fn matches(&self, frontier: &Frontier) -> bool {
        frontier
            .subtrees()
            .filter(|(r, _)| r.end - r.start >= self.chunk_len())
            .all(|(r, h)| self.cached(r.start, r.end) == Some(h))
    }

    /// The leaf ranges a proof about a tree of `size` leaves needs beyond the cache: the chunk of each of
    /// `points` (leaf indexes below `size`: the leaf of an inclusion proof, the last leaf of the smaller tree of a
    /// consistency proof) and the last, incomplete chunk, each cut at `size`. Sorted, without duplicates.
    pub fn windows(&self, size: u64, points: &[u64]) -> Vec<Range<u64>> {
        let chunk = self.chunk_len();
        let mut starts: Vec<u64> =
            points.iter().filter(|p| **p < size).map(|p| p >> self.chunk_bits << self.chunk_bits).collect();
        if !size.is_multiple_of(chunk) {
            starts.push(self.wanted(size));
        }
        starts.sort_unstable();
        starts.dedup();
        starts.into_iter().map(|s| s..(s + chunk).min(size)).collect()
    }

    /// The tree of the first `size` leaves, from the cache and the leaf hashes of `windows` (`(first index,
    /// hashes)`, as [`windows`](Self::windows) names them). The cache must cover the tree's complete chunks.
    pub fn tree(&self, size: u64, windows: Vec<(u64, Vec<Hash>)>) -> Result<CachedTree<'_>> {
        if self.covered() < self.wanted(size) {
            return Err(Error::OutOfRange("the cache does not cover the tree's complete chunks"));
        }
        Ok(CachedTree { cache: self, size, windows })
    }

    fn cached(&self, start: u64, end: u64) -> Option<Hash> {
        let n = end - start;
        if !n.is_power_of_two() || n < self.chunk_len() || !start.is_multiple_of(n) {
            return None;
        }
        let level = (n >> self.chunk_bits).trailing_zeros() as usize;
        self.levels.get(level)?.get((start / n) as usize).copied()
    }
}

/// A tree of a given size answered from a [`SubtreeCache`] and a few windows of leaf hashes.
#[derive(Debug)]
pub struct CachedTree<'a> {
    cache: &'a SubtreeCache,
    size: u64,
    windows: Vec<(u64, Vec<Hash>)>,
}

impl Subtrees for CachedTree<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn subtree_root(&self, start: u64, end: u64) -> Result<Hash> {
        if end > self.size || start >= end {
            return Err(Error::OutOfRange("subtree beyond the tree"));
        }
        if let Some(h) = self.cache.cached(start, end) {
            return Ok(h);
        }
        let window = self.windows.iter().find(|(first, w)| *first <= start && end <= first + w.len() as u64);
        if let Some((first, w)) = window {
            return Ok(root(&w[(start - first) as usize..(end - first) as usize]));
        }
        if end - start == 1 {
            return Err(Error::MissingLeaves { start, end });
        }
        // A subtree that is neither cached nor in one window: its two halves are (RFC 9162's split).
        let k = 1 << (u64::BITS - 1 - (end - start - 1).leading_zeros());
        Ok(node_hash(&self.subtree_root(start, start + k)?, &self.subtree_root(start + k, end)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn filled(bits: u32, l: &[Hash]) -> SubtreeCache {
        let mut c = SubtreeCache::new(bits);
        let whole = c.wanted(l.len() as u64) as usize;
        c.extend(&l[..whole]).unwrap();
        c
    }

    fn windows(c: &SubtreeCache, size: u64, points: &[u64], l: &[Hash]) -> Vec<(u64, Vec<Hash>)> {
        c.windows(size, points).into_iter().map(|r| (r.start, l[r.start as usize..r.end as usize].to_vec())).collect()
    }

    #[test]
    fn extends_by_whole_chunks_only() {
        let l = leaves(10);
        let mut c = SubtreeCache::new(2);
        assert!(c.extend(&l[..3]).is_err());
        c.extend(&l[..8]).unwrap();
        assert_eq!((c.covered(), c.wanted(10)), (8, 8));
        assert_eq!(c.cached(0, 8), Some(root(&l[..8])));
        assert_eq!(c.cached(4, 8), Some(root(&l[4..8])));
        assert_eq!(c.cached(2, 4), None, "smaller than a chunk");
        assert_eq!(c.windows(10, &[5]), vec![4..8, 8..10]);
        assert_eq!(c.windows(8, &[7, 6]), vec![4..8]);
        assert!(c.tree(12, Vec::new()).is_err(), "chunk 8..12 is not cached");
        let mut f = Frontier::new();
        l.iter().for_each(|h| f.push(*h));
        assert!(c.matches(&f));
        f.push(l[0]);
        f.push(l[0]);
        assert!(!c.matches(&f), "the chunk of leaves 8..12 is not cached yet");
        let mut other = Frontier::new();
        l.iter().rev().for_each(|h| other.push(*h));
        assert!(!c.matches(&other), "another log");
        c.clear();
        assert_eq!(c.covered(), 0);
    }

    #[test]
    fn a_missing_window_is_an_error_not_a_wrong_proof() {
        let l = leaves(21);
        let c = filled(2, &l);
        let t = c.tree(21, windows(&c, 21, &[], &l)).unwrap();
        assert_eq!(t.inclusion_proof(5), Err(Error::MissingLeaves { start: 4, end: 5 }));
    }

    proptest! {
        /// Whatever the chunk size, the cached tree gives the proofs and roots of the plain leaf list, also for
        /// trees smaller than what the cache covers.
        #[test]
        fn agrees_with_the_leaf_list(bits in 0u32..5, n in 1u64..300, cached in 0u64..300, a in any::<u64>(), b in any::<u64>()) {
            let l = leaves(n.max(cached));
            let c = filled(bits, &l[..cached.max(n) as usize]);
            let l = &l[..n as usize];
            let index = a % n;
            let t = c.tree(n, windows(&c, n, &[index], l)).unwrap();
            prop_assert_eq!(t.tree_root().unwrap(), root(l));
            prop_assert_eq!(t.inclusion_proof(index).unwrap(), l.inclusion_proof(index).unwrap());
            let first = b % (n + 1);
            let points: Vec<u64> = first.checked_sub(1).into_iter().collect();
            let t = c.tree(n, windows(&c, n, &points, l)).unwrap();
            prop_assert_eq!(t.consistency_proof(first).unwrap(), l.consistency_proof(first).unwrap());
            if first > 0 {
                prop_assert_eq!(t.subtree_root(0, first).unwrap(), root(&l[..first as usize]));
            }
        }
    }
}
