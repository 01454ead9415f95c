//! `tincan-directory numbers import --provider NAME FILE.jsonl`: registers many numbers for one provider.
//!
//! Each line is `{"e164":"+44…","services":[{"type":"matrix","uri":"…"},…],"ed25519":"<key>"}` (`ed25519`
//! optional: without it a number keeps the key it has), checked exactly like `PUT /v1/numbers/{e164}` (and
//! `…/key`): canonical E.164, the provider's prefixes, not held by another provider, no number twice.
//!
//! **Validate, then write.** The whole file is checked first; any bad line fails the import, naming the line,
//! with nothing written. Then numbers are written in batches, one transaction each, through the same change path
//! as the API ([`crate::change`]: signed, stored with their signatures, one zone version and journal entry per
//! changed number). A crash or error mid-way leaves whole batches committed and none half-written; running the
//! same import again is idempotent: numbers whose stored record already equals the line are skipped (no new
//! version), the rest are written.
//!
//! A running `serve` on the same storage publishes each batch once committed: its journal follower
//! ([`crate::follow`]) loads the numbers with the signatures stored here.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tincan_enum_core::{E164, MasterKey, NumberRecord};

use crate::api::{ApiError, RawService, ZoneWriter, canonical_number, validate_services};
use crate::change::{self, ChangeError};
use crate::dns::{SignedEntry, Zone, ZoneError};
use crate::storage::{Provider, ProviderId, Storage, StorageError};

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Numbers per transaction.
    pub batch: usize,
    /// How often progress is reported.
    pub progress_every: Duration,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { batch: 1000, progress_every: Duration::from_secs(2) }
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Numbers in the file.
    pub numbers: u64,
    /// Newly registered.
    pub added: u64,
    /// Already registered with other records, now replaced.
    pub changed: u64,
    /// Already registered exactly so (skipped).
    pub unchanged: u64,
}

/// Why an import failed. Validation errors ([`ImportError::Line`], [`ImportError::Duplicate`]) write nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No provider has this name.
    #[error("no provider named {0:?} (add it with `tincan-directory provider add`)")]
    UnknownProvider(String),
    /// A line is invalid; the reason carries the registrar API's error code.
    #[error("line {line}: {reason} ({code})", code = error_code(reason))]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong, as the API would answer.
        reason: ApiError,
    },
    /// A number appears twice.
    #[error("line {line}: {number} already appears on line {first}")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The line it first appeared on.
        first: usize,
        /// The number.
        number: String,
    },
    /// A number was taken by another provider while the import ran; batches before it are committed.
    #[error("line {line}: the number was registered by another provider during the import")]
    Raced {
        /// 1-based line number.
        line: usize,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Storing or signing failed.
    #[error(transparent)]
    Change(#[from] ChangeError),
}

fn error_code(e: &ApiError) -> String {
    serde_json::to_value(e.code()).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// One line of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    e164: String,
    services: Vec<RawService>,
    #[serde(default)]
    ed25519: Option<String>,
}

/// A validated line.
struct Item {
    line: usize,
    number: E164,
    services: Vec<tincan_enum_core::Service>,
    key: Option<MasterKey>,
}

/// Imports `file` for the provider named `provider`, signing with `zone`'s keys. Progress goes to `progress`
/// (stderr in the binary).
pub async fn import(
    storage: &dyn Storage,
    zone: Arc<Zone>,
    provider: &str,
    file: &Path,
    options: &ImportOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let provider = {
        let mut tx = storage.begin().await?;
        tx.providers().by_name(provider).await?.ok_or_else(|| ImportError::UnknownProvider(provider.to_owned()))?
    };
    let taken = held_by_others(storage, provider.id).await?;
    let items = validate(file, &provider, &taken, options, progress)?;
    drop(taken);
    progress(&format!("validated {} numbers in {:.1} s; writing", items.len(), started.elapsed().as_secs_f64()));

    let mut summary = ImportSummary { numbers: items.len() as u64, ..ImportSummary::default() };
    let written = Instant::now();
    let mut last = Instant::now();
    for (i, batch) in items.chunks(options.batch.max(1)).enumerate() {
        write_batch(storage, &zone, provider.id, batch, &mut summary).await?;
        let done = (i * options.batch.max(1) + batch.len()) as u64;
        if last.elapsed() >= options.progress_every {
            last = Instant::now();
            let rate = done as f64 / written.elapsed().as_secs_f64().max(1e-3);
            progress(&format!(
                "written {done}/{} (added {}, changed {}, unchanged {}), {rate:.0}/s",
                summary.numbers, summary.added, summary.changed, summary.unchanged
            ));
        }
    }
    Ok(summary)
}

/// Numbers held by providers other than `me`.
async fn held_by_others(storage: &dyn Storage, me: ProviderId) -> Result<std::collections::HashSet<u64>, ImportError> {
    let mut taken = std::collections::HashSet::new();
    let mut tx = storage.begin().await?;
    tx.numbers()
        .scan(&mut |row| {
            if row.provider != me
                && let Some(k) = crate::dns::zone::stored_key(row.e164)
            {
                taken.insert(k);
            }
            Ok(())
        })
        .await?;
    Ok(taken)
}

fn validate(
    file: &Path,
    provider: &Provider,
    taken: &std::collections::HashSet<u64>,
    options: &ImportOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Item>, ImportError> {
    let read_err = |source| ImportError::Read { path: file.to_owned(), source };
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(read_err)?);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut items = Vec::new();
    let mut last = Instant::now();
    for (i, text) in reader.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(read_err)?;
        if text.trim().is_empty() {
            continue;
        }
        let bad = |reason| ImportError::Line { line, reason };
        let parsed: Line = serde_json::from_str(&text).map_err(|e| bad(ApiError::InvalidJson(e.to_string())))?;
        let number = canonical_number(&parsed.e164).map_err(bad)?;
        let services = validate_services(parsed.services).map_err(bad)?;
        let key = parsed.ed25519.as_deref().map(MasterKey::from_base64).transpose().map_err(|e| bad(e.into()))?;
        if !provider.serves(&number) {
            return Err(bad(ApiError::OutsidePrefixes { number: number.to_string() }));
        }
        let k = crate::dns::zone::stored_key(number.as_str()).expect("an E.164 number has 1 to 15 digits");
        if taken.contains(&k) {
            return Err(bad(ApiError::HeldByOther));
        }
        if let Some(&first) = seen.get(&k) {
            return Err(ImportError::Duplicate { line, first, number: number.to_string() });
        }
        seen.insert(k, line);
        items.push(Item { line, number, services, key });
        if last.elapsed() >= options.progress_every {
            last = Instant::now();
            progress(&format!("validated {} lines", line));
        }
    }
    Ok(items)
}

/// Writes one batch in one transaction: unchanged numbers are skipped, the rest signed (on every core) and
/// stored through the change path.
async fn write_batch(
    storage: &dyn Storage,
    zone: &Arc<Zone>,
    provider: ProviderId,
    batch: &[Item],
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    let mut tx = storage.begin().await?;
    let mut pending = Vec::with_capacity(batch.len());
    let (mut added, mut changed, mut unchanged) = (0, 0, 0);
    for item in batch {
        let existing = tx.numbers().get(&item.number).await?;
        let old_key = match &existing {
            Some(e) if e.provider != provider => return Err(ImportError::Raced { line: item.line }),
            Some(e) => e.record.key,
            None => None,
        };
        let record =
            NumberRecord { number: item.number.clone(), services: item.services.clone(), key: item.key.or(old_key) };
        match existing {
            Some(e) if e.record == record => unchanged += 1,
            Some(_) => {
                changed += 1;
                pending.push(record);
            }
            None => {
                added += 1;
                pending.push(record);
            }
        }
    }
    let zone = zone.clone();
    let (pending, signed) = tokio::task::spawn_blocking(move || {
        let signed = sign_all(&zone, &pending);
        (pending, signed)
    })
    .await
    .expect("the signing task does not panic");
    for (record, signed) in pending.iter().zip(signed?) {
        // Published by the server at its next start (it loads the signed records from storage).
        let _stored = change::put_signed(&mut *tx, record, provider, signed).await?;
    }
    tx.commit().await?;
    summary.added += added;
    summary.changed += changed;
    summary.unchanged += unchanged;
    Ok(())
}

/// Signs `records` on every available core.
fn sign_all(zone: &Zone, records: &[NumberRecord]) -> Result<Vec<Option<SignedEntry>>, ChangeError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(records.len().max(1));
    let chunk = records.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Option<SignedEntry>>, ZoneError>> = std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|r| ZoneWriter::sign(zone, r)).collect()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a signing thread does not panic")).collect()
    });
    let mut out = Vec::with_capacity(records.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}
