//! The set of zones one server answers for, swapped whole so queries never wait for a change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;

use super::wire::Request;
use super::zone::Zone;

/// The zones a server is authoritative for; the longest matching apex answers a query.
#[derive(Debug, Default)]
pub struct Zones {
    list: ArcSwap<Vec<Arc<Zone>>>,
}

impl Zones {
    /// A set of zones.
    pub fn new(zones: Vec<Arc<Zone>>) -> Zones {
        Zones { list: ArcSwap::from_pointee(zones) }
    }

    /// Adds a zone, replacing one with the same apex.
    pub fn insert(&self, zone: Arc<Zone>) {
        self.list.rcu(|list| {
            let mut v: Vec<Arc<Zone>> = list.iter().filter(|z| z.apex_name() != zone.apex_name()).cloned().collect();
            v.push(zone.clone());
            v
        });
    }

    /// Removes the zone at `apex`.
    pub fn remove(&self, apex: &Name) {
        self.list.rcu(|list| list.iter().filter(|z| z.apex_name() != apex).cloned().collect::<Vec<_>>());
    }

    /// The zone whose apex is `apex` (case-insensitive).
    pub fn get(&self, apex: &Name) -> Option<Arc<Zone>> {
        self.list.load().iter().find(|z| z.apex_name() == apex).cloned()
    }

    /// All zones.
    pub fn all(&self) -> Arc<Vec<Arc<Zone>>> {
        self.list.load_full()
    }

    /// The zone answering `req` and the number of query labels left of its apex. The zone is borrowed from the
    /// current list (no reference count is touched, which queries on every core would contend on).
    pub(crate) fn find(&self, req: &Request<'_>) -> Option<(Found, usize)> {
        let list = self.list.load();
        let name_end = req.question_end - 4;
        let mut best: Option<(usize, usize)> = None;
        for (i, z) in list.iter().enumerate() {
            let apex_labels = usize::from(z.apex_labels());
            let Some(rel) = req.labels.len().checked_sub(apex_labels) else { continue };
            let start = req.labels.get(rel).unwrap_or(name_end - 1);
            if req.bytes[start..name_end].eq_ignore_ascii_case(z.apex_wire())
                && best.is_none_or(|(b, _)| list[b].apex_labels() < z.apex_labels())
            {
                best = Some((i, rel));
            }
        }
        best.map(|(index, rel)| (Found { list, index }, rel))
    }
}

/// A zone found for a query, borrowed from the list it was found in.
pub(crate) struct Found {
    list: arc_swap::Guard<Arc<Vec<Arc<Zone>>>>,
    index: usize,
}

impl std::ops::Deref for Found {
    type Target = Zone;

    fn deref(&self) -> &Zone {
        &self.list[self.index]
    }
}
