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

/// The stored form of a code: HMAC-SHA256 under the server's secret (`codes.secret`, never in the database)
/// over the session id and the code. A database dump alone reveals no code (a million candidates are nothing
/// to try, but not without the key), and a hash cannot be replayed against another session.
pub fn hash(secret: &[u8], sid: &str, code: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    // The sid is fixed-alphabet and NUL-terminated here, so (sid, code) pairs cannot run into each other.
    mac.update(sid.as_bytes());
    mac.update(&[0]);
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Whether `code` matches the stored hash; constant time in the content of both.
pub fn matches(secret: &[u8], sid: &str, code: &str, stored: &[u8]) -> bool {
    let candidate = hash(secret, sid, code.trim());
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
    fn hash_is_bound_to_session_and_secret() {
        let k = b"server-secret-0123456789abcdef0123";
        let h = hash(k, "sid1", "123456");
        assert!(matches(k, "sid1", "123456", &h));
        assert!(matches(k, "sid1", " 123456 ", &h));
        assert!(!matches(k, "sid1", "123457", &h));
        assert!(!matches(k, "sid2", "123456", &h));
        assert!(!matches(k, "sid1", "", &h));
        assert!(!matches(b"another-secret-0123456789abcdef012", "sid1", "123456", &h));
    }

    #[test]
    fn ids_are_distinct() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_ne!(random_id(&mut rng), random_id(&mut rng));
        assert_eq!(random_id(&mut rng).len(), 32);
    }
}
