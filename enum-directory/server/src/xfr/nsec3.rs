//! The pre-signed NSEC3 copy of the zone for secondaries that cannot sign: every RRset signed with the zone's
//! keys, and an NSEC3 chain (RFC 5155) with the RFC 9276 parameters (SHA-1, 0 extra iterations, no salt, no
//! opt-out) over the apex, every number and every empty non-terminal.
//!
//! Hashes of phone numbers are cheap to reverse (the number space is small), so whoever holds this copy, or
//! queries a server serving it, can enumerate the directory: this flavour gives up walk-proofness.
//!
//! Signing is CPU work proportional to the zone: the result is cached per zone version and re-made when the
//! version changes or its signatures reach `signature_refresh` of their end.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tincan_common::Clock;
use tincan_enum_core::NumberRecord;

use super::content::{ApexRecords, Rr, number_rrs, serial_of};
use crate::dns::keys::KeyRole;
use crate::dns::sign::{Covered, pack_set, rrsig_rdata, sign_set};
use crate::dns::wire::{name_to_wire_lower, rtype, type_bitmap};
use crate::dns::{ZoneConfig, ZoneError, ZoneKeys};

/// NSEC3 and NSEC3PARAM record types.
const NSEC3: u16 = 50;
const NSEC3PARAM: u16 = 51;

/// The last signed copy.
#[derive(Debug, Default)]
pub(super) struct Cache {
    last: Mutex<Option<Signed>>,
}

#[derive(Debug)]
struct Signed {
    version: i64,
    keys: Arc<ZoneKeys>,
    fresh_until: u64,
    records: Arc<Vec<Rr>>,
}

impl Cache {
    /// The signed zone at `version` (everything an AXFR carries between its two SOAs).
    pub fn get(
        &self,
        version: i64,
        numbers: &[NumberRecord],
        zone: &ZoneConfig,
        apex: &ApexRecords,
        keys: &Arc<ZoneKeys>,
        clock: &dyn Clock,
    ) -> Result<Arc<Vec<Rr>>, ZoneError> {
        let now = clock.unix_seconds();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = last.as_ref()
            && s.version == version
            && s.keys.same_keys(keys)
            && now < s.fresh_until
        {
            return Ok(s.records.clone());
        }
        let started = std::time::Instant::now();
        let records = Arc::new(sign_zone(numbers, zone, apex, keys, serial_of(version), now as u32)?);
        tracing::info!(
            version,
            numbers = numbers.len(),
            records = records.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "signed the NSEC3 copy"
        );
        let fresh_until = now + u64::from(zone.signature_validity - zone.signature_refresh);
        *last = Some(Signed { version, keys: keys.clone(), fresh_until, records: records.clone() });
        Ok(records)
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

/// Signs the zone at `serial`.
fn sign_zone(
    numbers: &[NumberRecord],
    z: &ZoneConfig,
    apex: &ApexRecords,
    keys: &ZoneKeys,
    serial: u32,
    now: u32,
) -> Result<Vec<Rr>, ZoneError> {
    let apex_wire = name_to_wire_lower(&z.apex);
    let apex_labels = z.apex.num_labels();
    let inception = now.saturating_sub(z.inception_skew);
    let expiration = now.saturating_add(z.signature_validity);
    let algorithm = keys.zsk().algorithm().number();
    let mut out = Vec::new();
    // Signs the RRset `rrs` (one owner, one type) and appends it and its RRSIG.
    let add_signed = |rrs: Vec<Rr>, labels: u8, role: KeyRole, out: &mut Vec<Rr>| -> Result<(), ZoneError> {
        let Some(first) = rrs.first() else { return Ok(()) };
        let (owner, t, ttl) = (first.owner.clone(), first.rtype, first.ttl);
        let mut owner_full = owner.clone();
        owner_full.make_ascii_lowercase();
        owner_full.extend_from_slice(&apex_wire);
        let set = pack_set(rrs.iter().map(|r| r.rdata.clone()).collect());
        let c = Covered { rtype: t, algorithm, labels, ttl, signer: &apex_wire };
        let sig = sign_set(keys, role, &c, &owner_full, &set, inception, expiration)?;
        out.extend(rrs);
        out.push(Rr { owner, rtype: rtype::RRSIG, ttl, rdata: rrsig_rdata(&c, &sig) });
        Ok(())
    };

    // The apex: RRSIG(SOA) (the SOA itself opens and closes the transfer), NS, DNSKEY, NSEC3PARAM.
    let soa = apex.soa(serial);
    let c = Covered { rtype: rtype::SOA, algorithm, labels: apex_labels, ttl: soa.ttl, signer: &apex_wire };
    let set = pack_set(vec![soa.rdata.clone()]);
    let sig = sign_set(keys, KeyRole::Zsk, &c, &apex_wire, &set, inception, expiration)?;
    out.push(Rr { owner: Vec::new(), rtype: rtype::RRSIG, ttl: soa.ttl, rdata: rrsig_rdata(&c, &sig) });
    add_signed(apex.ns().collect(), apex_labels, KeyRole::Zsk, &mut out)?;
    // Every published key: during a rollover the DNSKEY set holds more than the signing pair.
    let dnskeys = keys
        .dnskey_rdatas()
        .into_iter()
        .map(|rdata| Rr { owner: Vec::new(), rtype: rtype::DNSKEY, ttl: apex.ttl(), rdata })
        .collect();
    add_signed(dnskeys, apex_labels, KeyRole::Ksk, &mut out)?;
    let param = Rr { owner: Vec::new(), rtype: NSEC3PARAM, ttl: 0, rdata: vec![1, 0, 0, 0, 0] };
    add_signed(vec![param], apex_labels, KeyRole::Zsk, &mut out)?;

    // Every number's RRsets, and the names the chain covers: (owner labels, types).
    let mut names: Vec<(Vec<u8>, Vec<u16>)> =
        vec![(Vec::new(), vec![rtype::NS, rtype::SOA, rtype::RRSIG, rtype::DNSKEY, NSEC3PARAM])];
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
            add_signed(rrs.iter().filter(|r| r.rtype == *t).cloned().collect(), labels, KeyRole::Zsk, &mut out)?;
        }
        types.push(rtype::RRSIG);
        types.sort_unstable();
        names.push((rrs[0].owner.clone(), types));
        exact.insert(digits);
        for k in 1..digits.len() {
            prefixes.insert(&digits[..k]);
        }
    }
    // Empty non-terminals: partial numbers with a number below them that are not numbers themselves.
    for p in prefixes.difference(&exact) {
        names.push((p.bytes().rev().flat_map(|d| [1, d]).collect(), Vec::new()));
    }

    // The chain, in hash order.
    let mut hashed: Vec<([u8; 20], Vec<u16>)> = names
        .into_iter()
        .map(|(owner, types)| {
            let mut full = owner;
            full.extend_from_slice(&apex_wire);
            (hash(&full), types)
        })
        .collect();
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
        add_signed(vec![Rr { owner, rtype: NSEC3, ttl, rdata }], apex_labels + 1, KeyRole::Zsk, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
