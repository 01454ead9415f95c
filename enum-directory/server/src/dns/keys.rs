//! The zone's DNSSEC keys: a KSK and a ZSK, ECDSA P-256 (algorithm 13) or Ed25519 (algorithm 15), held in
//! aws-lc-rs. Every compact denial is signed online, so signing speed is what a random-name flood costs:
//! aws-lc-rs signs Ed25519 about twice as fast as ring (and ECDSA P-256 as fast), `benches/sign.rs`. Keys are
//! PKCS#8 either way; keys ring made load unchanged.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use super::wire::name_to_wire_lower;

/// The signature algorithms the directory signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256, DNSSEC algorithm 13 (RFC 6605). The default.
    #[default]
    #[serde(rename = "ecdsap256sha256")]
    EcdsaP256Sha256,
    /// Ed25519, DNSSEC algorithm 15 (RFC 8080).
    Ed25519,
}

impl KeyAlgorithm {
    /// The DNSSEC algorithm number.
    pub fn number(self) -> u8 {
        match self {
            KeyAlgorithm::EcdsaP256Sha256 => 13,
            KeyAlgorithm::Ed25519 => 15,
        }
    }

    /// The algorithm with this DNSSEC number, if the directory supports it.
    pub fn from_number(n: u8) -> Option<KeyAlgorithm> {
        match n {
            13 => Some(KeyAlgorithm::EcdsaP256Sha256),
            15 => Some(KeyAlgorithm::Ed25519),
            _ => None,
        }
    }
}

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Key-signing key: signs the DNSKEY RRset; its DS goes to the parent. DNSKEY flags 257.
    Ksk,
    /// Zone-signing key: signs everything else. DNSKEY flags 256.
    Zsk,
}

impl KeyRole {
    /// The DNSKEY flags field of this role.
    pub fn flags(self) -> u16 {
        match self {
            KeyRole::Ksk => 257,
            KeyRole::Zsk => 256,
        }
    }
}

/// Why a key could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The crypto library refused to generate a key.
    #[error("could not generate a {0:?} key")]
    Generate(KeyAlgorithm),
    /// The PKCS#8 bytes are not a key of the stated algorithm.
    #[error("not a PKCS#8 {0:?} private key")]
    Pkcs8(KeyAlgorithm),
    /// Signing failed (the crypto library reports no detail).
    #[error("signing failed")]
    Sign,
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One signing key with its metadata and precomputed DNSKEY rdata and key tag.
pub struct ZoneKey {
    role: KeyRole,
    algorithm: KeyAlgorithm,
    created: u64,
    pkcs8: Vec<u8>,
    pair: Pair,
    dnskey_rdata: Vec<u8>,
    key_tag: u16,
}

impl fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneKey")
            .field("role", &self.role)
            .field("algorithm", &self.algorithm)
            .field("created", &self.created)
            .field("key_tag", &self.key_tag)
            .finish_non_exhaustive()
    }
}

impl ZoneKey {
    /// A fresh key. `created` is Unix seconds (from a `Clock`), kept as metadata only.
    pub fn generate(role: KeyRole, algorithm: KeyAlgorithm, created: u64) -> Result<ZoneKey, KeyError> {
        let rng = SystemRandom::new();
        let doc = match algorithm {
            KeyAlgorithm::EcdsaP256Sha256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
            KeyAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| KeyError::Generate(algorithm))?;
        ZoneKey::from_pkcs8(role, algorithm, created, doc.as_ref())
    }

    /// A key loaded from the PKCS#8 bytes [`ZoneKey::to_pkcs8`] gave.
    pub fn from_pkcs8(role: KeyRole, algorithm: KeyAlgorithm, created: u64, pkcs8: &[u8]) -> Result<ZoneKey, KeyError> {
        let (pair, public) = match algorithm {
            KeyAlgorithm::EcdsaP256Sha256 => {
                let p = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| KeyError::Pkcs8(algorithm))?;
                // The public key is the SEC1 uncompressed point 0x04|X|Y; DNSKEY carries X|Y (RFC 6605 §4).
                let public = p.public_key().as_ref()[1..].to_vec();
                (Pair::Ecdsa(p), public)
            }
            KeyAlgorithm::Ed25519 => {
                let p = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| KeyError::Pkcs8(algorithm))?;
                let public = p.public_key().as_ref().to_vec();
                (Pair::Ed25519(p), public)
            }
        };
        let mut dnskey_rdata = Vec::with_capacity(4 + public.len());
        dnskey_rdata.extend_from_slice(&role.flags().to_be_bytes());
        dnskey_rdata.push(3);
        dnskey_rdata.push(algorithm.number());
        dnskey_rdata.extend_from_slice(&public);
        let key_tag = key_tag(&dnskey_rdata);
        Ok(ZoneKey { role, algorithm, created, pkcs8: pkcs8.to_vec(), pair, dnskey_rdata, key_tag })
    }

    /// The private key as PKCS#8 DER, for storage. Treat as a secret.
    pub fn to_pkcs8(&self) -> Vec<u8> {
        self.pkcs8.clone()
    }

    /// KSK or ZSK.
    pub fn role(&self) -> KeyRole {
        self.role
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// When the key was made, Unix seconds.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The key tag (RFC 4034 Appendix B).
    pub fn key_tag(&self) -> u16 {
        self.key_tag
    }

    /// The DNSKEY rdata in wire format.
    pub fn dnskey_rdata(&self) -> &[u8] {
        &self.dnskey_rdata
    }

    /// The DNSKEY record in presentation format, e.g. `apex. 3600 IN DNSKEY 257 3 13 <base64>`.
    pub fn dnskey_presentation(&self, apex: &Name, ttl: u32) -> String {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode(&self.dnskey_rdata[4..]);
        format!("{} {ttl} IN DNSKEY {} 3 {} {key}", apex.to_lowercase(), self.role.flags(), self.algorithm.number())
    }

    /// The SHA-256 digest of the DS record for this key at `apex` (RFC 4509).
    pub fn ds_sha256(&self, apex: &Name) -> [u8; 32] {
        let mut input = name_to_wire_lower(apex);
        input.extend_from_slice(&self.dnskey_rdata);
        let d = ring::digest::digest(&ring::digest::SHA256, &input);
        d.as_ref().try_into().expect("SHA-256 is 32 bytes")
    }

    /// The DS record for the parent in presentation format: `apex. IN DS <tag> <alg> 2 <HEX>`.
    pub fn ds_presentation(&self, apex: &Name) -> String {
        format!(
            "{} IN DS {} {} 2 {}",
            apex.to_lowercase(),
            self.key_tag,
            self.algorithm.number(),
            hex::encode_upper(self.ds_sha256(apex))
        )
    }

    /// Signs `data` (the RRSIG signing input). Both algorithms give 64 bytes.
    pub fn sign(&self, data: &[u8]) -> Result<[u8; 64], KeyError> {
        let mut out = [0u8; 64];
        match &self.pair {
            Pair::Ecdsa(p) => {
                // The nonce comes from aws-lc's own DRBG (the `SecureRandom` argument is ignored).
                let sig = p.sign(&SystemRandom::new(), data).map_err(|_| KeyError::Sign)?;
                out.copy_from_slice(sig.as_ref().get(..64).ok_or(KeyError::Sign)?);
            }
            Pair::Ed25519(p) => {
                let sig = p.try_sign(data).map_err(|_| KeyError::Sign)?;
                out.copy_from_slice(sig.as_ref().get(..64).ok_or(KeyError::Sign)?);
            }
        }
        Ok(out)
    }
}

/// RFC 4034 Appendix B.
fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 { u32::from(*b) } else { u32::from(*b) << 8 };
    }
    ac += (ac >> 16) & 0xFFFF;
    (ac & 0xFFFF) as u16
}

/// The zone's key pair: the KSK signs the DNSKEY RRset, the ZSK everything else. Counts signing operations.
/// During a rollover, further keys are published in the DNSKEY RRset without signing ([`ZoneKeys::with_published`]).
#[derive(Debug)]
pub struct ZoneKeys {
    ksk: ZoneKey,
    zsk: ZoneKey,
    published: Vec<ZoneKey>,
    signatures: AtomicU64,
}

impl ZoneKeys {
    /// A KSK and a ZSK, both fresh, of `algorithm`.
    pub fn generate(algorithm: KeyAlgorithm, created: u64) -> Result<ZoneKeys, KeyError> {
        Ok(ZoneKeys::new(
            ZoneKey::generate(KeyRole::Ksk, algorithm, created)?,
            ZoneKey::generate(KeyRole::Zsk, algorithm, created)?,
        ))
    }

    /// Keys from two loaded keys. The roles are taken as given.
    pub fn new(ksk: ZoneKey, zsk: ZoneKey) -> ZoneKeys {
        ZoneKeys::with_published(ksk, zsk, Vec::new())
    }

    /// Signing keys plus keys only published in the DNSKEY RRset (a ZSK before or after its active period).
    pub fn with_published(ksk: ZoneKey, zsk: ZoneKey, published: Vec<ZoneKey>) -> ZoneKeys {
        ZoneKeys { ksk, zsk, published, signatures: AtomicU64::new(0) }
    }

    /// The rdata of every key in the DNSKEY RRset: the KSK, the ZSK and the published-only keys.
    pub fn dnskey_rdatas(&self) -> Vec<Vec<u8>> {
        [&self.ksk, &self.zsk].into_iter().chain(&self.published).map(|k| k.dnskey_rdata().to_vec()).collect()
    }

    /// Whether `other` publishes the same DNSKEY RRset and signs with the same keys.
    pub fn same_keys(&self, other: &ZoneKeys) -> bool {
        let mut a = self.dnskey_rdatas();
        let mut b = other.dnskey_rdatas();
        a.sort();
        b.sort();
        a == b && self.ksk.key_tag == other.ksk.key_tag && self.zsk.dnskey_rdata == other.zsk.dnskey_rdata
    }

    /// The key-signing key.
    pub fn ksk(&self) -> &ZoneKey {
        &self.ksk
    }

    /// The zone-signing key.
    pub fn zsk(&self) -> &ZoneKey {
        &self.zsk
    }

    /// The DS record(s) for the parent, one per line, presentation format.
    pub fn ds_presentation(&self, apex: &Name) -> String {
        self.ksk.ds_presentation(apex)
    }

    /// How many signatures these keys have made (to prove signatures are cached, not made per query).
    pub fn signatures_made(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    pub(crate) fn sign_with(&self, role: KeyRole, data: &[u8]) -> Result<[u8; 64], KeyError> {
        self.signatures.fetch_add(1, Ordering::Relaxed);
        match role {
            KeyRole::Ksk => self.ksk.sign(data),
            KeyRole::Zsk => self.zsk.sign(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::rdata::DNSKEY;
    use hickory_proto::dnssec::{DigestType, PublicKeyBuf};

    fn apex() -> Name {
        Name::from_ascii("e164.tincan.test.").unwrap()
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key() {
        for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
            let k = ZoneKey::generate(KeyRole::Ksk, alg, 7).unwrap();
            let back = ZoneKey::from_pkcs8(KeyRole::Ksk, alg, 7, &k.to_pkcs8()).unwrap();
            assert_eq!(back.dnskey_rdata(), k.dnskey_rdata());
            assert_eq!(back.key_tag(), k.key_tag());
            assert_eq!(back.created(), 7);
        }
        assert!(ZoneKey::from_pkcs8(KeyRole::Zsk, KeyAlgorithm::Ed25519, 0, b"junk").is_err());
    }

    #[test]
    fn keys_made_by_ring_load_and_sign_verifiably() {
        let rng = ring::rand::SystemRandom::new();
        let p256 = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let made = [
            (KeyAlgorithm::EcdsaP256Sha256, ring::signature::EcdsaKeyPair::generate_pkcs8(p256, &rng).unwrap()),
            (KeyAlgorithm::Ed25519, ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap()),
        ];
        for (alg, pkcs8) in made {
            let k = ZoneKey::from_pkcs8(KeyRole::Zsk, alg, 0, pkcs8.as_ref()).unwrap();
            let sig = k.sign(b"signing input").unwrap();
            let verify: &dyn ring::signature::VerificationAlgorithm = match alg {
                KeyAlgorithm::EcdsaP256Sha256 => &ring::signature::ECDSA_P256_SHA256_FIXED,
                KeyAlgorithm::Ed25519 => &ring::signature::ED25519,
            };
            let public = match alg {
                // DNSKEY holds X|Y; ring wants the SEC1 point.
                KeyAlgorithm::EcdsaP256Sha256 => [&[4u8][..], &k.dnskey_rdata()[4..]].concat(),
                KeyAlgorithm::Ed25519 => k.dnskey_rdata()[4..].to_vec(),
            };
            ring::signature::UnparsedPublicKey::new(verify, &public).verify(b"signing input", &sig).unwrap();
            assert_eq!(ZoneKey::from_pkcs8(KeyRole::Zsk, alg, 0, &k.to_pkcs8()).unwrap().key_tag(), k.key_tag());
        }
    }

    #[test]
    fn key_tag_and_ds_match_hickory() {
        for alg in [KeyAlgorithm::EcdsaP256Sha256, KeyAlgorithm::Ed25519] {
            let k = ZoneKey::generate(KeyRole::Ksk, alg, 0).unwrap();
            let h = DNSKEY::with_flags(
                257,
                PublicKeyBuf::new(
                    k.dnskey_rdata()[4..].to_vec(),
                    hickory_proto::dnssec::Algorithm::from_u8(alg.number()),
                ),
            );
            assert_eq!(h.calculate_key_tag().unwrap(), k.key_tag());
            assert_eq!(h.to_digest(&apex(), DigestType::SHA256).unwrap().as_ref(), k.ds_sha256(&apex()));
            let ds = k.ds_presentation(&apex());
            assert!(ds.starts_with(&format!("e164.tincan.test. IN DS {} {} 2 ", k.key_tag(), alg.number())), "{ds}");
        }
    }

    #[test]
    fn key_tag_rfc4034_example() {
        // RFC 4034 §5.4 example DNSKEY (dskey.example.com, tag 60485).
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(
                "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvx\
                 egXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
            )
            .unwrap();
        let mut rdata = vec![1, 0, 3, 5];
        rdata.extend_from_slice(&key);
        assert_eq!(key_tag(&rdata), 60485);
    }
}
