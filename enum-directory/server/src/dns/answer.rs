//! Answers one DNS query from the zones: pure apart from the clock and online NSEC signing.
//!
//! Positive answers carry cached RRSIGs. Denial is compact (RFC 9824): a name that does not exist gets NOERROR,
//! the SOA, and one NSEC owned by the query name whose next name is `\000.<qname>` with types
//! `RRSIG NSEC NXNAME`, signed on the spot; existing names (and empty non-terminals) missing the type get the
//! same minimal NSEC listing the types that do exist. No NSEC chain exists, so nothing can be walked.

use super::budget::SigningBudget;
use super::sign::{Covered, rdatas, rrsig_rdata, write_rrsig_rdata, write_rrsig_stored};
use super::wire::{Owner, ParseError, Rcode, Request, Response, Section, rtype, type_bitmap};
use super::zone::{Zone, ZoneError, pack_digits};
use super::zones::Zones;

/// The UDP payload size the server advertises and never exceeds (DNS flag day 2020: no fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How the query came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: answers larger than the client's EDNS size (512 without EDNS) are truncated (TC) so it retries.
    Udp,
    /// TCP: up to 65535 octets.
    Tcp,
}

/// An answer with what the metrics need.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response message.
    pub bytes: Vec<u8>,
    /// Its response code.
    pub rcode: Rcode,
    /// The question's type (0 when there was no question).
    pub qtype: u16,
    /// Whether it was truncated for UDP.
    pub truncated: bool,
    /// Whether the signing budget had no signature left for this denial: over UDP the answer is a truncated
    /// stand-in, over TCP SERVFAIL.
    pub over_budget: bool,
}

/// Answers `request`; `None` means drop it (too short to answer, or a response).
pub fn answer(zones: &Zones, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
    answer_detailed(zones, request, transport).map(|a| a.bytes)
}

/// [`answer`], with the response code and question type.
pub fn answer_detailed(zones: &Zones, request: &[u8], transport: Transport) -> Option<Answer> {
    answer_in(zones, request, transport, Vec::new())
}

/// [`answer_detailed`], writing the response into `buf` (emptied first) so a server can reuse one buffer.
pub fn answer_in(zones: &Zones, request: &[u8], transport: Transport, buf: Vec<u8>) -> Option<Answer> {
    answer_budgeted(zones, request, transport, None, buf)
}

/// [`answer_in`] with a signing budget (the view for `transport`, see [`SigningBudget::tcp`]): a denial that needs
/// a fresh signature when `budget` is spent gets, over UDP, a truncated reply with no records (TC, so the client
/// retries over TCP) and, over TCP, SERVFAIL. Positive answers and cached denials never draw on it.
pub fn answer_budgeted(
    zones: &Zones,
    request: &[u8],
    transport: Transport,
    budget: Option<&SigningBudget>,
    buf: Vec<u8>,
) -> Option<Answer> {
    let req = match Request::parse(request) {
        Ok(r) => r,
        Err(ParseError::Drop) => return None,
        Err(ParseError::FormErr { id, opcode, rd }) => {
            let bytes = Response::bare(id, opcode, rd, Rcode::FormErr).finish();
            return Some(Answer { bytes, rcode: Rcode::FormErr, qtype: 0, truncated: false, over_budget: false });
        }
    };
    let qtype = req.qtype;
    let done =
        |r: Response, rcode| Some(Answer { bytes: r.finish(), rcode, qtype, truncated: false, over_budget: false });
    let simple = |rcode: Rcode| {
        let mut r = Response::new(&req, rcode);
        if req.edns.is_some() {
            r.opt(MAX_UDP_PAYLOAD, rcode, false, false);
        }
        r
    };
    if let Some(e) = req.edns
        && e.version > 0
    {
        return done(simple(Rcode::BadVers), Rcode::BadVers);
    }
    if req.opcode != 0 {
        return done(simple(Rcode::NotImp), Rcode::NotImp);
    }
    if !req.class_ok() || matches!(qtype, rtype::AXFR | rtype::IXFR) {
        return done(simple(Rcode::Refused), Rcode::Refused);
    }
    let Some((zone, rel)) = zones.find(&req) else {
        return done(simple(Rcode::Refused), Rcode::Refused);
    };
    // Header and question with TC set and no records, so the client asks again over TCP.
    let truncated = |buf: Vec<u8>, rcode: Rcode, over_budget: bool| {
        let mut r = Response::new_in(buf, &req, rcode);
        r.set_aa();
        r.set_tc();
        if let Some(e) = req.edns {
            r.opt(MAX_UDP_PAYLOAD, rcode, e.dnssec_ok, e.dnssec_ok && e.compact_ok);
        }
        Some(Answer { bytes: r.finish(), rcode, qtype, truncated: true, over_budget })
    };
    let (rcode, r) = match authoritative(&zone, &req, rel, budget, buf) {
        Ok(v) => v,
        // A denial the signing budget had no signature left for.
        Err(ZoneError::OverBudget) if transport == Transport::Udp => {
            return truncated(Vec::new(), Rcode::NoError, true);
        }
        Err(ZoneError::OverBudget) => {
            let bytes = simple(Rcode::ServFail).finish();
            return Some(Answer { bytes, rcode: Rcode::ServFail, qtype, truncated: false, over_budget: true });
        }
        Err(_) => return done(simple(Rcode::ServFail), Rcode::ServFail),
    };
    let max = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(req.edns.map_or(512, |e| e.payload.clamp(512, MAX_UDP_PAYLOAD))),
    };
    if r.len() <= max {
        return done(r, rcode);
    }
    truncated(r.into_buf(), rcode, false)
}

fn authoritative(
    zone: &Zone,
    req: &Request<'_>,
    rel: usize,
    budget: Option<&SigningBudget>,
    buf: Vec<u8>,
) -> Result<(Rcode, Response), ZoneError> {
    let dnssec = req.edns.is_some_and(|e| e.dnssec_ok);
    let compact_ok = dnssec && req.edns.is_some_and(|e| e.compact_ok);
    // The response code is set once the name is classified (it is the header's low bits).
    let mut r = Response::new_in(buf, req, Rcode::NoError);
    r.set_aa();
    let qname = Owner::Pointer(12);
    let apex_owner = Owner::Pointer(req.labels.get(rel).unwrap_or(12));
    let config = zone.config();
    let qtype = req.qtype;
    let wants = |t: u16| qtype == t || qtype == rtype::ANY;
    let mut answered = false;
    // What the name is in the zone: the types it has (for a denial's NSEC), and whether it exists at all.
    let (present, exists): (&[u16], bool) = if rel == 0 {
        let apex = zone.apex()?;
        let l = zone.apex_labels();
        let ttl = config.apex_ttl;
        for (t, set) in [(rtype::SOA, &apex.soa), (rtype::NS, &apex.ns), (rtype::DNSKEY, &apex.dnskey)] {
            if wants(t) {
                for rd in rdatas(&set.rdata) {
                    r.record(Section::Answer, qname, t, ttl, &[rd]);
                }
                if dnssec {
                    let c = zone.covered(t, l, ttl);
                    for s in &set.sigs {
                        r.record_with(Section::Answer, qname, rtype::RRSIG, ttl, |out| write_rrsig_rdata(out, &c, s));
                    }
                }
                answered = true;
            }
        }
        (&[rtype::NS, rtype::SOA, rtype::RRSIG, rtype::NSEC, rtype::DNSKEY], true)
    } else if let Some((key, len)) = number_key(req, rel) {
        let labels = zone.apex_labels() + rel as u8;
        let ttl = config.record_ttl;
        // Written under the number's shard read lock, straight from its entry (one probe of the map).
        let found = zone.with_number(key, |e| {
            let [naptr, txt] = e.set_refs();
            for (t, set) in [(rtype::TXT, txt), (rtype::NAPTR, naptr)] {
                if let Some(set) = set
                    && wants(t)
                {
                    for rd in rdatas(set.rdata) {
                        r.record(Section::Answer, qname, t, ttl, &[rd]);
                    }
                    if dnssec && let Some(sig) = set.sig {
                        let c = zone.covered(t, labels, ttl);
                        r.record_with(Section::Answer, qname, rtype::RRSIG, ttl, |out| {
                            write_rrsig_stored(out, &c, sig)
                        });
                    }
                    answered = true;
                }
            }
            let present: &[u16] = match (txt.is_some(), naptr.is_some()) {
                (true, true) => &[rtype::TXT, rtype::NAPTR, rtype::RRSIG, rtype::NSEC],
                (true, false) => &[rtype::TXT, rtype::RRSIG, rtype::NSEC],
                (false, _) => &[rtype::NAPTR, rtype::RRSIG, rtype::NSEC],
            };
            present
        })?;
        match found {
            Some(present) => (present, true),
            // An empty non-terminal: it exists, with no types of its own.
            None if zone.has_below(key, len) => (&[rtype::RRSIG, rtype::NSEC], true),
            None => (MISSING, false),
        }
    } else {
        (MISSING, false)
    };
    // RFC 9824 §3.5/§4: without DNSSEC (or with Compact Answers OK) the real NXDOMAIN is given.
    let rcode = if !exists && (!dnssec || compact_ok) { Rcode::NxDomain } else { Rcode::NoError };
    r.set_rcode(rcode);
    if !answered {
        let apex = zone.apex()?;
        negative(zone, req, &mut r, &apex, apex_owner, present, dnssec.then_some(budget))?;
    }
    if req.edns.is_some() {
        r.opt(MAX_UDP_PAYLOAD, rcode, dnssec, compact_ok);
    }
    Ok((rcode, r))
}

/// The types a compact denial lists for a name that does not exist.
const MISSING: &[u16] = &[rtype::RRSIG, rtype::NSEC, rtype::NXNAME];

/// The number key ([`pack_digits`]'s) of the query name's `rel` labels left of the apex, read right to left
/// as the number's digits; `None` unless each is one digit and there are at most 15 (then it is no number).
fn number_key(req: &Request<'_>, rel: usize) -> Option<(u64, usize)> {
    // Labels of one octet each take two octets of wire format: then the apex starts right after them.
    if rel > 15 || req.labels.get(rel) != Some(12 + 2 * rel) {
        return None;
    }
    let labels = req.bytes.get(12..12 + 2 * rel)?;
    pack_digits(labels.rchunks_exact(2).map(|label| label[1].wrapping_sub(b'0')))
}

/// NODATA (or compact NXDOMAIN): SOA in authority, and with DNSSEC (`dnssec` is `Some(signing budget)`) its
/// RRSIG plus the minimal NSEC and its online RRSIG.
fn negative(
    zone: &Zone,
    req: &Request<'_>,
    r: &mut Response,
    apex: &super::zone::Apex,
    apex_owner: Owner,
    types: &[u16],
    dnssec: Option<Option<&SigningBudget>>,
) -> Result<(), ZoneError> {
    let config = zone.config();
    let soa_ttl = config.apex_ttl.min(config.negative_ttl);
    for rd in rdatas(&apex.soa.rdata) {
        r.record(Section::Authority, apex_owner, rtype::SOA, soa_ttl, &[rd]);
    }
    let Some(budget) = dnssec else { return Ok(()) };
    let c: Covered<'_> = zone.covered(rtype::SOA, zone.apex_labels(), config.apex_ttl);
    for s in &apex.soa.sigs {
        r.record(Section::Authority, apex_owner, rtype::RRSIG, soa_ttl, &[&rrsig_rdata(&c, s)]);
    }
    let owner = req.qname_wire_lower();
    // The immediate successor of the query name in canonical order: `\000.<qname>` (RFC 4034 §6.1).
    let mut rdata = Vec::with_capacity(owner.len() + 24);
    if owner.len() + 2 <= 255 {
        rdata.extend_from_slice(&[1, 0]);
    }
    rdata.extend_from_slice(&owner);
    rdata.extend_from_slice(&type_bitmap(types));
    // RFC 4034 §3.1.3: a leading `*` label is not counted.
    let mut labels = req.labels.len() as u8;
    if req.labels.first().is_some_and(|_| req.label(0) == b"*") {
        labels -= 1;
    }
    let sig = zone.sign_nsec(&owner, labels, &rdata, budget)?;
    let ttl = config.negative_ttl;
    r.record(Section::Authority, Owner::Pointer(12), rtype::NSEC, ttl, &[&rdata]);
    let c = zone.covered(rtype::NSEC, labels, ttl);
    r.record(Section::Authority, Owner::Pointer(12), rtype::RRSIG, ttl, &[&rrsig_rdata(&c, &sig)]);
    Ok(())
}

/// The truncated stand-in rate limiting sends: header, question, TC set, no records.
pub(crate) fn slip_reply(request: &[u8]) -> Option<Vec<u8>> {
    let req = Request::parse(request).ok()?;
    let mut r = Response::new(&req, Rcode::NoError);
    r.set_tc();
    if let Some(e) = req.edns {
        r.opt(MAX_UDP_PAYLOAD, Rcode::NoError, e.dnssec_ok, false);
    }
    Some(r.finish())
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    /// The apex `e164.tincan.test.` has three labels.
    const APEX_LABELS: usize = 3;

    fn key_of(name: &str) -> Option<(u64, usize)> {
        let mut m = Message::query();
        // Raw labels: any octets, as a query may carry them.
        let labels: Vec<&[u8]> = name.trim_end_matches('.').split('.').map(str::as_bytes).collect();
        m.add_query(Query::query(Name::from_labels(labels).unwrap(), RecordType::NAPTR));
        let bytes = m.to_vec().unwrap();
        let req = Request::parse(&bytes).unwrap();
        number_key(&req, req.labels.len() - APEX_LABELS)
    }

    #[test]
    fn number_keys_are_the_digit_labels_read_right_to_left() {
        let digits = |s: &str| pack_digits(s.bytes().map(|b| b - b'0'));
        assert_eq!(key_of("1.0.0.2.7.0.2.4.4.e164.tincan.test."), digits("442072001"));
        assert_eq!(key_of("4.E164.Tincan.Test."), digits("4"));
        let fifteen = "5.4.3.2.1.0.9.8.7.6.5.4.3.2.1.e164.tincan.test.";
        assert_eq!(key_of(fifteen), digits("123456789012345"));
        assert!(key_of(fifteen).is_some());
        // Not a number: more than 15 digits, a label of two octets, anything but a digit.
        for name in [
            "6.5.4.3.2.1.0.9.8.7.6.5.4.3.2.1.e164.tincan.test.",
            "12.4.4.e164.tincan.test.",
            "1.44.e164.tincan.test.",
            "a.4.4.e164.tincan.test.",
            "*.4.4.e164.tincan.test.",
            "1./.e164.tincan.test.",
            "1.:.e164.tincan.test.",
        ] {
            assert_eq!(key_of(name), None, "{name}");
        }
    }
}
