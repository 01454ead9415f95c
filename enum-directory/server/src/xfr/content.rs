//! What a transfer carries: the apex and every number's records in wire form, a consistent snapshot of storage
//! at one zone version (AXFR), the journal as RFC 1995 difference sequences (IXFR), and the writer that packs
//! records into TCP-sized messages with owner names compressed against the question (the apex).

use std::collections::BTreeMap;

use hickory_proto::serialize::binary::BinEncodable;
use tincan_enum_core::{E164, NumberRecord, key_txt, naptr_rdata};

use crate::dns::apex::ApexRdata;
use crate::dns::wire::rtype;
use crate::dns::{ZoneConfig, ZoneError};
use crate::storage::{JournalEntry, Storage, StorageError};

/// One resource record: owner labels in front of the apex (empty for the apex), type, TTL, rdata.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rr {
    /// The labels left of the apex, in wire format (`\x011\x010` for `1.0.<apex>`).
    pub owner: Vec<u8>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// The labels of a number's owner name left of the apex: its digits reversed, one per label.
pub(crate) fn number_owner(number: &E164) -> Vec<u8> {
    number.digits().bytes().rev().flat_map(|d| [1, d]).collect()
}

/// The NAPTR and TXT records publishing `record`, sorted (canonical rdata order within each type).
pub(crate) fn number_rrs(record: &NumberRecord, ttl: u32) -> Vec<Rr> {
    let owner = number_owner(&record.number);
    let mut out: Vec<Rr> = naptr_rdata(&record.services)
        .iter()
        .map(|n| Rr { owner: owner.clone(), rtype: rtype::NAPTR, ttl, rdata: n.to_bytes().expect("NAPTR encodes") })
        .collect();
    if let Some(k) = &record.key {
        out.push(Rr { owner, rtype: rtype::TXT, ttl, rdata: key_txt(k).to_bytes().expect("TXT encodes") });
    }
    out.sort();
    out.dedup();
    out
}

/// The apex records other than DNSSEC ones: SOA at a serial, NS.
#[derive(Debug, Clone)]
pub(crate) struct ApexRecords {
    rdata: ApexRdata,
    ttl: u32,
}

impl ApexRecords {
    /// The apex as the DNS engine publishes it (same NS, hostmaster, TTLs and timers).
    pub fn new(z: &ZoneConfig) -> Result<ApexRecords, ZoneError> {
        Ok(ApexRecords { rdata: ApexRdata::new(z)?, ttl: z.apex_ttl })
    }

    /// The SOA record at `serial`.
    pub fn soa(&self, serial: u32) -> Rr {
        Rr { owner: Vec::new(), rtype: rtype::SOA, ttl: self.ttl, rdata: self.rdata.soa(serial) }
    }

    /// The NS records.
    pub fn ns(&self) -> impl Iterator<Item = Rr> + '_ {
        self.rdata.ns().iter().map(|n| Rr { owner: Vec::new(), rtype: rtype::NS, ttl: self.ttl, rdata: n.clone() })
    }

    /// The apex TTL.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The negative TTL (SOA minimum).
    pub fn negative_ttl(&self) -> u32 {
        self.rdata.negative_ttl()
    }
}

/// The SOA serial of a zone version (serials are 32-bit and wrap, RFC 1982; versions only grow).
pub(crate) fn serial_of(version: i64) -> u32 {
    (version & 0xFFFF_FFFF) as u32
}

/// The current zone version.
pub(crate) async fn current_version(storage: &dyn Storage) -> Result<i64, StorageError> {
    let mut tx = storage.begin_read().await?;
    tx.journal().current_version().await
}

/// How many numbers one page of a whole-zone read holds.
const PAGE: u32 = 10_000;

/// Every number as of one zone version, read in pages of [`PAGE`] (ordered by number), each in a short
/// transaction of its own so writers are not held up by a long transfer and memory stays bounded.
///
/// Changes committed after the version was read are undone page by page from the journal: a number changed
/// since is shown as its journal entry's old state, so the pages together are exactly the zone at
/// [`Pages::version`].
pub(crate) struct Pages<'s> {
    storage: &'s dyn Storage,
    version: i64,
    /// The last number of the previous page (`None`: at the start).
    after: Option<E164>,
    /// Journal versions read so far, and each number changed since `version` with its state at `version`.
    seen: i64,
    changed: BTreeMap<String, Option<NumberRecord>>,
    done: bool,
}

impl<'s> Pages<'s> {
    /// Reads the current version; pages follow.
    pub async fn start(storage: &'s dyn Storage) -> Result<Pages<'s>, StorageError> {
        let version = current_version(storage).await?;
        Ok(Pages { storage, version, after: None, seen: version, changed: BTreeMap::new(), done: false })
    }

    /// The zone version the pages show.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The next page (in number order), `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<NumberRecord>>, StorageError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        if self.done {
            return Ok(None);
        }
        let mut tx = self.storage.begin_read().await?;
        let rows = tx.numbers().page(self.after.as_ref(), PAGE).await?;
        let now = tx.journal().current_version().await?;
        for e in journal_between(&mut *tx, self.seen, now).await? {
            // The first change after `version` holds the state at `version`.
            self.changed.entry(e.number.as_str().to_owned()).or_insert(e.old);
        }
        drop(tx);
        self.seen = now;
        // This page covers the numbers after the previous page's last, up to its own last (or to the end).
        let last = if rows.len() < PAGE as usize {
            self.done = true;
            None
        } else {
            rows.last().map(|r| r.record.number.clone())
        };
        let from = self.after.as_ref().map_or(Unbounded, |a| Excluded(a.as_str()));
        let to = last.as_ref().map_or(Unbounded, |l| Included(l.as_str()));
        let mut out: Vec<NumberRecord> =
            rows.into_iter().map(|n| n.record).filter(|r| !self.changed.contains_key(r.number.as_str())).collect();
        out.extend(self.changed.range::<str, _>((from, to)).filter_map(|(_, r)| r.clone()));
        out.sort_by(|a, b| a.number.as_str().cmp(b.number.as_str()));
        self.after = last;
        Ok(Some(out))
    }
}

/// Every number as of one zone version, ordered by number, and that version (all [`Pages`] at once).
pub(crate) async fn snapshot(storage: &dyn Storage) -> Result<(i64, Vec<NumberRecord>), StorageError> {
    let mut pages = Pages::start(storage).await?;
    let mut out = Vec::new();
    while let Some(page) = pages.next().await? {
        out.extend(page);
    }
    Ok((pages.version(), out))
}

/// Journal entries with `after < version <= upto`, oldest first.
pub(crate) async fn journal_between(
    tx: &mut dyn crate::storage::Repository,
    after: i64,
    upto: i64,
) -> Result<Vec<JournalEntry>, StorageError> {
    let mut out = Vec::new();
    let mut from = after;
    while from < upto {
        let batch = tx.journal().since(from, 10_000).await?;
        let Some(last) = batch.last().map(|e| e.version) else { break };
        out.extend(batch.into_iter().filter(|e| e.version <= upto));
        from = last;
    }
    Ok(out)
}

/// One step of an incremental transfer: the records to delete and to add going from `version - 1` to `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diff {
    pub version: i64,
    pub deleted: Vec<Rr>,
    pub added: Vec<Rr>,
}

/// The difference one journal entry makes: records only in the old state are deleted, only in the new added.
pub(crate) fn diff(e: &JournalEntry, ttl: u32) -> Diff {
    let old = e.old.as_ref().map(|r| number_rrs(r, ttl)).unwrap_or_default();
    let new = e.new.as_ref().map(|r| number_rrs(r, ttl)).unwrap_or_default();
    Diff {
        version: e.version,
        deleted: old.iter().filter(|r| !new.contains(r)).cloned().collect(),
        added: new.iter().filter(|r| !old.contains(r)).cloned().collect(),
    }
}

/// The largest message the writer builds (well under TCP's 65535, leaving room for the TSIG).
pub(crate) const MESSAGE_TARGET: usize = 16 * 1024;

/// Packs records into answer messages: each starts with the header and the question (the apex, so owner names
/// compress to their digit labels and a pointer to offset 12).
pub(crate) struct Packer {
    id: u16,
    flags: u16,
    question: Vec<u8>,
    current: Vec<u8>,
    answers: u16,
}

impl Packer {
    /// Messages answering query `id` for `qtype` at the apex `apex_wire`; `rd` copies the request's flag.
    pub fn new(id: u16, rd: bool, apex_wire: &[u8], qtype: u16) -> Packer {
        let mut question = apex_wire.to_vec();
        question.extend_from_slice(&qtype.to_be_bytes());
        question.extend_from_slice(&1u16.to_be_bytes());
        // QR, opcode QUERY, AA, RD as asked, NOERROR.
        let flags = 0x8400 | if rd { 0x0100 } else { 0 };
        let mut p = Packer { id, flags, question, current: Vec::new(), answers: 0 };
        p.start();
        p
    }

    fn start(&mut self) {
        self.current.clear();
        self.current.extend_from_slice(&self.id.to_be_bytes());
        self.current.extend_from_slice(&self.flags.to_be_bytes());
        self.current.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        self.current.extend_from_slice(&self.question);
        self.answers = 0;
    }

    /// Adds a record; returns a finished message when the current one is full.
    pub fn push(&mut self, rr: &Rr) -> Option<Vec<u8>> {
        self.push_parts(&rr.owner, rr.rtype, rr.ttl, &rr.rdata)
    }

    /// [`Packer::push`] with the record given by its parts (owner labels left of the apex, type, TTL, rdata).
    pub fn push_parts(&mut self, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Option<Vec<u8>> {
        let size = owner.len() + 2 + 10 + rdata.len();
        let full = self.answers > 0 && (self.current.len() + size > MESSAGE_TARGET || self.answers == u16::MAX);
        let done = if full { self.take() } else { None };
        self.current.extend_from_slice(owner);
        self.current.extend_from_slice(&[0xC0, 12]);
        self.current.extend_from_slice(&rtype.to_be_bytes());
        self.current.extend_from_slice(&1u16.to_be_bytes());
        self.current.extend_from_slice(&ttl.to_be_bytes());
        self.current.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.current.extend_from_slice(rdata);
        self.answers += 1;
        done
    }

    /// The message being built, if it holds any record.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.answers == 0 {
            return None;
        }
        self.current[6..8].copy_from_slice(&self.answers.to_be_bytes());
        let out = std::mem::take(&mut self.current);
        self.start();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::name_to_wire_lower;
    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;
    use tincan_enum_core::{MasterKey, Service, ServiceType};

    fn record(n: &str, uri: &str, key: bool) -> NumberRecord {
        NumberRecord {
            number: E164::parse(n).unwrap(),
            services: vec![Service::new(ServiceType::Matrix, uri).unwrap()],
            key: key.then(|| MasterKey::from_base64("WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY").unwrap()),
        }
    }

    #[test]
    fn packed_messages_parse_with_hickory() {
        let z = ZoneConfig::default();
        let apex = ApexRecords::new(&z).unwrap();
        let apex_wire = name_to_wire_lower(&z.apex);
        let mut p = Packer::new(77, false, &apex_wire, rtype::AXFR);
        let mut messages = Vec::new();
        let mut rrs = vec![apex.soa(5)];
        rrs.extend(apex.ns());
        for i in 0..500 {
            rrs.extend(number_rrs(&record(&format!("+4420794{i:05}"), "matrix:u/alice:hs.test", true), 300));
        }
        rrs.push(apex.soa(5));
        for rr in &rrs {
            messages.extend(p.push(rr));
        }
        messages.extend(p.take());
        assert!(messages.len() > 1, "500 numbers need several messages");
        let mut seen = 0;
        for m in &messages {
            assert!(m.len() <= MESSAGE_TARGET);
            let parsed = Message::from_vec(m).unwrap();
            assert_eq!(parsed.metadata.id, 77);
            assert!(parsed.metadata.authoritative);
            seen += parsed.answers.len();
        }
        assert_eq!(seen, rrs.len());
        let first = Message::from_vec(&messages[0]).unwrap();
        assert_eq!(first.answers[0].record_type(), RecordType::SOA);
        assert_eq!(first.answers[0].name.to_ascii(), "e164.tincan.test.");
        let last = Message::from_vec(messages.last().unwrap()).unwrap();
        let n = last.answers.iter().rev().find(|r| r.record_type() == RecordType::NAPTR).unwrap();
        assert_eq!(n.name.to_ascii(), "9.9.4.0.0.4.9.7.0.2.4.4.e164.tincan.test.");
    }

    #[test]
    fn a_journal_entry_diffs_only_what_changed() {
        let old = record("+442079460001", "matrix:u/alice:hs.test", true);
        let new = record("+442079460001", "matrix:u/bob:hs.test", true);
        let e = JournalEntry {
            version: 9,
            number: old.number.clone(),
            old: Some(old),
            new: Some(new),
            provider: None,
            at: std::time::SystemTime::UNIX_EPOCH,
        };
        let d = diff(&e, 300);
        assert_eq!((d.deleted.len(), d.added.len()), (1, 1), "the TXT is unchanged: {d:?}");
        assert!(d.deleted.iter().chain(&d.added).all(|r| r.rtype == rtype::NAPTR));
    }
}
