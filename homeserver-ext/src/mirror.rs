//! Contact discovery for numbers other providers registered: a local mirror of the directory's number list,
//! and DNSSEC-validated resolution of every hit.
//!
//! The directory gives trusted providers its number list (`GET /v1/numbers`, paged, each number with the zone
//! version of its last change). The mirror keeps, per number, that version and `sha256("<digits> msisdn
//! <pepper>")` under the current pepper — never the Matrix user. [`run`] syncs at start and every
//! `directory.sync_interval_secs`; a sync walks the list page by page and merges each page with the mirror's
//! rows of the same range: new or changed numbers (another version, or a hash under an older pepper) are
//! written, numbers no longer listed deleted, unchanged ones left alone. A pepper rotation re-hashes the mirror
//! at once ([`crate::identity::rotate_pepper`]); a page a sync writes after a rotation it started before is
//! re-hashed by the store with the new pepper as it is written.
//!
//! A hashed `lookup` that misses the local bindings but hits the mirror resolves the number through
//! [`tincan_enum_lookup`] — NAPTR validated up to the configured trust anchor — checks the answer against the
//! directory's transparency log ([`crate::log_witness`]), and answers the Matrix user of the validated, logged
//! `E2U+x-matrix` record. A lookup that fails validation (bogus, insecure, unreachable) or the log check (a
//! record the log does not hold, a forked log, a log that cannot be asked) leaves the number out of the answer:
//! never an unvalidated or unlogged answer.

use crate::app::App;
use crate::config::DirectoryConfig;
use crate::directory::DirectoryError;
use crate::error::ApiError;
use crate::identity::{current_pepper, lookup_hash, msisdn_address};
use crate::log_witness::WitnessError;
use crate::number::E164;
use crate::store::{MirrorEntry, StoreError};
use futures::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tincan_enum_lookup::log::LogCheckError;
use tincan_enum_lookup::{Lookup, LookupConfig, TrustAnchor};
use tokio::sync::Semaphore;

/// Resolutions a request has pending at most (each also waits for one of the shared slots).
const CONCURRENT_RESOLUTIONS: usize = 16;

/// Why the directory lookup settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum LookupConfigError {
    /// A server is not `ip:port`.
    #[error("directory.dns_servers: {0:?} is not an ip:port")]
    Server(String),
    /// The apex is not a domain name.
    #[error("directory.apex: {0:?} is not a domain name")]
    Apex(String),
    /// The trust anchor does not parse.
    #[error("directory.trust_anchor: {0}")]
    Anchor(#[from] tincan_enum_lookup::AnchorError),
    /// The lookup library refused the combination (anchor for another zone…).
    #[error("directory: {0}")]
    Lookup(#[from] tincan_enum_lookup::ConfigError),
}

/// The validating lookup, or `None` when `dns_servers` is empty (directory lookups off).
pub fn build_lookup(d: &DirectoryConfig) -> Result<Option<Lookup>, LookupConfigError> {
    if d.dns_servers.is_empty() {
        return Ok(None);
    }
    let servers = d
        .dns_servers
        .iter()
        .map(|s| s.parse::<SocketAddr>().map_err(|_| LookupConfigError::Server(s.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let apex = hickory_proto::rr::Name::from_ascii(&d.apex)
        .ok()
        .filter(|_| !d.apex.trim().is_empty())
        .ok_or_else(|| LookupConfigError::Apex(d.apex.clone()))?;
    let anchor = TrustAnchor::parse(&d.trust_anchor)?;
    let mut config = LookupConfig::new(servers, apex, anchor);
    config.allow_insecure = d.allow_insecure;
    Ok(Some(Lookup::new(config)?))
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No directory URL is configured.
    #[error("no directory configured")]
    NotConfigured,
    /// The directory failed or refused.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the pepper failed.
    #[error("pepper: {0}")]
    Pepper(Box<ApiError>),
    /// The directory's cursor did not advance.
    #[error("the directory's listing did not advance past {0}")]
    Stuck(String),
}

/// What one sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Numbers the directory listed.
    pub listed: usize,
    /// Mirror rows written (new, changed, re-hashed).
    pub upserted: usize,
    /// Mirror rows deleted (no longer listed).
    pub deleted: usize,
    /// Pages fetched.
    pub pages: usize,
}

/// One full pass over the directory's listing, merged into the mirror.
pub async fn sync(app: &App) -> Result<SyncStats, SyncError> {
    let dir = app.directory.as_ref().ok_or(SyncError::NotConfigured)?;
    let pepper = current_pepper(app).await.map_err(|e| SyncError::Pepper(Box::new(e)))?;
    let limit = app.config.directory.sync_page_size.clamp(1, 1000);
    let mut stats = SyncStats::default();
    let mut after: Option<String> = None;
    loop {
        let page = loop {
            match dir.list(after.as_deref(), limit).await {
                Err(DirectoryError::RateLimited(wait)) => tokio::time::sleep(wait).await,
                other => break other?,
            }
        };
        stats.pages += 1;
        stats.listed += page.numbers.len();
        // The mirror's rows of the range this page covers: after the cursor, up to its last number (the
        // last page covers everything after the cursor).
        let upto = if page.next.is_some() { page.numbers.last().map(|n| n.number.as_str()) } else { None };
        let mut local: HashMap<String, MirrorEntry> = app
            .store
            .mirror_range(after.as_deref().unwrap_or(""), upto)
            .await?
            .into_iter()
            .map(|e| (e.number.clone(), e))
            .collect();
        let mut changed = Vec::new();
        for listed in &page.numbers {
            let hash = lookup_hash(msisdn_address(&listed.number), &pepper);
            match local.remove(&listed.number) {
                Some(e) if e.version == listed.version && e.lookup_hash == hash => {}
                _ => changed.push(MirrorEntry {
                    number: listed.number.clone(),
                    version: listed.version,
                    lookup_hash: hash,
                }),
            }
        }
        let gone: Vec<String> = local.into_keys().collect();
        // A rotation since the pepper was read: the store re-hashes with the new one.
        app.store.mirror_upsert(&changed, &pepper, &|number, p| lookup_hash(msisdn_address(number), p)).await?;
        app.store.mirror_delete(&gone).await?;
        stats.upserted += changed.len();
        stats.deleted += gone.len();
        match page.next {
            Some(next) if after.as_deref() == Some(next.as_str()) => return Err(SyncError::Stuck(next)),
            Some(next) => after = Some(next),
            None => return Ok(stats),
        }
    }
}

/// Syncs at start, then every `directory.sync_interval_secs`, until the process ends.
pub async fn run(app: Arc<App>) {
    let every = Duration::from_secs(app.config.directory.sync_interval_secs.max(1));
    loop {
        let started = Instant::now();
        match sync(&app).await {
            Ok(s) => tracing::info!(
                listed = s.listed,
                upserted = s.upserted,
                deleted = s.deleted,
                pages = s.pages,
                took_ms = started.elapsed().as_millis() as u64,
                "directory mirror synced"
            ),
            Err(e) => tracing::warn!(error = %e, "directory mirror sync failed; next try at the next interval"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Resolves mirror hits `(key, number)` through the validating lookup; answers `(key, user_id)` for each
/// number whose validated NAPTR names a Matrix user and whose answer the transparency log backs. Failures
/// leave the number out (and are logged, the number redacted; a forked log as an error).
///
/// Resolutions take a slot of `app.resolve_slots` (`identity.lookup_resolve_concurrency`) each, shared by
/// every lookup in flight: however many hits a request has and however many requests run, at most that many
/// queries go to the directory's DNS at once, so one lookup cannot trip its response-rate limit for everyone.
pub async fn resolve_validated(app: &App, hits: Vec<(String, String)>) -> Vec<(String, String)> {
    let (Some(lookup), Some(log)) = (&app.lookup, &app.log) else { return Vec::new() };
    resolve_bounded(&app.resolve_slots, hits, |number| async move {
        let number = E164::parse(&number).ok()?;
        let found = match lookup.resolve(&number).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, number = %number.redacted(), "validated lookup failed; left out");
                return None;
            }
        };
        let user = found.routes.matrix.as_ref()?.user_id();
        match log.check(&found).await {
            Ok(()) => Some(user),
            Err(WitnessError::Log(e @ LogCheckError::Inconsistent { .. })) => {
                tracing::error!(
                    error = %e,
                    number = %number.redacted(),
                    "the directory's transparency log forked; left out"
                );
                None
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    number = %number.redacted(),
                    "the directory's answer is not backed by its transparency log; left out"
                );
                None
            }
        }
    })
    .await
}

/// Runs `resolve(number)` for each hit `(key, number)`, each holding one of `slots`' permits while it runs, and
/// answers `(key, found)` for those that found something.
pub async fn resolve_bounded<F, Fut>(
    slots: &Semaphore,
    hits: Vec<(String, String)>,
    resolve: F,
) -> Vec<(String, String)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let resolve = &resolve;
    futures::stream::iter(hits)
        .map(|(key, number)| async move {
            // The semaphore is never closed.
            let _slot = slots.acquire().await.ok()?;
            resolve(number).await.map(|found| (key, found))
        })
        .buffer_unordered(CONCURRENT_RESOLUTIONS)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Three lookups of 20 directory hits each run together on 8 shared slots: every hit is resolved, and at
    /// most 8 resolutions (exactly 8 at the peak) were in flight at any time.
    #[tokio::test]
    async fn resolutions_of_concurrent_lookups_share_the_slots() {
        let slots = Semaphore::new(8);
        let (running, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let resolve = |number: String| {
            let (running, peak) = (&running, &peak);
            async move {
                peak.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Some(format!("@u{number}:other.test"))
            }
        };
        let hits = |r: usize| (0..20).map(|i| (format!("k{r}-{i}"), format!("{r}{i:02}"))).collect::<Vec<_>>();
        let (a, b, c) = tokio::join!(
            resolve_bounded(&slots, hits(0), &resolve),
            resolve_bounded(&slots, hits(1), &resolve),
            resolve_bounded(&slots, hits(2), &resolve),
        );
        assert_eq!((a.len(), b.len(), c.len()), (20, 20, 20));
        assert!(a.contains(&("k0-7".to_string(), "@u007:other.test".to_string())));
        assert_eq!(peak.load(Ordering::SeqCst), 8, "resolutions in flight at the peak");
    }
}
