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
mod warn_limit;

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
use crate::dns::wire::{Request, name_to_wire_lower, rtype};
use crate::dns::{self, SignedEntry, Transport, ZoneConfig, ZoneError, ZoneKeys};
use crate::metrics::{Transfer, TransferCounters};
use crate::storage::{Storage, StorageError};
use content::{ApexRecords, Packer, Rr};
use tsig::{Check, Signer, TsigKey};
use warn_limit::WarnLimiter;

/// Why transfers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XfrError {
    /// A secondary's TSIG settings are unusable (config validation reports the detail).
    #[error("xfr.secondaries.{0}: bad TSIG key name or secret")]
    Key(String),
    /// The zone's apex settings are unusable.
    #[error(transparent)]
    Zone(#[from] ZoneError),
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
    /// Held while the NSEC3 copy is checked or made (by the task making it), so it is signed once.
    nsec3_signing: Arc<tokio::sync::Mutex<()>>,
    counters: Arc<TransferCounters>,
    live: Option<Arc<dns::Zone>>,
    /// The log lines about refused requests (a bogus key costs an attacker nothing).
    refusals_logged: WarnLimiter,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers").field("apex", &self.apex).field("secondaries", &self.secondaries).finish()
    }
}

/// Log lines about refused transfer and TSIG requests per minute at most; the rest are counted (`suppressed` on
/// the next line) and by the `refused` transfer metric.
const REFUSAL_LOGS_PER_MINUTE: u32 = 20;

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
            records: ApexRecords::new(&zone)?,
            zone,
            keys,
            storage,
            clock,
            secondaries,
            tsig_keys,
            notify: config.notify.clone(),
            nsec3_cache: Arc::default(),
            nsec3_signing: Arc::default(),
            counters: Arc::default(),
            live: None,
            refusals_logged: WarnLimiter::new(REFUSAL_LOGS_PER_MINUTE, std::time::Duration::from_secs(60)),
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

    /// Starts one NOTIFY task per secondary that wants NOTIFY, and (when a secondary takes the `nsec3` flavour)
    /// the task keeping the pre-signed copy current; returns the [`ZoneWriter`] to put in front of the zone so
    /// every committed change announces itself. The tasks end when the returned writer is dropped.
    ///
    /// `unsigned` secondaries are told of every change of the zone version. `nsec3` secondaries are told of every
    /// new signed copy instead, which is made after a change, a key change (rollover step) or before the copy's
    /// signatures near their end, whether or not anything else changed.
    pub fn start_notifier(self: &Arc<Self>, zone: Arc<dyn ZoneWriter>) -> Arc<dyn ZoneWriter> {
        let (tx, rx) = watch::channel(0u64);
        let (copies_tx, copies_rx) = watch::channel(0u64);
        if self.secondaries.iter().any(|s| s.config.flavour == Flavour::Nsec3) {
            tokio::spawn(maintain_nsec3(self.clone(), rx.clone(), copies_tx));
        }
        for i in 0..self.secondaries.len() {
            let s = &self.secondaries[i].config;
            if s.notify {
                let announces = match s.flavour {
                    Flavour::Unsigned => rx.clone(),
                    Flavour::Nsec3 => copies_rx.clone(),
                };
                tokio::spawn(notify::run(self.clone(), i, announces));
            }
        }
        Arc::new(Announcing { zone, changes: tx })
    }

    /// The SOA serial `secondary` sees now: the zone version for `unsigned`, the latest copy's for `nsec3`.
    async fn serial_for(&self, secondary: &Secondary) -> Result<u32, XfrFailure> {
        Ok(match secondary.config.flavour {
            Flavour::Unsigned => content::serial_of(content::current_version(&*self.storage).await?),
            Flavour::Nsec3 => self.nsec3_copy(false).await?.0.serial,
        })
    }

    /// The keys the `nsec3` copy is signed with: the zone's current keys when following a zone.
    fn signing_keys(&self) -> Arc<ZoneKeys> {
        self.live.as_ref().map_or_else(|| self.keys.clone(), |z| z.keys())
    }

    /// The NSEC3 copy to serve and whether it was made now. With `current`, a copy not showing the current zone
    /// version with the current keys is replaced; without, the latest copy is served while its signatures are
    /// fresh (the maintaining task replaces it and sends NOTIFY, so a transfer never waits for signing).
    async fn nsec3_copy(&self, current: bool) -> Result<(Arc<nsec3::Copy>, bool), XfrFailure> {
        let one_at_a_time = self.nsec3_signing.clone().lock_owned().await;
        let now = self.clock.unix_seconds();
        let keys = self.signing_keys();
        if let Some(c) = self.nsec3_cache.latest() {
            let usable = if current {
                c.current(content::current_version(&*self.storage).await?, &keys, now)
            } else {
                c.fresh(now)
            };
            if usable {
                return Ok((c, false));
            }
        }
        // Made by a task of its own that holds the lock until the copy is kept: a requester that goes away (a
        // secondary closing its connection) does not cancel it, and whoever asks meanwhile waits for this copy
        // rather than making another.
        let (storage, cache) = (self.storage.clone(), self.nsec3_cache.clone());
        let (zone, records) = (self.zone.clone(), self.records.clone());
        let made = tokio::spawn(async move {
            let _one_at_a_time = one_at_a_time;
            let (version, numbers) = content::snapshot(&*storage).await?;
            // Signing is CPU work for seconds to minutes: off the DNS tasks' threads.
            let signed =
                tokio::task::spawn_blocking(move || cache.make(version, &numbers, &zone, &records, &keys, now)).await;
            match signed {
                Ok(Ok(copy)) => Ok(copy),
                Ok(Err(e)) => Err(XfrFailure::Sign(e)),
                Err(e) => Err(XfrFailure::Task(e.to_string())),
            }
        });
        match made.await {
            Ok(Ok(copy)) => Ok((copy, true)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(XfrFailure::Task(e.to_string())),
        }
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
                if let Some(suppressed) = self.refusals_logged.allow(std::time::Instant::now()) {
                    tracing::info!(%peer, suppressed, "zone transfer without TSIG refused");
                }
                let _ = out.send(simple(id, op, rd, &question, 5)).await;
            }
            Check::BadKey { name, original_id } => {
                self.counters.refused();
                if let Some(suppressed) = self.refusals_logged.allow(std::time::Instant::now()) {
                    tracing::warn!(%peer, key = %name, suppressed, "TSIG with an unknown key refused");
                }
                let mut m = simple(id, op, rd, &question, 9);
                tsig::append_unsigned(&mut m, &name, now, original_id, tsig::BADKEY);
                let _ = out.send(m).await;
            }
            Check::BadSig { key, original_id } => {
                self.counters.refused();
                if let Some(suppressed) = self.refusals_logged.allow(std::time::Instant::now()) {
                    tracing::warn!(%peer, key = %key.name, suppressed, "TSIG signature does not verify; refused");
                }
                let mut m = simple(id, op, rd, &question, 9);
                tsig::append_unsigned(&mut m, &key.name, now, original_id, tsig::BADSIG);
                let _ = out.send(m).await;
            }
            Check::BadTime { key, mac, original_id } => {
                self.counters.refused();
                if let Some(suppressed) = self.refusals_logged.allow(std::time::Instant::now()) {
                    tracing::warn!(%peer, key = %key.name, suppressed, "TSIG time outside the fudge; refused");
                }
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
                    (RecordType::SOA, _) => self.soa(id, rd, secondary, &mut signer, out).await,
                    (RecordType::AXFR, Transport::Tcp) => {
                        self.whole_zone(id, rd, rtype::AXFR, secondary, &mut signer, out).await
                    }
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
        secondary: &Secondary,
        signer: &mut Signer<'_>,
        out: &mpsc::Sender<Vec<u8>>,
    ) -> Result<(), XfrFailure> {
        let serial = self.serial_for(secondary).await?;
        let mut a = Answer::new(Packer::new(id, rd, &self.apex_wire, rtype::SOA), signer, out);
        a.push(&self.records.soa(serial)).await;
        a.finish().await;
        Ok(())
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
        let mut a = Answer::new(Packer::new(id, rd, &self.apex_wire, qtype), signer, out);
        let mut numbers = 0usize;
        let serial = match secondary.config.flavour {
            Flavour::Unsigned => {
                // Streamed from storage page by page: memory stays bounded whatever the zone's size.
                let mut pages = content::Pages::start(&*self.storage).await?;
                let serial = content::serial_of(pages.version());
                let soa = self.records.soa(serial);
                let ok = a.push(&soa).await && a.push_all(self.records.ns()).await;
                let ttl = self.zone.record_ttl;
                while ok && let Some(page) = pages.next().await? {
                    numbers += page.len();
                    for n in &page {
                        if !a.push_all(content::number_rrs(n, ttl)).await {
                            return Ok(());
                        }
                    }
                }
                serial
            }
            Flavour::Nsec3 => {
                let (copy, _) = self.nsec3_copy(false).await?;
                let soa = self.records.soa(copy.serial);
                if !a.push(&soa).await {
                    return Ok(());
                }
                for r in copy.records() {
                    if !a.push_parts(r.owner, r.rtype, r.ttl, r.rdata).await {
                        return Ok(());
                    }
                }
                copy.serial
            }
        };
        a.push(&self.records.soa(serial)).await;
        let messages = a.finish().await;
        tracing::info!(
            secondary = %secondary.name,
            flavour = ?secondary.config.flavour,
            serial,
            numbers,
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
        let mut tx = self.storage.begin_read().await?;
        let version = tx.journal().current_version().await?;
        let serial = content::serial_of(version);
        // The client's version: the newest version with its serial (versions only grow; serials wrap).
        let behind = serial.wrapping_sub(client_serial);
        let from = version - i64::from(behind);
        if behind == 0 {
            drop(tx);
            let mut a = Answer::new(Packer::new(id, rd, &self.apex_wire, rtype::IXFR), signer, out);
            a.push(&self.records.soa(serial)).await;
            a.finish().await;
            tracing::debug!(secondary = %secondary.name, serial, "IXFR: secondary is up to date");
            return Ok(());
        }
        // Past about half the zone in changes, the whole zone is smaller than the differences (each change costs
        // two SOAs on top of its records).
        let zone_size = tx.numbers().count().await?;
        let too_many = u64::from(behind) > zone_size / 2 + 100;
        // The journal must hold every version from the client's to ours (it is only ever cut at the old end).
        let first = if behind > i32::MAX as u32 || from < 0 || too_many {
            None
        } else {
            Some(tx.journal().since(from, JOURNAL_BATCH).await?)
                .filter(|b| b.first().is_some_and(|e| e.version == from + 1))
        };
        drop(tx);
        let Some(mut batch) = first else {
            tracing::info!(secondary = %secondary.name, client_serial, serial, too_many, "IXFR answered with the whole zone");
            return self.whole_zone(id, rd, rtype::IXFR, secondary, signer, out).await;
        };
        // Streamed from the journal batch by batch, each in a short transaction of its own.
        let mut a = Answer::new(Packer::new(id, rd, &self.apex_wire, rtype::IXFR), signer, out);
        let ttl = self.zone.record_ttl;
        let mut changes = 0usize;
        let mut ok = a.push(&self.records.soa(serial)).await;
        while ok {
            let mut last = None;
            for e in batch.iter().filter(|e| e.version <= version) {
                let d = content::diff(e, ttl);
                ok = a.push(&self.records.soa(content::serial_of(d.version - 1))).await
                    && a.push_all(&d.deleted).await
                    && a.push(&self.records.soa(content::serial_of(d.version))).await
                    && a.push_all(&d.added).await;
                if !ok {
                    return Ok(());
                }
                changes += 1;
                last = Some(e.version);
            }
            match last {
                Some(v) if v < version => {
                    let mut tx = self.storage.begin_read().await?;
                    batch = tx.journal().since(v, JOURNAL_BATCH).await?;
                }
                _ => break,
            }
        }
        a.push(&self.records.soa(serial)).await;
        let records = a.records;
        a.finish().await;
        tracing::info!(secondary = %secondary.name, from = client_serial, to = serial, changes, records, "IXFR sent");
        Ok(())
    }
}

/// How many journal entries an IXFR reads at a time.
const JOURNAL_BATCH: u32 = 10_000;

/// The messages of one answer as they are packed: each is signed and queued as soon as it is full.
struct Answer<'a, 'k> {
    packer: Packer,
    signer: &'a mut Signer<'k>,
    out: &'a mpsc::Sender<Vec<u8>>,
    messages: usize,
    records: usize,
}

impl<'a, 'k> Answer<'a, 'k> {
    fn new(packer: Packer, signer: &'a mut Signer<'k>, out: &'a mpsc::Sender<Vec<u8>>) -> Answer<'a, 'k> {
        Answer { packer, signer, out, messages: 0, records: 0 }
    }

    /// Adds a record; false when the connection is gone.
    async fn push(&mut self, rr: &Rr) -> bool {
        self.push_parts(&rr.owner, rr.rtype, rr.ttl, &rr.rdata).await
    }

    /// [`Answer::push`] with the record given by its parts (owner labels left of the apex, type, TTL, rdata).
    async fn push_parts(&mut self, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> bool {
        self.records += 1;
        match self.packer.push_parts(owner, rtype, ttl, rdata) {
            Some(m) => self.send(m).await,
            None => true,
        }
    }

    /// Adds records in order; false when the connection is gone.
    async fn push_all<R: std::borrow::Borrow<Rr>>(&mut self, rrs: impl IntoIterator<Item = R>) -> bool {
        for rr in rrs {
            if !self.push(rr.borrow()).await {
                return false;
            }
        }
        true
    }

    /// Sends the last message; returns how many were sent.
    async fn finish(mut self) -> usize {
        if let Some(m) = self.packer.take() {
            self.send(m).await;
        }
        self.messages
    }

    async fn send(&mut self, mut m: Vec<u8>) -> bool {
        self.messages += 1;
        self.signer.sign(&mut m);
        self.out.send(m).await.is_ok()
    }
}

#[async_trait]
impl Interceptor for Transfers {
    fn wants(&self, request: &[u8], transport: Transport) -> bool {
        if tsig::has_tsig(request) {
            return true;
        }
        // Unsigned transfer requests over TCP are refused here, with a log line; over UDP the engine refuses.
        transport == Transport::Tcp
            && Request::parse(request).is_ok_and(|r| matches!(r.qtype, rtype::AXFR | rtype::IXFR))
    }

    async fn handle(&self, request: Vec<u8>, peer: SocketAddr, transport: Transport, out: mpsc::Sender<Vec<u8>>) {
        self.answer(&request, peer, transport, &out).await;
    }
}

/// Keeps the NSEC3 copy current: after every change (debounced) and every second (a key change made by the
/// rollover schedule, a change made by another process, or signatures nearing their end), checks the copy and
/// re-signs it when out of date; each new copy bumps `copies`, which the `nsec3` secondaries' NOTIFY tasks watch.
/// Ends when `changes` closes.
async fn maintain_nsec3(t: Arc<Transfers>, mut changes: watch::Receiver<u64>, copies: watch::Sender<u64>) {
    // The first copy is made now rather than on the first request, which waits for this one if it comes sooner.
    let started = std::time::Instant::now();
    tracing::info!("making the first NSEC3 copy for the secondaries");
    match t.nsec3_copy(true).await {
        Ok((copy, _)) => {
            tracing::info!(
                serial = copy.serial,
                version = copy.version,
                numbers = copy.numbers,
                records = copy.record_count(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "first NSEC3 copy ready for the secondaries"
            );
            // Secondaries may hold a copy from before the start: this one has a newer serial.
            copies.send_modify(|n| *n += 1);
        }
        Err(e) => tracing::error!(error = %e, "making the first NSEC3 copy failed; retrying in a second"),
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(t.notify.debounce_ms)).await;
                changes.borrow_and_update();
            }
            _ = tick.tick() => {}
        }
        match t.nsec3_copy(true).await {
            Ok((copy, true)) => {
                tracing::info!(serial = copy.serial, version = copy.version, "new NSEC3 copy for the secondaries");
                copies.send_modify(|n| *n += 1);
            }
            Ok((_, false)) => {}
            Err(e) => tracing::error!(error = %e, "making the NSEC3 copy failed; retrying in a second"),
        }
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

    fn publish_many(&self, changes: Vec<(E164, Option<SignedEntry>)>) -> usize {
        let n = self.zone.publish_many(changes);
        if n > 0 {
            self.changes.send_modify(|c| *c += 1);
        }
        n
    }
}

/// The request's question section (empty when it has none or is malformed).
fn question_bytes(b: &[u8]) -> Vec<u8> {
    Request::parse(b).map(|r| b[12..r.question_end].to_vec()).unwrap_or_default()
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
