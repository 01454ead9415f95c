//! One-time SMS codes: generated from a CSPRNG, stored only as a keyed hash, compared in constant time.

use hmac::{Hmac, Mac};
use rand::{CryptoRng, Rng};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Six decimal digits, uniform (rejection sampling inside `random_range`).
pub fn generate<R: Rng + CryptoRng + ?Sized>(rng: &mut R) -> String {
    format!("{:06}", rng.random_range(0..1_000_000u32))
}

/// A random opaque identifier (session ids, tokens): 32 URL-safe characters, 192 bits.
pub fn random_id<R: Rng + CryptoRng + ?Sized>(rng: &mut R) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    rng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a code: HMAC-SHA256 keyed by the session id, so a database dump reveals no code and a
/// hash cannot be replayed against another session.
pub fn hash(sid: &str, code: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(sid.as_bytes()).expect("HMAC takes any key length");
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Whether `code` matches the stored hash; constant time in the content of both.
pub fn matches(sid: &str, code: &str, stored: &[u8]) -> bool {
    let candidate = hash(sid, code.trim());
    candidate.ct_eq(stored).into()
}

/// SHA-256 of a secret that is looked up later (client secrets, access tokens), hex-encoded.
pub fn digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn codes_are_six_digits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let c = generate(&mut rng);
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn hash_is_bound_to_session() {
        let h = hash("sid1", "123456");
        assert!(matches("sid1", "123456", &h));
        assert!(matches("sid1", " 123456 ", &h));
        assert!(!matches("sid1", "123457", &h));
        assert!(!matches("sid2", "123456", &h));
        assert!(!matches("sid1", "", &h));
    }

    #[test]
    fn ids_are_distinct() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_ne!(random_id(&mut rng), random_id(&mut rng));
        assert_eq!(random_id(&mut rng).len(), 32);
    }
}
