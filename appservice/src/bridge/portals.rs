//! The portals the core found lately, kept in memory so that the events of a busy chat do not read the same
//! portal row once per event (twice for a Matrix event: the inbox routes it by room, the portal's worker
//! handles it by key).
//!
//! Every portal read of the core goes through [`BridgeHandle::portal`] and [`BridgeHandle::portal_by_room`], and
//! every portal write through [`BridgeHandle::upsert_portal`] and
//! [`BridgeHandle::delete_portal`], which write the store first and then empty the cache, so a read that
//! comes after a write returns (and from then on keeps) what was written. A read that raced with a write and
//! got the row from before it is not kept: each write moves an epoch on, and a row read under an older
//! epoch is handed back but not cached. Only found portals are kept (a room that is no portal's may become
//! one), and at most [`MAX_CACHED`]; past that the cache starts over.
//!
//! The core is the only writer of portal rows (connectors describe chats with remote events); an operator
//! who edits the `portal` table by hand restarts the bridge for it to take effect.

use super::{BridgeHandle, Result};
use crate::ids::PortalKey;
use crate::store::Portal;
use ruma::{OwnedRoomId, RoomId};
use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many portals are kept.
const MAX_CACHED: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct PortalCache(Mutex<Cached>);

#[derive(Debug, Default)]
struct Cached {
    /// Moves on with every write.
    epoch: u64,
    by_key: HashMap<PortalKey, Portal>,
    by_room: HashMap<OwnedRoomId, PortalKey>,
}

impl PortalCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.0.lock().expect("not poisoned")
    }

    /// Keeps `portal`, read from the store under `epoch`, unless a write came since.
    fn keep(&self, epoch: u64, portal: &Portal) {
        let mut c = self.lock();
        if c.epoch != epoch {
            return;
        }
        if c.by_key.len() >= MAX_CACHED {
            c.by_key.clear();
            c.by_room.clear();
        }
        if let Some(room) = &portal.room_id {
            c.by_room.insert(room.clone(), portal.key.clone());
        }
        c.by_key.insert(portal.key.clone(), portal.clone());
    }

    /// Forgets everything (after a write).
    fn forget(&self) {
        let mut c = self.lock();
        c.epoch += 1;
        c.by_key.clear();
        c.by_room.clear();
    }
}

impl BridgeHandle {
    /// The portal of `key` (see the [module](self)).
    pub(crate) async fn portal(&self, key: &PortalKey) -> Result<Option<Portal>> {
        self.read_through(|c| c.by_key.get(key).cloned(), || self.0.store.portal(key)).await
    }

    /// The portal whose room is `room` (see the [module](self)).
    pub(crate) async fn portal_by_room(&self, room: &RoomId) -> Result<Option<Portal>> {
        let hit = |c: &Cached| {
            let cached = c.by_room.get(room).and_then(|key| c.by_key.get(key));
            cached.filter(|p| p.room_id.as_deref() == Some(room)).cloned()
        };
        self.read_through(hit, || self.0.store.portal_by_room(room)).await
    }

    /// The cached portal `hit` finds, or else the one `load` reads from the store (called only on a miss), kept
    /// unless a write came in between.
    async fn read_through<F>(
        &self,
        hit: impl FnOnce(&Cached) -> Option<Portal>,
        load: impl FnOnce() -> F,
    ) -> Result<Option<Portal>>
    where
        F: std::future::Future<Output = crate::store::Result<Option<Portal>>>,
    {
        let epoch = {
            let c = self.0.portal_cache.lock();
            if let Some(p) = hit(&c) {
                return Ok(Some(p));
            }
            c.epoch
        };
        let portal = load().await?;
        if let Some(p) = &portal {
            self.0.portal_cache.keep(epoch, p);
        }
        Ok(portal)
    }

    /// Inserts or replaces a portal.
    pub(crate) async fn upsert_portal(&self, portal: &Portal) -> Result<()> {
        let written = self.0.store.upsert_portal(portal).await;
        // Also after a failed write: whether it took effect is unknown.
        self.0.portal_cache.forget();
        written.map_err(Into::into)
    }

    /// Forgets a portal.
    pub(crate) async fn delete_portal(&self, key: &PortalKey) -> Result<()> {
        let written = self.0.store.delete_portal(key).await;
        self.0.portal_cache.forget();
        written.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RemoteChatId, RemoteUserId};

    fn portal(room: &str) -> Portal {
        Portal {
            key: PortalKey { receiver: "@alice:hs.test".try_into().unwrap(), chat: RemoteChatId::new("+491") },
            room_id: Some(room.try_into().unwrap()),
            other_user: RemoteUserId::new("+491"),
            is_group: false,
            metadata: Default::default(),
        }
    }

    /// A row read before a write is not kept after it: the write could have changed it.
    #[test]
    fn a_row_read_before_a_write_is_not_kept() {
        let cache = PortalCache::default();
        let before = cache.lock().epoch;
        cache.forget();
        cache.keep(before, &portal("!old:hs.test"));
        {
            let c = cache.lock();
            assert!(c.by_key.is_empty() && c.by_room.is_empty());
        }
        let now = cache.lock().epoch;
        cache.keep(now, &portal("!new:hs.test"));
        let kept = cache.lock().by_room.get(&RoomId::parse("!new:hs.test").unwrap()).cloned();
        assert_eq!(kept, Some(portal("!new:hs.test").key));
        cache.forget();
        assert!(cache.lock().by_key.is_empty(), "a write forgets everything");
    }

    /// The cache stays bounded: past the limit it starts over.
    #[test]
    fn the_cache_is_bounded() {
        let cache = PortalCache::default();
        let epoch = cache.lock().epoch;
        for n in 0..MAX_CACHED + 10 {
            let mut p = portal(&format!("!r{n}:hs.test"));
            p.key.chat = RemoteChatId::new(format!("+49{n}"));
            cache.keep(epoch, &p);
        }
        assert!(cache.lock().by_key.len() <= MAX_CACHED);
        assert_eq!(cache.lock().by_key.len(), 10);
    }
}
