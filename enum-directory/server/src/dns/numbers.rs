//! A zone's numbers by key ([`super::zone::pack_digits`]): a hash map split into shards behind read-write locks
//! for the lookup every query makes, and the ordered set of keys for the range questions of negative answers.
//!
//! A lookup hashes the key and reads one shard: a few cache misses, where walking a skip list of a million
//! nodes costs dozens. Readers of one shard share its lock; a writer holds it only for one insert or removal
//! (signing happens before, outside any lock), and the shards keep readers and writers of different numbers
//! apart.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound::{Excluded, Included};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::entry::SignedEntry;

const SHARDS: usize = 64;

type Shard = HashMap<u64, SignedEntry, foldhash::fast::RandomState>;

/// The numbers of one zone.
pub(crate) struct Numbers {
    shards: Box<[RwLock<Shard>]>,
    keys: RwLock<BTreeSet<u64>>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Numbers {
    /// No numbers.
    pub fn new() -> Numbers {
        Numbers { shards: (0..SHARDS).map(|_| RwLock::default()).collect(), keys: RwLock::default() }
    }

    fn shard(&self, key: u64) -> &RwLock<Shard> {
        // A fixed multiplicative hash picks the shard (the map inside hashes with a random seed of its own).
        &self.shards[(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS]
    }

    /// How many numbers there are.
    pub fn len(&self) -> usize {
        read(&self.keys).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        read(&self.keys).is_empty()
    }

    /// Adds or replaces the entry of `key`.
    pub fn insert(&self, key: u64, entry: SignedEntry) {
        write(self.shard(key)).insert(key, entry);
        write(&self.keys).insert(key);
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&self, key: u64) -> bool {
        write(&self.keys).remove(&key);
        write(self.shard(key)).remove(&key).is_some()
    }

    /// `f` of the entry of `key`, under its shard's read lock (one probe of the map); `None` if there is none.
    pub fn with<R>(&self, key: u64, f: impl FnOnce(&SignedEntry) -> R) -> Option<R> {
        read(self.shard(key)).get(&key).map(f)
    }

    /// A copy of the entry of `key`.
    pub fn cloned(&self, key: u64) -> Option<SignedEntry> {
        self.with(key, SignedEntry::clone)
    }

    /// Replaces the entry of `key` by `entry` if the current one publishes the same records (so a re-signed
    /// entry never overwrites a change made while it was being signed). Whether it did.
    pub fn replace_same(&self, key: u64, entry: SignedEntry) -> bool {
        let mut shard = write(self.shard(key));
        match shard.get_mut(&key) {
            Some(current) if current.same_records(&entry) => {
                *current = entry;
                true
            }
            _ => false,
        }
    }

    /// Whether some key lies in `(above, up_to]`.
    pub fn any_in(&self, above: u64, up_to: u64) -> bool {
        above < up_to && read(&self.keys).range((Excluded(above), Included(up_to))).next().is_some()
    }

    /// The keys whose entries `pick` selects, shard by shard (no lock is held while the caller acts on them).
    pub fn keys_where(&self, mut pick: impl FnMut(&SignedEntry) -> bool) -> Vec<u64> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(read(shard).iter().filter(|(_, e)| pick(e)).map(|(k, _)| *k));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(txt: u8) -> SignedEntry {
        SignedEntry::new(13, 300, &[], &[0, 1, txt]).unwrap()
    }

    #[test]
    fn insert_get_remove_and_ranges() {
        let n = Numbers::new();
        assert!(n.is_empty() && n.cloned(5).is_none());
        for k in [10u64, 20, 30] {
            n.insert(k, entry(k as u8));
        }
        n.insert(20, entry(99));
        assert_eq!(n.len(), 3);
        assert_eq!(n.cloned(20).unwrap(), entry(99));
        assert!(n.any_in(10, 20) && !n.any_in(10, 19) && !n.any_in(30, u64::MAX) && !n.any_in(20, 20));
        assert!(n.remove(20) && !n.remove(20));
        assert!(n.with(20, |_| ()).is_none() && !n.any_in(10, 29));
        assert_eq!(n.keys_where(|_| true).len(), 2);
        assert_eq!(n.keys_where(|e| e == &entry(30)), vec![30]);
    }

    #[test]
    fn replaces_only_the_same_records() {
        let n = Numbers::new();
        n.insert(1, entry(1));
        let mut signed = entry(1);
        signed.set_sig(0, &super::super::sign::Sig { inception: 1, expiration: 2, key_tag: 3, bytes: [4; 64] });
        assert!(n.replace_same(1, signed.clone()));
        assert_eq!(n.cloned(1).unwrap(), signed);
        // A change made meanwhile (other records) is kept.
        n.insert(1, entry(2));
        assert!(!n.replace_same(1, signed));
        assert_eq!(n.cloned(1).unwrap(), entry(2));
        assert!(!n.replace_same(7, entry(7)), "absent");
    }
}
