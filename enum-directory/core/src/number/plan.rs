//! libphonenumber's metadata for every parse in this crate: the `phonenumber` crate's own bundled copy and its
//! own parsing and validation code, run so that the cost per number does not depend on the mix of countries or
//! on how many threads parse at once.
//!
//! Why this exists: `phonenumber` 0.3 compiles metadata patterns lazily into one 100-entry LRU cache behind one
//! global `Mutex` (`metadata/database.rs`), and a regular expression is matched while that lock is held. The
//! metadata holds about 2,100 distinct patterns, so numbers of interleaved countries evict each other's
//! patterns and nearly every parse recompiles some (1.6–4 ms a number instead of ~20 µs), and threads take
//! turns on the lock. The crate does not let a caller choose the cache size, but its `Database` can be built
//! from loader records and its cache can be resized, so:
//!
//! - [`with`] lends a private [`Database`] from a pool (one per concurrent parse, so no two threads share a
//!   lock), rebuilt once from the crate's bundled metadata, whose cache never evicts;
//! - the patterns a country code uses when a number is parsed and validated are compiled once for the whole
//!   process (the largest are tens of kilobytes of alternations; all of them compiled take ~150 MB) and the
//!   compiled program is shared by every pooled database (a `Regex` clone shares it and keeps its own search
//!   cache), so a new database costs no compilation.
//!
//! The parse and validation logic stays the crate's (`parse_with`, `is_valid_with`, `number_type`): only where
//! compiled patterns are kept changes, so verdicts are the crate's. `number::verdicts` checks that against the
//! crate's default path. Alternatives measured (issue #23, `bench/numbers/RESULTS.md`): a thread-local
//! database per thread (as fast single-threaded, but every new thread recompiles what it uses: Tokio's blocking
//! threads come and go), and `rlibphonenumber` 2.2 (about 10× faster, but it ships newer metadata and follows
//! libphonenumber's C++ rules where this crate differs: 841 of 67,794 corpus numbers got another verdict).

use std::sync::{Condvar, LazyLock, Mutex, OnceLock, PoisonError};

use phonenumber::metadata::{DATABASE, Database, Descriptor, Format, Metadata, loader};
use regex::{Regex, RegexBuilder};

/// The highest ITU country calling code.
const MAX_CODE: usize = 999;

/// The bundled metadata as loader records, in the order the crate's database holds them per country code (the
/// order decides which region of a shared code is tried first).
static RECORDS: LazyLock<Vec<loader::Metadata>> =
    LazyLock::new(|| (1..=MAX_CODE as u16).filter_map(|code| DATABASE.by_code(&code)).flatten().map(record).collect());

/// One country code's compiled patterns (see [`patterns`]), compiled on first use.
type Compiled = OnceLock<Box<[Regex]>>;

/// Per country code, its compiled patterns.
static COMPILED: LazyLock<Box<[Compiled]>> = LazyLock::new(|| (0..=MAX_CODE).map(|_| OnceLock::new()).collect());

/// Databases not lent out, and how many exist.
static POOL: Pool = Pool { state: Mutex::new(PoolState { free: Vec::new(), made: 0 }), returned: Condvar::new() };

struct Pool {
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    free: Vec<Slot>,
    made: usize,
}

/// A private database and which country codes' shared patterns its cache already holds.
struct Slot {
    db: Database,
    seeded: Box<[bool]>,
}

/// At most this many databases exist at once (each is about 3 MB before use); a parse beyond waits for one.
fn pool_cap() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from).saturating_mul(4).max(8)
}

/// Runs `f` with a database no other thread is using. `code` is the country calling code the input is for, when
/// known: that code's patterns are then already compiled in the database's cache.
pub(crate) fn with<T>(code: Option<u16>, f: impl FnOnce(&Database) -> T) -> T {
    // Handed back on drop, even when `f` panics, so the pool does not shrink.
    let mut lent = Lent(Some(take()));
    let slot = lent.0.as_mut().expect("lent until dropped");
    if let Some(code) = code.map(usize::from).filter(|&c| c <= MAX_CODE)
        && !slot.seeded[code]
    {
        let cache = slot.db.cache();
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        for re in compiled(code) {
            cache.save(re.clone());
        }
        slot.seeded[code] = true;
    }
    f(&slot.db)
}

/// The country calling code `digits` (an international number without its `+`) starts with, if any: codes are
/// prefix-free, so at most one of its first one to three digits is a code.
pub(crate) fn country_code(digits: &str) -> Option<u16> {
    (1..=3.min(digits.len()))
        .filter_map(|n| digits[..n].parse::<u16>().ok())
        .find(|code| DATABASE.region(code).is_some())
}

/// The country calling code of an ISO 3166 region (`GB` → 44).
pub(crate) fn region_code(region: &str) -> Option<u16> {
    DATABASE.by_id(region).map(Metadata::country_code)
}

struct Lent(Option<Slot>);

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            POOL.state.lock().unwrap_or_else(PoisonError::into_inner).free.push(slot);
            POOL.returned.notify_one();
        }
    }
}

fn take() -> Slot {
    let mut state = POOL.state.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some(slot) = state.free.pop() {
            return slot;
        }
        if state.made < pool_cap() {
            state.made += 1;
            drop(state);
            return new_slot();
        }
        state = POOL.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
    }
}

fn new_slot() -> Slot {
    let db = Database::from(RECORDS.clone()).expect("the bundled metadata loaded once already");
    // Never evict: the cache then holds at most every pattern of the metadata, compiled once.
    db.cache().lock().unwrap_or_else(PoisonError::into_inner).set_capacity(usize::MAX);
    Slot { db, seeded: vec![false; MAX_CODE + 1].into_boxed_slice() }
}

/// The compiled patterns of one country code, shared by every pooled database.
fn compiled(code: usize) -> &'static [Regex] {
    COMPILED[code].get_or_init(|| {
        let code = code as u16;
        let sources = DATABASE.by_code(&code).unwrap_or_default().into_iter().flat_map(patterns);
        // Built as `regex_cache::CachedRegexBuilder` builds them for `phonenumber` (its defaults plus
        // `ignore_whitespace`), so a pattern saved under its source is the one the crate would have compiled. One
        // that fails is left for the crate to compile (and report) as it always did.
        sources
            .filter_map(|source| {
                RegexBuilder::new(source)
                    .ignore_whitespace(true)
                    .case_insensitive(false)
                    .multi_line(false)
                    .dot_matches_new_line(false)
                    .swap_greed(false)
                    .unicode(true)
                    .size_limit(10 * (1 << 20))
                    .dfa_size_limit(2 * (1 << 20))
                    .build()
                    .ok()
            })
            .collect()
    })
}

/// The patterns parsing and validating a number of `meta`'s country reads: every number-type pattern, the
/// region's leading digits, national prefix for parsing and international prefix. (Formatting patterns are not
/// needed for E.164 output; a pattern left out here is compiled by the crate on first use, as before.)
fn patterns(meta: &Metadata) -> impl Iterator<Item = &str> {
    let d = meta.descriptors();
    let types = [
        Some(d.general()),
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.emergency(),
        d.voicemail(),
        d.short_code(),
        d.standard_rate(),
        d.carrier(),
        d.no_international(),
    ];
    let region = [meta.leading_digits(), meta.national_prefix_for_parsing(), meta.international_prefix()];
    types
        .into_iter()
        .flatten()
        .map(|d| d.national_number().as_str())
        .chain(region.into_iter().flatten().map(|r| r.as_str()))
}

/// `meta` back as the loader record it was built from.
fn record(meta: &Metadata) -> loader::Metadata {
    let d = meta.descriptors();
    loader::Metadata {
        general: Some(descriptor(d.general())),
        fixed_line: d.fixed_line().map(descriptor),
        mobile: d.mobile().map(descriptor),
        toll_free: d.toll_free().map(descriptor),
        premium_rate: d.premium_rate().map(descriptor),
        shared_cost: d.shared_cost().map(descriptor),
        personal_number: d.personal_number().map(descriptor),
        voip: d.voip().map(descriptor),
        pager: d.pager().map(descriptor),
        uan: d.uan().map(descriptor),
        emergency: d.emergency().map(descriptor),
        voicemail: d.voicemail().map(descriptor),
        short_code: d.short_code().map(descriptor),
        standard_rate: d.standard_rate().map(descriptor),
        carrier: d.carrier().map(descriptor),
        no_international: d.no_international().map(descriptor),
        id: Some(meta.id().to_owned()),
        country_code: Some(meta.country_code()),
        international_prefix: meta.international_prefix().map(|r| r.as_str().to_owned()),
        preferred_international_prefix: meta.preferred_international_prefix().map(str::to_owned),
        national_prefix: meta.national_prefix().map(str::to_owned),
        preferred_extension_prefix: meta.preferred_extension_prefix().map(str::to_owned),
        national_prefix_for_parsing: meta.national_prefix_for_parsing().map(|r| r.as_str().to_owned()),
        national_prefix_transform_rule: meta.national_prefix_transform_rule().map(str::to_owned),
        formats: meta.formats().iter().map(format).collect(),
        international_formats: meta.international_formats().iter().map(format).collect(),
        main_country_for_code: meta.is_main_country_for_code(),
        leading_digits: meta.leading_digits().map(|r| r.as_str().to_owned()),
        mobile_number_portable: meta.is_mobile_number_portable(),
        defaults: loader::Defaults::default(),
    }
}

fn descriptor(d: &Descriptor) -> loader::Descriptor {
    loader::Descriptor {
        national_number: Some(d.national_number().as_str().to_owned()),
        possible_length: d.possible_length().to_vec(),
        possible_local_length: d.possible_local_length().to_vec(),
        example: d.example().map(str::to_owned),
    }
}

fn format(f: &Format) -> loader::Format {
    loader::Format {
        pattern: Some(f.pattern().as_str().to_owned()),
        format: Some(f.format().to_owned()),
        leading_digits: f.leading_digits().iter().map(|r| r.as_str().to_owned()).collect(),
        national_prefix_formatting_rule: f.national_prefix().map(str::to_owned),
        national_prefix_optional_when_formatting: f.is_national_prefix_optional(),
        domestic_carrier: f.domestic_carrier().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn records_rebuild_the_bundled_database() {
        let db = Database::from(RECORDS.clone()).unwrap();
        for code in 1..=MAX_CODE as u16 {
            assert_eq!(db.region(&code), DATABASE.region(&code), "regions of {code} in the same order");
        }
        assert_eq!(RECORDS.len(), (1..=MAX_CODE as u16).filter_map(|c| DATABASE.by_code(&c)).flatten().count());
    }

    #[test]
    fn country_codes_are_read_from_the_first_digits() {
        assert_eq!(country_code("442079460001"), Some(44));
        assert_eq!(country_code("12025550143"), Some(1));
        assert_eq!(country_code("3906"), Some(39));
        assert_eq!(country_code("80012345678"), Some(800));
        assert_eq!(country_code("999123"), None);
        assert_eq!(country_code(""), None);
        assert_eq!(region_code("GB"), Some(44));
        assert_eq!(region_code("XX"), None);
    }

    #[test]
    fn a_seeded_database_compiles_nothing_more_for_its_code() {
        with(Some(44), |db| {
            let before = db.cache().lock().unwrap().len();
            assert!(!compiled(44).is_empty());
            for re in compiled(44) {
                assert!(db.cache().lock().unwrap().contains_key(re.as_str()), "seeded with {}", re.as_str());
            }
            let n = phonenumber::parse_with(db, None, "+442079460001").unwrap();
            assert!(phonenumber::is_valid_with(db, &n));
            let _ = n.number_type(db);
            assert_eq!(db.cache().lock().unwrap().len(), before, "parse and validate used only seeded patterns");
        });
    }

    #[test]
    fn concurrent_parses_never_share_a_database() {
        let barrier = std::sync::Barrier::new(4);
        let caches: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        with(Some(49), |db| {
                            barrier.wait();
                            Arc::as_ptr(&db.cache()) as usize
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut distinct = caches.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), caches.len(), "four parses at once held four databases");
    }
}
