//! One signed zone in memory: the apex (SOA, NS, DNSKEY) and every number's NAPTR and TXT RRsets in wire format,
//! with their RRSIGs made when an RRset changes and cached until they near expiry.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam_skiplist::SkipMap;
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::NAPTR;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use tincan_common::Clock;
use tincan_enum_core::{E164, NumberRecord, key_from_txt, key_txt, naptr_rdata, service_from_naptr};

use super::keys::{KeyError, KeyRole, ZoneKeys};
use super::sign::{Covered, Sig, pack_set, rdatas, sign_set};
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
}

/// An RRset of one number: rdata packed `[len][rdata]…` in canonical order, and its cached signature.
#[derive(Debug, Clone)]
pub(crate) struct NumberSet {
    pub rdata: Box<[u8]>,
    pub sig: Option<Sig>,
}

/// A number's records.
#[derive(Debug, Clone, Default)]
pub(crate) struct NumberEntry {
    pub naptr: Option<NumberSet>,
    pub txt: Option<NumberSet>,
}

impl NumberEntry {
    fn sets_mut(&mut self) -> [(u16, &mut Option<NumberSet>); 2] {
        [(rtype::NAPTR, &mut self.naptr), (rtype::TXT, &mut self.txt)]
    }
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

/// One authoritative zone. Reads never block: numbers live in a lock-free skip list, the apex behind an
/// `ArcSwap`; writers serialise among themselves only.
pub struct Zone {
    config: ZoneConfig,
    apex_wire: Vec<u8>,
    apex_labels: u8,
    keys: ArcSwap<ZoneKeys>,
    clock: Arc<dyn Clock>,
    numbers: SkipMap<u64, NumberEntry>,
    apex: ArcSwap<Apex>,
    write: Mutex<()>,
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
        let zone = Zone {
            config,
            apex_wire,
            apex_labels,
            keys: ArcSwap::new(keys),
            clock,
            numbers: SkipMap::new(),
            apex: ArcSwap::from_pointee(placeholder),
            write: Mutex::new(()),
        };
        zone.apex.store(Arc::new(zone.build_apex(serial)?));
        Ok(zone)
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
        self.keys.store(keys);
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
        let key = number_key(&record.number);
        let entry = self.entry_for(record);
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if entry.naptr.is_none() && entry.txt.is_none() {
            self.numbers.remove(&key);
        } else {
            let entry = self.sign_entry(key, entry)?;
            self.numbers.insert(key, entry);
        }
        self.bump_serial()
    }

    /// Loads many records at once (start-up): one serial bump, signatures made lazily on first query or by
    /// [`Zone::refresh`], so a million numbers load in seconds.
    pub fn load<'a>(&self, records: impl IntoIterator<Item = &'a NumberRecord>) -> Result<usize, ZoneError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for record in records {
            let entry = self.entry_for(record);
            if entry.naptr.is_some() || entry.txt.is_some() {
                self.numbers.insert(number_key(&record.number), entry);
                n += 1;
            }
        }
        self.bump_serial()?;
        Ok(n)
    }

    /// Removes a number; bumps the serial when it was there.
    pub fn remove(&self, number: &E164) -> Result<bool, ZoneError> {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let removed = self.numbers.remove(&number_key(number)).is_some();
        if removed {
            self.bump_serial()?;
        }
        Ok(removed)
    }

    /// What the zone publishes for `number`, read back from its wire-format records.
    pub fn get(&self, number: &E164) -> Option<NumberRecord> {
        let e = self.numbers.get(&number_key(number))?;
        let e = e.value();
        let services = e
            .naptr
            .iter()
            .flat_map(|s| rdatas(&s.rdata))
            .filter_map(|rd| NAPTR::read(&mut BinDecoder::new(rd)).ok())
            .filter_map(|n| service_from_naptr(&n))
            .collect::<Vec<_>>();
        // NAPTRs are stored in canonical order; publishing order is the preference.
        let mut services = services;
        let prefs: Vec<u16> = e
            .naptr
            .iter()
            .flat_map(|s| rdatas(&s.rdata))
            .filter_map(|rd| NAPTR::read(&mut BinDecoder::new(rd)).ok())
            .map(|n| n.preference)
            .collect();
        let mut order: Vec<usize> = (0..services.len()).collect();
        order.sort_by_key(|&i| prefs.get(i).copied().unwrap_or(u16::MAX));
        services = order.into_iter().map(|i| services[i].clone()).collect();
        let key = e.txt.as_ref().and_then(|s| rdatas(&s.rdata).next()).and_then(|rd| key_from_txt(&parse_txt(rd)));
        Some(NumberRecord { number: number.clone(), services, key })
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
        for e in self.numbers.iter() {
            if self.entry_stale(e.value()) {
                let _ = self.fresh(&e)?;
                signed += 1;
            }
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

    /// The entry for `digits` with fresh signatures, if the number exists.
    pub(crate) fn lookup(
        &self,
        key: u64,
    ) -> Result<Option<crossbeam_skiplist::map::Entry<'_, u64, NumberEntry>>, ZoneError> {
        match self.numbers.get(&key) {
            None => Ok(None),
            Some(e) if !self.entry_stale(e.value()) => Ok(Some(e)),
            Some(e) => self.fresh(&e).map(Some),
        }
    }

    /// Whether some number lies below the partial number `key` of `len` digits (an empty non-terminal).
    pub(crate) fn has_below(&self, key: u64, len: usize) -> bool {
        use std::ops::Bound::{Excluded, Included};
        match len {
            0 => !self.numbers.is_empty(),
            15.. => false,
            _ => {
                let hi = key | ((1u64 << (4 * (16 - len))) - 1);
                self.numbers.range((Excluded(key), Included(hi))).next().is_some()
            }
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

    pub(crate) fn covered(&self, rtype: u16, labels: u8, ttl: u32) -> Covered<'_> {
        Covered { rtype, algorithm: self.keys.load().zsk().algorithm().number(), labels, ttl, signer: &self.apex_wire }
    }

    pub(crate) fn now(&self) -> u32 {
        self.clock.unix_seconds() as u32
    }

    /// Signs an NSEC for a negative answer (online, ZSK): owner `owner` (lowercase wire), rdata `rdata`.
    pub(crate) fn sign_nsec(&self, owner: &[u8], labels: u8, rdata: &[u8]) -> Result<Sig, ZoneError> {
        let now = self.now();
        let c = self.covered(rtype::NSEC, labels, self.config.negative_ttl);
        let mut set = Vec::with_capacity(rdata.len() + 2);
        set.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        set.extend_from_slice(rdata);
        let inception = now.saturating_sub(self.config.inception_skew);
        let expiration = now.saturating_add(self.config.negative_signature_validity);
        Ok(sign_set(&self.keys.load(), KeyRole::Zsk, &c, owner, &set, inception, expiration)?)
    }

    fn fresh<'a>(
        &'a self,
        e: &crossbeam_skiplist::map::Entry<'a, u64, NumberEntry>,
    ) -> Result<crossbeam_skiplist::map::Entry<'a, u64, NumberEntry>, ZoneError> {
        let key = *e.key();
        let old: *const NumberEntry = e.value();
        let signed = self.sign_entry(key, e.value().clone())?;
        // Only replace what we signed: a concurrent upsert wins.
        Ok(self.numbers.compare_insert(key, signed, |cur| std::ptr::eq(cur, old)))
    }

    fn entry_for(&self, record: &NumberRecord) -> NumberEntry {
        let naptr = (!record.services.is_empty()).then(|| NumberSet {
            rdata: pack_set(
                naptr_rdata(&record.services).iter().map(|n| n.to_bytes().expect("NAPTR encodes")).collect(),
            ),
            sig: None,
        });
        let txt = record
            .key
            .as_ref()
            .map(|k| NumberSet { rdata: pack_set(vec![key_txt(k).to_bytes().expect("TXT encodes")]), sig: None });
        NumberEntry { naptr, txt }
    }

    /// Signs the sets of `entry` whose signature is missing or stale.
    fn sign_entry(&self, key: u64, mut entry: NumberEntry) -> Result<NumberEntry, ZoneError> {
        let digits = unpack_digits(key);
        let mut owner = Vec::with_capacity(digits.len() * 2 + self.apex_wire.len());
        for d in digits.iter().rev() {
            owner.extend_from_slice(&[1, b'0' + d]);
        }
        owner.extend_from_slice(&self.apex_wire);
        let labels = self.apex_labels + digits.len() as u8;
        let (inception, expiration) = self.validity(key);
        let ttl = self.config.record_ttl;
        let stale_before = self.now().saturating_add(self.config.signature_refresh);
        let keys = self.keys.load_full();
        let tag = keys.zsk().key_tag();
        for (t, set) in entry.sets_mut() {
            if let Some(set) = set
                && set.sig.is_none_or(|s| s.expiration <= stale_before || s.key_tag != tag)
            {
                let c = self.covered(t, labels, ttl);
                set.sig = Some(sign_set(&keys, KeyRole::Zsk, &c, &owner, &set.rdata, inception, expiration)?);
            }
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

    fn entry_stale(&self, e: &NumberEntry) -> bool {
        let stale_before = self.now().saturating_add(self.config.signature_refresh);
        let tag = self.keys.load().zsk().key_tag();
        [&e.naptr, &e.txt]
            .into_iter()
            .flatten()
            .any(|s| s.sig.is_none_or(|s| s.expiration <= stale_before || s.key_tag != tag))
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
        let ns_names: Vec<Name> = if c.name_servers.is_empty() {
            vec![Name::from_ascii("ns1").expect("a label").append_domain(&c.apex).map_err(|_| ZoneError::BadApex)?]
        } else {
            c.name_servers.clone()
        };
        let hostmaster = match &c.hostmaster {
            Some(h) => h.clone(),
            None => Name::from_ascii("hostmaster")
                .expect("a label")
                .append_domain(&c.apex)
                .map_err(|_| ZoneError::BadApex)?,
        };
        let mut soa = name_to_wire_lower(&ns_names[0]);
        soa.extend_from_slice(&name_to_wire_lower(&hostmaster));
        for v in [serial, c.soa_refresh, c.soa_retry, c.soa_expire, c.negative_ttl] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        let soa = pack_set(vec![soa]);
        let ns = pack_set(ns_names.iter().map(name_to_wire_lower).collect());
        let keys = self.keys.load_full();
        let dnskey = pack_set(keys.dnskey_rdatas());
        let (inception, expiration) = self.validity(0);
        let owner = &self.apex_wire;
        let l = self.apex_labels;
        let sign = |t: u16, role: KeyRole, set: &[u8]| {
            sign_set(&keys, role, &self.covered(t, l, c.apex_ttl), owner, set, inception, expiration)
        };
        Ok(Apex {
            serial,
            soa: ApexSet { sigs: vec![sign(rtype::SOA, KeyRole::Zsk, &soa)?], rdata: soa },
            ns: ApexSet { sigs: vec![sign(rtype::NS, KeyRole::Zsk, &ns)?], rdata: ns },
            dnskey: ApexSet { sigs: vec![sign(rtype::DNSKEY, KeyRole::Ksk, &dnskey)?], rdata: dnskey },
        })
    }
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
