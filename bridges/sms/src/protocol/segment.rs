//! Choosing the encoding of an outgoing text and cutting it into short messages.
//!
//! GSM 7-bit when every character has a GSM 03.38 form (extension table included), UCS-2 otherwise. One
//! message carries 160 septets or 140 octets of UCS-2 (70 UTF-16 units); a longer text goes as parts with a
//! concatenation header, each carrying 153 septets or 134 octets (67 units) with an 8-bit reference (152 / 132
//! with a 16-bit one). A part never ends between an escape and its extension character, nor between the two
//! halves of a surrogate pair: such a part is one unit shorter. At most 255 parts.

use super::udh::{Concat, Reference};
use super::{gsm7, ucs2};

/// The most parts a concatenated message can have.
pub const MAX_PARTS: usize = 255;

/// The alphabet a text goes out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coding {
    /// GSM 03.38 7-bit, unpacked (`data_coding` 0, the SMSC default alphabet).
    Gsm7,
    /// UCS-2 / UTF-16BE (`data_coding` 8).
    Ucs2,
}

impl Coding {
    /// The SMPP `data_coding` value.
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0x00,
            Coding::Ucs2 => 0x08,
        }
    }

    /// The name shown to users and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gsm7 => "gsm7",
            Coding::Ucs2 => "ucs2",
        }
    }

    /// Units (septets or octets) one message without a header carries.
    pub fn single_capacity(self) -> usize {
        match self {
            Coding::Gsm7 => 160,
            Coding::Ucs2 => 140,
        }
    }

    /// Units one part carries after a header of `header_len` octets: the header is padded to a septet boundary
    /// in GSM 7-bit (6 octets take 7 septets) and UCS-2 keeps whole 2-octet units.
    pub fn part_capacity(self, header_len: usize) -> usize {
        match self {
            Coding::Gsm7 => 160 - (header_len * 8).div_ceil(7),
            Coding::Ucs2 => (140 - header_len) & !1,
        }
    }

    /// The units `c` takes in this coding (`None` when it cannot be written).
    fn cost(self, c: char) -> Option<usize> {
        match self {
            Coding::Gsm7 => gsm7::septets(c).map(gsm7::Septets::len),
            Coding::Ucs2 => Some(ucs2::octets(c)),
        }
    }

    fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Coding::Gsm7 => gsm7::encode(text).expect("chosen only when every character fits"),
            Coding::Ucs2 => ucs2::encode(text),
        }
    }
}

/// GSM 7-bit when the whole text fits it, UCS-2 otherwise.
pub fn choose(text: &str) -> Coding {
    if gsm7::fits(text) { Coding::Gsm7 } else { Coding::Ucs2 }
}

/// One short message as it goes into `submit_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The concatenation element, for a part of a long message.
    pub concat: Option<Concat>,
    /// The encoded text of this part (unpacked septets or UTF-16BE octets).
    pub payload: Vec<u8>,
}

impl Segment {
    /// `short_message`: the header (when a part), then the payload.
    pub fn short_message(&self) -> Vec<u8> {
        let mut out = self.concat.map(Concat::header).unwrap_or_default();
        out.extend_from_slice(&self.payload);
        out
    }

    /// Whether `esm_class` must carry UDHI (`0x40`).
    pub fn has_udh(&self) -> bool {
        self.concat.is_some()
    }
}

/// A text cut into short messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmented {
    /// The coding of every part.
    pub coding: Coding,
    /// The parts, in order.
    pub segments: Vec<Segment>,
}

/// Why a text cannot go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Nothing to send.
    #[error("the message is empty")]
    Empty,
    /// More than 255 parts.
    #[error("the message needs {parts} SMS parts; at most {MAX_PARTS} are possible")]
    TooLong {
        /// Parts it would need.
        parts: usize,
    },
}

/// How a text would go out: for showing the cost before sending (`!price`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The coding.
    pub coding: Coding,
    /// How many SMS it takes.
    pub parts: usize,
    /// Characters.
    pub chars: usize,
}

/// The cut points of `text` in `coding`: the characters of each part.
fn cut(text: &str, coding: Coding, part_capacity: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, c) in text.char_indices() {
        let cost = coding.cost(c).expect("the coding was chosen to fit every character");
        if used + cost > part_capacity {
            parts.push(&text[start..i]);
            start = i;
            used = 0;
        }
        used += cost;
    }
    parts.push(&text[start..]);
    parts
}

fn units(text: &str, coding: Coding) -> usize {
    text.chars().map(|c| coding.cost(c).expect("the coding fits every character")).sum()
}

/// How `text` would go out with an 8-bit reference.
pub fn count(text: &str) -> Count {
    let coding = choose(text);
    let chars = text.chars().count();
    let parts = if units(text, coding) <= coding.single_capacity() {
        1
    } else {
        cut(text, coding, coding.part_capacity(Reference::Eight(0).header_len())).len()
    };
    Count { coding, parts, chars }
}

/// Cuts `text` into short messages; a long text's parts carry `reference` (choose it per destination so that
/// two long messages in flight to one handset do not mix).
pub fn segment(text: &str, reference: Reference) -> Result<Segmented, SegmentError> {
    if text.is_empty() {
        return Err(SegmentError::Empty);
    }
    let coding = choose(text);
    if units(text, coding) <= coding.single_capacity() {
        return Ok(Segmented { coding, segments: vec![Segment { concat: None, payload: coding.encode(text) }] });
    }
    let pieces = cut(text, coding, coding.part_capacity(reference.header_len()));
    if pieces.len() > MAX_PARTS {
        return Err(SegmentError::TooLong { parts: pieces.len() });
    }
    let total = pieces.len() as u8;
    let segments = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| Segment {
            concat: Some(Concat { reference, total, seq: i as u8 + 1 }),
            payload: coding.encode(piece),
        })
        .collect();
    Ok(Segmented { coding, segments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::udh;
    use proptest::prelude::*;

    const R: Reference = Reference::Eight(7);

    fn decode(coding: Coding, payload: &[u8]) -> String {
        match coding {
            Coding::Gsm7 => gsm7::decode(payload),
            Coding::Ucs2 => ucs2::decode(payload),
        }
    }

    #[test]
    fn capacities_are_the_textbook_ones() {
        assert_eq!(Coding::Gsm7.part_capacity(6), 153);
        assert_eq!(Coding::Gsm7.part_capacity(7), 152);
        assert_eq!(Coding::Ucs2.part_capacity(6), 134);
        assert_eq!(Coding::Ucs2.part_capacity(7), 132);
    }

    #[test]
    fn choosing_the_encoding() {
        assert_eq!(choose("Hello {world} €5"), Coding::Gsm7);
        assert_eq!(choose("Привет"), Coding::Ucs2);
        assert_eq!(choose("ok 👍"), Coding::Ucs2);
        assert_eq!(choose("ça va"), Coding::Ucs2, "ç is not in GSM 03.38");
    }

    #[test]
    fn one_message_up_to_the_limit() {
        let s = segment(&"a".repeat(160), R).unwrap();
        assert_eq!(s.segments.len(), 1);
        assert_eq!(s.segments[0].concat, None);
        assert_eq!(s.segments[0].short_message().len(), 160);
        // 80 euro signs are 160 septets; one more character makes two parts.
        assert_eq!(segment(&"€".repeat(80), R).unwrap().segments.len(), 1);
        assert_eq!(segment(&format!("{}a", "€".repeat(80)), R).unwrap().segments.len(), 2);
        assert_eq!(segment(&"Ж".repeat(70), R).unwrap().segments.len(), 1);
        assert_eq!(segment(&"Ж".repeat(71), R).unwrap().segments.len(), 2);
        assert_eq!(segment(&"😀".repeat(35), R).unwrap().segments.len(), 1);
        assert_eq!(segment(&"😀".repeat(36), R).unwrap().segments.len(), 2);
    }

    #[test]
    fn long_gsm_text_is_cut_at_153_septets() {
        let text = "x".repeat(161);
        let s = segment(&text, R).unwrap();
        assert_eq!(s.coding, Coding::Gsm7);
        assert_eq!(s.segments.len(), 2);
        assert_eq!(s.segments[0].payload.len(), 153);
        assert_eq!(s.segments[1].payload.len(), 8);
        let sm = s.segments[1].short_message();
        assert_eq!(&sm[..6], &[0x05, 0x00, 0x03, 7, 2, 2]);
        assert!(s.segments.iter().all(Segment::has_udh));
    }

    #[test]
    fn an_escape_is_never_cut_from_its_character() {
        // 152 plain septets, then '€' (2 septets) would straddle the 153 boundary: it moves to part 2.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let s = segment(&text, R).unwrap();
        assert_eq!(s.segments[0].payload.len(), 152);
        assert_eq!(*s.segments[0].payload.last().unwrap(), 0x61);
        assert_eq!(&s.segments[1].payload[..2], &[gsm7::ESC, 0x65]);
    }

    #[test]
    fn a_surrogate_pair_is_never_cut() {
        // 66 units of 'Ж' then an emoji (2 units) would straddle the 67-unit boundary: it moves to part 2.
        let text = format!("{}😀{}", "Ж".repeat(66), "Ж".repeat(10));
        let s = segment(&text, R).unwrap();
        assert_eq!(s.coding, Coding::Ucs2);
        assert_eq!(s.segments[0].payload.len(), 132);
        assert_eq!(&s.segments[1].payload[..4], &[0xD8, 0x3D, 0xDE, 0x00]);
    }

    #[test]
    fn sixteen_bit_references_leave_less_room() {
        let s = segment(&"x".repeat(400), Reference::Sixteen(0xBEEF)).unwrap();
        assert_eq!(s.segments.iter().map(|p| p.payload.len()).collect::<Vec<_>>(), [152, 152, 96]);
        assert_eq!(&s.segments[0].short_message()[..7], &[0x06, 0x08, 0x04, 0xBE, 0xEF, 3, 1]);
    }

    #[test]
    fn empty_and_overlong_texts_are_refused() {
        assert_eq!(segment("", R), Err(SegmentError::Empty));
        assert_eq!(segment(&"x".repeat(153 * 255), R).unwrap().segments.len(), 255);
        assert_eq!(segment(&"x".repeat(153 * 255 + 1), R), Err(SegmentError::TooLong { parts: 256 }));
    }

    #[test]
    fn count_matches_segment() {
        for text in ["hi", &"x".repeat(161), &"Ж".repeat(200), "😀"] {
            let c = count(text);
            let s = segment(text, R).unwrap();
            assert_eq!((c.coding, c.parts), (s.coding, s.segments.len()), "{text}");
        }
        assert_eq!(count("héllo").chars, 5);
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            // GSM-only texts heavy in escapes.
            proptest::collection::vec(proptest::sample::select(vec!['a', '€', '{', ' ', 'Ä', '^', '\n']), 0..700)
                .prop_map(|v| v.into_iter().collect()),
            // Mixed scripts with emoji.
            proptest::collection::vec(proptest::sample::select(vec!['a', 'Ж', '😀', '€', '👍', '中']), 0..500)
                .prop_map(|v| v.into_iter().collect()),
            "\\PC{0,600}",
        ]
    }

    proptest! {
        #[test]
        fn parts_reassemble_to_the_text_and_respect_the_limits(text in any_text(), sixteen in any::<bool>()) {
            let reference = if sixteen { Reference::Sixteen(300) } else { Reference::Eight(9) };
            let Ok(s) = segment(&text, reference) else {
                prop_assert!(text.is_empty());
                return Ok(());
            };
            let mut joined = String::new();
            let n = s.segments.len();
            for (i, seg) in s.segments.iter().enumerate() {
                let sm = seg.short_message();
                prop_assert!(sm.len() <= 160);
                let text_part = if n == 1 {
                    prop_assert!(seg.concat.is_none());
                    prop_assert!(seg.payload.len() <= s.coding.single_capacity());
                    &sm[..]
                } else {
                    let h = udh::parse(&sm).unwrap();
                    prop_assert_eq!(h.concat, Some(Concat { reference, total: n as u8, seq: i as u8 + 1 }));
                    prop_assert!(seg.payload.len() <= s.coding.part_capacity(reference.header_len()));
                    &sm[h.len..]
                };
                // Each part decodes on its own: no escape or surrogate pair was cut.
                let piece = decode(s.coding, text_part);
                let cut = piece.contains(char::REPLACEMENT_CHARACTER) && !text.contains(char::REPLACEMENT_CHARACTER);
                prop_assert!(!cut, "part {} does not decode on its own", i + 1);
                if s.coding == Coding::Gsm7 {
                    prop_assert_ne!(text_part.last(), Some(&gsm7::ESC));
                }
                joined.push_str(&piece);
            }
            prop_assert_eq!(&joined, &text);
            prop_assert_eq!(s.coding, choose(&text));
            // Parts are as full as they can be: the next character would not have fitted.
            for pair in s.segments.windows(2) {
                let next = decode(s.coding, &pair[1].payload).chars().next().unwrap();
                prop_assert!(pair[0].payload.len() + s.coding.cost(next).unwrap() > s.coding.part_capacity(reference.header_len()));
            }
        }
    }
}
