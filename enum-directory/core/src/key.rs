//! The key TXT record of one number: `"v=tc1; mk=<unpadded base64 ed25519 master cross-signing key>"`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hickory_proto::rr::rdata::TXT;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a master key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not standard base64 (padding is accepted on input, never produced).
    #[error("not base64")]
    Base64,
    /// Not 32 bytes.
    #[error("an ed25519 key is 32 bytes, not {0}")]
    Length(usize),
    /// 32 bytes that are not an ed25519 point.
    #[error("not an ed25519 public key")]
    NotAPoint,
}

/// A user's ed25519 master cross-signing public key (32 bytes), checked to be a curve point.
/// Serialised as unpadded standard base64, like Matrix does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<MasterKey, KeyError> {
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint)?;
        Ok(MasterKey(bytes))
    }

    /// Parses unpadded (or padded) standard base64.
    pub fn from_base64(s: &str) -> Result<MasterKey, KeyError> {
        let bytes = if s.ends_with('=') { STANDARD.decode(s) } else { STANDARD_NO_PAD.decode(s) }
            .map_err(|_| KeyError::Base64)?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length(bytes.len()))?;
        MasterKey::from_bytes(arr)
    }

    /// Unpadded standard base64.
    pub fn to_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.0)
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.to_base64())
    }
}

impl fmt::Display for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Serialize for MasterKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for MasterKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MasterKey::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// The TXT rdata publishing `key`: one string `v=tc1; mk=<unpadded base64>`.
pub fn key_txt(key: &MasterKey) -> TXT {
    TXT::new(vec![format!("v=tc1; mk={}", key.to_base64())])
}

/// The key a TXT record publishes, or `None` when it is not a `v=tc1` record with one valid `mk`.
/// The record's strings are joined first (RFC 7208 style), so a resolver splitting it does not matter.
pub fn key_from_txt(t: &TXT) -> Option<MasterKey> {
    let joined: Vec<u8> = t.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
    let text = std::str::from_utf8(&joined).ok()?;
    let mut parts = text.split(';').map(str::trim).filter(|p| !p.is_empty());
    if parts.next()? != "v=tc1" {
        return None;
    }
    let mut key = None;
    for part in parts {
        if let Some(mk) = part.strip_prefix("mk=") {
            if key.is_some() {
                return None;
            }
            key = Some(MasterKey::from_base64(mk).ok()?);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> MasterKey {
        // The ed25519 base point: a valid public key.
        let mut b = [0x66u8; 32];
        b[0] = 0x58;
        MasterKey::from_bytes(b).unwrap()
    }

    #[test]
    fn base64_round_trip_unpadded() {
        let k = sample();
        let s = k.to_base64();
        assert!(!s.contains('='));
        assert_eq!(s.len(), 43);
        assert_eq!(MasterKey::from_base64(&s).unwrap(), k);
        assert_eq!(MasterKey::from_base64(&format!("{s}=")).unwrap(), k);
        assert_eq!(serde_json::from_str::<MasterKey>(&serde_json::to_string(&k).unwrap()).unwrap(), k);
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(MasterKey::from_base64("not base64!"), Err(KeyError::Base64));
        assert_eq!(MasterKey::from_base64("AAAA"), Err(KeyError::Length(3)));
        // y = 2 has no x on the curve.
        let mut b = [0u8; 32];
        b[0] = 2;
        assert_eq!(MasterKey::from_bytes(b), Err(KeyError::NotAPoint));
    }

    #[test]
    fn txt_round_trip() {
        let k = sample();
        let t = key_txt(&k);
        assert_eq!(t.txt_data.len(), 1);
        assert_eq!(&*t.txt_data[0], format!("v=tc1; mk={}", k.to_base64()).as_bytes());
        assert_eq!(key_from_txt(&t), Some(k));
        let split = TXT::new(vec!["v=tc1; mk=".into(), k.to_base64()]);
        assert_eq!(key_from_txt(&split), Some(k));
    }

    #[test]
    fn txt_rejects_others() {
        let k = sample().to_base64();
        for s in [
            "v=spf1 -all".to_owned(),
            format!("mk={k}; v=tc1"),
            format!("v=tc2; mk={k}"),
            format!("v=tc1; mk={k}; mk={k}"),
            "v=tc1".to_owned(),
            "v=tc1; mk=AAAA".to_owned(),
        ] {
            assert_eq!(key_from_txt(&TXT::new(vec![s.clone()])), None, "{s}");
        }
    }
}
