//! Ed25519 keys of the charter: made offline, one file each, mode 0600; their public halves (`*.pub`) are what
//! a root names.
//!
//! A key id is the hex SHA-256 of the 32-byte public key.

use crate::error::CharterError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A public key as it appears in a root and in `*.pub` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

impl PublicKey {
    /// The key id: hex SHA-256 of the public key bytes.
    pub fn keyid(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// Unpadded base64 of the 32 bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    /// Parses unpadded (or padded) base64 of 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, CharterError> {
        let bytes = B64
            .decode(s.trim_end_matches('='))
            .map_err(|e| CharterError::BadKey(format!("public key is not base64: {e}")))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CharterError::BadKey("public key is not 32 bytes".into()))?;
        VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|e| CharterError::BadKey(format!("not an Ed25519 public key: {e}")))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// The public half as a file (`NAME.pub`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyFile {
    /// Always `ed25519`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key id.
    pub keyid: String,
    /// The key.
    pub public: PublicKey,
}

/// A secret key file's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyFile {
    #[serde(rename = "type")]
    kind: String,
    keyid: String,
    public: PublicKey,
    /// The 32-byte seed, unpadded base64.
    secret: String,
}

/// A signing key loaded from its file.
pub struct SecretKey {
    key: SigningKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public().keyid())
    }
}

impl SecretKey {
    /// A new random key from `rng` (the binary passes the operating system's).
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        SecretKey { key: SigningKey::from_bytes(&seed) }
    }

    /// A new key from the operating system's random source.
    pub fn generate_os() -> Self {
        use rand::TryRngCore as _;
        Self::generate(&mut rand::rngs::OsRng.unwrap_err())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs a message.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// Writes the key to `path` (created new, mode 0600: an existing file is never overwritten) and its public
    /// half to `path.pub`. Returns the path of the public file.
    pub fn write_new(&self, path: &Path) -> Result<PathBuf, CharterError> {
        let public = self.public();
        let body = SecretKeyFile {
            kind: "ed25519".into(),
            keyid: public.keyid(),
            public,
            secret: B64.encode(self.key.to_bytes()),
        };
        let text = serde_json::to_string_pretty(&body).expect("serializable") + "\n";
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(CharterError::io(path))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(CharterError::io(path))?;
        let pub_path = pub_path(path);
        let body = PublicKeyFile { kind: "ed25519".into(), keyid: public.keyid(), public };
        let text = serde_json::to_string_pretty(&body).expect("serializable") + "\n";
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&pub_path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(CharterError::io(&pub_path))?;
        Ok(pub_path)
    }

    /// Reads a key file; refuses one that group or others may read.
    pub fn read(path: &Path) -> Result<Self, CharterError> {
        let meta = std::fs::metadata(path).map_err(CharterError::io(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CharterError::KeyFileMode { path: path.to_owned(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(CharterError::io(path))?;
        let body: SecretKeyFile = serde_json::from_str(&text)
            .map_err(|e| CharterError::BadKey(format!("{}: not a charter secret key file: {e}", path.display())))?;
        if body.kind != "ed25519" {
            return Err(CharterError::BadKey(format!(
                "{}: key type {:?}, expected ed25519",
                path.display(),
                body.kind
            )));
        }
        let seed =
            B64.decode(body.secret.trim_end_matches('=')).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(
                || CharterError::BadKey(format!("{}: the secret is not 32 bytes of base64", path.display())),
            )?;
        let key = SecretKey { key: SigningKey::from_bytes(&seed) };
        if key.public() != body.public || key.public().keyid() != body.keyid {
            return Err(CharterError::BadKey(format!(
                "{}: public key or key id does not match the secret",
                path.display()
            )));
        }
        Ok(key)
    }
}

/// Reads a public key from a `*.pub` file, or from a secret key file (its public half).
pub fn read_public(path: &Path) -> Result<PublicKey, CharterError> {
    let text = std::fs::read_to_string(path).map_err(CharterError::io(path))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CharterError::BadKey(format!("{}: not a charter key file: {e}", path.display())))?;
    let public = value
        .get("public")
        .and_then(|v| v.as_str())
        .ok_or_else(|| CharterError::BadKey(format!("{}: no \"public\" field", path.display())))?;
    let key = PublicKey::from_base64(public)?;
    if let Some(id) = value.get("keyid").and_then(|v| v.as_str())
        && id != key.keyid()
    {
        return Err(CharterError::BadKey(format!("{}: key id does not match the key", path.display())));
    }
    Ok(key)
}

/// `key` → `key.pub`.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SecretKey::generate_os();
        let pub_file = key.write_new(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SecretKey::read(&path).unwrap().public(), key.public());
        assert_eq!(read_public(&pub_file).unwrap(), key.public());
        // Never overwritten.
        assert!(matches!(SecretKey::generate_os().write_new(&path), Err(CharterError::Io { .. })));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        SecretKey::generate_os().write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(SecretKey::read(&path), Err(CharterError::KeyFileMode { mode: 0o644, .. })));
    }
}
