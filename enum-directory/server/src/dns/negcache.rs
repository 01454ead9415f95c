//! Signatures of compact-denial NSEC records (RFC 9824), cached so a repeated negative query costs no signing.
//!
//! The key is the NSEC's rdata, `\000.<qname>` plus the type bitmap: it determines the whole record (owner =
//! the next name minus its first label), so an entry can never answer for a name whose state changed — a name
//! registered after a cached denial has a different bitmap (or a positive answer) and misses. Entries are still
//! dropped when the zone changes that name (they could not be used again), when their signature nears its
//! refresh point, and when the signing key changes (key tag mismatch).
//!
//! Admission (a doorkeeper): a denial enters the cache the second time it is signed while the doorkeeper still
//! remembers the first — one 64-bit fingerprint per slot, `capacity` slots rounded up to a power of two, each
//! overwritten by the next name hashing there. A random-name flood, where every name is asked once, therefore
//! never inserts: a miss costs one atomic store, no allocation and no eviction, and the denials that are asked
//! again keep their places. The price is a second signature for a name's second denial.
//!
//! Eviction, bounded, two generations per shard: inserts go to the young map; when it is full it becomes the
//! old map (the previous old map is dropped). A hit in the old map moves the entry back to the young one, so
//! names asked again survive and names no longer asked age out. Memory stays under `capacity` entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::sign::Sig;

const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Shard {
    young: HashMap<Box<[u8]>, Sig>,
    old: HashMap<Box<[u8]>, Sig>,
}

/// The cache (see the module docs).
#[derive(Debug)]
pub(crate) struct NegativeCache {
    shards: Box<[Mutex<Shard>]>,
    /// Doorkeeper fingerprints (0: empty); the length is a power of two.
    seen: Box<[AtomicU64]>,
    per_generation: usize,
    hasher: RandomState,
}

impl NegativeCache {
    /// A cache holding at most about `capacity` signatures; 0 disables it.
    pub(crate) fn new(capacity: usize) -> NegativeCache {
        let slots = if capacity == 0 { 0 } else { capacity.next_power_of_two() };
        NegativeCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            per_generation: capacity / SHARDS / 2,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(hash as usize) % SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached signature for `rdata` if it is still `usable`, else the one `sign` makes (cached from the
    /// second time, see the module docs). The lock is not held while signing.
    pub(crate) fn get_or_sign<E>(
        &self,
        rdata: &[u8],
        usable: impl Fn(&Sig) -> bool,
        sign: impl FnOnce() -> Result<Sig, E>,
    ) -> Result<Sig, E> {
        if self.per_generation == 0 {
            return sign();
        }
        let hash = self.hasher.hash_one(rdata);
        if let Some(sig) = self.get(hash, rdata, usable) {
            return Ok(sig);
        }
        let sig = sign()?;
        // Slot from the high bits (the shard uses the low ones); a fingerprint is never 0.
        let slot = (hash >> 32) as usize & (self.seen.len() - 1);
        let fingerprint = hash | 1;
        if self.seen[slot].swap(fingerprint, Ordering::Relaxed) == fingerprint {
            self.insert(hash, rdata.into(), sig);
        }
        Ok(sig)
    }

    fn get(&self, hash: u64, rdata: &[u8], usable: impl Fn(&Sig) -> bool) -> Option<Sig> {
        let mut s = self.shard(hash);
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
        let retired = self.insert_locked(&mut s, key, sig);
        drop(s);
        drop(retired);
        Some(sig)
    }

    fn insert(&self, hash: u64, key: Box<[u8]>, sig: Sig) {
        let mut s = self.shard(hash);
        let retired = self.insert_locked(&mut s, key, sig);
        drop(s);
        drop(retired);
    }

    /// Inserts into the young map; returns the retired old generation so the caller frees it unlocked.
    fn insert_locked(&self, s: &mut Shard, key: Box<[u8]>, sig: Sig) -> HashMap<Box<[u8]>, Sig> {
        let mut retired = HashMap::new();
        if s.young.len() >= self.per_generation {
            retired = std::mem::replace(&mut s.old, std::mem::take(&mut s.young));
        }
        s.young.insert(key, sig);
        retired
    }

    /// Drops the entry for `rdata`.
    pub(crate) fn remove(&self, rdata: &[u8]) {
        if self.per_generation == 0 {
            return;
        }
        let mut s = self.shard(self.hasher.hash_one(rdata));
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
    use std::cell::Cell;

    fn sig(e: u32) -> Sig {
        Sig { inception: 0, expiration: e, key_tag: 1, bytes: [0; 64] }
    }

    /// `get_or_sign` with a signer that counts its calls.
    fn ask(c: &NegativeCache, key: &[u8], usable: impl Fn(&Sig) -> bool, e: u32, signed: &Cell<u32>) -> Sig {
        c.get_or_sign::<()>(key, usable, || {
            signed.set(signed.get() + 1);
            Ok(sig(e))
        })
        .unwrap()
    }

    #[test]
    fn admits_on_the_second_signature_and_expires() {
        let c = NegativeCache::new(1024);
        let n = Cell::new(0);
        assert_eq!(ask(&c, b"a", |_| true, 100, &n), sig(100));
        assert_eq!(c.len(), 0, "a first denial is not cached");
        ask(&c, b"a", |_| true, 100, &n);
        assert_eq!((n.get(), c.len()), (2, 1), "the second is");
        for _ in 0..10 {
            assert_eq!(ask(&c, b"a", |_| true, 7, &n), sig(100));
        }
        assert_eq!(n.get(), 2, "then it is served from the cache");
        assert_eq!(ask(&c, b"a", |s| s.expiration > 100, 200, &n), sig(200), "an unusable entry is re-signed");
        assert_eq!(n.get(), 3);
        c.remove(b"a");
        assert_eq!(c.len(), 0);
        let errors = c.get_or_sign(b"b", |_| true, || Err("key gone"));
        assert_eq!(errors, Err("key gone"));
    }

    #[test]
    fn a_flood_of_distinct_names_neither_grows_it_nor_evicts() {
        let c = NegativeCache::new(4096);
        let n = Cell::new(0);
        let hot: Vec<Vec<u8>> = (0..100u32).map(|i| format!("hot{i}").into_bytes()).collect();
        for h in &hot {
            ask(&c, h, |_| true, 1, &n);
            ask(&c, h, |_| true, 1, &n);
        }
        assert_eq!(c.len(), hot.len());
        let before = n.get();
        for i in 0..200_000u32 {
            ask(&c, &i.to_be_bytes(), |_| true, 1, &n);
        }
        assert_eq!(n.get() - before, 200_000, "every flood name signed once");
        assert_eq!(c.len(), hot.len(), "no flood name got in (only a 64-bit hash collision could)");
        for h in &hot {
            ask(&c, h, |_| true, 1, &n);
        }
        assert_eq!(n.get() - before, 200_000, "the hot denials are still cached");
    }

    #[test]
    fn stays_bounded_and_keeps_what_is_asked_again() {
        let c = NegativeCache::new(1024);
        let n = Cell::new(0);
        ask(&c, b"hot", |_| true, 1, &n);
        ask(&c, b"hot", |_| true, 1, &n);
        for i in 0..20_000u32 {
            // Every name asked twice, so each is admitted: the generations turn over.
            ask(&c, &i.to_be_bytes(), |_| true, 1, &n);
            ask(&c, &i.to_be_bytes(), |_| true, 1, &n);
            let signed = n.get();
            ask(&c, b"hot", |_| true, 1, &n);
            assert_eq!(n.get(), signed, "a name asked again and again stays cached (lost after {i})");
        }
        assert!(c.len() <= 1024 + SHARDS, "{}", c.len());
        let off = NegativeCache::new(0);
        ask(&off, b"a", |_| true, 1, &n);
        ask(&off, b"a", |_| true, 1, &n);
        assert_eq!(off.len(), 0);
    }
}
