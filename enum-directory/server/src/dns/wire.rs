//! DNS wire format for queries and answers: a strict request parser and a response writer with name compression
//! against the question (so answers keep the query's case, RFC 4343).

use hickory_proto::rr::Name;

/// Record types the engine deals with.
pub(crate) mod rtype {
    pub const NS: u16 = 2;
    pub const SOA: u16 = 6;
    pub const TXT: u16 = 16;
    pub const NAPTR: u16 = 35;
    pub const OPT: u16 = 41;
    pub const RRSIG: u16 = 46;
    pub const NSEC: u16 = 47;
    pub const DNSKEY: u16 = 48;
    /// RFC 9824: the NXNAME pseudo-type marking a name that does not exist.
    pub const NXNAME: u16 = 128;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

pub(crate) const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
const HEADER: usize = 12;

/// Response codes (the extended BADVERS is split into header and OPT parts by the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// No error (also NODATA).
    NoError,
    /// The request could not be parsed.
    FormErr,
    /// The server failed (a signature could not be made).
    ServFail,
    /// The name does not exist (only without DNSSEC, or with the Compact Answers OK flag).
    NxDomain,
    /// Opcode not implemented.
    NotImp,
    /// Not a name this server is authoritative for.
    Refused,
    /// EDNS version not supported (extended rcode 16).
    BadVers,
}

impl Rcode {
    /// The full (extended) numeric code.
    pub fn code(self) -> u16 {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::BadVers => 16,
        }
    }
}

/// The EDNS(0) OPT of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// RFC 9824 Compact Answers OK.
    pub compact_ok: bool,
}

/// A parsed query: offsets into the request bytes, nothing copied.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub bytes: &'a [u8],
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    /// Offsets (into `bytes`) of the question name's labels, leftmost first; the root is not included.
    pub labels: Labels,
    pub qtype: u16,
    pub qclass: u16,
    /// End of the question section.
    pub question_end: usize,
    pub edns: Option<Edns>,
}

/// The offsets of a question name's labels, held inline (a name of at most 255 octets has at most 127 labels),
/// so parsing a request allocates nothing.
#[derive(Clone)]
pub(crate) struct Labels {
    at: [u16; MAX_LABELS],
    n: u8,
}

/// The most labels a name of 255 octets can have (each takes at least two octets; the root is not counted).
const MAX_LABELS: usize = 127;

impl Labels {
    fn new() -> Labels {
        Labels { at: [0; MAX_LABELS], n: 0 }
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        usize::from(self.n)
    }

    /// The offset of label `i` (0 = leftmost).
    pub fn get(&self, i: usize) -> Option<usize> {
        self.at[..self.len()].get(i).map(|&o| usize::from(o))
    }

    /// The offset of the leftmost label.
    pub fn first(&self) -> Option<usize> {
        self.get(0)
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.at[..self.len()]).finish()
    }
}

/// Why a request is not answered normally.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not worth an answer (too short, or itself a response): drop it.
    Drop,
    /// Answer FORMERR with the id and flags.
    FormErr { id: u16, opcode: u8, rd: bool },
}

pub(crate) fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Skips a possibly compressed name in a record, returning the offset after it.
pub(crate) fn skip_name(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *b.get(i)?;
        match len {
            0 => return Some(i + 1),
            1..=63 => i += 1 + usize::from(len),
            0xC0..=0xFF => {
                b.get(i + 1)?;
                return Some(i + 2);
            }
            _ => return None,
        }
    }
}

impl<'a> Request<'a> {
    /// Parses a query. Anything malformed is FORMERR (or dropped when there is no header to answer).
    pub fn parse(bytes: &'a [u8]) -> Result<Request<'a>, ParseError> {
        if bytes.len() < HEADER {
            return Err(ParseError::Drop);
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        if flags & 0x8000 != 0 {
            return Err(ParseError::Drop);
        }
        let opcode = ((flags >> 11) & 0xF) as u8;
        let rd = flags & 0x0100 != 0;
        let cd = flags & 0x0010 != 0;
        let formerr = ParseError::FormErr { id, opcode, rd };
        let count = |i| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
        if qd != 1 {
            return Err(formerr);
        }
        // The question name: uncompressed labels, at most 255 octets.
        let mut labels = Labels::new();
        let mut i = HEADER;
        loop {
            let len = usize::from(*bytes.get(i).ok_or(ParseError::FormErr { id, opcode, rd })?);
            if len == 0 {
                i += 1;
                break;
            }
            if len > 63 || i + 1 + len > bytes.len() || labels.len() == MAX_LABELS {
                return Err(formerr);
            }
            // i < HEADER + 256 here (checked below for the previous label), so it fits a u16.
            labels.at[labels.len()] = i as u16;
            labels.n += 1;
            i += 1 + len;
            if i - HEADER > 255 {
                return Err(formerr);
            }
        }
        let (Some(qtype), Some(qclass)) = (u16_at(bytes, i), u16_at(bytes, i + 2)) else {
            return Err(formerr);
        };
        let question_end = i + 4;
        // Skip answer and authority records; find the OPT in the additional section.
        let mut p = question_end;
        let mut edns = None;
        for n in 0..(usize::from(an) + usize::from(ns) + usize::from(ar)) {
            let name_start = p;
            p = skip_name(bytes, p).ok_or(ParseError::FormErr { id, opcode, rd })?;
            let (Some(t), Some(class), Some(rdlen)) = (u16_at(bytes, p), u16_at(bytes, p + 2), u16_at(bytes, p + 8))
            else {
                return Err(formerr);
            };
            let ttl_hi = u16_at(bytes, p + 4).unwrap_or(0);
            let ttl_lo = u16_at(bytes, p + 6).unwrap_or(0);
            p += 10 + usize::from(rdlen);
            if p > bytes.len() {
                return Err(formerr);
            }
            if t == rtype::OPT {
                let additional = n >= usize::from(an) + usize::from(ns);
                if !additional || edns.is_some() || bytes[name_start] != 0 {
                    return Err(formerr);
                }
                edns = Some(Edns {
                    payload: class,
                    version: (ttl_hi & 0xFF) as u8,
                    dnssec_ok: ttl_lo & 0x8000 != 0,
                    compact_ok: ttl_lo & 0x4000 != 0,
                });
            }
        }
        Ok(Request { bytes, id, opcode, rd, cd, labels, qtype, qclass, question_end, edns })
    }

    /// The label at index `i` (0 = leftmost), without its length octet.
    pub fn label(&self, i: usize) -> &'a [u8] {
        let at = self.labels.get(i).expect("a label of the question name");
        &self.bytes[at + 1..at + 1 + usize::from(self.bytes[at])]
    }

    /// The question name, lowercased, in wire format.
    pub fn qname_wire_lower(&self) -> Vec<u8> {
        let mut out = self.bytes[HEADER..self.question_end - 4].to_vec();
        out.make_ascii_lowercase();
        out
    }

    /// Whether the class is one this server answers (IN, or ANY).
    pub fn class_ok(&self) -> bool {
        self.qclass == CLASS_IN || self.qclass == CLASS_ANY
    }
}

/// A name in wire format, lowercased (canonical form, RFC 4034 §6.2).
pub(crate) fn name_to_wire_lower(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// Where a record's owner name comes from.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    /// A compression pointer to this offset in the message (into the question).
    Pointer(usize),
}

/// Builds a response in place; sections must be written in order (answer, authority, additional).
pub(crate) struct Response {
    pub buf: Vec<u8>,
    counts: [u16; 3],
}

/// Which section a record goes to.
#[derive(Clone, Copy)]
pub(crate) enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

impl Response {
    /// Header and question for `req`. AA is set by the caller through [`Response::set_aa`].
    pub fn new(req: &Request<'_>, rcode: Rcode) -> Response {
        Response::new_in(Vec::with_capacity(512), req, rcode)
    }

    /// [`Response::new`], written into `buf` (emptied first; its capacity is reused).
    pub fn new_in(mut buf: Vec<u8>, req: &Request<'_>, rcode: Rcode) -> Response {
        buf.clear();
        Response::header(&mut buf, req.id, req.opcode, req.rd, req.cd, rcode);
        buf[5] = 1; // QDCOUNT
        buf.extend_from_slice(&req.bytes[HEADER..req.question_end]);
        Response { buf, counts: [0; 3] }
    }

    /// A bare header, no question (for FORMERR without a usable question).
    pub fn bare(id: u16, opcode: u8, rd: bool, rcode: Rcode) -> Response {
        let mut buf = Vec::with_capacity(HEADER);
        Response::header(&mut buf, id, opcode, rd, false, rcode);
        Response { buf, counts: [0; 3] }
    }

    fn header(buf: &mut Vec<u8>, id: u16, opcode: u8, rd: bool, cd: bool, rcode: Rcode) {
        let mut flags: u16 = 0x8000 | (u16::from(opcode & 0xF) << 11) | (rcode.code() & 0xF);
        if rd {
            flags |= 0x0100;
        }
        if cd {
            flags |= 0x0010;
        }
        let mut h = [0u8; HEADER];
        h[..2].copy_from_slice(&id.to_be_bytes());
        h[2..4].copy_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&h);
    }

    /// Sets the response code's header bits (its extended bits, if any, go in the OPT record).
    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.buf[3] = (self.buf[3] & 0xF0) | (rcode.code() & 0xF) as u8;
    }

    /// Sets the Authoritative Answer bit.
    pub fn set_aa(&mut self) {
        self.buf[2] |= 0x04;
    }

    /// Sets the TrunCation bit.
    pub fn set_tc(&mut self) {
        self.buf[2] |= 0x02;
    }

    /// Appends one record.
    pub fn record(&mut self, section: Section, owner: Owner, rtype: u16, ttl: u32, rdata: &[&[u8]]) {
        self.record_with(section, owner, rtype, ttl, |buf| {
            for part in rdata {
                buf.extend_from_slice(part);
            }
        });
    }

    /// Appends one record whose rdata `write` appends to the message (nothing is built on the side).
    pub fn record_with(
        &mut self,
        section: Section,
        owner: Owner,
        rtype: u16,
        ttl: u32,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let Owner::Pointer(at) = owner;
        let mut head = [0u8; 12];
        head[..2].copy_from_slice(&(0xC000 | (at as u16 & 0x3FFF)).to_be_bytes());
        head[2..4].copy_from_slice(&rtype.to_be_bytes());
        head[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
        head[6..10].copy_from_slice(&ttl.to_be_bytes());
        self.buf.extend_from_slice(&head);
        let rdata_at = self.buf.len();
        write(&mut self.buf);
        let len = (self.buf.len() - rdata_at) as u16;
        self.buf[rdata_at - 2..rdata_at].copy_from_slice(&len.to_be_bytes());
        self.counts[section as usize] += 1;
    }

    /// Appends the OPT record (RFC 6891) answering `edns`.
    pub fn opt(&mut self, payload: u16, rcode: Rcode, dnssec_ok: bool, compact_ok: bool) {
        let mut flags: u16 = 0;
        if dnssec_ok {
            flags |= 0x8000;
        }
        if compact_ok {
            flags |= 0x4000;
        }
        // Root owner, type, payload size, extended rcode, version 0, flags, no options.
        let mut o = [0u8; 11];
        o[1..3].copy_from_slice(&rtype::OPT.to_be_bytes());
        o[3..5].copy_from_slice(&payload.to_be_bytes());
        o[5] = (rcode.code() >> 4) as u8;
        o[7..9].copy_from_slice(&flags.to_be_bytes());
        self.buf.extend_from_slice(&o);
        self.counts[Section::Additional as usize] += 1;
    }

    /// The message so far, to reuse its buffer.
    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// The finished message.
    pub fn finish(mut self) -> Vec<u8> {
        for (i, c) in self.counts.iter().enumerate() {
            self.buf[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        self.buf
    }

    /// Current length.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

/// An NSEC type bitmap (RFC 4034 §4.1.2) of `types`, all below 256, sorted ascending.
pub(crate) fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let Some(max) = types.iter().copied().max() else {
        return Vec::new();
    };
    let len = usize::from(max / 8) + 1;
    let mut out = vec![0u8; 2 + len];
    out[1] = len as u8;
    for t in types {
        out[2 + usize::from(t / 8)] |= 0x80 >> (t % 8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;

    fn query(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if edns {
            let mut e = hickory_proto::op::Edns::new();
            e.set_dnssec_ok(true);
            e.set_max_payload(1232);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_a_query_with_edns() {
        let b = query("1.4.4.E164.tincan.test.", RecordType::NAPTR, true);
        let r = Request::parse(&b).unwrap();
        assert_eq!(r.id, 0x1234);
        assert_eq!(r.labels.len(), 6);
        assert_eq!(r.label(3), b"E164");
        assert_eq!(r.qtype, rtype::NAPTR);
        assert_eq!(r.edns, Some(Edns { payload: 1232, version: 0, dnssec_ok: true, compact_ok: false }));
        assert_eq!(r.qname_wire_lower()[..6], *b"\x011\x014\x014");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Request::parse(&[0; 5]).unwrap_err(), ParseError::Drop);
        let mut b = query("a.test.", RecordType::A, false);
        b[2] |= 0x80;
        assert_eq!(Request::parse(&b).unwrap_err(), ParseError::Drop, "a response");
        let mut b = query("a.test.", RecordType::A, false);
        b[5] = 2;
        assert!(matches!(Request::parse(&b), Err(ParseError::FormErr { id: 0x1234, .. })));
        let b = query("a.test.", RecordType::A, false);
        assert!(matches!(Request::parse(&b[..b.len() - 1]), Err(ParseError::FormErr { .. })), "cut question");
        let b = query("a.test.", RecordType::A, true);
        assert!(matches!(Request::parse(&b[..b.len() - 1]), Err(ParseError::FormErr { .. })), "cut OPT");
    }

    #[test]
    fn writes_what_hickory_reads() {
        let b = query("1.4.4.e164.tincan.test.", RecordType::TXT, true);
        let req = Request::parse(&b).unwrap();
        let mut r = Response::new(&req, Rcode::NoError);
        r.set_aa();
        r.record(Section::Answer, Owner::Pointer(12), rtype::TXT, 60, &[b"\x02hi"]);
        r.record(Section::Authority, Owner::Pointer(req.labels.get(3).unwrap()), rtype::NS, 60, &[b"\x02ns\x00"]);
        r.opt(1232, Rcode::NoError, true, false);
        let m = Message::from_vec(&r.finish()).unwrap();
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers[0].name.to_ascii(), "1.4.4.e164.tincan.test.");
        assert_eq!(m.authorities[0].name.to_ascii(), "e164.tincan.test.");
        assert!(m.edns.unwrap().flags().dnssec_ok);
    }

    #[test]
    fn bitmap_matches_rfc4034_example() {
        // RFC 4034 §4.3: A MX RRSIG NSEC TYPE1234 → window 0 part "00 06 40 01 00 00 00 03".
        assert_eq!(type_bitmap(&[1, 15, 46, 47]), vec![0, 6, 0x40, 0x01, 0, 0, 0, 0x03]);
        assert_eq!(type_bitmap(&[rtype::RRSIG, rtype::NSEC, rtype::NXNAME]).len(), 2 + 17);
    }
}
