//! Keys at rest: the data dir is private to its owner (0700), matrix-sdk's SQLite stores (crypto, state, event
//! cache, media) are encrypted with a 32-byte key, and the access token in our state file is sealed with the same
//! key (XChaCha20-Poly1305, bound to the user and device it belongs to).
//!
//! The key comes from a [`StoreKey`]: by default a key file (`store.key` in the data dir, mode 0600, made with
//! a random key on first run), or a key the embedding app keeps elsewhere (a platform keystore). A key file that
//! others can read is refused rather than used, as ssh does.
//!
//! A data dir written by an earlier version (a Matrix store without encryption, or a session with a clear
//! token) cannot be converted in place: matrix-sdk has no way to encrypt an existing store, and a new store
//! would lose the device's keys. Opening one is [`ClientError::UnencryptedDataDir`], and nothing in it is
//! changed; a data dir that holds no session yet is simply taken over.

use crate::error::{ClientError, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The default key file's name inside the data dir.
pub const KEY_FILE: &str = "store.key";

/// Where the key that encrypts the data dir comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKey {
    /// A key file (unpadded or padded base64 of 32 bytes), created with a random key on first run, mode 0600.
    File(PathBuf),
    /// The key itself, kept by the embedding app (e.g. in a platform keystore).
    Bytes([u8; 32]),
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKey::File(p) => f.debug_tuple("File").field(p).finish(),
            StoreKey::Bytes(_) => f.write_str("Bytes(<redacted>)"),
        }
    }
}

/// The data dir's key, once loaded.
#[derive(Clone)]
pub(crate) struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// The key matrix-sdk's SQLite stores are opened with.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seals `token` for `user_id`'s `device_id`.
    pub(crate) fn seal(&self, token: &str, user_id: &str, device_id: &str) -> SealedToken {
        SealedToken(B64.encode(self.seal_bytes(token.as_bytes(), &aad(user_id, device_id))))
    }

    /// Opens a token sealed by [`seal`](Self::seal) for the same user and device.
    pub(crate) fn open(&self, sealed: &SealedToken, user_id: &str, device_id: &str) -> Result<String> {
        let bad = || ClientError::StoreKey("the access token does not decrypt with this key".into());
        let blob = B64.decode(sealed.0.trim_end_matches('=')).map_err(|_| bad())?;
        let clear = self.open_bytes(&blob, &aad(user_id, device_id)).ok_or_else(bad)?;
        String::from_utf8(clear).map_err(|_| bad())
    }

    /// Seals `msg` bound to `aad` (what it is, whose): the 24-byte nonce, then the ciphertext.
    pub(crate) fn seal_bytes(&self, msg: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        StdRng::from_os_rng().fill_bytes(&mut nonce);
        let sealed = XChaCha20Poly1305::new((&self.0).into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
            .expect("XChaCha20-Poly1305 encryption cannot fail below 256 GiB");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        blob
    }

    /// Opens what [`seal_bytes`](Self::seal_bytes) sealed with the same `aad`; `None` when it does not open.
    pub(crate) fn open_bytes(&self, blob: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if blob.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = blob.split_at(24);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad })
            .ok()
    }
}

fn aad(user_id: &str, device_id: &str) -> Vec<u8> {
    format!("tincan access token v1\0{user_id}\0{device_id}").into_bytes()
}

/// An access token sealed with the data dir's key: base64 of the 24-byte nonce and the ciphertext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedToken(String);

impl SealedToken {
    /// The sealed form, for a [`SessionStore`](crate::session::SessionStore) to keep (not the token: it opens only
    /// with the data dir's key, for its user and device).
    pub fn as_sealed(&self) -> &str {
        &self.0
    }

    /// A sealed token a session store kept ([`as_sealed`](Self::as_sealed)); checked when the session is opened.
    pub fn from_sealed(sealed: impl Into<String>) -> SealedToken {
        SealedToken(sealed.into())
    }
}

impl std::fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedToken(..)")
    }
}

/// Creates the data dir (and missing parents) and makes it private to its owner (0700), also when it existed
/// with looser permissions.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    let io = |source| ClientError::State { path: dir.to_owned(), source };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(io)?;
    Ok(())
}

/// Loads the key of `source`; a missing key file is created with a fresh random key when `create` is true, and
/// is [`ClientError::StoreKey`] otherwise (the data dir is encrypted with a key that is not there).
pub(crate) fn load_key(source: &StoreKey, create: bool) -> Result<DataKey> {
    let path = match source {
        StoreKey::Bytes(k) => return Ok(DataKey(*k)),
        StoreKey::File(p) => p,
    };
    let io = |source| ClientError::State { path: path.clone(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_private(path)?;
            let bytes = B64.decode(text.trim().trim_end_matches('=')).map_err(|_| malformed(path))?;
            Ok(DataKey(bytes.try_into().map_err(|_| malformed(path))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            // A folder made for the key is private; an existing one (say, a secrets mount) is left as it is.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
                private_dir(parent)?;
            }
            let mut key = [0u8; 32];
            StdRng::from_os_rng().fill_bytes(&mut key);
            let mut opts = std::fs::OpenOptions::new();
            // create_new: never overwrite a key another process just made.
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io)?;
            f.write_all(format!("{}\n", B64.encode(key)).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(DataKey(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ClientError::StoreKey(format!(
            "the data dir is encrypted, but its key file {} is missing",
            path.display()
        ))),
        Err(source) => Err(io(source)),
    }
}

fn malformed(path: &Path) -> ClientError {
    ClientError::StoreKey(format!("{} does not hold a 32-byte key in base64", path.display()))
}

/// A key file others can read (or write) is refused: its key may be known.
fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| ClientError::State { path: path.to_owned(), source })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ClientError::StoreKey(format!(
                "{} is readable by others (mode {mode:o}): its key may be known; `chmod 600` it if it is not",
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_with_its_key_user_and_device() {
        let key = DataKey([7; 32]);
        let sealed = key.seal("syt_secret", "@a:hs", "DEV");
        assert!(!format!("{sealed:?}").contains("secret") && !sealed.0.contains("syt_secret"));
        assert_eq!(key.open(&sealed, "@a:hs", "DEV").unwrap(), "syt_secret");
        assert!(key.open(&sealed, "@b:hs", "DEV").is_err());
        assert!(key.open(&sealed, "@a:hs", "OTHER").is_err());
        assert!(DataKey([8; 32]).open(&sealed, "@a:hs", "DEV").is_err());
        assert!(key.open(&SealedToken("AAAA".into()), "@a:hs", "DEV").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_made_private_once_and_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.key");
        let source = StoreKey::File(path.clone());
        assert!(matches!(load_key(&source, false), Err(ClientError::StoreKey(_))));
        let made = load_key(&source, true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load_key(&source, true).unwrap().bytes(), made.bytes(), "the same key on the next run");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key(&source, true).unwrap_err();
        assert!(err.to_string().contains("readable by others"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn the_data_dir_becomes_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        private_dir(&data).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
