//! The pre-signed NSEC3 copy of the zone for secondaries that cannot sign: every RRset signed with the zone's
//! keys, and an NSEC3 chain (RFC 5155) with the RFC 9276 parameters (SHA-1, 0 extra iterations, no salt, no
//! opt-out) over the apex, every number and every empty non-terminal.
//!
//! Hashes of phone numbers are cheap to reverse (the number space is small), so whoever holds this copy, or
//! queries a server serving it, can enumerate the directory: this flavour gives up walk-proofness.
//!
//! Signing is CPU work proportional to the zone. A copy is made when the zone version or the keys change, or when
//! its signatures reach `signature_refresh` of their end; each copy gets a new SOA serial, so the secondaries
//! (told by NOTIFY) transfer it. Its serial is not the zone version, since a key change or a re-signing changes the
//! copy without changing the version: it is the Unix time of the signing (see [`next_serial`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tincan_enum_core::NumberRecord;

use super::content::{ApexRecords, Rr, number_rrs};
use crate::dns::keys::KeyRole;
use crate::dns::sign::{Covered, pack_set, rrsig_rdata, sign_set};
use crate::dns::wire::{name_to_wire_lower, rtype, type_bitmap};
use crate::dns::{ZoneConfig, ZoneError, ZoneKeys};

/// NSEC3 and NSEC3PARAM record types.
const NSEC3: u16 = 50;
const NSEC3PARAM: u16 = 51;

/// One signed copy of the zone and the serial it is transferred under.
#[derive(Debug)]
pub(super) struct Copy {
    /// Its SOA serial: the Unix time it was signed, or one more than the previous copy's if that is not larger.
    pub serial: u32,
    /// The zone version it shows.
    pub version: i64,
    /// How many numbers it holds.
    pub numbers: usize,
    keys: Arc<ZoneKeys>,
    /// Past this time (Unix seconds) its signatures are within `signature_refresh` of their end.
    fresh_until: u64,
    /// Everything an AXFR carries between its two SOAs, the signatures by index into `sigs`.
    records: Records,
    /// Its signatures (each kept only here), for its records and for the next copy to reuse.
    sigs: Sigs,
}

impl Copy {
    /// Whether it shows the zone at `version` signed with `keys`, with signatures still fresh at `now`.
    pub fn current(&self, version: i64, keys: &ZoneKeys, now: u64) -> bool {
        self.version == version && self.keys.same_keys(keys) && self.fresh(now)
    }

    /// Whether its signatures are still fresh at `now`.
    pub fn fresh(&self, now: u64) -> bool {
        now < self.fresh_until
    }

    /// Everything an AXFR carries between its two SOAs, in order.
    pub fn records(&self) -> impl Iterator<Item = RrRef<'_>> {
        self.records.iter(&self.sigs)
    }

    /// How many records [`Copy::records`] gives.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
}

/// One record of a copy, borrowed from it: owner labels left of the apex (empty for the apex), type, TTL, rdata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RrRef<'a> {
    pub owner: &'a [u8],
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: &'a [u8],
}

/// The records of a copy, packed into one buffer (a copy of a large zone holds millions): runs of records sharing
/// an owner, each run its owner once (length, labels left of the apex) and its record count (u16), then each record
/// as its type and TTL followed by, for an RRSIG, the index (u32) of the signature in the copy's [`Sigs`], and for
/// any other type its rdata length (u16) and rdata.
#[derive(Debug, Default)]
pub(super) struct Records {
    bytes: Vec<u8>,
    /// Where the last run starts in `bytes`.
    last_run: Option<usize>,
    len: usize,
}

impl Records {
    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Counts one more record owned by `owner`: in the last run if it has the same owner, else in a new run.
    fn owned_by(&mut self, owner: &[u8]) {
        debug_assert!(owner.len() <= usize::from(u8::MAX), "owner labels fit a DNS name");
        self.len += 1;
        if let Some(run) = self.last_run {
            let same = self.bytes[run + 1..].starts_with(owner) && usize::from(self.bytes[run]) == owner.len();
            let at = run + 1 + owner.len();
            let count = u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]]);
            if same && count < u16::MAX {
                self.bytes[at..at + 2].copy_from_slice(&(count + 1).to_be_bytes());
                return;
            }
        }
        self.last_run = Some(self.bytes.len());
        self.bytes.push(owner.len() as u8);
        self.bytes.extend_from_slice(owner);
        self.bytes.extend_from_slice(&1u16.to_be_bytes());
    }

    /// Appends a record other than an RRSIG.
    fn push(&mut self, rr: &Rr) {
        debug_assert_ne!(rr.rtype, rtype::RRSIG);
        self.owned_by(&rr.owner);
        self.bytes.extend_from_slice(&rr.rtype.to_be_bytes());
        self.bytes.extend_from_slice(&rr.ttl.to_be_bytes());
        self.bytes.extend_from_slice(&(rr.rdata.len() as u16).to_be_bytes());
        self.bytes.extend_from_slice(&rr.rdata);
    }

    /// Appends the RRSIG owned by `owner` with `ttl` whose rdata is signature `index` of the copy's [`Sigs`].
    fn push_sig(&mut self, owner: &[u8], ttl: u32, index: u32) {
        self.owned_by(owner);
        self.bytes.extend_from_slice(&rtype::RRSIG.to_be_bytes());
        self.bytes.extend_from_slice(&ttl.to_be_bytes());
        self.bytes.extend_from_slice(&index.to_be_bytes());
    }

    /// Its records in order, the RRSIGs' rdata taken from `sigs`.
    fn iter<'a>(&'a self, sigs: &'a Sigs) -> impl Iterator<Item = RrRef<'a>> + 'a {
        let (b, mut at, mut owner, mut left) = (&self.bytes[..], 0usize, &[][..], 0u16);
        std::iter::from_fn(move || {
            if left == 0 {
                let len = usize::from(*b.get(at)?);
                owner = &b[at + 1..at + 1 + len];
                left = u16::from_be_bytes([b[at + 1 + len], b[at + 2 + len]]);
                at += 3 + len;
            }
            left -= 1;
            let rtype = u16::from_be_bytes([b[at], b[at + 1]]);
            let ttl = u32::from_be_bytes([b[at + 2], b[at + 3], b[at + 4], b[at + 5]]);
            at += 6;
            let rdata = if rtype == rtype::RRSIG {
                let index = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                at += 4;
                sigs.rdata(index)
            } else {
                let len = usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
                at += 2 + len;
                &b[at - len..at]
            };
            Some(RrRef { owner, rtype, ttl, rdata })
        })
    }
}

/// The latest signed copy.
#[derive(Debug, Default)]
pub(super) struct Cache {
    last: Mutex<Option<Arc<Copy>>>,
}

impl Cache {
    /// The latest copy, if one was made.
    pub fn latest(&self) -> Option<Arc<Copy>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Signs the zone at `version` (holding `numbers`) with `keys` at `now` under the next serial, and keeps it as
    /// the latest copy.
    pub fn make(
        &self,
        version: i64,
        numbers: &[NumberRecord],
        zone: &ZoneConfig,
        apex: &ApexRecords,
        keys: &Arc<ZoneKeys>,
        now: u64,
    ) -> Result<Arc<Copy>, ZoneError> {
        let previous = self.latest();
        let serial = next_serial(previous.as_ref().map(|c| c.serial), now);
        let started = std::time::Instant::now();
        let no_sigs = Sigs::new();
        let reuse = previous.as_ref().map_or(&no_sigs, |c| &c.sigs);
        let signed = sign_zone(numbers, zone, apex, keys, serial, now as u32, reuse)?;
        drop(previous);
        tracing::info!(
            version,
            serial,
            numbers = numbers.len(),
            records = signed.records.len(),
            bytes = signed.records.bytes.len() + signed.sigs.rdata.len(),
            signatures_made = signed.signed,
            signatures_reused = signed.sigs.len().saturating_sub(signed.signed),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "signed the NSEC3 copy"
        );
        // Fresh until its earliest signature comes within `signature_refresh` of its end.
        let fresh_until = u64::from(signed.earliest.saturating_sub(zone.signature_refresh));
        let copy = Arc::new(Copy {
            serial,
            version,
            numbers: numbers.len(),
            keys: keys.clone(),
            fresh_until,
            records: signed.records,
            sigs: signed.sigs,
        });
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(copy.clone());
        Ok(copy)
    }
}

/// The serial of a new copy signed at `now`: the time itself (so it grows across restarts), or one more than the
/// previous copy's when copies came faster than one a second (RFC 1982 comparison: serials wrap).
fn next_serial(previous: Option<u32>, now: u64) -> u32 {
    let now = now as u32;
    match previous {
        Some(p) if (now.wrapping_sub(p) as i32) <= 0 => p.wrapping_add(1),
        _ => now,
    }
}

/// Lowercase base32hex without padding (RFC 4648 §7), as NSEC3 owner labels use.
fn base32hex(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = Vec::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize]);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize]);
    }
    out
}

/// The NSEC3 hash of a name (lowercase wire format) with no salt and no extra iteration.
fn hash(owner_wire: &[u8]) -> [u8; 20] {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, owner_wire);
    d.as_ref().try_into().expect("SHA-1 is 20 bytes")
}

/// The signatures of a copy, each kept once: their rdata back to back, found by index (from the copy's records) and
/// by the digest of what they cover (key tag, labels, owner, type, TTL, rdata), so the next copy reuses those of
/// unchanged RRsets instead of signing everything again.
#[derive(Debug, Default)]
pub(super) struct Sigs {
    by_digest: HashMap<[u8; 32], u32>,
    /// Every signature's rdata, back to back.
    rdata: Vec<u8>,
    /// Where each signature's rdata ends in `rdata` (it starts where the one before ends).
    ends: Vec<usize>,
}

impl Sigs {
    /// No signatures.
    pub fn new() -> Sigs {
        Sigs::default()
    }

    /// How many it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The rdata of signature `index`.
    fn rdata(&self, index: u32) -> &[u8] {
        let i = index as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.rdata[start..self.ends[i]]
    }

    /// The rdata of the signature over what `digest` covers.
    fn get(&self, digest: &[u8; 32]) -> Option<&[u8]> {
        self.by_digest.get(digest).map(|&i| self.rdata(i))
    }

    /// Keeps `rdata` as the signature over what `digest` covers (unless one is kept already); returns its index.
    fn insert(&mut self, digest: [u8; 32], rdata: &[u8]) -> u32 {
        match self.by_digest.entry(digest) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                // Over 2^32 signatures would take hundreds of gigabytes before this.
                let index = u32::try_from(self.ends.len()).expect("fewer than 2^32 signatures in a copy");
                self.rdata.extend_from_slice(rdata);
                self.ends.push(self.rdata.len());
                *e.insert(index)
            }
        }
    }
}

/// Signs RRsets for one copy, reusing the previous copy's signatures where the RRset and key are the same and the
/// signature has at least half the fresh period left.
struct CopySigner<'a> {
    keys: &'a ZoneKeys,
    apex_wire: Vec<u8>,
    algorithm: u8,
    inception: u32,
    expiration: u32,
    /// Previous signatures expiring at or after this are reused.
    reuse_from: u32,
    previous: &'a Sigs,
    sigs: Sigs,
    /// The earliest expiration in the copy.
    earliest: u32,
    signed: usize,
}

impl CopySigner<'_> {
    /// The RRSIG over `rrs` (one owner, one type, non-empty): the index of its rdata in the copy's signatures.
    fn rrsig(&mut self, rrs: &[Rr], labels: u8, role: KeyRole) -> Result<u32, ZoneError> {
        let (owner, t, ttl) = (&rrs[0].owner, rrs[0].rtype, rrs[0].ttl);
        let mut owner_full = owner.clone();
        owner_full.make_ascii_lowercase();
        owner_full.extend_from_slice(&self.apex_wire);
        let set = pack_set(rrs.iter().map(|r| r.rdata.clone()).collect());
        let key_tag = match role {
            KeyRole::Ksk => self.keys.ksk().key_tag(),
            KeyRole::Zsk => self.keys.zsk().key_tag(),
        };
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        d.update(&key_tag.to_be_bytes());
        d.update(&[labels]);
        d.update(&t.to_be_bytes());
        d.update(&ttl.to_be_bytes());
        d.update(&owner_full);
        d.update(&set);
        let digest: [u8; 32] = d.finish().as_ref().try_into().expect("SHA-256 is 32 bytes");
        let reusable = self.previous.get(&digest).filter(|r| expiration_of(r) >= self.reuse_from);
        let index = match reusable {
            Some(rdata) => self.sigs.insert(digest, rdata),
            None => {
                let c = Covered { rtype: t, algorithm: self.algorithm, labels, ttl, signer: &self.apex_wire };
                let sig = sign_set(self.keys, role, &c, &owner_full, &set, self.inception, self.expiration)?;
                self.signed += 1;
                self.sigs.insert(digest, &rrsig_rdata(&c, &sig))
            }
        };
        self.earliest = self.earliest.min(expiration_of(self.sigs.rdata(index)));
        Ok(index)
    }

    /// Appends the RRset `rrs` and its RRSIG to `out`.
    fn add(&mut self, rrs: Vec<Rr>, labels: u8, role: KeyRole, out: &mut Records) -> Result<(), ZoneError> {
        let Some(first) = rrs.first() else {
            return Ok(());
        };
        let sig = self.rrsig(&rrs, labels, role)?;
        for rr in &rrs {
            out.push(rr);
        }
        out.push_sig(&first.owner, first.ttl, sig);
        Ok(())
    }
}

/// The signature expiration field of RRSIG rdata.
fn expiration_of(rrsig: &[u8]) -> u32 {
    rrsig.get(8..12).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A signed zone: its records (between the transfer's SOAs), its signatures for reuse, how many were made now,
/// and its earliest signature expiration.
struct SignedZone {
    records: Records,
    sigs: Sigs,
    signed: usize,
    earliest: u32,
}

/// Signs the zone at `serial`, reusing signatures from `previous` where possible.
fn sign_zone(
    numbers: &[NumberRecord],
    z: &ZoneConfig,
    apex: &ApexRecords,
    keys: &ZoneKeys,
    serial: u32,
    now: u32,
    previous: &Sigs,
) -> Result<SignedZone, ZoneError> {
    let apex_labels = z.apex.num_labels();
    let fresh_period = z.signature_validity.saturating_sub(z.signature_refresh);
    let mut signer = CopySigner {
        keys,
        apex_wire: name_to_wire_lower(&z.apex),
        algorithm: keys.zsk().algorithm().number(),
        inception: now.saturating_sub(z.inception_skew),
        expiration: now.saturating_add(z.signature_validity),
        reuse_from: now.saturating_add(z.signature_refresh).saturating_add(fresh_period / 2),
        previous,
        sigs: Sigs::new(),
        earliest: u32::MAX,
        signed: 0,
    };
    let mut out = Records::default();

    // The apex: RRSIG(SOA) (the SOA itself opens and closes the transfer), NS, DNSKEY, NSEC3PARAM.
    let soa = apex.soa(serial);
    let soa_sig = signer.rrsig(std::slice::from_ref(&soa), apex_labels, KeyRole::Zsk)?;
    out.push_sig(&soa.owner, soa.ttl, soa_sig);
    signer.add(apex.ns().collect(), apex_labels, KeyRole::Zsk, &mut out)?;
    // Every published key: during a rollover the DNSKEY set holds more than the signing pair.
    let dnskeys = keys
        .dnskey_rdatas()
        .into_iter()
        .map(|rdata| Rr { owner: Vec::new(), rtype: rtype::DNSKEY, ttl: apex.ttl(), rdata })
        .collect();
    signer.add(dnskeys, apex_labels, KeyRole::Ksk, &mut out)?;
    let param = Rr { owner: Vec::new(), rtype: NSEC3PARAM, ttl: 0, rdata: vec![1, 0, 0, 0, 0] };
    signer.add(vec![param], apex_labels, KeyRole::Zsk, &mut out)?;

    // Every number's RRsets, and the names the chain covers: (hash of the owner, types). Hashed as they come, so
    // the owners are not held meanwhile.
    let apex_wire = signer.apex_wire.clone();
    let hash_of = |owner: &[u8]| {
        let mut full = Vec::with_capacity(owner.len() + apex_wire.len());
        full.extend_from_slice(owner);
        full.extend_from_slice(&apex_wire);
        hash(&full)
    };
    let mut hashed: Vec<([u8; 20], Vec<u16>)> =
        vec![(hash_of(&[]), vec![rtype::NS, rtype::SOA, rtype::RRSIG, rtype::DNSKEY, NSEC3PARAM])];
    let mut prefixes: BTreeSet<&str> = BTreeSet::new();
    let mut exact: BTreeSet<&str> = BTreeSet::new();
    for n in numbers {
        let rrs = number_rrs(n, z.record_ttl);
        if rrs.is_empty() {
            continue;
        }
        let digits = n.number.digits();
        let labels = apex_labels + digits.len() as u8;
        let mut types: Vec<u16> = rrs.iter().map(|r| r.rtype).collect();
        types.dedup();
        for t in &types {
            signer.add(rrs.iter().filter(|r| r.rtype == *t).cloned().collect(), labels, KeyRole::Zsk, &mut out)?;
        }
        types.push(rtype::RRSIG);
        types.sort_unstable();
        hashed.push((hash_of(&rrs[0].owner), types));
        exact.insert(digits);
        for k in 1..digits.len() {
            prefixes.insert(&digits[..k]);
        }
    }
    // Empty non-terminals: partial numbers with a number below them that are not numbers themselves.
    for p in prefixes.difference(&exact) {
        let owner: Vec<u8> = p.bytes().rev().flat_map(|d| [1, d]).collect();
        hashed.push((hash_of(&owner), Vec::new()));
    }

    // The chain, in hash order.
    hashed.sort_unstable_by_key(|a| a.0);
    let ttl = apex.negative_ttl().min(apex.ttl());
    for i in 0..hashed.len() {
        let (h, types) = &hashed[i];
        let next = &hashed[(i + 1) % hashed.len()].0;
        let mut rdata = vec![1, 0, 0, 0, 0, 20];
        rdata.extend_from_slice(next);
        rdata.extend_from_slice(&type_bitmap(types));
        let mut owner = vec![32];
        owner.extend_from_slice(&base32hex(h));
        signer.add(vec![Rr { owner, rtype: NSEC3, ttl, rdata }], apex_labels + 1, KeyRole::Zsk, &mut out)?;
    }
    // Kept until the next copy replaces it: no spare capacity.
    out.bytes.shrink_to_fit();
    let mut sigs = signer.sigs;
    sigs.rdata.shrink_to_fit();
    sigs.ends.shrink_to_fit();
    sigs.by_digest.shrink_to_fit();
    Ok(SignedZone { records: out, sigs, signed: signer.signed, earliest: signer.earliest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: &str, user: &str) -> NumberRecord {
        use tincan_enum_core::{E164, Service, ServiceType};
        NumberRecord {
            number: E164::parse(n).unwrap(),
            services: vec![Service::new(ServiceType::Matrix, &format!("matrix:u/{user}:hs.test")).unwrap()],
            key: None,
        }
    }

    #[test]
    fn a_new_copy_signs_only_what_changed() {
        let z = ZoneConfig::default();
        let apex = ApexRecords::new(&z).unwrap();
        let keys = ZoneKeys::generate(crate::dns::KeyAlgorithm::EcdsaP256Sha256, 1_000).unwrap();
        let mut numbers: Vec<NumberRecord> =
            (0..20).map(|i| record(&format!("+4420794600{i:02}"), &format!("u{i}"))).collect();
        let now = 1_800_000_000;
        let first = sign_zone(&numbers, &z, &apex, &keys, 1, now, &Sigs::new()).unwrap();
        // Apex (SOA, NS, DNSKEY, NSEC3PARAM), 20 NAPTR sets, the NSEC3 chain (apex, 20 numbers, ENTs).
        assert_eq!(first.signed, first.sigs.len());
        assert!(first.signed > 40, "{}", first.signed);

        // One number changes: its NAPTR and the SOA are signed anew; the chain is the same.
        numbers[3] = record("+442079460003", "someone-else");
        let second = sign_zone(&numbers, &z, &apex, &keys, 2, now + 60, &first.sigs).unwrap();
        assert_eq!(second.signed, 2, "SOA and the changed NAPTR only");
        assert_eq!(second.records.len(), first.records.len());
        assert_eq!(second.earliest, first.earliest, "reused signatures keep their expiration");

        // Past half the fresh period, everything is re-signed.
        let later = now + z.signature_validity - z.signature_refresh;
        let third = sign_zone(&numbers, &z, &apex, &keys, 3, later, &second.sigs).unwrap();
        assert_eq!(third.signed, third.sigs.len());

        // Other keys: nothing is reused.
        let other = ZoneKeys::generate(crate::dns::KeyAlgorithm::EcdsaP256Sha256, 1_000).unwrap();
        let fourth = sign_zone(&numbers, &z, &apex, &other, 4, now + 60, &first.sigs).unwrap();
        assert_eq!(fourth.signed, fourth.sigs.len());
    }

    #[test]
    fn packed_records_come_back_in_order_with_their_signatures() {
        let rr = |owner: &[u8], rtype: u16, rdata: &[u8]| Rr {
            owner: owner.to_vec(),
            rtype,
            ttl: 60,
            rdata: rdata.to_vec(),
        };
        let mut sigs = Sigs::new();
        let a = sigs.insert([1; 32], b"sig-a");
        let b = sigs.insert([2; 32], b"sig-b");
        assert_eq!(sigs.insert([1; 32], b"other"), a, "one signature per digest");
        let mut records = Records::default();
        records.push_sig(b"", 60, a);
        records.push(&rr(b"", rtype::NS, b"ns"));
        records.push(&rr(b"\x011", rtype::NAPTR, b"n1"));
        records.push(&rr(b"\x011", rtype::NAPTR, b""));
        records.push_sig(b"\x011", 60, b);
        records.push(&rr(b"\x012", rtype::TXT, b"t"));
        records.push(&rr(b"\x011", rtype::TXT, b"t"));
        let got: Vec<(Vec<u8>, u16, Vec<u8>)> =
            records.iter(&sigs).map(|r| (r.owner.to_vec(), r.rtype, r.rdata.to_vec())).collect();
        let want: Vec<(Vec<u8>, u16, Vec<u8>)> = vec![
            (b"".to_vec(), rtype::RRSIG, b"sig-a".to_vec()),
            (b"".to_vec(), rtype::NS, b"ns".to_vec()),
            (b"\x011".to_vec(), rtype::NAPTR, b"n1".to_vec()),
            (b"\x011".to_vec(), rtype::NAPTR, b"".to_vec()),
            (b"\x011".to_vec(), rtype::RRSIG, b"sig-b".to_vec()),
            (b"\x012".to_vec(), rtype::TXT, b"t".to_vec()),
            (b"\x011".to_vec(), rtype::TXT, b"t".to_vec()),
        ];
        assert_eq!(got, want);
        assert_eq!(records.len(), 7);
        assert_eq!(sigs.len(), 2);
    }

    #[test]
    fn serials_follow_the_clock_and_always_grow() {
        assert_eq!(next_serial(None, 1_800_000_000), 1_800_000_000);
        assert_eq!(next_serial(Some(1_700_000_000), 1_800_000_000), 1_800_000_000);
        assert_eq!(next_serial(Some(1_800_000_000), 1_800_000_000), 1_800_000_001);
        assert_eq!(next_serial(Some(1_800_000_005), 1_800_000_000), 1_800_000_006);
        assert_eq!(next_serial(Some(u32::MAX), u64::from(u32::MAX)), 0, "wraps (RFC 1982)");
    }

    #[test]
    fn base32hex_and_hash_match_rfc5155() {
        // RFC 5155 Appendix A uses salt aabbccdd and 12 iterations; with none, `example.` hashes to this value
        // (checked with `ldns-nsec3-hash -t 0 -s '' example.` / `nsec3hash - 1 0 example`).
        let h = hash(b"\x07example\x00");
        assert_eq!(String::from_utf8(base32hex(&h)).unwrap().len(), 32);
        assert_eq!(base32hex(&[0xff; 5]), b"vvvvvvvv");
        assert_eq!(base32hex(&[0x00; 5]), b"00000000");
        assert_eq!(base32hex(b"f"), b"co");
    }
}
