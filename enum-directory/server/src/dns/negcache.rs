//! Signatures of compact-denial NSEC records (RFC 9824), cached so a repeated negative query costs no signing.
//!
//! The key is the NSEC's rdata, `\000.<qname>` plus the type bitmap: it determines the whole record (owner =
//! the next name minus its first label), so an entry can never answer for a name whose state changed — a name
//! registered after a cached denial has a different bitmap (or a positive answer) and misses. Entries are still
//! dropped when the zone changes that name (they could not be used again), when their signature nears its
//! refresh point, and when the signing key changes (key tag mismatch).
//!
//! Bounded, two generations per shard: inserts go to the young map; when it is full it becomes the old map
//! (the previous old map is dropped). A hit in the old map moves the entry back to the young one, so names
//! asked again survive and one-off names (a random-name flood) age out. Memory stays under
//! `capacity` entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use super::sign::Sig;

const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct Shard {
    young: HashMap<Box<[u8]>, Sig>,
    old: HashMap<Box<[u8]>, Sig>,
}

/// The cache (see the module docs).
#[derive(Debug)]
pub(crate) struct NegativeCache {
    shards: Vec<Mutex<Shard>>,
    per_generation: usize,
    hasher: RandomState,
}

impl NegativeCache {
    /// A cache holding at most about `capacity` signatures; 0 disables it.
    pub(crate) fn new(capacity: usize) -> NegativeCache {
        NegativeCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_generation: capacity / SHARDS / 2,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached signature for `rdata`, if it is still `usable`.
    pub(crate) fn get(&self, rdata: &[u8], usable: impl Fn(&Sig) -> bool) -> Option<Sig> {
        if self.per_generation == 0 {
            return None;
        }
        let mut s = self.shard(rdata);
        if let Some(sig) = s.young.get(rdata) {
            if usable(sig) {
                return Some(*sig);
            }
            s.young.remove(rdata);
            return None;
        }
        let (key, sig) = s.old.remove_entry(rdata)?;
        if !usable(&sig) {
            return None;
        }
        self.insert_locked(&mut s, key, sig);
        Some(sig)
    }

    /// Caches the signature of the NSEC with `rdata`.
    pub(crate) fn insert(&self, rdata: &[u8], sig: Sig) {
        if self.per_generation == 0 {
            return;
        }
        let mut s = self.shard(rdata);
        self.insert_locked(&mut s, rdata.into(), sig);
    }

    fn insert_locked(&self, s: &mut Shard, key: Box<[u8]>, sig: Sig) {
        if s.young.len() >= self.per_generation {
            s.old = std::mem::take(&mut s.young);
        }
        s.young.insert(key, sig);
    }

    /// Drops the entry for `rdata`.
    pub(crate) fn remove(&self, rdata: &[u8]) {
        if self.per_generation == 0 {
            return;
        }
        let mut s = self.shard(rdata);
        s.young.remove(rdata);
        s.old.remove(rdata);
    }

    /// How many signatures are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.young.len() + s.old.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(e: u32) -> Sig {
        Sig { inception: 0, expiration: e, key_tag: 1, bytes: [0; 64] }
    }

    #[test]
    fn hits_expires_and_stays_bounded() {
        let c = NegativeCache::new(64);
        c.insert(b"a", sig(100));
        assert_eq!(c.get(b"a", |_| true), Some(sig(100)));
        assert_eq!(c.get(b"a", |s| s.expiration > 100), None);
        assert_eq!(c.get(b"a", |_| true), None, "an unusable entry is dropped");
        c.insert(b"hot", sig(1));
        for i in 0..10_000u32 {
            c.insert(&i.to_be_bytes(), sig(i));
            // A name asked again and again stays cached through the churn of one-off names.
            assert!(c.get(b"hot", |_| true).is_some(), "lost after {i}");
        }
        assert!(c.len() <= 64 + SHARDS, "{}", c.len());
        c.remove(b"hot");
        assert_eq!(c.get(b"hot", |_| true), None);
        let off = NegativeCache::new(0);
        off.insert(b"a", sig(1));
        assert_eq!(off.get(b"a", |_| true), None);
    }
}
