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
//!   cache), so a new database costs no compilation;
//! - the pooled databases hold the patterns without the whitespace the metadata lays them out with (72 % of its
//!   pattern text; they are compiled with `ignore_whitespace`, so it means nothing): the crate hashes a pattern's
//!   whole source on every use to find it in its cache;
//! - a pattern the crate only asks "does it match at the start of the input" of (`find`, then `start() == 0`:
//!   every number-type pattern and a region's leading digits) is compiled anchored at the start, saved under its
//!   own source. The answer is the same (a match starting at 0 exists or not), but an unanchored search of a large
//!   alternation builds a lazy DFA over every start position at once, whose states kept being built anew (a
//!   profile: ~18 % of a parse in determinisation), and that work and memory grew with every database × thread
//!   that used the pattern: 8 threads took twice the CPU per number of one (issue #23, `bench/numbers/RESULTS.md`).
//!   Patterns whose match position or groups the crate reads (national prefix for parsing, international
//!   prefix, formats) stay as they are.
//!
//! The parse and validation logic stays the crate's (`parse_with`, `is_valid_with`, `number_type`): only where and
//! how compiled patterns are kept changes, so verdicts are the crate's. `number::verdicts` checks that against the
//! crate's default path, and `pooled_databases_classify_as_the_crate_does` the number types.
//!
//! Alternatives measured (issue #23, `bench/numbers/RESULTS.md`): a thread-local database per thread (as fast
//! single-threaded, but every new thread recompiles what it uses: Tokio's blocking threads come and go),
//! `rlibphonenumber` 2.2 (about 10× faster, but it ships newer metadata and follows libphonenumber's C++ rules
//! where this crate differs: 841 of 67,794 corpus numbers got another verdict), and for the 8-thread cost a
//! database per CPU or per thread and a pool capped at the cores (on a loaded machine each still took more CPU a
//! number on 8 threads than on one; with anchored patterns the two are the same).

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
type Compiled = OnceLock<Box<[(Box<str>, Regex)]>>;

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
        for (source, re) in compiled(code) {
            // Under its source: the key the crate looks it up by (an anchored pattern's own text is longer).
            cache.insert(source.to_string(), re.clone());
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

/// The compiled patterns of one country code, shared by every pooled database: each under the source the
/// crate looks it up by.
fn compiled(code: usize) -> &'static [(Box<str>, Regex)] {
    COMPILED[code].get_or_init(|| {
        let code = code as u16;
        let metas = SOURCES.by_code(&code).unwrap_or_default();
        // Built as `regex_cache::CachedRegexBuilder` builds them for `phonenumber` (its defaults plus
        // `ignore_whitespace`), so a pattern saved under its source is the one the crate would have compiled. One
        // that fails is left for the crate to compile (and report) as it always did.
        metas
            .iter()
            .flat_map(|meta| patterns(meta))
            .filter_map(|(source, at_start)| {
                let anchored = at_start && !POSITIONAL.contains(source);
                let pattern = if anchored { format!("\\A(?:{source})") } else { source.to_owned() };
                RegexBuilder::new(&pattern)
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
                    .map(|re| (source.into(), re))
            })
            .collect()
    })
}

/// The metadata as the pooled databases hold it, to read pattern sources from.
static SOURCES: LazyLock<Database> =
    LazyLock::new(|| Database::from(RECORDS.clone()).expect("the bundled metadata loaded once already"));

/// Sources the crate reads a match position or groups of (national prefix for parsing, international prefix,
/// formats): never compiled anchored, whatever other role the same text also has.
static POSITIONAL: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
    let mut set = std::collections::HashSet::new();
    for r in RECORDS.iter() {
        set.extend(r.national_prefix_for_parsing.iter().cloned());
        set.extend(r.international_prefix.iter().cloned());
        for f in r.formats.iter().chain(&r.international_formats) {
            set.extend(f.pattern.iter().cloned());
            set.extend(f.leading_digits.iter().cloned());
        }
    }
    set
});

/// The patterns parsing and validating a number of `meta`'s country reads, each with whether the crate only asks
/// of it whether it matches at the start of the input: every number-type pattern and the region's leading digits
/// (yes), its national prefix for parsing and international prefix (no). (Formatting patterns are not needed for
/// E.164 output; a pattern left out here is compiled by the crate on first use, as before.)
fn patterns(meta: &Metadata) -> impl Iterator<Item = (&str, bool)> {
    let start = meta.leading_digits().map(|r| (r.as_str(), true));
    let region = [meta.national_prefix_for_parsing(), meta.international_prefix()];
    descriptors(meta)
        .map(|d| (d.national_number().as_str(), true))
        .chain(start)
        .chain(region.into_iter().flatten().map(|r| (r.as_str(), false)))
}

/// Every number-type descriptor `meta` has (general description first).
pub(super) fn descriptors(meta: &Metadata) -> impl Iterator<Item = &Descriptor> {
    let d = meta.descriptors();
    [
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
    ]
    .into_iter()
    .flatten()
}

/// A regular expression source without its whitespace, when that is what it means with `ignore_whitespace`
/// (whitespace that is not escaped, not in a class, and no `#` comment); otherwise as it is.
fn compact(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let (mut escaped, mut class) = (false, 0usize);
    for c in source.chars() {
        if c == '#' || (c.is_whitespace() && (escaped || class > 0)) {
            return source.to_owned();
        }
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' => class += 1,
            ']' => class = class.saturating_sub(1),
            _ => {}
        }
        if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
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
        international_prefix: meta.international_prefix().map(|r| compact(r.as_str())),
        preferred_international_prefix: meta.preferred_international_prefix().map(str::to_owned),
        national_prefix: meta.national_prefix().map(str::to_owned),
        preferred_extension_prefix: meta.preferred_extension_prefix().map(str::to_owned),
        national_prefix_for_parsing: meta.national_prefix_for_parsing().map(|r| compact(r.as_str())),
        national_prefix_transform_rule: meta.national_prefix_transform_rule().map(str::to_owned),
        formats: meta.formats().iter().map(format).collect(),
        international_formats: meta.international_formats().iter().map(format).collect(),
        main_country_for_code: meta.is_main_country_for_code(),
        leading_digits: meta.leading_digits().map(|r| compact(r.as_str())),
        mobile_number_portable: meta.is_mobile_number_portable(),
        defaults: loader::Defaults::default(),
    }
}

fn descriptor(d: &Descriptor) -> loader::Descriptor {
    loader::Descriptor {
        national_number: Some(compact(d.national_number().as_str())),
        possible_length: d.possible_length().to_vec(),
        possible_local_length: d.possible_local_length().to_vec(),
        example: d.example().map(str::to_owned),
    }
}

fn format(f: &Format) -> loader::Format {
    loader::Format {
        pattern: Some(compact(f.pattern().as_str())),
        format: Some(f.format().to_owned()),
        leading_digits: f.leading_digits().iter().map(|r| compact(r.as_str())).collect(),
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
            for (source, _) in compiled(44) {
                assert!(db.cache().lock().unwrap().contains_key(&**source), "seeded with {source}");
            }
            let n = phonenumber::parse_with(db, None, "+442079460001").unwrap();
            assert!(phonenumber::is_valid_with(db, &n));
            let _ = n.number_type(db);
            assert_eq!(db.cache().lock().unwrap().len(), before, "parse and validate used only seeded patterns");
        });
    }

    #[test]
    fn compacting_drops_only_whitespace_that_means_nothing() {
        assert_eq!(compact("\n  (?:\n    1\\d{2}|\n    3[0-5]\n  )\\d{6}\n"), "(?:1\\d{2}|3[0-5])\\d{6}");
        // Escaped or in a class, whitespace is a character; after `#` it is a comment's end.
        for kept in ["1\\ 2", "[0 5]\\d", "12 # a comment\n3"] {
            assert_eq!(compact(kept), kept);
        }
        // The crate calls a number "fixed line or mobile" when the two patterns are the same text.
        for meta in RECORDS.iter() {
            let (Some(fixed), Some(mobile)) = (&meta.fixed_line, &meta.mobile) else { continue };
            let was = DATABASE.by_id(meta.id.as_deref().unwrap()).unwrap().descriptors();
            let was_same = was.fixed_line().unwrap().national_number().as_str()
                == was.mobile().unwrap().national_number().as_str();
            assert_eq!(fixed.national_number == mobile.national_number, was_same, "{:?}", meta.id);
        }
    }

    /// Every region's example numbers (with a digit added, dropped or changed, so that invalid ones and other
    /// types are read too) get the same parse, validity and number type on a pooled database (compacted patterns,
    /// those read only for a match at the start compiled anchored) as on the crate's own.
    #[test]
    fn pooled_databases_classify_as_the_crate_does() {
        let mut seen = 0;
        for meta in (1..=MAX_CODE as u16).filter_map(|c| DATABASE.by_code(&c)).flatten() {
            let code = meta.country_code();
            let examples = descriptors(meta).filter_map(Descriptor::example);
            for example in examples {
                let last = example.len() - 1;
                let changed = format!("{}{}", &example[..last], (example.as_bytes()[last] - b'0' + 5) % 10);
                for national in [example.to_owned(), format!("{example}1"), example[..last].to_owned(), changed] {
                    let s = format!("+{code}{national}");
                    let crate_says = phonenumber::parse(None, &s)
                        .map(|n| (phonenumber::is_valid(&n), n.number_type(&DATABASE), n.national().to_string()));
                    let pooled = with(Some(code), |db| {
                        phonenumber::parse_with(db, None, &s)
                            .map(|n| (phonenumber::is_valid_with(db, &n), n.number_type(db), n.national().to_string()))
                    });
                    assert_eq!(pooled.ok(), crate_says.ok(), "{s}");
                    seen += 1;
                }
            }
        }
        assert!(seen > 4000, "{seen} numbers");
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
