//! DNSKEY for the apex: fetched with the DO bit and checked against the configured anchor, so the validating
//! resolver can be given the whole (authenticated) key set as its trust anchors.
//!
//! Why: hickory's validator treats a non-root trust anchor as complete. When the apex DNSKEY RRset holds a key
//! that is not an anchor (the ZSK, or a new key during a rollover), it looks for a DS in the parent, which a
//! private ENUM apex does not have, and calls the keys bogus. So the anchor (usually a DS of the KSK) is applied
//! here: the RRset must carry a valid signature by a key the anchor trusts, and then every key in it is
//! trusted. The set is re-fetched when its TTL runs out, or early when an answer fails with an unknown key.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::dnssec::Verifier as _;
use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_proto::op::{DnsRequestOptions, Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_resolver::net::client::Client;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::FirstAnswer as _;
use hickory_resolver::net::{DnsHandle as _, NetError};

use crate::anchor::TrustAnchor;
use crate::error::{BogusReason, LookupError};
use crate::resolve::net_error;

/// The authenticated DNSKEY RRset of the apex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApexKeys {
    /// Zone keys (not revoked) of the RRset.
    pub keys: Vec<DNSKEY>,
    /// How long the set may be used: the smallest of the RRset TTL, the RRSIG's original TTL and the time left
    /// before the signature expires.
    pub ttl: Duration,
}

/// Fetches the apex DNSKEY RRset from the first server that answers and authenticates it.
pub(crate) async fn fetch(
    servers: &[SocketAddr],
    apex: &Name,
    anchor: &TrustAnchor,
    timeout: Duration,
    now_unix: u64,
) -> Result<ApexKeys, LookupError> {
    let mut last = LookupError::Timeout;
    for server in servers {
        match query(*server, apex, RecordType::DNSKEY, timeout).await {
            Ok(message) => return authenticate(&message, apex, anchor, now_unix),
            Err(e) => last = net_error(e),
        }
    }
    Err(last)
}

/// One query with the DO and RD bits to `server` (UDP, again over TCP when truncated): the whole response.
pub(crate) async fn query(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Message, NetError> {
    let mut options = DnsRequestOptions::default();
    options.edns_set_dnssec_ok = true;
    options.use_edns = true;
    options.recursion_desired = true;
    options.edns_payload_len = 1232;
    let query = Query::query(name.clone(), rtype);

    let udp = UdpClientStream::builder(server, TokioRuntimeProvider::default()).with_timeout(Some(timeout)).build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(udp);
    let task = tokio::spawn(bg);
    let answer = client.lookup(query.clone(), options).first_answer().await;
    task.abort();
    let response = answer?;
    if !response.truncation {
        return Ok(response.into_message());
    }

    let (connect, handle) = TcpClientStream::new(server, None, Some(timeout), TokioRuntimeProvider::default());
    let stream = connect.await?;
    let (client, bg) = Client::<TokioRuntimeProvider>::with_timeout(stream, handle, timeout);
    let task = tokio::spawn(bg);
    let answer = client.lookup(query, options).first_answer().await;
    task.abort();
    Ok(answer?.into_message())
}

/// Checks a DNSKEY response against the anchor (pure; `now_unix` is the current time).
pub(crate) fn authenticate(
    message: &Message,
    apex: &Name,
    anchor: &TrustAnchor,
    now_unix: u64,
) -> Result<ApexKeys, LookupError> {
    let bogus = |reason| LookupError::Bogus { name: apex.clone(), record_type: RecordType::DNSKEY, reason };
    match message.response_code {
        ResponseCode::NoError => {}
        ResponseCode::Refused => return Err(LookupError::Refused),
        ResponseCode::ServFail => return Err(LookupError::ServerFailure),
        code => return Err(LookupError::ErrorResponse(code)),
    }
    let rrset: Vec<&Record> =
        message.answers.iter().filter(|r| r.record_type() == RecordType::DNSKEY && r.name == *apex).collect();
    let keys: Vec<DNSKEY> = rrset
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k.clone()),
            _ => None,
        })
        .collect();
    if keys.is_empty() && message.answers.iter().all(|r| r.record_type() != RecordType::RRSIG) {
        // No DNSKEY at all: the apex is unsigned (or the keys were stripped): no chain to the anchor.
        return Err(LookupError::Insecure { name: apex.clone(), record_type: RecordType::DNSKEY });
    }
    let trusted: Vec<&DNSKEY> = keys.iter().filter(|k| anchor.trusts(k)).collect();
    if trusted.is_empty() {
        return Err(bogus(BogusReason::UntrustedKeys));
    }
    let now = now_unix as u32; // RRSIG times are serial numbers modulo 2^32 (RFC 4034 §3.1.5)
    let rrsigs = message.answers.iter().filter(|r| r.name == *apex).filter_map(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) if sig.input().type_covered == RecordType::DNSKEY => Some((r, sig)),
        _ => None,
    });
    let mut best: Option<u32> = None;
    for (sig_record, sig) in rrsigs {
        if !signature_usable(sig, apex, now) {
            continue;
        }
        let verified = trusted.iter().any(|key| {
            key.algorithm() == sig.input().algorithm
                && key.calculate_key_tag().is_ok_and(|t| t == sig.input().key_tag)
                && key.verify_rrsig(apex, DNSClass::IN, sig, rrset.iter().copied()).is_ok()
        });
        if verified {
            let rrset_ttl = rrset.iter().map(|r| r.ttl).min().unwrap_or(0);
            let left = sig.input().sig_expiration.get().wrapping_sub(now);
            let ttl = rrset_ttl.min(sig_record.ttl).min(sig.input().original_ttl).min(left);
            best = Some(best.map_or(ttl, |b| b.max(ttl)));
        }
    }
    let Some(ttl) = best else { return Err(bogus(BogusReason::UnsignedKeys)) };
    let keys = keys.into_iter().filter(|k| k.zone_key() && !k.revoke()).collect();
    Ok(ApexKeys { keys, ttl: Duration::from_secs(u64::from(ttl)) })
}

/// Signer is the apex, labels match (no wildcard), and `now` is inside [inception, expiration] in serial
/// number arithmetic.
fn signature_usable(sig: &RRSIG, apex: &Name, now: u32) -> bool {
    let input = sig.input();
    let after = |a: u32, b: u32| b.wrapping_sub(a) < (1 << 31); // b is at or after a
    input.signer_name == *apex
        && input.num_labels == apex.num_labels()
        && after(input.sig_inception.get(), now)
        && after(now, input.sig_expiration.get())
}
