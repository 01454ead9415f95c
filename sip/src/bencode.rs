//! Bencode, the encoding of rtpengine's ng control protocol: integers `i42e`, byte strings `4:spam`, lists
//! `l…e` and dictionaries `d…e` whose keys are byte strings.
//!
//! [`encode`] writes dictionaries with their keys sorted (the canonical form). [`decode`] is strict about the
//! grammar — no leading zeros, no `-0`, no trailing bytes, bounded nesting, no duplicate keys — and lenient
//! about key order, since rtpengine writes its replies' keys in insertion order.

use std::collections::BTreeMap;
use std::fmt;

/// Deepest nesting [`decode`] accepts; the ng replies rtpengine sends nest six or seven levels.
pub const MAX_DEPTH: usize = 64;

/// A bencoded value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer (`i…e`).
    Int(i64),
    /// A byte string (`len:bytes`); text in ng messages is UTF-8 but the codec does not require it.
    Bytes(Vec<u8>),
    /// A list (`l…e`).
    List(Vec<Value>),
    /// A dictionary (`d…e`), keys byte strings.
    Dict(Dict),
}

/// A bencoded dictionary.
pub type Dict = BTreeMap<Vec<u8>, Value>;

/// Why bytes are not bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("unexpected end of input at byte {0}")]
    Eof(usize),
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte {byte:#04x} at byte {at}")]
    Unexpected {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// An integer with leading zeros, `-0`, no digits, or out of the `i64` range.
    #[error("invalid integer at byte {0}")]
    Int(usize),
    /// A string length with leading zeros or larger than what is left of the input.
    #[error("invalid string length at byte {0}")]
    Length(usize),
    /// Values nest deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A dictionary names the same key twice.
    #[error("duplicate dictionary key {0:?}")]
    DuplicateKey(String),
    /// Bytes follow the value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

impl Value {
    /// A byte string from text.
    pub fn str(s: impl AsRef<str>) -> Self {
        Value::Bytes(s.as_ref().as_bytes().to_vec())
    }

    /// The byte string as UTF-8 text, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The integer, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The list, if it is one.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if it is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// `self[key]` when `self` is a dictionary holding `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.get(key.as_bytes())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => write!(f, "{s:?}"),
                Err(_) => write!(f, "0x{}", hex::encode(b)),
            },
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => {
                f.debug_map().entries(d.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v))).finish()
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Bytes(s.into_bytes())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Value::Dict(d)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(l: Vec<T>) -> Self {
        Value::List(l.into_iter().map(Into::into).collect())
    }
}

/// The bencoding of `value`, dictionary keys sorted.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the bencoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => bytes_into(b, out),
        Value::List(l) => {
            out.push(b'l');
            for v in l {
                encode_into(v, out);
            }
            out.push(b'e');
        }
        Value::Dict(d) => {
            out.push(b'd');
            // BTreeMap iterates in byte order: the canonical order.
            for (k, v) in d {
                bytes_into(k, out);
                encode_into(v, out);
            }
            out.push(b'e');
        }
    }
}

fn bytes_into(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Decodes exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    match input.len() - d.pos {
        0 => Ok(v),
        n => Err(DecodeError::Trailing(n)),
    }
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input.get(self.pos).copied().ok_or(DecodeError::Eof(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let start = self.pos;
                let end = self.until(b'e')?;
                self.pos = end + 1;
                parse_int(&self.input[start..end]).map(Value::Int).ok_or(DecodeError::Int(start))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.pos += 1;
                let mut list = Vec::new();
                while self.peek()? != b'e' {
                    list.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(list))
            }
            b'd' => {
                self.pos += 1;
                let mut dict = Dict::new();
                while self.peek()? != b'e' {
                    let at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::Unexpected { byte: self.peek()?, at });
                    }
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    if dict.contains_key(&key) {
                        return Err(DecodeError::DuplicateKey(String::from_utf8_lossy(&key).into_owned()));
                    }
                    dict.insert(key, value);
                }
                self.pos += 1;
                Ok(Value::Dict(dict))
            }
            byte => Err(DecodeError::Unexpected { byte, at: self.pos }),
        }
    }

    /// A `len:bytes` string starting at the current position.
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let start = self.pos;
        let colon = self.until(b':')?;
        let digits = &self.input[start..colon];
        let len = parse_len(digits).ok_or(DecodeError::Length(start))?;
        let from = colon + 1;
        let to = from.checked_add(len).filter(|&to| to <= self.input.len()).ok_or(DecodeError::Length(start))?;
        self.pos = to;
        Ok(self.input[from..to].to_vec())
    }

    fn until(&self, end: u8) -> Result<usize, DecodeError> {
        self.input[self.pos..]
            .iter()
            .position(|&b| b == end)
            .map(|i| self.pos + i)
            .ok_or(DecodeError::Eof(self.input.len()))
    }
}

fn parse_int(s: &[u8]) -> Option<i64> {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    let canonical = match digits {
        [] => false,
        [b'0'] => s.len() == 1, // "0" yes, "-0" no
        [b'0', ..] => false,
        d => d.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_len(s: &[u8]) -> Option<usize> {
    let canonical = match s {
        [] => false,
        [b'0'] => true,
        [b'0', ..] => false,
        d => d.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Builds a dictionary from `(key, value)` pairs.
pub fn dict<K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Dict {
    pairs.into_iter().map(|(k, v)| (k.as_ref().as_bytes().to_vec(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: &Value) -> String {
        String::from_utf8(encode(v)).unwrap()
    }

    #[test]
    fn encodes_each_kind() {
        assert_eq!(enc(&Value::Int(0)), "i0e");
        assert_eq!(enc(&Value::Int(-42)), "i-42e");
        assert_eq!(enc(&Value::Int(i64::MAX)), "i9223372036854775807e");
        assert_eq!(enc(&Value::Int(i64::MIN)), "i-9223372036854775808e");
        assert_eq!(enc(&Value::str("")), "0:");
        assert_eq!(enc(&Value::str("spam")), "4:spam");
        assert_eq!(enc(&Value::List(vec![])), "le");
        assert_eq!(enc(&Value::from(vec!["a", "bc"])), "l1:a2:bce");
        assert_eq!(enc(&Value::Dict(Dict::new())), "de");
        // Keys come out sorted by bytes, whatever the insertion order.
        let d = dict([("zeta", Value::Int(1)), ("alpha", Value::str("x")), ("Beta", Value::List(vec![]))]);
        assert_eq!(enc(&Value::Dict(d)), "d4:Betale5:alpha1:x4:zetai1ee");
    }

    #[test]
    fn decodes_an_ng_offer_reply() {
        let reply = b"d3:sdp12:v=0\r\no=- 1\r\n6:result2:oke";
        let v = decode(reply).unwrap();
        assert_eq!(v.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some("v=0\r\no=- 1\r\n"));
    }

    #[test]
    fn accepts_unsorted_keys_as_rtpengine_writes_them() {
        let v = decode(b"d6:result2:ok3:sdp1:xe").unwrap();
        assert_eq!(v.get("sdp").and_then(Value::as_str), Some("x"));
    }

    #[test]
    fn binary_strings_survive() {
        let v = Value::Bytes(vec![0, 255, b':', b'e']);
        assert_eq!(decode(&encode(&v)).unwrap(), v);
        assert_eq!(format!("{v:?}"), "0x00ff3a65");
    }

    #[test]
    fn rejects_non_canonical_integers() {
        for bad in ["i-0e", "i01e", "ie", "i-e", "i+1e", "i1.5e", "i 1e", "i9223372036854775808e", "i--1e"] {
            assert!(matches!(decode(bad.as_bytes()), Err(DecodeError::Int(1))), "{bad} accepted");
        }
        assert_eq!(decode(b"i-9223372036854775808e").unwrap(), Value::Int(i64::MIN));
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(decode(b"01:a"), Err(DecodeError::Length(0)));
        assert_eq!(decode(b"5:abc"), Err(DecodeError::Length(0)));
        assert_eq!(decode(b"99999999999999999999999:a"), Err(DecodeError::Length(0)));
        assert_eq!(decode(b"3"), Err(DecodeError::Eof(1)));
        assert_eq!(decode(b"1a:x"), Err(DecodeError::Length(0)));
    }

    #[test]
    fn rejects_truncated_containers() {
        assert_eq!(decode(b""), Err(DecodeError::Eof(0)));
        assert_eq!(decode(b"l"), Err(DecodeError::Eof(1)));
        assert_eq!(decode(b"li1e"), Err(DecodeError::Eof(4)));
        assert_eq!(decode(b"d1:a"), Err(DecodeError::Eof(4)));
        assert_eq!(decode(b"i12"), Err(DecodeError::Eof(3)));
    }

    #[test]
    fn rejects_junk() {
        assert_eq!(decode(b"x"), Err(DecodeError::Unexpected { byte: b'x', at: 0 }));
        assert_eq!(decode(b"di1ei2ee"), Err(DecodeError::Unexpected { byte: b'i', at: 1 }));
        assert_eq!(decode(b"i1ei2e"), Err(DecodeError::Trailing(3)));
        assert_eq!(decode(b"d1:ai1e1:ai2ee"), Err(DecodeError::DuplicateKey("a".into())));
    }

    #[test]
    fn bounds_nesting() {
        let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 1), "e".repeat(MAX_DEPTH + 1));
        assert_eq!(decode(deep.as_bytes()), Err(DecodeError::TooDeep));
        let ok = format!("{}{}", "l".repeat(MAX_DEPTH), "e".repeat(MAX_DEPTH));
        assert!(decode(ok.as_bytes()).is_ok());
    }

    #[test]
    fn accessors_answer_only_their_kind() {
        let v = Value::from(7);
        assert_eq!(v.as_int(), Some(7));
        assert_eq!(v.as_str(), None);
        assert_eq!(v.as_list(), None);
        assert_eq!(v.as_dict(), None);
        assert_eq!(v.get("x"), None);
        assert_eq!(Value::Bytes(vec![0xff]).as_str(), None);
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 0..8), inner, 0..6)
                    .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(v in value()) {
            prop_assert_eq!(decode(&encode(&v)), Ok(v));
        }

        #[test]
        fn encoding_is_canonical(v in value()) {
            // Decoding then encoding gives back the same bytes: one encoding per value.
            let bytes = encode(&v);
            prop_assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn every_strict_prefix_is_an_error(v in value()) {
            let bytes = encode(&v);
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err(), "prefix {} of {:?} decoded", cut, v);
            }
        }
    }
}
