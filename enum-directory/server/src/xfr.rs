//! Zone transfer out to standard secondaries: AXFR (RFC 5936) and IXFR (RFC 1995) over TCP, NOTIFY (RFC 1996),
//! all authenticated with TSIG HMAC-SHA256 (RFC 8945), to the secondaries listed in `[xfr.secondaries]` only.
//!
//! The directory is a hidden primary. Transfers are built from storage, not from the in-memory zone: an AXFR is
//! a consistent snapshot of the numbers at one zone version ([`content::snapshot`]), an IXFR replays the change
//! journal kept in storage (one difference sequence per journal entry) and falls back to the whole zone when the
//! journal does not reach the secondary's serial. The SOA serial of the transferred zone is the zone version
//! (modulo 2^32), so every change increases it.
//!
//! Each secondary gets one of two [`Flavour`]s: `unsigned` (for Knot `mod-onlinesign` with the zone's own keys)
//! or `nsec3` (a pre-signed copy with an NSEC3 chain, giving up walk-proofness).
//!
//! Anything not signed with a configured key is refused: AXFR/IXFR without TSIG get REFUSED, an unknown key
//! NOTAUTH/BADKEY, a wrong MAC NOTAUTH/BADSIG, a stale time NOTAUTH/BADTIME, a valid key from an address not
//! listed for its secondary REFUSED.

pub mod config;
mod content;
pub mod export;
mod notify;
mod nsec3;
mod tsig;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tincan_common::Clock;
use tincan_enum_core::{E164, NumberRecord};
use tokio::sync::{mpsc, watch};

pub use config::{Flavour, NotifyConfig, SecondaryConfig, XfrConfig};

use crate::api::ZoneWriter;
use crate::dns::server::Interceptor;
use crate::dns::wire::{name_to_wire_lower, rtype};
use crate::dns::{self, SignedEntry, Transport, ZoneConfig, ZoneError, ZoneKeys};
use crate::metrics::{Transfer, TransferCounters};
use crate::storage::{Storage, StorageError};
use content::{ApexRecords, Packer, Rr};
use tsig::{Check, Signer, TsigKey};

/// Why transfers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XfrError {
    /// A secondary's TSIG settings are unusable (config validation reports the detail).
    #[error("xfr.secondaries.{0}: bad TSIG key name or secret")]
    Key(String),
}

/// Why one answer could not be made.
#[derive(Debug, thiserror::Error)]
enum XfrFailure {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("signing the NSEC3 copy: {0}")]
    Sign(dns::ZoneError),
    #[error("the signing task failed: {0}")]
    Task(String),
}

/// A configured secondary with its key.
#[derive(Debug)]
struct Secondary {
    name: String,
    config: SecondaryConfig,
}

/// The transfer side of the DNS server: answers TSIG-signed queries (SOA, AXFR, IXFR) from secondaries, and
/// sends NOTIFY on changes (see [`Transfers::start_notifier`]).
pub struct Transfers {
    apex: Name,
    apex_wire: Vec<u8>,
    zone: ZoneConfig,
    records: ApexRecords,
    keys: Arc<ZoneKeys>,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    secondaries: Vec<Secondary>,
    tsig_keys: Vec<TsigKey>,
    notify: NotifyConfig,
    nsec3_cache: Arc<nsec3::Cache>,
    counters: Arc<TransferCounters>,
    live: Option<Arc<dns::Zone>>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").field("apex", &self.apex).field("secondaries", &self.secondaries).finish()
    }
}

impl Transfers {
    /// Transfers of the zone `zone` (signed with `keys` for the `nsec3` flavour) to the secondaries of `config`.
    pub fn new(
        config: &XfrConfig,
        zone: ZoneConfig,
        keys: Arc<ZoneKeys>,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Transfers, XfrError> {
        let mut secondaries = Vec::new();
        let mut tsig_keys = Vec::new();
        for (name, s) in &config.secondaries {
            let key_name = config::tsig_key_name(&s.tsig_key).map_err(|_| XfrError::Key(name.clone()))?;
            let secret = s.secret().map_err(|_| XfrError::Key(name.clone()))?;
            tsig_keys.push(TsigKey::new(key_name, &secret));
            secondaries.push(Secondary { name: name.clone(), config: s.clone() });
        }
        Ok(Transfers {
            apex: zone.apex.clone(),
            apex_wire: name_to_wire_lower(&zone.apex),
            records: ApexRecords::new(&zone),
            zone,
            keys,
            storage,
            clock,
            secondaries,
            tsig_keys,
            notify: config.notify.clone(),
            nsec3_cache: Arc::default(),
            counters: Arc::default(),
            live: None,
        })
    }

    /// Signs the `nsec3` flavour with the keys `zone` signs with now (they change in a key rollover), rather than
    /// with the keys given to [`Transfers::new`].
    pub fn following(mut self, zone: Arc<dns::Zone>) -> Transfers {
        self.live = Some(zone);
        self
    }

    /// Counts transfers served and refused, and NOTIFYs sent, in `counters` (shown by `/metrics`).
    pub fn with_counters(mut self, counters: Arc<TransferCounters>) -> Transfers {
        self.counters = counters;
        self
    }

    /// Starts one NOTIFY task per secondary that wants NOTIFY; returns the [`ZoneWriter`] to put in front of the
    /// zone so every committed change announces itself. The tasks end when the returned writer is dropped.
    pub fn start_notifier(self: &Arc<Self>, zone: Arc<dyn ZoneWriter>) -> Arc<dyn ZoneWriter> {
        let (tx, rx) = watch::channel(0u64);
        for i in 0..self.secondaries.len() {
            if self.secondaries[i].config.notify {
                tokio::spawn(notify::run(self.clone(), i, rx.clone()));
            }
        }
        Arc::new(Announcing { zone, changes: tx })
    }

    async fn serial(&self) -> Result<u32, StorageError> {
        Ok(content::serial_of(content::current_version(&*self.storage).await?))
    }

    async fn answer(&self, request: &[u8], peer: SocketAddr, transport: Transport, out: &mpsc::Sender<Vec<u8>>) {
        let now = self.clock.unix_seconds();
        let Ok(msg) = Message::from_vec(request) else {
            let id = u16::from_be_bytes([request[0], request[1]]);
            let _ = out.send(bare(id, 0, false, 1)).await;
            return;
        };
        let id = msg.metadata.id;
        let rd = msg.metadata.recursion_desired;
        let op = u8::from(msg.metadata.op_code);
        let question = question_bytes(request);
        match tsig::check(request, &msg, &self.tsig_keys, now) {
            Check::Unsigned => {
                self.counters.refused();
                tracing::info!(%peer, "zone transfer without TSIG refused");
                let _ = out.send(simple(id, op, rd, &question, 5)).await;
            }
            Check::BadKey { name, original_id } => {
                self.counters.refused();
                tracing::warn!(%peer, key = %name, "TSIG with an unknown key refused");
                let mut m = simple(id, op, rd, &question, 9);
                tsig::append_unsigned(&mut m, &name, now, original_id, tsig::BADKEY);
                let _ = out.send(m).await;
            }
            Check::BadSig { key, original_id } => {
                self.counters.refused();
                tracing::warn!(%peer, key = %key.name, "TSIG signature does not verify; refused");
                let mut m = simple(id, op, rd, &question, 9);
                tsig::append_unsigned(&mut m, &key.name, now, original_id, tsig::BADSIG);
                let _ = out.send(m).await;
            }
            Check::BadTime { key, mac, original_id } => {
                self.counters.refused();
                tracing::warn!(%peer, key = %key.name, "TSIG time outside the fudge; refused");
                let mut m = simple(id, op, rd, &question, 9);
                Signer::new(key, Some(mac), original_id, now, tsig::BADTIME).sign(&mut m);
                let _ = out.send(m).await;
            }
            Check::Valid { key, mac, original_id } => {
                let index = self.tsig_keys.iter().position(|k| std::ptr::eq(k, key)).expect("a configured key");
                let secondary = &self.secondaries[index];
                let mut signer = Signer::new(key, Some(mac), original_id, now, 0);
                let refuse = |rcode: u16, signer: &mut Signer<'_>| {
                    let mut m = simple(id, op, rd, &question, rcode);
                    signer.sign(&mut m);
                    m
                };
                if !secondary.config.allows(peer.ip()) {
                    self.counters.refused();
                    tracing::warn!(%peer, secondary = %secondary.name, "valid TSIG from an address not allowed");
                    let _ = out.send(refuse(5, &mut signer)).await;
                    return;
                }
                let Some(q) = msg.queries.first().filter(|_| msg.queries.len() == 1) else {
                    let _ = out.send(refuse(1, &mut signer)).await;
                    return;
                };
                if msg.metadata.op_code != OpCode::Query {
                    let _ = out.send(refuse(4, &mut signer)).await;
                    return;
                }
                if q.query_class() != DNSClass::IN || q.name().to_lowercase() != self.apex {
                    let _ = out.send(refuse(9, &mut signer)).await;
                    return;
                }
                let result = match (q.query_type(), transport) {
                    (RecordType::SOA, _) => self.soa(id, rd, &mut signer, out).await,
                    (RecordType::AXFR, Transport::Tcp) => self.axfr(id, rd, secondary, &mut signer, out).await,
                    (RecordType::IXFR, Transport::Tcp) => {
                        let client = msg.authorities.iter().find_map(|r| match &r.data {
                            RData::SOA(soa) if r.name.to_lowercase() == self.apex => Some(soa.serial),
                            _ => None,
                        });
                        match client {
                            Some(c) => self.ixfr(id, rd, c, secondary, &mut signer, out).await,
                            None => {
                                let _ = out.send(refuse(1, &mut signer)).await;
                                Ok(())
                            }
                        }
                    }
                    _ => {
                        let _ = out.send(refuse(5, &mut signer)).await;
                        Ok(())
                    }
                };
                match (&result, q.query_type()) {
                    (Ok(()), RecordType::AXFR) => self.counters.served(Transfer::Axfr),
                    (Ok(()), RecordType::IXFR) => self.counters.served(Transfer::Ixfr),
                    _ => {}
                }
                if let Err(e) = result {
                    tracing::error!(%peer, error = %e, "zone transfer failed");
                    let _ = out.send(refuse(2, &mut signer)).await;
                }
            }
        }
    }

    async fn soa(
        &self,
        id: u16,
        rd: bool,
        signer: &mut Signer<'_>,
        out: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), XfrFailure> {
        let serial = self.serial().await?;
        let mut p = Packer::new(id, rd, &self.apex_wire, rtype::SOA);
        let _ = p.push(&self.records.soa(serial));
        self.send(p.take(), signer, out).await;
        Ok(())
    }

    async fn axfr(
        &self,
        id: u16,
        rd: bool,
        secondary: &Secondary,
        signer: &mut Signer<'_>,
        out: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), XfrFailure> {
        self.whole_zone(id, rd, rtype::AXFR, secondary, signer, out).await
    }

    async fn whole_zone(
        &self,
        id: u16,
        rd: bool,
        qtype: u16,
        secondary: &Secondary,
        signer: &mut Signer<'_>,
        out: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), XfrFailure> {
        let started = std::time::Instant::now();
        let (version, mut numbers) = content::snapshot(&*self.storage).await?;
        let mut count = numbers.len();
        let serial = content::serial_of(version);
        let mut p = Packer::new(id, rd, &self.apex_wire, qtype);
        let soa = self.records.soa(serial);
        let mut messages = 0usize;
        if let Some(m) = p.push(&soa) {
            messages += 1;
            self.send(Some(m), signer, out).await;
        }
        match secondary.config.flavour {
            Flavour::Unsigned => {
                for rr in self.records.ns() {
                    if let Some(m) = p.push(&rr) {
                        messages += 1;
                        self.send(Some(m), signer, out).await;
                    }
                }
                let ttl = self.zone.record_ttl;
                for n in &numbers {
                    for rr in content::number_rrs(n, ttl) {
                        if let Some(m) = p.push(&rr) {
                            messages += 1;
                            if !self.send(Some(m), signer, out).await {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            Flavour::Nsec3 => {
                // Signing is CPU work for seconds to minutes: off the DNS tasks' threads.
                let (cache, zone, records) = (self.nsec3_cache.clone(), self.zone.clone(), self.records.clone());
                let keys = self.live.as_ref().map_or_else(|| self.keys.clone(), |z| z.keys());
                let clock = self.clock.clone();
                let numbers = std::mem::take(&mut numbers);
                count = numbers.len();
                let signed =
                    tokio::task::spawn_blocking(move || cache.get(version, &numbers, &zone, &records, &keys, &*clock))
                        .await;
                let signed = match signed {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(XfrFailure::Sign(e)),
                    Err(e) => return Err(XfrFailure::Task(e.to_string())),
                };
                for rr in signed.iter() {
                    if let Some(m) = p.push(rr) {
                        messages += 1;
                        if !self.send(Some(m), signer, out).await {
                            return Ok(());
                        }
                    }
                }
            }
        }
        if let Some(m) = p.push(&soa) {
            messages += 1;
            self.send(Some(m), signer, out).await;
        }
        messages += 1;
        self.send(p.take(), signer, out).await;
        tracing::info!(
            secondary = %secondary.name,
            flavour = ?secondary.config.flavour,
            serial,
            numbers = count,
            messages,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "AXFR sent"
        );
        Ok(())
    }

    async fn ixfr(
        &self,
        id: u16,
        rd: bool,
        client_serial: u32,
        secondary: &Secondary,
        signer: &mut Signer<'_>,
        out: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), XfrFailure> {
        if secondary.config.flavour == Flavour::Nsec3 {
            return self.whole_zone(id, rd, rtype::IXFR, secondary, signer, out).await;
        }
        let mut tx = self.storage.begin().await?;
        let version = tx.journal().current_version().await?;
        let serial = content::serial_of(version);
        // The client's version: the newest version with its serial (versions only grow; serials wrap).
        let behind = serial.wrapping_sub(client_serial);
        let from = version - i64::from(behind);
        if behind == 0 {
            drop(tx);
            let mut p = Packer::new(id, rd, &self.apex_wire, rtype::IXFR);
            let _ = p.push(&self.records.soa(serial));
            self.send(p.take(), signer, out).await;
            tracing::debug!(secondary = %secondary.name, serial, "IXFR: secondary is up to date");
            return Ok(());
        }
        // Past about half the zone in changes, the whole zone is smaller than the differences (each change costs
        // two SOAs on top of its records).
        let zone_size = tx.numbers().count().await?;
        let too_many = u64::from(behind) > zone_size / 2 + 100;
        let entries = if behind > i32::MAX as u32 || from < 0 || too_many {
            None
        } else {
            let entries = content::journal_between(&mut *tx, from, version).await?;
            // The journal must hold every version from the client's to ours.
            let complete =
                entries.len() as i64 == version - from && entries.first().is_some_and(|e| e.version == from + 1);
            complete.then_some(entries)
        };
        drop(tx);
        let Some(entries) = entries else {
            tracing::info!(secondary = %secondary.name, client_serial, serial, too_many, "IXFR answered with the whole zone");
            return self.whole_zone(id, rd, rtype::IXFR, secondary, signer, out).await;
        };
        let mut p = Packer::new(id, rd, &self.apex_wire, rtype::IXFR);
        let mut records = 0usize;
        let ttl = self.zone.record_ttl;
        let mut push = |rr: &Rr, p: &mut Packer| {
            records += 1;
            p.push(rr)
        };
        let mut pending = Vec::new();
        pending.extend(push(&self.records.soa(serial), &mut p));
        for e in &entries {
            let d = content::diff(e, ttl);
            pending.extend(push(&self.records.soa(content::serial_of(d.version - 1)), &mut p));
            for rr in &d.deleted {
                pending.extend(push(rr, &mut p));
            }
            pending.extend(push(&self.records.soa(content::serial_of(d.version)), &mut p));
            for rr in &d.added {
                pending.extend(push(rr, &mut p));
            }
            for m in pending.drain(..) {
                if !self.send(Some(m), signer, out).await {
                    return Ok(());
                }
            }
        }
        pending.extend(push(&self.records.soa(serial), &mut p));
        pending.extend(p.take());
        for m in pending {
            self.send(Some(m), signer, out).await;
        }
        tracing::info!(
            secondary = %secondary.name,
            from = client_serial,
            to = serial,
            changes = entries.len(),
            records,
            "IXFR sent"
        );
        Ok(())
    }

    /// Signs and queues one message; false when the connection is gone.
    async fn send(&self, m: Option<Vec<u8>>, signer: &mut Signer<'_>, out: &mpsc::Sender<Vec<u8>>) -> bool {
        let Some(mut m) = m else { return true };
        signer.sign(&mut m);
        out.send(m).await.is_ok()
    }
}

#[async_trait]
impl Interceptor for Transfers {
    fn wants(&self, request: &[u8], transport: Transport) -> bool {
        if tsig::has_tsig(request) {
            return true;
        }
        // Unsigned transfer requests over TCP are refused here, with a log line; over UDP the engine refuses.
        transport == Transport::Tcp && matches!(qtype_of(request), Some(rtype::AXFR | rtype::IXFR))
    }

    async fn handle(&self, request: Vec<u8>, peer: SocketAddr, transport: Transport, out: mpsc::Sender<Vec<u8>>) {
        self.answer(&request, peer, transport, &out).await;
    }
}

/// The [`ZoneWriter`] in front of the zone when transfers are on: writes through, then wakes the notifier.
struct Announcing {
    zone: Arc<dyn ZoneWriter>,
    changes: watch::Sender<u64>,
}

impl ZoneWriter for Announcing {
    fn sign(&self, record: &NumberRecord) -> Result<Option<SignedEntry>, ZoneError> {
        self.zone.sign(record)
    }

    fn publish(&self, record: &NumberRecord, signed: Option<SignedEntry>) {
        self.zone.publish(record, signed);
        self.changes.send_modify(|n| *n += 1);
    }

    fn remove(&self, number: &E164) {
        self.zone.remove(number);
        self.changes.send_modify(|n| *n += 1);
    }
}

/// The question type of a request, if it has exactly one question.
fn qtype_of(b: &[u8]) -> Option<u16> {
    let end = question_end(b)?;
    Some(u16::from_be_bytes([b[end - 4], b[end - 3]]))
}

fn question_end(b: &[u8]) -> Option<usize> {
    if b.len() < 12 || u16::from_be_bytes([b[4], b[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*b.get(i)?);
        match len {
            0 => break,
            1..=63 => i += 1 + len,
            _ => return None,
        }
    }
    let end = i + 5;
    (end <= b.len()).then_some(end)
}

/// The request's question section (empty when it has none or is malformed).
fn question_bytes(b: &[u8]) -> Vec<u8> {
    question_end(b).map(|end| b[12..end].to_vec()).unwrap_or_default()
}

/// A response header only.
fn bare(id: u16, opcode: u8, rd: bool, rcode: u16) -> Vec<u8> {
    simple(id, opcode, rd, &[], rcode)
}

/// A response with the question echoed and no records.
fn simple(id: u16, opcode: u8, rd: bool, question: &[u8], rcode: u16) -> Vec<u8> {
    let flags: u16 = 0x8000 | (u16::from(opcode & 0xF) << 11) | if rd { 0x0100 } else { 0 } | (rcode & 0xF);
    let mut m = Vec::with_capacity(12 + question.len() + 64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&u16::from(!question.is_empty()).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(question);
    m
}
