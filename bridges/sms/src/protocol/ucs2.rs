//! UCS-2 (`data_coding` 8) as every handset reads it today: UTF-16 big-endian, so characters beyond the Basic
//! Multilingual Plane (emoji) travel as surrogate pairs. A pair is one character: segmentation never cuts it
//! ([`crate::protocol::segment`]).

/// `text` as UTF-16BE octets.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// How many octets `c` takes (2, or 4 for a surrogate pair).
pub fn octets(c: char) -> usize {
    c.len_utf16() * 2
}

/// UTF-16BE octets as text; an unpaired surrogate or a dangling odd octet shows as U+FFFD.
pub fn decode(octets: &[u8]) -> String {
    let units = octets.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    let mut text: String = char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
    if octets.len() % 2 == 1 {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emoji_are_surrogate_pairs() {
        assert_eq!(encode("A"), [0x00, 0x41]);
        assert_eq!(encode("😀"), [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(octets('😀'), 4);
        assert_eq!(octets('Ж'), 2);
        assert_eq!(decode(&[0xD8, 0x3D, 0xDE, 0x00, 0x00, 0x21]), "😀!");
    }

    #[test]
    fn broken_input_shows_replacement_characters() {
        assert_eq!(decode(&[0xD8, 0x3D]), "\u{FFFD}", "a lone high surrogate");
        assert_eq!(decode(&[0xDE, 0x00, 0x00, 0x41]), "\u{FFFD}A", "a lone low surrogate");
        assert_eq!(decode(&[0x00, 0x41, 0x00]), "A\u{FFFD}", "an odd octet");
    }

    proptest! {
        #[test]
        fn round_trips(text in "\\PC{0,200}") {
            let bytes = encode(&text);
            prop_assert_eq!(bytes.len(), text.chars().map(octets).sum::<usize>());
            prop_assert_eq!(decode(&bytes), text);
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
