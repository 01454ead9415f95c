//! One signed zone in memory: the apex (SOA, NS, DNSKEY) and every number's NAPTR and TXT RRsets in wire format,
//! with their RRSIGs made when an RRset changes (before the change is stored, so they are persisted with it) and
//! kept until they near expiry. Each number is one compact [`SignedEntry`] allocation in [`Numbers`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::NAPTR;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use tincan_common::Clock;
use tincan_enum_core::{E164, NumberRecord, key_from_txt, key_txt, naptr_rdata, service_from_naptr};

use super::apex::ApexRdata;
use super::budget::SigningBudget;
use super::entry::SignedEntry;
use super::keys::{KeyError, KeyRole, ZoneKeys};
use super::negcache::NegativeCache;
use super::numbers::Numbers;
use super::sign::{Covered, Sig, pack_set, rdatas, sign_rdatas, sign_set};
use super::wire::{name_to_wire_lower, rtype};

/// Settings of one zone. Times are seconds. (No serde: hickory's `Name` has none without its `serde` feature;
/// the binary's config maps onto this.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The zone's apex, e.g. `e164.tincan.test.`.
    pub apex: Name,
    /// Name servers published in the apex NS RRset; the first is the SOA MNAME. Default `ns1.<apex>`.
    pub name_servers: Vec<Name>,
    /// SOA RNAME (the hostmaster's mailbox as a name). Default `hostmaster.<apex>`.
    pub hostmaster: Option<Name>,
    /// TTL of the NAPTR and TXT records.
    pub record_ttl: u32,
    /// TTL of SOA, NS and DNSKEY.
    pub apex_ttl: u32,
    /// SOA refresh, retry, expire.
    pub soa_refresh: u32,
    /// SOA retry.
    pub soa_retry: u32,
    /// SOA expire.
    pub soa_expire: u32,
    /// SOA minimum: the negative-answer TTL (RFC 2308), also the TTL of the compact-denial NSEC.
    pub negative_ttl: u32,
    /// How long a signature is valid (from its inception).
    pub signature_validity: u32,
    /// Re-sign when less than this remains of a signature's validity.
    pub signature_refresh: u32,
    /// Inception is backdated this much, for validators with slow clocks.
    pub inception_skew: u32,
    /// Validity of the online-signed NSEC of negative answers.
    pub negative_signature_validity: u32,
    /// How many compact-denial NSEC signatures are cached (0: sign every negative answer).
    pub negative_cache_entries: usize,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig {
            apex: Name::from_ascii("e164.tincan.test.").expect("a valid name"),
            name_servers: Vec::new(),
            hostmaster: None,
            record_ttl: 300,
            apex_ttl: 3600,
            soa_refresh: 3600,
            soa_retry: 600,
            soa_expire: 1_209_600,
            negative_ttl: 300,
            signature_validity: 14 * 86_400,
            signature_refresh: 7 * 86_400,
            inception_skew: 3600,
            negative_signature_validity: 86_400,
            negative_cache_entries: 100_000,
        }
    }
}

/// Why a zone cannot be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The apex is not fully qualified, is the root, or is too long to hold 15 more labels.
    #[error("the apex must be a fully qualified name below the root with room for 15 more labels")]
    BadApex,
    /// A key failed to sign.
    #[error("signing failed: {0}")]
    Sign(#[from] KeyError),
    /// signature_refresh must be shorter than signature_validity.
    #[error("signature_refresh must be shorter than signature_validity")]
    BadTimers,
    /// A denial needed a fresh signature and the global signing budget was spent (UDP only).
    #[error("the signing budget is spent")]
    OverBudget,
}

/// An apex RRset and its signatures.
#[derive(Debug, Clone)]
pub(crate) struct ApexSet {
    pub rdata: Box<[u8]>,
    pub sigs: Vec<Sig>,
}

/// The apex, replaced whole when the serial changes or its signatures are refreshed.
#[derive(Debug)]
pub(crate) struct Apex {
    pub serial: u32,
    pub soa: ApexSet,
    pub ns: ApexSet,
    pub dnskey: ApexSet,
}

/// Digits packed one per nibble (digit + 1, zero-terminated) into a u64 whose order is the digit strings' order,
/// so every number below a partial number is one range.
pub(crate) fn pack_digits(digits: impl IntoIterator<Item = u8>) -> Option<(u64, usize)> {
    let mut key = 0u64;
    let mut n = 0;
    for d in digits {
        if n == 15 || d > 9 {
            return None;
        }
        key |= u64::from(d + 1) << (60 - 4 * n);
        n += 1;
    }
    Some((key, n))
}

fn unpack_digits(key: u64) -> Vec<u8> {
    (0..15).map(|i| ((key >> (60 - 4 * i)) & 0xF) as u8).take_while(|&n| n != 0).map(|n| n - 1).collect()
}

/// One authoritative zone. Numbers live in a sharded map whose writers hold a shard only for one insert, the apex
/// behind an `ArcSwap`; writers serialise among themselves.
pub struct Zone {
    config: ZoneConfig,
    apex_wire: Vec<u8>,
    apex_labels: u8,
    keys: ArcSwap<ZoneKeys>,
    /// The ZSK's algorithm number (bits 16..24) and key tag (bits 0..16), as [`Zone::keys`] has them: what the
    /// answer path needs of the keys for every query, without loading them.
    zsk_id: AtomicU32,
    clock: Arc<dyn Clock>,
    numbers: Numbers,
    apex: ArcSwap<Apex>,
    negatives: NegativeCache,
    write: Mutex<()>,
    refreshed: OnceLock<Box<dyn RefreshedSink>>,
}

/// Where a zone hands the entries whose signatures it re-made (so they can be persisted).
pub trait RefreshedSink: Send + Sync + 'static {
    /// `entry` is the newly signed form of `number`. `may_wait`: the caller is the background refresher (off
    /// the query threads), which may wait for room; a query re-signing on the way must not.
    fn refreshed(&self, number: E164, entry: SignedEntry, may_wait: bool);
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone").field("apex", &self.config.apex).field("numbers", &self.numbers.len()).finish()
    }
}

impl Zone {
    /// An empty zone with serial `serial` (persist it and pass the last one back after a restart; SOA serials
    /// must not go backwards). Signs the apex.
    pub fn new(config: ZoneConfig, keys: Arc<ZoneKeys>, clock: Arc<dyn Clock>, serial: u32) -> Result<Zone, ZoneError> {
        if !config.apex.is_fqdn() || config.apex.is_root() || config.apex.len() > 255 - 30 {
            return Err(ZoneError::BadApex);
        }
        if config.signature_refresh >= config.signature_validity {
            return Err(ZoneError::BadTimers);
        }
        let apex_wire = name_to_wire_lower(&config.apex);
        let apex_labels = config.apex.num_labels();
        let placeholder = Apex {
            serial,
            soa: ApexSet { rdata: Box::new([]), sigs: vec![] },
            ns: ApexSet { rdata: Box::new([]), sigs: vec![] },
            dnskey: ApexSet { rdata: Box::new([]), sigs: vec![] },
        };
        let negatives = NegativeCache::new(config.negative_cache_entries);
        let zone = Zone {
            config,
            apex_wire,
            apex_labels,
            zsk_id: AtomicU32::new(zsk_id(&keys)),
            keys: ArcSwap::new(keys),
            clock,
            numbers: Numbers::new(),
            apex: ArcSwap::from_pointee(placeholder),
            negatives,
            write: Mutex::new(()),
            refreshed: OnceLock::new(),
        };
        zone.apex.store(Arc::new(zone.build_apex(serial)?));
        Ok(zone)
    }

    /// Hands every entry whose signatures are re-made from now on (by [`Zone::refresh`] or by a query finding
    /// them stale) to `sink`. Only the first sink set is used.
    pub fn set_refreshed_sink(&self, sink: Box<dyn RefreshedSink>) {
        let _ = self.refreshed.set(sink);
    }

    /// The zone's settings.
    pub fn config(&self) -> &ZoneConfig {
        &self.config
    }

    /// The apex.
    pub fn apex_name(&self) -> &Name {
        &self.config.apex
    }

    /// The signing keys.
    pub fn keys(&self) -> Arc<ZoneKeys> {
        self.keys.load_full()
    }

    /// Replaces the keys (a rollover step): the apex is re-signed and its serial bumped now; every number's
    /// signatures made by another ZSK count as stale, so they are re-made before they are next answered and by
    /// the background refresher ([`Zone::refresh`]).
    pub fn set_keys(&self, keys: Arc<ZoneKeys>) -> Result<(), ZoneError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let id = zsk_id(&keys);
        self.keys.store(keys);
        self.zsk_id.store(id, Ordering::Release);
        self.bump_serial()
    }

    /// The current SOA serial.
    pub fn serial(&self) -> u32 {
        self.apex.load().serial
    }

    /// How many numbers the zone holds.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Whether the zone holds no number.
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// Adds or replaces a number's records, signs them and bumps the serial. A record with no service and no key
    /// removes the number.
    pub fn upsert(&self, record: &NumberRecord) -> Result<(), ZoneError> {
        let entry = self.sign_record(record)?;
        self.install(&record.number, entry)
    }

    /// The signed form of `record` (`None`: it publishes nothing), made before the change is stored so the
    /// signatures are persisted with it ([`SignedEntry::as_bytes`]) and a restart never re-signs. Publish it with
    /// [`Zone::install`] once the change is committed.
    pub fn sign_record(&self, record: &NumberRecord) -> Result<Option<SignedEntry>, ZoneError> {
        let key = number_key(&record.number);
        self.entry_for(record).map(|e| self.sign_entry(key, e)).transpose()
    }

    /// Publishes a number's signed records (from [`Zone::sign_record`]; `None` removes the number): one
    /// [`Zone::install_many`] of one change.
    pub fn install(&self, number: &E164, entry: Option<SignedEntry>) -> Result<(), ZoneError> {
        self.install_many(vec![(number.clone(), entry)]).map(drop)
    }

    /// Publishes many numbers' signed records at once (`None` removes the number): one serial bump if anything
    /// changed. Returns how many numbers changed.
    pub fn install_many(&self, changes: Vec<(E164, Option<SignedEntry>)>) -> Result<usize, ZoneError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for (number, entry) in changes {
            let key = number_key(&number);
            let changed = match entry {
                Some(e) => {
                    self.numbers.insert(key, e);
                    true
                }
                None => self.numbers.remove(key),
            };
            if changed {
                self.forget_denials(key);
                n += 1;
            }
        }
        if n > 0 {
            self.bump_serial()?;
        }
        Ok(n)
    }

    /// What to publish for `number` given its current stored state (`None`: not registered; else its record
    /// and stored signed form), or `None` when the zone already publishes exactly those records (so applying
    /// a change twice does nothing). The stored signatures are used when they fit the zone's keys and TTL and
    /// are not near expiry; missing or stale ones are made here. `Some(None)` removes the number.
    pub fn prepare(
        &self,
        number: &E164,
        stored: Option<(&NumberRecord, Option<&[u8]>)>,
    ) -> Result<Option<Option<SignedEntry>>, ZoneError> {
        let key = number_key(number);
        let want = stored.and_then(|(record, _)| self.entry_for(record));
        let unchanged = match &want {
            None => self.numbers.with(key, |_| ()).is_none(),
            Some(w) => self.numbers.with(key, |c| c.same_records(w)).unwrap_or(false),
        };
        if unchanged {
            return Ok(None);
        }
        let Some(want) = want else { return Ok(Some(None)) };
        let entry = stored
            .and_then(|(_, bytes)| bytes)
            .and_then(|b| self.stored_entry(b))
            .filter(|e| e.same_records(&want))
            .unwrap_or(want);
        let entry = if self.entry_stale(&entry) { self.sign_entry(key, entry)? } else { entry };
        Ok(Some(Some(entry)))
    }

    /// Whether `entry` publishes exactly the records of `record` (whatever its signatures).
    pub fn publishes(&self, record: &NumberRecord, entry: &SignedEntry) -> bool {
        self.entry_for(record).is_some_and(|w| w.same_records(entry))
    }

    /// Loads many records at once, unsigned (for records stored without signatures): one serial bump,
    /// signatures made lazily on first query or by [`Zone::refresh`].
    pub fn load<'a>(&self, records: impl IntoIterator<Item = &'a NumberRecord>) -> Result<usize, ZoneError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for record in records {
            if let Some(entry) = self.entry_for(record) {
                self.numbers.insert(number_key(&record.number), entry);
                n += 1;
            }
        }
        self.bump_serial()?;
        Ok(n)
    }

    /// Loads one number as persisted (`e164` as stored, `+` and digits; `stored` from
    /// [`SignedEntry::as_bytes`]) without signing. Signatures that no longer fit the zone (another key, TTL or
    /// algorithm) are dropped, to be re-made lazily. Returns `None` when the bytes are unusable (the caller then
    /// loads the record with [`Zone::load`]), else whether the signatures were kept. Call
    /// [`Zone::finish_load`] after the last one.
    pub fn load_stored(&self, e164: &str, stored: &[u8]) -> Option<bool> {
        let key = stored_key(e164)?;
        let entry = self.stored_entry(stored)?;
        let kept = entry.earliest_expiration().is_some();
        self.numbers.insert(key, entry);
        Some(kept)
    }

    /// A stored signed form read back for this zone: its signatures kept when they are the zone's ZSK's and
    /// TTL's (see [`SignedEntry::from_stored`]).
    fn stored_entry(&self, stored: &[u8]) -> Option<SignedEntry> {
        let keys = self.keys.load();
        let zsk = keys.zsk();
        SignedEntry::from_stored(stored, zsk.algorithm().number(), self.config.record_ttl, zsk.key_tag())
    }

    /// Ends a start-up load ([`Zone::load_stored`]): bumps the serial once.
    pub fn finish_load(&self) -> Result<(), ZoneError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        self.bump_serial()
    }

    /// Removes a number; bumps the serial when it was there.
    pub fn remove(&self, number: &E164) -> Result<bool, ZoneError> {
        Ok(self.install_many(vec![(number.clone(), None)])? > 0)
    }

    /// How many negative-answer signatures are cached.
    pub fn cached_denials(&self) -> usize {
        self.negatives.len()
    }

    /// What the zone publishes for `number`, read back from its wire-format records.
    pub fn get(&self, number: &E164) -> Option<NumberRecord> {
        self.numbers.with(number_key(number), |e| Zone::record_of(number, e))
    }

    /// What `e` publishes for `number`, read back from its wire-format records.
    fn record_of(number: &E164, e: &SignedEntry) -> NumberRecord {
        let mut naptrs: Vec<NAPTR> = e
            .naptr()
            .into_iter()
            .flat_map(|(set, _)| rdatas(set))
            .filter_map(|rd| NAPTR::read(&mut BinDecoder::new(rd)).ok())
            .collect();
        // NAPTRs are stored in canonical order; publishing order is the preference.
        naptrs.sort_by_key(|n| n.preference);
        let services = naptrs.iter().filter_map(service_from_naptr).collect();
        let key = e.txt().and_then(|(set, _)| rdatas(set).next()).and_then(|rd| key_from_txt(&parse_txt(rd)));
        NumberRecord { number: number.clone(), services, key }
    }

    /// Re-signs every RRset whose signature is missing or within `signature_refresh` of expiring, and the apex.
    /// Returns how many RRsets were signed. Run periodically (the server does).
    pub fn refresh(&self) -> Result<usize, ZoneError> {
        let mut signed = 0;
        if self.apex_stale(&self.apex.load()) {
            let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
            let serial = self.apex.load().serial;
            self.apex.store(Arc::new(self.build_apex(serial)?));
            signed += 3;
        }
        for key in self.numbers.keys_where(|e| self.entry_stale(e)) {
            self.fresh(key, true)?;
            signed += 1;
        }
        Ok(signed)
    }

    /// The apex with fresh signatures (re-signed here if the refresher has not run yet).
    pub(crate) fn apex(&self) -> Result<Arc<Apex>, ZoneError> {
        let apex = self.apex.load_full();
        if !self.apex_stale(&apex) {
            return Ok(apex);
        }
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.apex.load_full();
        if !self.apex_stale(&current) {
            return Ok(current);
        }
        let fresh = Arc::new(self.build_apex(current.serial)?);
        self.apex.store(fresh.clone());
        Ok(fresh)
    }

    /// `f` of the entry of number `key` with fresh signatures (re-made first if they are stale), under its
    /// shard's read lock; `None` if the number does not exist. The answer path: one probe of the map when the
    /// signatures are fresh, and nothing of the keys loaded.
    pub(crate) fn with_number<R>(&self, key: u64, f: impl FnOnce(&SignedEntry) -> R) -> Result<Option<R>, ZoneError> {
        let mut f = Some(f);
        let first = self.numbers.with(key, |e| if self.entry_stale(e) { None } else { f.take().map(|f| f(e)) });
        match first {
            None => Ok(None),
            Some(Some(r)) => Ok(Some(r)),
            Some(None) => {
                self.fresh(key, false)?;
                Ok(self.numbers.with(key, |e| f.take().map(|f| f(e))).flatten())
            }
        }
    }

    /// Whether some number lies below the partial number `key` of `len` digits (an empty non-terminal).
    pub(crate) fn has_below(&self, key: u64, len: usize) -> bool {
        match len {
            0 => !self.numbers.is_empty(),
            15.. => false,
            _ => self.numbers.any_in(key, key | ((1u64 << (4 * (16 - len))) - 1)),
        }
    }

    /// Apex in lowercase wire format.
    pub(crate) fn apex_wire(&self) -> &[u8] {
        &self.apex_wire
    }

    /// Labels of the apex.
    pub(crate) fn apex_labels(&self) -> u8 {
        self.apex_labels
    }

    /// What an answer's RRSIG covers, with the current ZSK's algorithm (read without loading the keys).
    pub(crate) fn covered(&self, rtype: u16, labels: u8, ttl: u32) -> Covered<'_> {
        let algorithm = (self.zsk_id.load(Ordering::Acquire) >> 16) as u8;
        Covered { rtype, algorithm, labels, ttl, signer: &self.apex_wire }
    }

    /// [`Zone::covered`] for signing with `keys`: the algorithm is theirs, whatever a concurrent key change
    /// has stored meanwhile.
    fn covered_by(&self, keys: &ZoneKeys, rtype: u16, labels: u8, ttl: u32) -> Covered<'_> {
        let algorithm = keys.zsk().algorithm().number();
        Covered { rtype, algorithm, labels, ttl, signer: &self.apex_wire }
    }

    pub(crate) fn now(&self) -> u32 {
        self.clock.unix_seconds() as u32
    }

    /// The signature (ZSK) of a compact-denial NSEC owned by `owner` (lowercase wire) with rdata `rdata`: from
    /// the cache (keyed by the rdata, which determines the record; see `negcache`), or made now. A fresh one
    /// draws on `budget`, if given, and fails with [`ZoneError::OverBudget`] when it is spent.
    pub(crate) fn sign_nsec(
        &self,
        owner: &[u8],
        labels: u8,
        rdata: &[u8],
        budget: Option<&SigningBudget>,
    ) -> Result<Sig, ZoneError> {
        let now = self.now();
        let keys = self.keys.load();
        let zsk = keys.zsk();
        let zsk_tag = zsk.key_tag();
        // Re-sign once half the validity has passed, so a cached answer is never close to expiring.
        let fresh_until = now.saturating_add(self.config.negative_signature_validity / 2);
        let usable = |s: &Sig| s.key_tag == zsk_tag && s.expiration > fresh_until;
        let sign = || {
            if budget.is_some_and(|b| !b.try_take()) {
                return Err(ZoneError::OverBudget);
            }
            let c = self.covered_by(&keys, rtype::NSEC, labels, self.config.negative_ttl);
            let inception = now.saturating_sub(self.config.inception_skew);
            let expiration = now.saturating_add(self.config.negative_signature_validity);
            Ok(sign_rdatas(&keys, KeyRole::Zsk, &c, owner, [rdata], inception, expiration)?)
        };
        self.negatives.get_or_sign(rdata, usable, sign)
    }

    /// Drops cached denials of the number `key` (it was just registered or removed): the NXNAME denial of its
    /// name. (Entries of other names or bitmaps can never answer for its new state; see `negcache`.)
    fn forget_denials(&self, key: u64) {
        let owner = self.owner_wire(key);
        let mut rdata = Vec::with_capacity(owner.len() + 10);
        rdata.extend_from_slice(&[1, 0]);
        rdata.extend_from_slice(&owner);
        rdata.extend_from_slice(&super::wire::type_bitmap(&[rtype::RRSIG, rtype::NSEC, rtype::NXNAME]));
        self.negatives.remove(&rdata);
    }

    /// The owner name of number `key`, lowercase wire format.
    fn owner_wire(&self, key: u64) -> Vec<u8> {
        let digits = unpack_digits(key);
        let mut owner = Vec::with_capacity(digits.len() * 2 + self.apex_wire.len());
        for d in digits.iter().rev() {
            owner.extend_from_slice(&[1, b'0' + d]);
        }
        owner.extend_from_slice(&self.apex_wire);
        owner
    }

    /// Re-signs the stale sets of number `key`, outside any lock, and hands the result to the refreshed sink
    /// (`may_wait`: see [`RefreshedSink::refreshed`]).
    fn fresh(&self, key: u64, may_wait: bool) -> Result<(), ZoneError> {
        let Some(current) = self.numbers.cloned(key) else { return Ok(()) };
        let signed = self.sign_entry(key, current)?;
        let sink = self.refreshed.get();
        let copy = sink.map(|_| signed.clone());
        // Only replace what we signed: a concurrent upsert wins.
        if self.numbers.replace_same(key, signed)
            && let (Some(sink), Some(copy), Some(number)) = (sink, copy, key_number(key))
        {
            sink.refreshed(number, copy, may_wait);
        }
        Ok(())
    }

    /// The unsigned entry of `record`; `None` when it publishes nothing.
    fn entry_for(&self, record: &NumberRecord) -> Option<SignedEntry> {
        let naptr = if record.services.is_empty() {
            Box::default()
        } else {
            pack_set(naptr_rdata(&record.services).iter().map(|n| n.to_bytes().expect("NAPTR encodes")).collect())
        };
        let txt = match &record.key {
            Some(k) => pack_set(vec![key_txt(k).to_bytes().expect("TXT encodes")]),
            None => Box::default(),
        };
        SignedEntry::new(self.keys.load().zsk().algorithm().number(), self.config.record_ttl, &naptr, &txt)
    }

    /// Signs the sets of `entry` whose signature is missing or stale.
    fn sign_entry(&self, key: u64, mut entry: SignedEntry) -> Result<SignedEntry, ZoneError> {
        let owner = self.owner_wire(key);
        let labels = self.apex_labels + (owner.len() - self.apex_wire.len()) as u8 / 2;
        let (inception, expiration) = self.validity(key);
        let ttl = self.config.record_ttl;
        let stale_before = self.now().saturating_add(self.config.signature_refresh);
        let keys = self.keys.load_full();
        let tag = keys.zsk().key_tag();
        let mut fresh = Vec::with_capacity(2);
        for (i, (t, set, sig)) in entry.sets().enumerate() {
            if sig.is_none_or(|s| s.expiration <= stale_before || s.key_tag != tag) {
                let c = self.covered_by(&keys, t, labels, ttl);
                fresh.push((i, sign_set(&keys, KeyRole::Zsk, &c, &owner, set, inception, expiration)?));
            }
        }
        for (i, sig) in &fresh {
            entry.set_sig(*i, sig);
        }
        Ok(entry)
    }

    /// Inception and expiration for a new signature; expirations are spread over the last tenth of the
    /// validity (by number) so a bulk load does not expire all at once.
    fn validity(&self, key: u64) -> (u32, u32) {
        let now = self.now();
        let spread = (self.config.signature_validity / 10).max(1);
        let jitter = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 % spread;
        (now.saturating_sub(self.config.inception_skew), now.saturating_add(self.config.signature_validity - jitter))
    }

    fn entry_stale(&self, e: &SignedEntry) -> bool {
        let stale_before = self.now().saturating_add(self.config.signature_refresh);
        let tag = self.zsk_id.load(Ordering::Acquire) as u16;
        e.any_sig_stale(stale_before, tag)
    }

    fn apex_stale(&self, a: &Apex) -> bool {
        let stale_before = self.now().saturating_add(self.config.signature_refresh);
        [&a.soa, &a.ns, &a.dnskey].iter().flat_map(|s| s.sigs.iter()).any(|s| s.expiration <= stale_before)
    }

    /// Call with the write lock held.
    fn bump_serial(&self) -> Result<(), ZoneError> {
        let serial = self.apex.load().serial.wrapping_add(1);
        self.apex.store(Arc::new(self.build_apex(serial)?));
        Ok(())
    }

    fn build_apex(&self, serial: u32) -> Result<Apex, ZoneError> {
        let c = &self.config;
        let rdata = ApexRdata::new(c)?;
        let soa = pack_set(vec![rdata.soa(serial)]);
        let ns = pack_set(rdata.ns().to_vec());
        let keys = self.keys.load_full();
        let dnskey = pack_set(keys.dnskey_rdatas());
        let (inception, expiration) = self.validity(0);
        let owner = &self.apex_wire;
        let l = self.apex_labels;
        let sign = |t: u16, role: KeyRole, set: &[u8]| {
            sign_set(&keys, role, &self.covered_by(&keys, t, l, c.apex_ttl), owner, set, inception, expiration)
        };
        Ok(Apex {
            serial,
            soa: ApexSet { sigs: vec![sign(rtype::SOA, KeyRole::Zsk, &soa)?], rdata: soa },
            ns: ApexSet { sigs: vec![sign(rtype::NS, KeyRole::Zsk, &ns)?], rdata: ns },
            dnskey: ApexSet { sigs: vec![sign(rtype::DNSKEY, KeyRole::Ksk, &dnskey)?], rdata: dnskey },
        })
    }
}

/// What [`Zone::zsk_id`] holds for `keys`.
fn zsk_id(keys: &ZoneKeys) -> u32 {
    u32::from(keys.zsk().algorithm().number()) << 16 | u32::from(keys.zsk().key_tag())
}

/// The zone's key of a number as stored (`+` and 1 to 15 digits); `None` for anything else.
pub(crate) fn stored_key(e164: &str) -> Option<u64> {
    let digits = e164.strip_prefix('+')?.bytes().map(|b| b.wrapping_sub(b'0'));
    let (key, len) = pack_digits(digits)?;
    (len > 0).then_some(key)
}

/// The number of a zone key.
fn key_number(key: u64) -> Option<E164> {
    let digits: String = unpack_digits(key).iter().map(|d| char::from(b'0' + d)).collect();
    E164::parse(&format!("+{digits}")).ok()
}

fn number_key(n: &E164) -> u64 {
    pack_digits(n.digits().bytes().map(|b| b - b'0')).expect("E164 has at most 15 digits").0
}

fn parse_txt(rd: &[u8]) -> hickory_proto::rr::rdata::TXT {
    let mut strings = Vec::new();
    let mut rest = rd;
    while let Some((&len, tail)) = rest.split_first() {
        let (s, tail) = tail.split_at(usize::from(len).min(tail.len()));
        strings.push(s);
        rest = tail;
    }
    hickory_proto::rr::rdata::TXT::from_bytes(strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_digits_keep_prefix_order() {
        let (a, _) = pack_digits([4, 4]).unwrap();
        let (b, _) = pack_digits([4, 4, 0]).unwrap();
        let (c, _) = pack_digits([4, 5]).unwrap();
        assert!(a < b && b < c);
        assert_eq!(unpack_digits(b), vec![4, 4, 0]);
        assert_eq!(unpack_digits(pack_digits([9; 15]).unwrap().0), vec![9; 15]);
        assert!(pack_digits([1; 16]).is_none());
        assert!(pack_digits([10]).is_none());
    }
}
