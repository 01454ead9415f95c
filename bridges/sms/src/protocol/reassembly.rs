//! Inbound short messages: their text decoded from `data_coding`, and the parts of long messages put back
//! together in any order.
//!
//! A part waits in the [`Reassembler`] until its siblings arrive. When the first part of a message has waited
//! longer than the timeout, what came is delivered with the list of parts that did not ([`Message::missing`]),
//! so the bridge can say so: a lost part never holds back or silently truncates a message. The number of
//! messages waiting is capped (network-facing state); over the cap the oldest is delivered as it is.

use super::udh::Concat;
use super::{gsm7, ucs2};
use std::collections::{BTreeMap, HashMap};

/// How the octets of an inbound short message are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundCoding {
    /// GSM 03.38 7-bit, unpacked.
    Gsm7,
    /// IA5 / ASCII.
    Ascii,
    /// ISO-8859-1.
    Latin1,
    /// UCS-2 / UTF-16BE.
    Ucs2,
    /// 8-bit data, not text.
    Binary,
    /// A character set this bridge does not read (JIS, Cyrillic ISO-8859-5, Hebrew, KS C 5601…), or
    /// compressed text.
    Unsupported(u8),
}

/// The coding of `data_coding`. `smsc_default` is what the SMSC means by `0x00` (GSM 7-bit for most; some
/// send Latin-1 or ASCII: it is per SMSC configuration).
pub fn inbound_coding(data_coding: u8, smsc_default: InboundCoding) -> InboundCoding {
    // 3GPP TS 23.038 §4 coding groups, as SMPP 3.4 §5.2.19 carries them above 0x0F.
    let general = |dc: u8| {
        if dc & 0x20 != 0 {
            return InboundCoding::Unsupported(dc); // compressed
        }
        match (dc >> 2) & 0x03 {
            0 => InboundCoding::Gsm7,
            1 => InboundCoding::Binary,
            2 => InboundCoding::Ucs2,
            _ => InboundCoding::Unsupported(dc),
        }
    };
    match data_coding {
        0x00 => smsc_default,
        0x01 => InboundCoding::Ascii,
        0x02 | 0x04 => InboundCoding::Binary,
        0x03 => InboundCoding::Latin1,
        0x08 => InboundCoding::Ucs2,
        0x10..=0x3F => general(data_coding),
        0xC0..=0xDF => InboundCoding::Gsm7,
        0xE0..=0xEF => InboundCoding::Ucs2,
        0xF0..=0xFF if data_coding & 0x04 != 0 => InboundCoding::Binary,
        0xF0..=0xFF => InboundCoding::Gsm7,
        other => InboundCoding::Unsupported(other),
    }
}

/// The text of `payload` in `coding`; binary and unsupported payloads become a bracketed description.
pub fn decode_text(coding: InboundCoding, payload: &[u8]) -> String {
    match coding {
        InboundCoding::Gsm7 => gsm7::decode(payload),
        InboundCoding::Ucs2 => ucs2::decode(payload),
        InboundCoding::Ascii => {
            payload.iter().map(|&b| if b < 0x80 { b as char } else { char::REPLACEMENT_CHARACTER }).collect()
        }
        InboundCoding::Latin1 => payload.iter().map(|&b| b as char).collect(),
        InboundCoding::Binary => format!("[binary message, {} octets]", payload.len()),
        InboundCoding::Unsupported(dc) => {
            format!("[message in an unsupported character set (data_coding 0x{dc:02X}), {} octets]", payload.len())
        }
    }
}

/// One inbound short message: one part of a long message, or a whole one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPart {
    /// The sender's number.
    pub from: String,
    /// The number it was sent to (a DID of this provider).
    pub to: String,
    /// How to read `payload`.
    pub coding: InboundCoding,
    /// Which part it is (from the header or the `sar_*` TLVs); `None` for a whole message.
    pub concat: Option<Concat>,
    /// The text octets, header removed.
    pub payload: Vec<u8>,
    /// When it arrived, in milliseconds of any monotonic-enough clock the caller uses throughout.
    pub received_ms: u64,
}

/// A message put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's number.
    pub from: String,
    /// The number it was sent to.
    pub to: String,
    /// The text; where parts are missing, what came, in order, with `[…]` where the gap is.
    pub text: String,
    /// Numbers of the parts that never arrived (empty when complete).
    pub missing: Vec<u8>,
    /// How many parts the message had.
    pub total: u8,
    /// The concatenation reference of a long message (`None` for a whole one).
    pub reference: Option<u16>,
    /// When its first part arrived.
    pub first_received_ms: u64,
}

impl Message {
    /// Whether every part arrived.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    from: String,
    to: String,
    reference: u16,
    total: u8,
}

#[derive(Debug)]
struct Group {
    parts: BTreeMap<u8, (InboundCoding, Vec<u8>)>,
    first_received_ms: u64,
}

/// Puts long messages back together (see the module doc).
#[derive(Debug)]
pub struct Reassembler {
    groups: HashMap<GroupKey, Group>,
    timeout_ms: u64,
    max_waiting: usize,
}

impl Reassembler {
    /// Delivers incomplete messages `timeout_ms` after their first part; keeps at most `max_waiting`
    /// messages waiting.
    pub fn new(timeout_ms: u64, max_waiting: usize) -> Self {
        Self { groups: HashMap::new(), timeout_ms, max_waiting: max_waiting.max(1) }
    }

    /// How many messages are waiting for parts.
    pub fn waiting(&self) -> usize {
        self.groups.len()
    }

    /// Adds a part; returns the messages it completes (or pushes out over the cap). A part already received
    /// (the SMSC resent it) is ignored.
    pub fn push(&mut self, part: InboundPart) -> Vec<Message> {
        let Some(concat) = part.concat.filter(|c| c.total > 1) else {
            let text = decode_text(part.coding, &part.payload);
            let first_received_ms = part.received_ms;
            return vec![Message {
                from: part.from,
                to: part.to,
                text,
                missing: vec![],
                total: 1,
                reference: None,
                first_received_ms,
            }];
        };
        let key = GroupKey { from: part.from, to: part.to, reference: concat.reference.value(), total: concat.total };
        let mut out = Vec::new();
        if !self.groups.contains_key(&key) && self.groups.len() >= self.max_waiting {
            let oldest = self.groups.iter().min_by_key(|(_, g)| g.first_received_ms).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                let g = self.groups.remove(&k).expect("just found");
                out.push(assemble(k, g));
            }
        }
        let group = self
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group { parts: BTreeMap::new(), first_received_ms: part.received_ms });
        group.first_received_ms = group.first_received_ms.min(part.received_ms);
        group.parts.entry(concat.seq).or_insert((part.coding, part.payload));
        if group.parts.len() == usize::from(concat.total) {
            let g = self.groups.remove(&key).expect("just updated");
            out.push(assemble(key, g));
        }
        out
    }

    /// Delivers, incomplete, every message whose first part arrived at least the timeout before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Message> {
        let due: Vec<GroupKey> = self
            .groups
            .iter()
            .filter(|(_, g)| now_ms.saturating_sub(g.first_received_ms) >= self.timeout_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Message> = due
            .into_iter()
            .map(|k| {
                let g = self.groups.remove(&k).expect("listed");
                assemble(k, g)
            })
            .collect();
        out.sort_by_key(|m| m.first_received_ms);
        out
    }

    /// When the next waiting message times out, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.groups.values().map(|g| g.first_received_ms + self.timeout_ms).min()
    }
}

fn assemble(key: GroupKey, group: Group) -> Message {
    let mut text = String::new();
    let mut missing = Vec::new();
    // Runs of consecutive parts of one coding are decoded together, so a sender that cut an escape or a
    // surrogate pair across parts still reads right.
    let mut run: Vec<u8> = Vec::new();
    let mut run_coding = None;
    let mut in_gap = false;
    for seq in 1..=key.total {
        match group.parts.get(&seq) {
            Some((coding, payload)) => {
                if run_coding.is_some_and(|c| c != *coding) {
                    text.push_str(&decode_text(run_coding.expect("checked"), &run));
                    run.clear();
                }
                run_coding = Some(*coding);
                run.extend_from_slice(payload);
                in_gap = false;
            }
            None => {
                if let Some(c) = run_coding.take() {
                    text.push_str(&decode_text(c, &run));
                    run.clear();
                }
                if !in_gap {
                    text.push_str("[…]");
                    in_gap = true;
                }
                missing.push(seq);
            }
        }
    }
    if let Some(c) = run_coding {
        text.push_str(&decode_text(c, &run));
    }
    Message {
        from: key.from,
        to: key.to,
        text,
        missing,
        total: key.total,
        reference: Some(key.reference),
        first_received_ms: group.first_received_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::segment::{self, Coding};
    use crate::protocol::udh::{self, Reference};
    use proptest::prelude::*;

    fn parts_of(text: &str, reference: Reference, at: u64) -> Vec<InboundPart> {
        let s = segment::segment(text, reference).unwrap();
        let coding = match s.coding {
            Coding::Gsm7 => InboundCoding::Gsm7,
            Coding::Ucs2 => InboundCoding::Ucs2,
        };
        s.segments
            .iter()
            .map(|seg| {
                let sm = seg.short_message();
                let (concat, body) = if seg.has_udh() {
                    let h = udh::parse(&sm).unwrap();
                    (h.concat, sm[h.len..].to_vec())
                } else {
                    (None, sm)
                };
                InboundPart {
                    from: "+447700900123".into(),
                    to: "+447700900001".into(),
                    coding,
                    concat,
                    payload: body,
                    received_ms: at,
                }
            })
            .collect()
    }

    #[test]
    fn data_coding_values() {
        let d = InboundCoding::Gsm7;
        assert_eq!(inbound_coding(0x00, d), InboundCoding::Gsm7);
        assert_eq!(inbound_coding(0x00, InboundCoding::Latin1), InboundCoding::Latin1);
        assert_eq!(inbound_coding(0x01, d), InboundCoding::Ascii);
        assert_eq!(inbound_coding(0x03, d), InboundCoding::Latin1);
        assert_eq!(inbound_coding(0x08, d), InboundCoding::Ucs2);
        assert_eq!(inbound_coding(0x04, d), InboundCoding::Binary);
        assert_eq!(inbound_coding(0xF0, d), InboundCoding::Gsm7);
        assert_eq!(inbound_coding(0xF4, d), InboundCoding::Binary);
        assert_eq!(inbound_coding(0x18, d), InboundCoding::Ucs2);
        assert_eq!(inbound_coding(0x11, d), InboundCoding::Gsm7);
        assert_eq!(inbound_coding(0x38, d), InboundCoding::Unsupported(0x38), "compressed");
        assert_eq!(inbound_coding(0x06, d), InboundCoding::Unsupported(0x06));
        assert_eq!(decode_text(InboundCoding::Latin1, &[0x63, 0xE7, 0x61]), "cça");
        assert_eq!(decode_text(InboundCoding::Ascii, &[0x41, 0xE7]), "A\u{FFFD}");
        assert_eq!(decode_text(InboundCoding::Binary, &[1, 2, 3]), "[binary message, 3 octets]");
    }

    #[test]
    fn a_whole_message_comes_straight_out() {
        let mut r = Reassembler::new(60_000, 100);
        let out = r.push(parts_of("hello", Reference::Eight(1), 5).remove(0));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "hello");
        assert!(out[0].is_complete());
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn parts_out_of_order_and_repeated() {
        let text = format!("{}€ and 😀{}", "a".repeat(150), "b".repeat(200));
        let mut parts = parts_of(&text, Reference::Eight(42), 0);
        assert!(parts.len() >= 3);
        parts.reverse();
        let mut r = Reassembler::new(60_000, 100);
        let dup = parts[0].clone();
        let mut done = Vec::new();
        for (i, p) in parts.into_iter().enumerate() {
            done.extend(r.push(p));
            if i == 0 {
                assert!(r.push(dup.clone()).is_empty(), "a repeated part changes nothing");
            }
        }
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].text, text);
        assert!(done[0].is_complete());
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn a_missing_part_times_out_into_a_partial_message() {
        let text = "x".repeat(153 * 2) + "tail";
        let parts = parts_of(&text, Reference::Eight(3), 1_000);
        let mut r = Reassembler::new(30_000, 100);
        assert!(r.push(parts[0].clone()).is_empty());
        assert!(r.push(parts[2].clone()).is_empty());
        assert_eq!(r.next_deadline_ms(), Some(31_000));
        assert!(r.expire(30_999).is_empty());
        let out = r.expire(31_000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].missing, vec![2]);
        assert_eq!(out[0].reference, Some(3));
        assert_eq!(out[0].text, format!("{}[…]tail", "x".repeat(153)));
        assert_eq!(r.waiting(), 0);
        // The straggler, arriving after the timeout, waits on its own and times out in turn: never dropped.
        let late = r.push(parts[1].clone());
        assert!(late.is_empty() && r.waiting() == 1);
    }

    #[test]
    fn messages_from_different_senders_or_references_do_not_mix() {
        let a = parts_of(&"a".repeat(200), Reference::Eight(1), 0);
        let mut b = parts_of(&"b".repeat(200), Reference::Eight(1), 0);
        for p in &mut b {
            p.from = "+447700900999".into();
        }
        let c = parts_of(&"c".repeat(200), Reference::Eight(2), 0);
        let mut r = Reassembler::new(60_000, 100);
        let mut out = Vec::new();
        for i in 0..2 {
            out.extend(r.push(a[i].clone()));
            out.extend(r.push(b[i].clone()));
            out.extend(r.push(c[i].clone()));
        }
        let texts: Vec<_> = out.iter().map(|m| m.text.chars().next().unwrap()).collect();
        assert_eq!(texts, ['a', 'b', 'c']);
        assert!(out.iter().all(|m| m.text.chars().all(|c| c == m.text.chars().next().unwrap())));
    }

    #[test]
    fn over_the_cap_the_oldest_is_delivered_as_it_is() {
        let mut r = Reassembler::new(60_000, 2);
        let p = |n: u8, at| parts_of(&"z".repeat(200), Reference::Eight(n), at).remove(0);
        assert!(r.push(p(1, 10)).is_empty());
        assert!(r.push(p(2, 20)).is_empty());
        let out = r.push(p(3, 30));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].first_received_ms, 10);
        assert_eq!(out[0].missing, vec![2]);
        assert_eq!(r.waiting(), 2);
    }

    #[test]
    fn an_escape_cut_across_parts_by_the_sender_still_reads() {
        let mk = |seq, payload: &[u8]| InboundPart {
            from: "+1".into(),
            to: "+2".into(),
            coding: InboundCoding::Gsm7,
            concat: Some(Concat { reference: Reference::Eight(5), total: 2, seq }),
            payload: payload.to_vec(),
            received_ms: 0,
        };
        let mut r = Reassembler::new(1, 10);
        assert!(r.push(mk(1, &[0x41, gsm7::ESC])).is_empty());
        assert_eq!(r.push(mk(2, &[0x65]))[0].text, "A€");
    }

    proptest! {
        #[test]
        fn any_order_gives_back_the_text(text in "\\PC{1,900}", seed in any::<u64>(), sixteen in any::<bool>()) {
            let reference = if sixteen { Reference::Sixteen(777) } else { Reference::Eight(77) };
            let mut parts = parts_of(&text, reference, 0);
            // A deterministic shuffle from the seed.
            let n = parts.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) >> 33) as usize % (i + 1);
                parts.swap(i, j);
            }
            let mut r = Reassembler::new(60_000, 10);
            let mut out = Vec::new();
            for p in parts {
                out.extend(r.push(p));
            }
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(&out[0].text, &text);
            prop_assert_eq!(r.waiting(), 0);
        }

        #[test]
        fn missing_parts_are_reported_exactly(text in "[a-z]{310,1000}", drop_mask in any::<u32>()) {
            let parts = parts_of(&text, Reference::Eight(1), 0);
            let n = parts.len() as u8;
            let kept: Vec<_> = parts.into_iter().filter(|p| drop_mask & (1 << (p.concat.unwrap().seq % 32)) == 0).collect();
            let mut r = Reassembler::new(10, 10);
            let mut out = Vec::new();
            let k = kept.len();
            let expected_missing: Vec<u8> = (1..=n).filter(|s| !kept.iter().any(|p| p.concat.unwrap().seq == *s)).collect();
            for p in kept {
                out.extend(r.push(p));
            }
            out.extend(r.expire(10));
            if k == 0 {
                prop_assert!(out.is_empty());
            } else {
                prop_assert_eq!(out.len(), 1);
                prop_assert_eq!(&out[0].missing, &expected_missing);
                prop_assert_eq!(out[0].is_complete(), expected_missing.is_empty());
            }
        }
    }
}
