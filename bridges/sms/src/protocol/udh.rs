//! The User Data Header (3GPP TS 23.040 §9.2.3.24) of a short message whose `esm_class` has UDHI set: the
//! concatenation information elements, 8-bit reference (IEI `0x00`) and 16-bit reference (IEI `0x08`).

/// The reference that ties the parts of one long message together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reference {
    /// IEI `0x00`: a 6-octet header.
    Eight(u8),
    /// IEI `0x08`: a 7-octet header.
    Sixteen(u16),
}

impl Reference {
    /// The reference as a number.
    pub fn value(self) -> u16 {
        match self {
            Reference::Eight(r) => u16::from(r),
            Reference::Sixteen(r) => r,
        }
    }

    /// The length of the whole header (UDHL octet included) this reference makes.
    pub fn header_len(self) -> usize {
        match self {
            Reference::Eight(_) => 6,
            Reference::Sixteen(_) => 7,
        }
    }
}

/// Which part of which long message a short message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// The message reference.
    pub reference: Reference,
    /// How many parts the message has (1–255).
    pub total: u8,
    /// This part's number (1-based).
    pub seq: u8,
}

impl Concat {
    /// The header for this part, UDHL octet first.
    pub fn header(self) -> Vec<u8> {
        match self.reference {
            Reference::Eight(r) => vec![0x05, 0x00, 0x03, r, self.total, self.seq],
            Reference::Sixteen(r) => {
                let [hi, lo] = r.to_be_bytes();
                vec![0x06, 0x08, 0x04, hi, lo, self.total, self.seq]
            }
        }
    }
}

/// A header that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    /// The header says it is longer than the message.
    #[error("the user data header ({header} octets) is longer than the message ({message} octets)")]
    Truncated {
        /// Octets the header claims, UDHL octet included.
        header: usize,
        /// Octets in the message.
        message: usize,
    },
    /// An information element runs past the end of the header.
    #[error("an information element runs past the end of the user data header")]
    BadElement,
}

/// A parsed header: the concatenation element if there is a usable one, and where the text starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The concatenation element; `None` when absent or invalid (TS 23.040 tells the receiver to ignore an
    /// element whose part number is 0 or above the total).
    pub concat: Option<Concat>,
    /// Octets of header, UDHL octet included; the text starts here.
    pub len: usize,
}

/// Reads the header at the start of `short_message` (a message with UDHI set).
pub fn parse(short_message: &[u8]) -> Result<Header, UdhError> {
    let Some(&udhl) = short_message.first() else {
        return Err(UdhError::Truncated { header: 1, message: 0 });
    };
    let len = 1 + usize::from(udhl);
    if len > short_message.len() {
        return Err(UdhError::Truncated { header: len, message: short_message.len() });
    }
    let mut ies = &short_message[1..len];
    let mut concat = None;
    while !ies.is_empty() {
        let [iei, ie_len, rest @ ..] = ies else {
            return Err(UdhError::BadElement);
        };
        let ie_len = usize::from(*ie_len);
        if rest.len() < ie_len {
            return Err(UdhError::BadElement);
        }
        let (data, next) = rest.split_at(ie_len);
        let found = match (*iei, data) {
            (0x00, &[r, total, seq]) => Some(Concat { reference: Reference::Eight(r), total, seq }),
            (0x08, &[hi, lo, total, seq]) => {
                Some(Concat { reference: Reference::Sixteen(u16::from_be_bytes([hi, lo])), total, seq })
            }
            _ => None,
        };
        // The last concatenation element wins (TS 23.040: a repeated element replaces the earlier one).
        if let Some(c) = found {
            concat = (c.total > 0 && c.seq > 0 && c.seq <= c.total).then_some(c);
        }
        ies = next;
    }
    Ok(Header { concat, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_of_both_reference_sizes() {
        let c8 = Concat { reference: Reference::Eight(0xA7), total: 3, seq: 2 };
        assert_eq!(c8.header(), [0x05, 0x00, 0x03, 0xA7, 3, 2]);
        assert_eq!(c8.header().len(), c8.reference.header_len());
        let c16 = Concat { reference: Reference::Sixteen(0x1234), total: 9, seq: 9 };
        assert_eq!(c16.header(), [0x06, 0x08, 0x04, 0x12, 0x34, 9, 9]);
        assert_eq!(c16.header().len(), c16.reference.header_len());
    }

    #[test]
    fn reads_concatenation_among_other_elements() {
        // A port-addressing element (0x05, 4 octets) before the 8-bit concatenation element, then text.
        let msg = [0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x42, 0x02, 0x01, b'h', b'i'];
        let h = parse(&msg).unwrap();
        assert_eq!(h.len, 12);
        assert_eq!(h.concat, Some(Concat { reference: Reference::Eight(0x42), total: 2, seq: 1 }));
        assert_eq!(&msg[h.len..], b"hi");
    }

    #[test]
    fn invalid_part_numbers_are_ignored() {
        assert_eq!(parse(&[0x05, 0x00, 0x03, 1, 2, 0]).unwrap().concat, None, "part 0");
        assert_eq!(parse(&[0x05, 0x00, 0x03, 1, 2, 3]).unwrap().concat, None, "part 3 of 2");
        assert_eq!(parse(&[0x05, 0x00, 0x03, 1, 0, 0]).unwrap().concat, None, "0 parts");
        assert_eq!(parse(&[0x00, b'x']).unwrap(), Header { concat: None, len: 1 }, "an empty header");
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(parse(&[]), Err(UdhError::Truncated { header: 1, message: 0 }));
        assert_eq!(parse(&[0x05, 0x00, 0x03]), Err(UdhError::Truncated { header: 6, message: 3 }));
        assert_eq!(parse(&[0x02, 0x00, 0x03]), Err(UdhError::BadElement));
        assert_eq!(parse(&[0x01, 0x00]), Err(UdhError::BadElement));
    }

    proptest! {
        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(h) = parse(&bytes) {
                prop_assert!(h.len <= bytes.len());
            }
        }

        #[test]
        fn built_headers_parse_back(r8 in any::<u8>(), r16 in any::<u16>(), total in 1u8.., seq_seed in any::<u8>()) {
            let seq = seq_seed % total + 1;
            for reference in [Reference::Eight(r8), Reference::Sixteen(r16)] {
                let c = Concat { reference, total, seq };
                let mut msg = c.header();
                msg.extend_from_slice(b"text");
                let h = parse(&msg).unwrap();
                prop_assert_eq!(h.concat, Some(c));
                prop_assert_eq!(&msg[h.len..], b"text");
            }
        }
    }
}
