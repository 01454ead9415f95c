//! The GSM 03.38 (3GPP TS 23.038 §6.2.1) default alphabet and its extension table, unpacked: one septet per
//! octet, which is how SMPP carries `data_coding` 0 (the SMSC packs for the air interface).
//!
//! A character of the extension table costs two septets (the escape `0x1B`, then its code), so segmentation
//! counts septets, not characters, and never cuts between the two ([`crate::protocol::segment`]).

/// The escape to the extension table.
pub const ESC: u8 = 0x1B;

/// The default alphabet, indexed by septet. `0x1B` is the escape; its slot holds a placeholder never encoded.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: septet after the escape, and the character.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How one character is written in GSM 7-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    /// One septet of the default alphabet.
    Basic(u8),
    /// The escape, then this septet of the extension table.
    Extended(u8),
}

impl Septets {
    /// How many septets it takes (1 or 2).
    pub fn len(self) -> usize {
        match self {
            Septets::Basic(_) => 1,
            Septets::Extended(_) => 2,
        }
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// The septets of `c`, or `None` when GSM 7-bit cannot write it.
pub fn septets(c: char) -> Option<Septets> {
    if c == '\u{1b}' {
        return None;
    }
    if let Some(i) = BASIC.iter().position(|&b| b == c) {
        return Some(Septets::Basic(i as u8));
    }
    EXTENSION.iter().find(|&&(_, e)| e == c).map(|&(s, _)| Septets::Extended(s))
}

/// A character GSM 7-bit cannot write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ch:?} (at character {index}) is not in the GSM 7-bit alphabet")]
pub struct Unencodable {
    /// The character.
    pub ch: char,
    /// Its position in the text, in characters.
    pub index: usize,
}

/// Whether every character of `text` has a GSM 7-bit form.
pub fn fits(text: &str) -> bool {
    text.chars().all(|c| septets(c).is_some())
}

/// How many septets `text` takes, or the first character that has no GSM 7-bit form.
pub fn septet_count(text: &str) -> Result<usize, Unencodable> {
    text.chars().enumerate().try_fold(0, |n, (index, ch)| Ok(n + septets(ch).ok_or(Unencodable { ch, index })?.len()))
}

/// `text` as unpacked septets.
pub fn encode(text: &str) -> Result<Vec<u8>, Unencodable> {
    let mut out = Vec::with_capacity(text.len());
    for (index, ch) in text.chars().enumerate() {
        match septets(ch).ok_or(Unencodable { ch, index })? {
            Septets::Basic(s) => out.push(s),
            Septets::Extended(s) => out.extend_from_slice(&[ESC, s]),
        }
    }
    Ok(out)
}

/// Unpacked septets as text, leniently, as TS 23.038 tells a receiver to: an escape followed by a code the
/// extension table does not define shows that code's default-alphabet character; an escape with nothing after
/// it (or before another escape) shows as a space; an octet with the high bit set (not a septet) shows as
/// U+FFFD.
pub fn decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut i = 0;
    while i < septets.len() {
        let s = septets[i];
        i += 1;
        if s >= 0x80 {
            out.push(char::REPLACEMENT_CHARACTER);
        } else if s == ESC {
            match septets.get(i) {
                Some(&next) if next < 0x80 && next != ESC => {
                    i += 1;
                    match EXTENSION.iter().find(|&&(code, _)| code == next) {
                        Some(&(_, c)) => out.push(c),
                        None => out.push(BASIC[next as usize]),
                    }
                }
                _ => out.push(' '),
            }
        } else {
            out.push(BASIC[s as usize]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every character GSM 7-bit can write.
    pub(crate) fn alphabet() -> Vec<char> {
        BASIC.iter().copied().filter(|&c| c != '\u{1b}').chain(EXTENSION.iter().map(|&(_, c)| c)).collect()
    }

    #[test]
    fn the_tables_are_complete_and_unambiguous() {
        let all = alphabet();
        assert_eq!(all.len(), 127 + 10);
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a character appears twice");
        for (i, &c) in BASIC.iter().enumerate() {
            if i != ESC as usize {
                assert_eq!(septets(c), Some(Septets::Basic(i as u8)), "{c:?}");
            }
        }
        for &(s, c) in &EXTENSION {
            assert_eq!(septets(c), Some(Septets::Extended(s)), "{c:?}");
        }
    }

    #[test]
    fn known_septets() {
        assert_eq!(encode("@£$").unwrap(), [0x00, 0x01, 0x02]);
        assert_eq!(encode("Hi!").unwrap(), [0x48, 0x69, 0x21]);
        assert_eq!(encode("€5").unwrap(), [ESC, 0x65, 0x35]);
        assert_eq!(
            encode("{[~]}|^\\").unwrap(),
            [ESC, 0x28, ESC, 0x3C, ESC, 0x3D, ESC, 0x3E, ESC, 0x29, ESC, 0x40, ESC, 0x14, ESC, 0x2F]
        );
        assert_eq!(encode("_§¿à").unwrap(), [0x11, 0x5F, 0x60, 0x7F]);
        assert_eq!(septet_count("a€b").unwrap(), 4);
    }

    #[test]
    fn characters_outside_the_alphabet_are_named() {
        assert_eq!(encode("ok ç"), Err(Unencodable { ch: 'ç', index: 3 }));
        assert_eq!(septet_count("😀"), Err(Unencodable { ch: '😀', index: 0 }));
        assert!(!fits("ÿ"));
        assert!(!fits("\u{1b}"), "a raw escape character is not text");
        assert!(!fits("`"), "the backtick is not in GSM 03.38");
        assert!(fits("Grüße, Ñandù! 100 € {ok}"));
        assert!(!fits("Ñandú"), "ú is not in GSM 03.38 (ù is)");
    }

    #[test]
    fn decoding_is_lenient_as_the_spec_says() {
        assert_eq!(decode(&[ESC, 0x65]), "€");
        assert_eq!(decode(&[ESC, 0x41]), "A", "undefined extension code shows the basic character");
        assert_eq!(decode(&[0x41, ESC]), "A ", "a trailing escape shows as a space");
        assert_eq!(decode(&[ESC, ESC, 0x65]), " €", "escape before escape shows as a space");
        assert_eq!(decode(&[0x41, 0xC1]), "A\u{FFFD}");
        assert_eq!(decode(&[ESC, 0x0A]), "\u{0C}");
    }

    /// rusmpp-extra writes the same alphabet independently: both must agree on every character.
    #[test]
    fn agrees_with_rusmpp_extra_on_every_character() {
        let theirs = rusmpp_extra::encoding::gsm7bit::Gsm7BitUnpacked::new();
        for c in alphabet() {
            let s = c.to_string();
            match theirs.encode_to_vec(&s) {
                Ok(bytes) => assert_eq!(encode(&s).unwrap(), bytes, "{c:?}"),
                // Its extension table leaves out the form feed (TS 23.038 has it at 0x0A).
                Err(_) => assert_eq!(c, '\u{0C}'),
            }
        }
    }

    proptest! {
        #[test]
        fn round_trips(s in proptest::collection::vec(proptest::sample::select(alphabet()), 0..400)) {
            let text: String = s.into_iter().collect();
            let septets = encode(&text).unwrap();
            prop_assert_eq!(septets.len(), septet_count(&text).unwrap());
            prop_assert!(septets.iter().all(|&b| b < 0x80));
            prop_assert_eq!(decode(&septets), text);
        }

        #[test]
        fn decoding_never_panics_and_never_loses_a_septet(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = decode(&bytes);
            // Each character comes from one septet or one escape pair.
            prop_assert!(text.chars().count() <= bytes.len());
            prop_assert!(text.chars().count() * 2 >= bytes.len());
        }
    }
}
