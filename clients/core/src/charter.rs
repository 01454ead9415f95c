//! The charter's trust list in the client: which directory to trust (its DS set and transparency-log key) and
//! which providers a user may sign up with and whose users' keys can count as verified.
//!
//! With a [`CharterConfig`], the client keeps the last good list in `<data_dir>/charter/` (verified again at
//! open, without the network) and [`TincanClient::refresh_charter`](crate::TincanClient::refresh_charter)
//! fetches a newer one; an expired, rolled-back or under-signed list is refused and the last good one kept.
//! Then:
//! - a [`DirectoryConfig`](crate::DirectoryConfig) with an empty `trust_anchor` takes the anchor and the
//!   transparency log from the list's directory of that apex; an explicit anchor stays an override (for
//!   development, or a subset during a key roll) only as far as the list vouches for it: when the list names the
//!   directory, every pinned entry must be one of its DS records or a key one of them covers, else the directory
//!   is refused ([`ClientError::AnchorNotVouched`]), as the extension refuses such an anchor at start; a
//!   directory the list does not name at all is not trusted, pinned anchor or not
//!   ([`ClientError::DirectoryNotListed`]), as the extension refuses to work with it; and without a current
//!   list (none fetched yet, or the last good one expired: a charter that cannot be reached, or whose list
//!   refreshes are blocked, cannot vouch) the directory is not used either ([`ClientError::TrustListNotCurrent`]),
//!   pinned anchor or not, as the extension stops when no valid list is left. Without a pinned anchor the client
//!   then has no directory to ask, but that is this refusal, not "no directory configured": routing
//!   ([`TincanClient::route_to_number`](crate::TincanClient::route_to_number)) stops there and does not fall back
//!   to the provider's bridges, else whoever blocks the list's refreshes would move every text and call to a
//!   Matrix contact off end-to-end encryption and hand the number to the bridge;
//! - a refresh that brings a newer list sets the directory up again from it, and nothing built on the older list
//!   is kept: a list that no longer names the directory (the charter dropped it: compromised, or retired) is
//!   taken, and the directory is refused from then on ([`ClientError::DirectoryNotListed`], pinned anchor or
//!   not, in the running client and in one started again on the stored list; no bridge either), until a list
//!   names it again; a list the client cannot set the directory up from (a DS set it cannot read) fails the
//!   refresh and leaves no lookup: the directory is refused ([`ClientError::DirectoryConfig`]) until a refresh
//!   succeeds, never used on the older list's anchor;
//! - `register` only signs up at a listed provider that offers Matrix and covers the number;
//! - a contact whose homeserver is not a listed provider's is never verified
//!   ([`KeyStatus::NotListed`](crate::KeyStatus::NotListed)), so a provider removed from the list stops
//!   verifying at the next refresh;
//! - the DS set the apex's parent zone publishes must be the one the list names for the directory, when the
//!   client's DNS servers serve the parent zone ([`ParentDsCheck`]); else the directory is refused
//!   ([`ClientError::ParentDsMismatch`]): no route, no verified contact.
//!
//! ## What the parent DS check covers
//! Before a lookup (again at most every [`PARENT_DS_RECHECK_SECS`], and after every refresh of the list) the
//! client asks its directory DNS servers for the apex's DS set. A recursive resolver, or a server of the parent
//! zone, answers it from the parent: the set must equal the list's (records compared by key tag, algorithm,
//! digest type and digest; an unsigned delegation publishes none and disagrees with a list that names one),
//! as `tincan-directory keys check-ds` requires. Servers of the directory's zone alone (the directory itself or
//! its secondaries, the usual setup) cannot answer for the parent: they refuse the query or answer from the
//! apex's own zone, the client logs that the parent was not compared, and only the list's DS is checked, as the
//! trust anchor every answer is validated against. A DS query nobody answers (timeout, SERVFAIL) is a lookup
//! failure: the comparison is not skipped silently. The parent's set is read as published, not DNSSEC-validated
//! (the client has no anchor above the apex): trust in the directory's answers never comes from the parent, and
//! a forged parent answer can only make the client refuse the directory.

use crate::config::{DirectoryConfig, TransparencyLogConfig};
use crate::error::{ClientError, Result};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tincan_enum_lookup::parent::{DsRecord, ParentDs, ds_records, parent_ds};
use tincan_enum_lookup::{Lookup, TrustAnchor};
use url::Url;

pub use tincan_charter::{CharterError, Service, TrustList, TrustedDirectory, TrustedProvider, Verified};

/// Where the charter publishes its list, and the root the client trusts.
#[derive(Debug, Clone)]
pub struct CharterConfig {
    /// The charter repository's base URL (serves `trust-list.json`, `N.root.json`).
    pub url: Url,
    /// The charter's `root.json` the client ships with (see [`CharterConfig::shipped_root`]).
    pub root: Vec<u8>,
}

impl CharterConfig {
    /// The root built into this program: the content of `TINCAN_CHARTER_ROOT_JSON` at compile time (release
    /// builds set it to the charter's published `root.json`); `None` in builds without it.
    pub fn shipped_root() -> Option<&'static [u8]> {
        option_env!("TINCAN_CHARTER_ROOT_JSON").map(str::as_bytes)
    }
}

/// What a refresh found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CharterStatus {
    /// The version of the list in use.
    pub version: u64,
    /// The root version that verified it.
    pub root_version: u64,
    /// Why the newest list was refused (or could not be fetched), when the last good one is used instead.
    pub refused: Option<String>,
}

/// A directory config from the list's directory with `apex` (or its only directory when `apex` is `None`).
pub fn directory_from_list(
    list: &TrustList,
    apex: Option<&str>,
    servers: Vec<SocketAddr>,
    allow_insecure: bool,
) -> Result<DirectoryConfig> {
    let d = match apex {
        Some(a) => list
            .directory_by_apex(a)
            .ok_or_else(|| ClientError::DirectoryConfig(format!("the charter's trust list has no directory {a}")))?,
        None => match list.directories.as_slice() {
            [only] => only,
            ds => {
                return Err(ClientError::DirectoryConfig(format!(
                    "the charter's trust list has {} directories: choose one by its apex",
                    ds.len()
                )));
            }
        },
    };
    Ok(DirectoryConfig {
        servers: if servers.is_empty() { d.dns.clone() } else { servers },
        apex: d.apex.clone(),
        trust_anchor: d.trust_anchor(),
        allow_insecure,
        log: Some(TransparencyLogConfig { url: d.api_url.clone(), key: d.log_key.clone() }),
    })
}

/// The listed provider whose extension is at `ext` (trailing slashes ignored).
pub fn provider_by_ext<'a>(list: &'a TrustList, ext: &Url) -> Option<&'a TrustedProvider> {
    let want = ext.as_str().trim_end_matches('/');
    list.providers.iter().find(|p| p.ext_url.as_str().trim_end_matches('/') == want)
}

/// The client's charter state: the verifying client and the list in use.
#[derive(Debug)]
pub(crate) struct CharterState {
    client: tincan_charter::CharterClient,
    list: std::sync::Mutex<Option<Verified>>,
}

impl CharterState {
    /// Opens the state in `<data_dir>/charter/`, with the last good list if it is still valid at `now`.
    pub(crate) fn open(c: &CharterConfig, data_dir: &std::path::Path, now: std::time::SystemTime) -> Result<Self> {
        let client = tincan_charter::CharterClient::new(c.url.clone(), c.root.clone(), data_dir.join("charter"))?;
        let list = client.last_good(now).ok();
        Ok(CharterState { client, list: std::sync::Mutex::new(list) })
    }

    /// The list in use, if there is one and it has not expired at `now`.
    pub(crate) fn current(&self, now: std::time::SystemTime) -> Option<TrustList> {
        let guard = self.list.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|v| v.list.expires > now).map(|v| v.list.clone())
    }

    /// Why there is no [`current`](Self::current) list at `now`: the one in use expired, or none was verified.
    fn why_not_current(&self, now: std::time::SystemTime) -> String {
        let guard = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = guard.as_ref().filter(|v| v.list.expires <= now) {
            return expired(v.list.version, v.list.expires);
        }
        drop(guard);
        match self.client.last_good(now) {
            Err(e) => e.to_string(),
            Ok(_) => "no trust list verified yet".into(),
        }
    }

    /// Why the directory at `apex`, whose trust anchor is to come from the list, has none at `now`: no current
    /// list ([`ClientError::TrustListNotCurrent`]), or one that does not name it, such as a newer list that
    /// dropped it ([`ClientError::DirectoryNotListed`]), as [`ParentDsCheck`] refuses a pinned anchor then.
    pub(crate) fn no_anchor_for(&self, apex: &str, now: std::time::SystemTime) -> ClientError {
        match self.current(now) {
            Some(list) => ClientError::DirectoryNotListed {
                apex: apex.to_owned(),
                listed: list.directories.iter().map(|d| d.apex.clone()).collect(),
            },
            None => ClientError::TrustListNotCurrent { apex: apex.to_owned(), why: self.why_not_current(now) },
        }
    }

    /// Fetches and verifies a newer list; when that fails, keeps the last good one (if still valid).
    pub(crate) async fn refresh(&self, now: std::time::SystemTime) -> Result<CharterStatus> {
        let (v, refused) = self.client.refresh_or_last_good(now).await?;
        let status = CharterStatus {
            version: v.list.version,
            root_version: v.root_version,
            refused: refused.map(|e| e.to_string()),
        };
        if let Some(why) = &status.refused {
            tracing::warn!(error = %why, version = v.list.version, "the charter's newest list was refused; keeping the last good one");
        }
        *self.list.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        Ok(status)
    }
}

/// Why a list that expired is not used, as [`tincan_charter::CharterClient::last_good`] says it.
fn expired(version: u64, expires: std::time::SystemTime) -> String {
    format!("the trust list (version {version}) expired at {}", tincan_charter::timefmt::format(expires))
}

/// The directory config in effect: the configured one, with an empty trust anchor (and no log) filled from the
/// charter's list. `None` when there is no directory, or its anchor should come from a list the client does not
/// have, or from a current list that does not name it (the charter dropped it): then the directory is refused,
/// as [`CharterState::no_anchor_for`] says, not set up from an older list nor taken for "no directory".
pub(crate) fn effective_directory(
    configured: Option<&DirectoryConfig>,
    charter: Option<&CharterState>,
    now: std::time::SystemTime,
) -> Result<Option<DirectoryConfig>> {
    let Some(d) = configured else { return Ok(None) };
    if !d.trust_anchor.trim().is_empty() {
        return Ok(Some(d.clone()));
    }
    let Some(list) = charter.and_then(|c| c.current(now)) else { return Ok(None) };
    if list.directory_by_apex(&d.apex).is_none() {
        return Ok(None);
    }
    let mut from_list = directory_from_list(&list, Some(&d.apex), d.servers.clone(), d.allow_insecure)?;
    if d.log.is_some() {
        from_list.log = d.log.clone();
    }
    Ok(Some(from_list))
}

/// How long an agreeing (or unanswerable, see the module doc) parent DS check holds before the next lookup asks
/// again. A disagreement is never kept: every lookup asks again, so the directory works again once the parent
/// and the list agree.
pub const PARENT_DS_RECHECK_SECS: u64 = 300;

/// The charter's DS set for the directory in use, compared with the set the apex's parent zone publishes (see
/// the module doc), and with the trust anchor pinned in the client's configuration, if any.
#[derive(Debug)]
pub(crate) struct ParentDsCheck {
    apex: hickory_proto::rr::Name,
    charter: BTreeSet<DsRecord>,
    /// The pinned anchor's entries the charter's DS set does not vouch for (empty when none is pinned).
    not_vouched: Vec<String>,
    /// Why the directory is refused before anything is compared, if it is.
    refusal: Option<Refusal>,
    /// The version of the list the check comes from and when it expires: past that the check refuses.
    list: Option<(u64, std::time::SystemTime)>,
    servers: Vec<SocketAddr>,
    timeout: Duration,
    /// Unix seconds until which the last check holds.
    checked_until: std::sync::Mutex<u64>,
}

/// Why a [`ParentDsCheck`] refuses the directory whatever the parent says.
#[derive(Debug)]
enum Refusal {
    /// The list does not name the directory: the apexes of the directories it names.
    NotListed(Vec<String>),
    /// The client has no current list: why.
    NoCurrentList(String),
}

impl ParentDsCheck {
    /// The check of the directory `lookup` resolves in, when a charter is configured (`None` without one);
    /// `pinned` is the trust anchor the configuration pins (instead of taking the list's). A directory the list
    /// does not name gets a check that refuses it ([`ClientError::DirectoryNotListed`]), and so does every
    /// directory while the client has no current list ([`ClientError::TrustListNotCurrent`]).
    pub(crate) fn new(
        charter: Option<&CharterState>,
        lookup: &Lookup,
        pinned: Option<&str>,
        now: std::time::SystemTime,
    ) -> Result<Option<ParentDsCheck>> {
        let apex = lookup.apex();
        let Some(charter) = charter else { return Ok(None) };
        let refusing = |refusal: Refusal| ParentDsCheck {
            apex: apex.clone(),
            charter: BTreeSet::new(),
            not_vouched: Vec::new(),
            refusal: Some(refusal),
            list: None,
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            checked_until: std::sync::Mutex::new(0),
        };
        let Some(list) = charter.current(now) else {
            return Ok(Some(refusing(Refusal::NoCurrentList(charter.why_not_current(now)))));
        };
        let Some(d) = list.directory_by_apex(&apex.to_ascii()) else {
            return Ok(Some(refusing(Refusal::NotListed(list.directories.iter().map(|d| d.apex.clone()).collect()))));
        };
        let anchor = TrustAnchor::parse(&d.trust_anchor())
            .map_err(|e| ClientError::DirectoryConfig(format!("the charter's DS set for {}: {e}", d.apex)))?;
        let not_vouched = match pinned {
            Some(text) => TrustAnchor::parse(text)
                .map_err(|e| ClientError::DirectoryConfig(format!("trust anchor: {e}")))?
                .not_vouched_by(&anchor)
                .iter()
                .map(ToString::to_string)
                .collect(),
            None => Vec::new(),
        };
        Ok(Some(ParentDsCheck {
            apex: apex.clone(),
            charter: ds_records(&anchor),
            not_vouched,
            refusal: None,
            list: Some((list.version, list.expires)),
            servers: lookup.servers().to_vec(),
            timeout: Duration::from_secs(2),
            checked_until: std::sync::Mutex::new(0),
        }))
    }

    /// Refuses any directory while there is no current list (none, or the one the check comes from expired
    /// at `now`), a directory the charter's list does not name, and a pinned anchor the charter does not vouch
    /// for; then asks for the parent's DS set, unless a check at most [`PARENT_DS_RECHECK_SECS`] old holds, and
    /// refuses a parent that disagrees with the charter.
    pub(crate) async fn check(&self, now: std::time::SystemTime) -> Result<()> {
        let refused = match (&self.refusal, self.list) {
            (Some(Refusal::NotListed(listed)), _) => {
                Some(ClientError::DirectoryNotListed { apex: self.apex.to_ascii(), listed: listed.clone() })
            }
            (Some(Refusal::NoCurrentList(why)), _) => {
                Some(ClientError::TrustListNotCurrent { apex: self.apex.to_ascii(), why: why.clone() })
            }
            (None, Some((version, expires))) if expires <= now => {
                Some(ClientError::TrustListNotCurrent { apex: self.apex.to_ascii(), why: expired(version, expires) })
            }
            (None, _) => None,
        };
        if let Some(e) = refused {
            tracing::warn!(error = %e, "refusing the directory");
            return Err(e);
        }
        let now_unix = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if !self.not_vouched.is_empty() {
            let e = ClientError::AnchorNotVouched {
                apex: self.apex.to_ascii(),
                not_vouched: self.not_vouched.clone(),
                charter: self.charter.iter().map(ToString::to_string).collect(),
            };
            tracing::warn!(error = %e, "refusing the directory");
            return Err(e);
        }
        if *self.checked_until.lock().unwrap_or_else(|p| p.into_inner()) > now_unix {
            return Ok(());
        }
        match parent_ds(&self.servers, &self.apex, self.timeout).await? {
            ParentDs::NotServed { reason } => {
                tracing::info!(
                    apex = %self.apex, %reason,
                    "the directory's DNS servers do not serve its parent zone: the parent's DS set is not compared \
                     with the charter's (the charter's is the trust anchor)"
                );
            }
            ParentDs::Published { zone, ds } if ds != self.charter => {
                let shown = |s: std::collections::btree_set::Difference<'_, DsRecord>| -> Vec<String> {
                    s.map(ToString::to_string).collect()
                };
                let e = ClientError::ParentDsMismatch {
                    apex: self.apex.to_ascii(),
                    parent_zone: zone.map(|z| z.to_ascii()),
                    parent_only: shown(ds.difference(&self.charter)),
                    charter_only: shown(self.charter.difference(&ds)),
                };
                tracing::warn!(error = %e, "refusing the directory");
                return Err(e);
            }
            ParentDs::Published { .. } => {
                tracing::debug!(apex = %self.apex, "the parent's DS set is the charter's");
            }
        }
        *self.checked_until.lock().unwrap_or_else(|p| p.into_inner()) = now_unix + PARENT_DS_RECHECK_SECS;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tincan_charter::list::CLIENT_DS_ALGORITHMS;
    use tincan_enum_lookup::TrustAnchor;

    /// The charter refuses to sign a list naming a DS with an algorithm outside `CLIENT_DS_ALGORITHMS`; that set
    /// must be exactly the algorithms this client's trust anchor (hickory) accepts, for every value of the field.
    #[test]
    fn the_charters_ds_algorithms_are_exactly_those_the_client_validates_with() {
        let digest = "9A".repeat(32);
        for algorithm in 0..=u8::MAX {
            let ds = format!("e164.tincan.test. 3600 IN DS 12345 {algorithm} 2 {digest}");
            let client = TrustAnchor::parse(&ds).is_ok();
            assert_eq!(
                CLIENT_DS_ALGORITHMS.contains(&algorithm),
                client,
                "algorithm {algorithm}: client takes it: {client}"
            );
        }
    }
}
