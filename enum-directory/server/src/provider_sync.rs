//! `provider sync`: the directory's providers from the charter's trust list.
//!
//! The list is fetched and verified with the charter's root (threshold of signatures, expiry, never an older
//! version than the last one synced: the last good list is kept in `<data_dir>/charter/`). This directory must
//! be on it (its apex); then every listed provider of this directory is added under its `provider_id` (with a
//! new token, printed once) or has its prefixes set to the list's, and providers the list does not name are
//! reported, or with `--suspend-unlisted` lose their prefixes (they can no longer write any number; their
//! numbers stay until removed).

use crate::storage::{Prefix, Provider, Storage, StorageError, TokenHash};
use std::collections::BTreeMap;
use tincan_charter::TrustList;

/// What a sync changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Providers to add: name and prefixes.
    pub add: Vec<(String, Vec<Prefix>)>,
    /// Providers whose prefixes change: name, old and new prefixes.
    pub update: Vec<(String, Vec<Prefix>, Vec<Prefix>)>,
    /// Providers here the list does not name (with prefixes still).
    pub unlisted: Vec<String>,
    /// Providers already as the list says.
    pub unchanged: Vec<String>,
}

/// Why a sync cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// This directory is not on the list.
    #[error("this directory (apex {0}) is not on the charter's trust list: nothing synced")]
    NotListed(String),
    /// A listed prefix is not one this directory accepts.
    #[error("provider {provider}: prefix {prefix:?} is not valid here")]
    BadPrefix {
        /// The provider.
        provider: String,
        /// The prefix.
        prefix: String,
    },
    /// No randomness for a new provider's token.
    #[error("no randomness available for a token")]
    Random,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Plans the sync of `existing` providers to the list's providers of the directory with `apex`.
pub fn plan(list: &TrustList, apex: &str, existing: &[Provider]) -> Result<SyncPlan, SyncError> {
    let dir = list.directory_by_apex(apex).ok_or_else(|| SyncError::NotListed(apex.to_owned()))?;
    let mut wanted: BTreeMap<&str, Vec<Prefix>> = BTreeMap::new();
    for p in list.providers_of(&dir.id) {
        let mut prefixes = p
            .prefixes
            .iter()
            .map(|s| {
                s.parse::<Prefix>().map_err(|_| SyncError::BadPrefix { provider: p.name.clone(), prefix: s.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        prefixes.sort();
        prefixes.dedup();
        wanted.insert(p.provider_id.as_str(), prefixes);
    }
    let mut plan = SyncPlan::default();
    for (name, prefixes) in &wanted {
        match existing.iter().find(|e| e.name == *name) {
            None => plan.add.push(((*name).to_owned(), prefixes.clone())),
            Some(e) if e.prefixes != *prefixes => {
                plan.update.push(((*name).to_owned(), e.prefixes.clone(), prefixes.clone()))
            }
            Some(_) => plan.unchanged.push((*name).to_owned()),
        }
    }
    for e in existing {
        if !wanted.contains_key(e.name.as_str()) && !e.prefixes.is_empty() {
            plan.unlisted.push(e.name.clone());
        }
    }
    Ok(plan)
}

/// Syncs the providers of the directory with `apex` to `list` in one transaction: locks the prefixes (so no
/// `provider add` or other sync changes them in between), reads the providers, plans and, unless `dry_run`, applies
/// the plan (`suspend_unlisted` empties the prefixes of the unlisted providers) and commits. Returns the plan and
/// the new providers' tokens (name, token), which are shown once and stored only hashed.
///
/// Planning from one read and writing in a later transaction let a `provider add` commit in between: its
/// provider was in no plan (not suspended) while its prefix had passed the overlap check against the old
/// prefixes, so both ended up holding the same range.
pub async fn sync(
    storage: &dyn Storage,
    list: &TrustList,
    apex: &str,
    suspend_unlisted: bool,
    dry_run: bool,
    mut new_token: impl FnMut() -> Option<String>,
) -> Result<(SyncPlan, Vec<(String, String)>), SyncError> {
    let mut tx = storage.begin().await?;
    tx.providers().lock_prefixes().await?;
    let existing = tx.providers().list().await?;
    let plan = plan(list, apex, &existing)?;
    if dry_run {
        return Ok((plan, Vec::new()));
    }
    let mut tokens = Vec::new();
    for (name, prefixes) in &plan.add {
        let token = new_token().ok_or(SyncError::Random)?;
        tx.providers().add(name, TokenHash::of(&token), prefixes).await?;
        tokens.push((name.clone(), token));
    }
    for (name, _, prefixes) in &plan.update {
        if let Some(p) = tx.providers().by_name(name).await? {
            tx.providers().set_prefixes(p.id, prefixes).await?;
        }
    }
    if suspend_unlisted {
        for name in &plan.unlisted {
            if let Some(p) = tx.providers().by_name(name).await? {
                tx.providers().set_prefixes(p.id, &[]).await?;
            }
        }
    }
    tx.commit().await?;
    Ok((plan, tokens))
}
