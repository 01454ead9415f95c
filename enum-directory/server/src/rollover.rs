//! Key rollover (RFC 6781 §4.1, RFC 7583 timelines), driven by [`step`] on a schedule and by [`roll`]
//! (`tincan-directory keys roll zsk|ksk`):
//!
//! - **ZSK, pre-publication**: the new key is `published` (in DNSKEY, not signing); once every cached DNSKEY
//!   set holds it (DNSKEY TTL + propagation delay) it becomes `active` and the old one `inactive` (still in
//!   DNSKEY, not signing); every signature is re-made with the new key (the zone treats signatures by another ZSK
//!   as stale); once the old signatures are gone from caches (the largest TTL + propagation delay) the old key is
//!   `retired` (removed).
//! - **KSK, double-DS**: the new key is `staged`: not in DNSKEY, but its DS must be added at the parent (the DS
//!   set `keys status` prints holds both). Once the parent's DS set has propagated (parent DS TTL + propagation
//!   delay) the new KSK replaces the old one in DNSKEY (`active`) and the old one is `retiring`: its DS stays
//!   until cached DNSKEY sets signed by it expire (DNSKEY TTL + propagation delay); then it is `retired` and its
//!   DS can go.
//!
//! A new rollover starts by itself when the active key is older than its configured lifetime (0: only by hand).
//! Every state change is appended to the transparency log in the same transaction. Time comes from a `Clock`,
//! so a test drives the whole timeline.

use std::time::{Duration, SystemTime};

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use tincan_common::Clock;

use crate::dns::ZoneKey;
use crate::keys::{KeyError, dns_algorithm, dns_role, log_key, zone_key};
use crate::storage::{DnssecKey, KeyAlgorithm, KeyRole, KeyState, Storage};

/// The rollover schedule (`[dns.rollover]`), in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloverConfig {
    /// Roll the ZSK when the active one is this old (0: only by `keys roll zsk`). Default 90 days.
    pub zsk_lifetime: u64,
    /// Roll the KSK when the active one is this old (0, the default: only by `keys roll ksk`, since the parent
    /// must publish the new DS).
    pub ksk_lifetime: u64,
    /// Time for a change to reach every secondary and for clocks to disagree. Default 1 h.
    pub propagation_delay: u64,
    /// TTL of the DS RRset at the parent. Default 1 day.
    pub parent_ds_ttl: u64,
    /// How often `serve` checks the schedule. Default 60 s.
    pub check_interval: u64,
}

impl Default for RolloverConfig {
    fn default() -> Self {
        RolloverConfig {
            zsk_lifetime: 90 * 86_400,
            ksk_lifetime: 0,
            propagation_delay: 3600,
            parent_ds_ttl: 86_400,
            check_interval: 60,
        }
    }
}

/// The waits of the timeline, from the schedule and the zone's TTLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// ZSK lifetime (`None`: manual).
    pub zsk_lifetime: Option<Duration>,
    /// KSK lifetime (`None`: manual).
    pub ksk_lifetime: Option<Duration>,
    /// Published ZSK → active: DNSKEY TTL + propagation.
    pub zsk_publish_wait: Duration,
    /// Inactive ZSK → retired: the largest TTL of signed data + propagation.
    pub zsk_retire_wait: Duration,
    /// Staged KSK → active: parent DS TTL + propagation.
    pub ksk_ds_wait: Duration,
    /// Retiring KSK → retired: DNSKEY TTL + propagation.
    pub ksk_retire_wait: Duration,
}

impl Policy {
    /// The waits for a zone with these TTLs (seconds).
    pub fn new(config: &RolloverConfig, dnskey_ttl: u32, max_ttl: u32) -> Policy {
        let secs = Duration::from_secs;
        let lifetime = |s: u64| (s > 0).then(|| secs(s));
        Policy {
            zsk_lifetime: lifetime(config.zsk_lifetime),
            ksk_lifetime: lifetime(config.ksk_lifetime),
            zsk_publish_wait: secs(u64::from(dnskey_ttl) + config.propagation_delay),
            zsk_retire_wait: secs(u64::from(max_ttl.max(dnskey_ttl)) + config.propagation_delay),
            ksk_ds_wait: secs(config.parent_ds_ttl + config.propagation_delay),
            ksk_retire_wait: secs(u64::from(dnskey_ttl) + config.propagation_delay),
        }
    }

    /// The next timed event of `key`: what happens and when (`None`: nothing is scheduled for it).
    pub fn next_event(&self, key: &DnssecKey) -> Option<(&'static str, SystemTime)> {
        let at = |wait: Duration| key.changed_at + wait;
        match (key.role, key.state) {
            (KeyRole::Zsk, KeyState::Published) => Some(("becomes active", at(self.zsk_publish_wait))),
            (KeyRole::Zsk, KeyState::Inactive) => Some(("is removed", at(self.zsk_retire_wait))),
            (KeyRole::Ksk, KeyState::Staged) => Some(("replaces the active KSK", at(self.ksk_ds_wait))),
            (KeyRole::Ksk, KeyState::Retiring) => Some(("is removed, with its DS", at(self.ksk_retire_wait))),
            (KeyRole::Zsk, KeyState::Active) => self.zsk_lifetime.map(|l| ("is rolled", at(l))),
            (KeyRole::Ksk, KeyState::Active) => self.ksk_lifetime.map(|l| ("is rolled", at(l))),
            _ => None,
        }
    }
}

/// One state change made by [`step`] or [`roll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The key's id.
    pub key_id: i64,
    /// Its role.
    pub role: KeyRole,
    /// Its key tag.
    pub key_tag: u16,
    /// The state it left (`None`: created).
    pub from: Option<KeyState>,
    /// The state it entered.
    pub to: KeyState,
}

fn in_progress(keys: &[DnssecKey], role: KeyRole) -> bool {
    keys.iter().any(|k| {
        k.role == role
            && matches!(k.state, KeyState::Published | KeyState::Inactive | KeyState::Staged | KeyState::Retiring)
    })
}

/// Starts a rollover of `role` now: a new ZSK is published, a new KSK staged. Refused while one is under way.
pub async fn roll(
    storage: &dyn Storage,
    clock: &dyn Clock,
    apex: &Name,
    role: KeyRole,
    algo: KeyAlgorithm,
) -> Result<Transition, KeyError> {
    let apex_str = apex.to_ascii();
    let mut tx = storage.begin().await?;
    let keys = tx.keys().for_apex(&apex_str).await?;
    if in_progress(&keys, role) {
        return Err(KeyError::RollInProgress { apex: apex_str, role });
    }
    let t = start(&mut *tx, clock, &apex_str, role, algo).await?;
    tx.commit().await?;
    Ok(t)
}

async fn start(
    tx: &mut dyn crate::storage::Repository,
    clock: &dyn Clock,
    apex: &str,
    role: KeyRole,
    algo: KeyAlgorithm,
) -> Result<Transition, KeyError> {
    let state = match role {
        KeyRole::Zsk => KeyState::Published,
        KeyRole::Ksk => KeyState::Staged,
    };
    let key = ZoneKey::generate(dns_role(role), dns_algorithm(algo), clock.unix_seconds())?;
    let stored = tx.keys().add(apex, role, algo, &key.to_pkcs8(), state).await?;
    log_key(tx, &stored, clock).await?;
    Ok(Transition { key_id: stored.id, role, key_tag: key.key_tag(), from: None, to: state })
}

/// Makes every state change that is due at the clock's now (in one transaction, each logged); returns them.
pub async fn step(
    storage: &dyn Storage,
    clock: &dyn Clock,
    apex: &Name,
    policy: &Policy,
    algo: KeyAlgorithm,
) -> Result<Vec<Transition>, KeyError> {
    let apex_str = apex.to_ascii();
    let now = clock.now();
    let mut tx = storage.begin().await?;
    let keys = tx.keys().for_apex(&apex_str).await?;
    let due = |k: &DnssecKey| policy.next_event(k).is_some_and(|(_, at)| at <= now);
    let mut changes: Vec<(&DnssecKey, KeyState)> = Vec::new();
    let mut starts = Vec::new();
    for k in keys.iter().filter(|k| due(k)) {
        let active = keys.iter().rev().find(|a| a.role == k.role && a.state == KeyState::Active);
        match (k.role, k.state) {
            (KeyRole::Zsk, KeyState::Published) => {
                changes.extend(active.map(|a| (a, KeyState::Inactive)));
                changes.push((k, KeyState::Active));
            }
            (KeyRole::Ksk, KeyState::Staged) => {
                changes.extend(active.map(|a| (a, KeyState::Retiring)));
                changes.push((k, KeyState::Active));
            }
            (_, KeyState::Inactive | KeyState::Retiring) => changes.push((k, KeyState::Retired)),
            (role, KeyState::Active) if !in_progress(&keys, role) => starts.push(role),
            _ => {}
        }
    }
    let mut done = Vec::new();
    for (k, to) in changes {
        tx.keys().set_state(k.id, to).await?;
        let mut changed = k.clone();
        changed.state = to;
        log_key(&mut *tx, &changed, clock).await?;
        done.push(Transition { key_id: k.id, role: k.role, key_tag: zone_key(k)?.key_tag(), from: Some(k.state), to });
    }
    for role in starts {
        done.push(start(&mut *tx, clock, &apex_str, role, algo).await?);
    }
    tx.commit().await?;
    for t in &done {
        tracing::info!(apex = %apex, role = ?t.role, key_tag = t.key_tag, from = ?t.from, to = ?t.to, "key rollover step");
    }
    Ok(done)
}
