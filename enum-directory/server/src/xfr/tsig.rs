//! TSIG (RFC 8945) with HMAC-SHA256 on the primary's side: verifying a secondary's signed request and signing
//! every message of the answer (the first over the request MAC, each later one over the previous MAC).

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError, signed_bitmessage_to_buf};
use ring::hmac;

use crate::dns::wire::{name_to_wire_lower, skip_name, u16_at};

/// TSIG RR type.
pub(crate) const TSIG_TYPE: u16 = 250;
/// Seconds of clock difference accepted.
pub(crate) const FUDGE: u16 = 300;
/// TSIG error codes (RFC 8945 §3).
pub(crate) const BADSIG: u16 = 16;
pub(crate) const BADKEY: u16 = 17;
pub(crate) const BADTIME: u16 = 18;

/// `hmac-sha256.` in wire format.
const ALGORITHM_WIRE: &[u8] = b"\x0bhmac-sha256\x00";

/// One shared key.
pub(crate) struct TsigKey {
    pub name: Name,
    wire: Vec<u8>,
    key: hmac::Key,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey").field("name", &self.name).finish_non_exhaustive()
    }
}

impl TsigKey {
    /// A key named `name` (lowercase, fully qualified) with `secret`.
    pub fn new(name: Name, secret: &[u8]) -> TsigKey {
        TsigKey { wire: name_to_wire_lower(&name), name, key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }
}

/// What the TSIG of a request says.
#[derive(Debug)]
pub(crate) enum Check<'k> {
    /// No TSIG record.
    Unsigned,
    /// Signed with `key`, valid and on time; answers are signed over `mac`.
    Valid { key: &'k TsigKey, mac: Vec<u8>, original_id: u16 },
    /// Unknown key or algorithm: answer NOTAUTH with an unsigned BADKEY TSIG.
    BadKey { name: Name, original_id: u16 },
    /// The MAC does not verify: NOTAUTH with an unsigned BADSIG TSIG.
    BadSig { key: &'k TsigKey, original_id: u16 },
    /// Valid MAC, clock off by more than the fudge: NOTAUTH with a signed BADTIME TSIG.
    BadTime { key: &'k TsigKey, mac: Vec<u8>, original_id: u16 },
}

/// Checks the TSIG of `bytes` (already parsed as `msg`) against `keys` at `now` (Unix seconds).
pub(crate) fn check<'k>(bytes: &[u8], msg: &Message, keys: &'k [TsigKey], now: u64) -> Check<'k> {
    let Some(sig) = msg.signature() else { return Check::Unsigned };
    let tsig = &sig.data;
    let original_id = tsig.oid;
    let name = sig.name.to_lowercase();
    let key = keys.iter().find(|k| k.name == name);
    let Some(key) = key.filter(|_| tsig.algorithm == TsigAlgorithm::HmacSha256) else {
        return Check::BadKey { name, original_id };
    };
    let Ok((tbs, _)) = signed_bitmessage_to_buf(bytes, None, true) else {
        return Check::BadSig { key, original_id };
    };
    if hmac::verify(&key.key, &tbs, &tsig.mac).is_err() {
        return Check::BadSig { key, original_id };
    }
    if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
        return Check::BadTime { key, mac: tsig.mac.clone(), original_id };
    }
    Check::Valid { key, mac: tsig.mac.clone(), original_id }
}

/// Why the TSIG of an answer to a request we signed (NOTIFY) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadAnswer {
    /// No TSIG record (or no message to find it in).
    #[error("the answer carries no TSIG")]
    Missing,
    /// The peer reports a TSIG error (its TSIG has no MAC to check then).
    #[error("the answer's TSIG reports error {0:?}")]
    Reported(TsigError),
    /// Signed with another key name or algorithm.
    #[error("the answer is signed with another key ({0})")]
    OtherKey(Name),
    /// The MAC does not verify.
    #[error("the answer's TSIG MAC does not verify")]
    BadMac,
    /// Signed at a time off by more than the fudge.
    #[error("the answer's TSIG time is off by more than {FUDGE} s")]
    BadTime,
}

/// Checks that `bytes`, an answer to the request we signed with `key` and whose MAC was `request_mac`, is signed
/// with `key` over that MAC (RFC 8945 §5.3.1) at a time within the fudge of `now`.
pub(crate) fn verify_answer(bytes: &[u8], key: &TsigKey, request_mac: &[u8], now: u64) -> Result<(), BadAnswer> {
    let Ok((tbs, rr)) = signed_bitmessage_to_buf(bytes, Some(request_mac), true) else {
        return Err(BadAnswer::Missing);
    };
    let tsig = &rr.data;
    if let Some(e) = tsig.error {
        return Err(BadAnswer::Reported(e));
    }
    let name = rr.name.to_lowercase();
    if name != key.name || tsig.algorithm != TsigAlgorithm::HmacSha256 {
        return Err(BadAnswer::OtherKey(name));
    }
    hmac::verify(&key.key, &tbs, &tsig.mac).map_err(|_| BadAnswer::BadMac)?;
    if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
        return Err(BadAnswer::BadTime);
    }
    Ok(())
}

/// Signs the messages of one answer in order.
pub(crate) struct Signer<'k> {
    key: &'k TsigKey,
    /// The request's MAC for the first message of an answer, then the previous message's; `None` when signing a
    /// request (NOTIFY), whose digest has no prior MAC.
    prior_mac: Option<Vec<u8>>,
    first: bool,
    time: u64,
    original_id: u16,
    error: u16,
}

impl<'k> Signer<'k> {
    /// A signer for the answer to a request whose MAC was `request_mac` (`None`: for signing a request).
    pub fn new(key: &'k TsigKey, request_mac: Option<Vec<u8>>, original_id: u16, time: u64, error: u16) -> Signer<'k> {
        Signer { key, prior_mac: request_mac, first: true, time, original_id, error }
    }

    /// The MAC of the last message signed (the request's, for checking its answer).
    pub fn last_mac(&self) -> Option<&[u8]> {
        self.prior_mac.as_deref().filter(|_| !self.first)
    }

    /// Appends the TSIG record to a finished message (its additional count is bumped).
    pub fn sign(&mut self, msg: &mut Vec<u8>) {
        let mut ctx = hmac::Context::with_key(&self.key.key);
        if let Some(prior) = &self.prior_mac {
            ctx.update(&(prior.len() as u16).to_be_bytes());
            ctx.update(prior);
        }
        ctx.update(msg);
        if self.first {
            ctx.update(&self.key.wire);
            ctx.update(&255u16.to_be_bytes());
            ctx.update(&0u32.to_be_bytes());
            ctx.update(ALGORITHM_WIRE);
            ctx.update(&time48(self.time));
            ctx.update(&FUDGE.to_be_bytes());
            ctx.update(&self.error.to_be_bytes());
            ctx.update(&0u16.to_be_bytes());
        } else {
            ctx.update(&time48(self.time));
            ctx.update(&FUDGE.to_be_bytes());
        }
        let mac = ctx.sign().as_ref().to_vec();
        append(msg, &self.key.wire, self.time, &mac, self.original_id, self.error);
        self.prior_mac = Some(mac);
        self.first = false;
    }
}

/// Appends an unsigned TSIG (empty MAC) carrying `error`, for BADKEY and BADSIG answers.
pub(crate) fn append_unsigned(msg: &mut Vec<u8>, key_name: &Name, time: u64, original_id: u16, error: u16) {
    append(msg, &name_to_wire_lower(key_name), time, &[], original_id, error);
}

fn append(msg: &mut Vec<u8>, key_wire: &[u8], time: u64, mac: &[u8], original_id: u16, error: u16) {
    let mut rdata = Vec::with_capacity(ALGORITHM_WIRE.len() + 16 + mac.len());
    rdata.extend_from_slice(ALGORITHM_WIRE);
    rdata.extend_from_slice(&time48(time));
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&original_id.to_be_bytes());
    rdata.extend_from_slice(&error.to_be_bytes());
    rdata.extend_from_slice(&0u16.to_be_bytes());
    msg.extend_from_slice(key_wire);
    msg.extend_from_slice(&TSIG_TYPE.to_be_bytes());
    msg.extend_from_slice(&255u16.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    msg.extend_from_slice(&rdata);
    let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
}

fn time48(t: u64) -> [u8; 6] {
    let b = t.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Whether the request carries a TSIG: its last record is of type 250. Cheap, no allocation.
pub(crate) fn has_tsig(b: &[u8]) -> bool {
    if b.len() < 12 {
        return false;
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
    let (qd, records) = (count(4), count(6) + count(8) + count(10));
    if records == 0 {
        return false;
    }
    let mut p = 12;
    for _ in 0..qd {
        let Some(q) = skip_name(b, p) else { return false };
        p = q + 4;
    }
    let mut last = 0;
    for _ in 0..records {
        let Some(q) = skip_name(b, p) else { return false };
        let (Some(t), Some(l)) = (u16_at(b, q), u16_at(b, q + 8)) else { return false };
        last = t;
        p = q + 10 + usize::from(l);
    }
    p == b.len() && last == TSIG_TYPE
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::RecordType;
    use hickory_proto::rr::TSigner;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn signed_query(key: &[u8], name: &str, time: u64) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii("e164.tincan.test.").unwrap(), RecordType::AXFR));
        let signer =
            TSigner::new(key.to_vec(), TsigAlgorithm::HmacSha256, Name::from_ascii(name).unwrap(), FUDGE).unwrap();
        m.finalize(&signer, time).unwrap();
        m.to_vec().unwrap()
    }

    fn keys() -> Vec<TsigKey> {
        vec![TsigKey::new(Name::from_ascii("xfr-key.").unwrap(), SECRET)]
    }

    #[test]
    fn verifies_a_query_signed_by_hickory() {
        let keys = keys();
        let q = signed_query(SECRET, "XFR-Key.", 1_000_000);
        assert!(has_tsig(&q));
        let m = Message::from_vec(&q).unwrap();
        assert!(matches!(check(&q, &m, &keys, 1_000_100), Check::Valid { .. }));
        assert!(matches!(check(&q, &m, &keys, 1_000_400), Check::BadTime { .. }));
        let wrong = signed_query(b"another-secret-of-32-bytes-xxxxx", "xfr-key.", 1_000_000);
        let m = Message::from_vec(&wrong).unwrap();
        assert!(matches!(check(&wrong, &m, &keys, 1_000_000), Check::BadSig { .. }));
        let unknown = signed_query(SECRET, "other-key.", 1_000_000);
        let m = Message::from_vec(&unknown).unwrap();
        assert!(matches!(check(&unknown, &m, &keys, 1_000_000), Check::BadKey { .. }));
        let mut plain = Message::query();
        plain.add_query(Query::query(Name::from_ascii("e164.tincan.test.").unwrap(), RecordType::SOA));
        let plain = plain.to_vec().unwrap();
        assert!(!has_tsig(&plain));
    }

    #[test]
    fn a_request_we_sign_verifies() {
        let keys = keys();
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii("e164.tincan.test.").unwrap(), RecordType::SOA));
        let mut bytes = m.to_vec().unwrap();
        Signer::new(&keys[0], None, m.metadata.id, 2_000_000, 0).sign(&mut bytes);
        let parsed = Message::from_vec(&bytes).unwrap();
        assert!(matches!(check(&bytes, &parsed, &keys, 2_000_000), Check::Valid { .. }));
    }

    #[test]
    fn answers_to_our_requests_are_checked() {
        let keys = keys();
        let other = TsigKey::new(Name::from_ascii("xfr-key.").unwrap(), b"another-secret-of-32-bytes-xxxxx");
        let request = |key| {
            let mut m = Message::query();
            m.add_query(Query::query(Name::from_ascii("e164.tincan.test.").unwrap(), RecordType::SOA));
            let mut bytes = m.to_vec().unwrap();
            let mut signer = Signer::new(key, None, m.metadata.id, 2_000_000, 0);
            signer.sign(&mut bytes);
            let mac = signer.last_mac().unwrap().to_vec();
            (m, mac)
        };
        let (m, mac) = request(&keys[0]);
        let answer = |key, at, error| {
            let mut bytes = Message::response(m.metadata.id, m.metadata.op_code).to_vec().unwrap();
            Signer::new(key, Some(mac.clone()), m.metadata.id, at, error).sign(&mut bytes);
            bytes
        };
        assert_eq!(verify_answer(&answer(&keys[0], 2_000_010, 0), &keys[0], &mac, 2_000_000), Ok(()));
        assert_eq!(verify_answer(&answer(&other, 2_000_010, 0), &keys[0], &mac, 2_000_000), Err(BadAnswer::BadMac));
        assert_eq!(verify_answer(&answer(&keys[0], 2_000_400, 0), &keys[0], &mac, 2_000_000), Err(BadAnswer::BadTime));
        let reported = answer(&keys[0], 2_000_000, BADSIG);
        assert_eq!(verify_answer(&reported, &keys[0], &mac, 2_000_000), Err(BadAnswer::Reported(TsigError::BadSig)));
        let unsigned = Message::response(m.metadata.id, m.metadata.op_code).to_vec().unwrap();
        assert_eq!(verify_answer(&unsigned, &keys[0], &mac, 2_000_000), Err(BadAnswer::Missing));
        // An answer over another request's MAC does not verify either.
        let (_, other_mac) = request(&keys[0]);
        assert_eq!(
            verify_answer(&answer(&keys[0], 2_000_000, 0), &keys[0], &other_mac, 2_000_000),
            Err(BadAnswer::BadMac)
        );
    }

    #[test]
    fn signed_answers_verify_as_a_chain() {
        let keys = keys();
        let q = signed_query(SECRET, "xfr-key.", 1_000_000);
        let m = Message::from_vec(&q).unwrap();
        let Check::Valid { key, mac, original_id } = check(&q, &m, &keys, 1_000_000) else { panic!() };
        let mut signer = Signer::new(key, Some(mac.clone()), original_id, 1_000_001, 0);
        let mut prior = mac;
        for i in 0..3 {
            let mut resp = Message::response(m.metadata.id, m.metadata.op_code);
            resp.add_query(m.queries[0].clone());
            let mut bytes = resp.to_vec().unwrap();
            signer.sign(&mut bytes);
            assert!(has_tsig(&bytes));
            let (tbs, rr) = signed_bitmessage_to_buf(&bytes, Some(&prior), i == 0).unwrap();
            TsigAlgorithm::HmacSha256.verify_mac(SECRET, &tbs, &rr.data.mac).unwrap();
            prior = rr.data.mac.clone();
        }
    }
}
