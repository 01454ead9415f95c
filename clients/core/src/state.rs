//! Our own small JSON state beside matrix-sdk's SQLite store: the Matrix session (matrix-sdk persists keys and
//! rooms but not the access token; the token is sealed with the data dir's key, see
//! [`at_rest`](crate::at_rest)), a registration in progress, the contacts verified against the directory and the
//! last transparency log head seen.
//!
//! Written atomically (temporary file + rename), readable only by the owner on Unix.

use crate::at_rest::SealedToken;
use crate::error::{ClientError, Result};
use crate::trust::TrustRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tincan_enum_core::E164;

/// The state file's name inside the data dir.
pub const STATE_FILE: &str = "state.json";
/// matrix-sdk's SQLite stores, inside the data dir.
pub const MATRIX_DIR: &str = "matrix";

/// Everything the client keeps besides matrix-sdk's store.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClientState {
    /// Whether this data dir is encrypted at rest (written by this version); an earlier version's data dir
    /// lacks it.
    #[serde(default)]
    pub encrypted_at_rest: bool,
    /// The logged-in session, if any.
    #[serde(default)]
    pub session: Option<SavedSession>,
    /// A `register` waiting for its `verify`.
    #[serde(default)]
    pub pending: Option<PendingRegistration>,
    /// Contacts verified against the directory, by Matrix ID.
    #[serde(default)]
    pub contacts: BTreeMap<String, TrustRecord>,
    /// The largest tree head of the directory's transparency log this client has accepted: every later one must
    /// be consistent with it.
    #[serde(default)]
    pub log_head: Option<SeenTreeHead>,
    /// Our conversation with each bridge ghost we texted (ghost → room), reused for the next text without
    /// waiting for a sync to tell which rooms are direct.
    #[serde(default)]
    pub bridge_rooms: BTreeMap<String, String>,
}

/// A tree head of the transparency log, and the log key it was checked with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenTreeHead {
    /// The log's public key (unpadded base64) the head verified with; a head of another key is not compared.
    pub log_key: String,
    /// The head.
    pub sth: tincan_translog::SignedTreeHead,
}

/// A Matrix session and where it lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    /// The homeserver's client-server API base URL.
    pub homeserver_url: String,
    /// The number the account was signed up with, if it was.
    pub number: Option<E164>,
    /// Our Matrix ID.
    pub user_id: String,
    /// Our device.
    pub device_id: String,
    /// The access token, sealed with the data dir's key for this user and device.
    pub access_token: SealedToken,
    /// Whether our master key was published through the extension.
    #[serde(default)]
    pub key_published: bool,
}

/// A sign-up between `register` and `verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingRegistration {
    /// The number.
    pub number: E164,
    /// The extension's session id.
    pub sid: String,
    /// Our client secret for that session.
    pub client_secret: String,
    /// The last send attempt used.
    pub send_attempt: u64,
    /// The extension the code was asked from (the session is only valid there): `verify` goes to it even when
    /// the process that verifies was not told which extension (`tincan register --provider NAME`, then `tincan
    /// verify CODE`). Absent in states written before it was kept: then the configured extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_url: Option<String>,
}

impl ClientState {
    /// Loads the state from `dir`, or the default when there is none yet. A data dir an earlier version wrote
    /// with a session (a clear access token, or an unencrypted Matrix store) is
    /// [`ClientError::UnencryptedDataDir`], read but not changed.
    pub fn load(dir: &Path) -> Result<ClientState> {
        let path = dir.join(STATE_FILE);
        let raw: serde_json::Value = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ClientError::StateCorrupt { path: path.clone(), source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(source) => return Err(ClientError::State { path, source }),
        };
        let encrypted = raw["encrypted_at_rest"].as_bool() == Some(true);
        if !encrypted && (!raw["session"].is_null() || dir.join(MATRIX_DIR).exists()) {
            return Err(ClientError::UnencryptedDataDir { path: dir.to_owned() });
        }
        if raw.is_null() {
            return Ok(ClientState::default());
        }
        serde_json::from_value(raw).map_err(|source| ClientError::StateCorrupt { path, source })
    }

    /// Saves the state into `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp: PathBuf = dir.join(format!("{STATE_FILE}.tmp"));
        let io = |source| ClientError::State { path: path.clone(), source };
        let bytes = serde_json::to_vec_pretty(self).expect("state serializes");
        write_private(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_default_and_round_trip_works() {
        let dir = tempfile::tempdir().unwrap();
        let s = ClientState::load(dir.path()).unwrap();
        assert!(s.session.is_none() && s.contacts.is_empty());
        let mut s = s;
        s.pending = Some(PendingRegistration {
            number: E164::parse("+442079460001").unwrap(),
            sid: "sid".into(),
            client_secret: "cs".into(),
            send_attempt: 1,
            ext_url: Some("http://127.0.0.1:8090/".into()),
        });
        s.save(dir.path()).unwrap();
        let back = ClientState::load(dir.path()).unwrap();
        let pending = back.pending.unwrap();
        assert_eq!((pending.sid.as_str(), pending.ext_url.as_deref()), ("sid", Some("http://127.0.0.1:8090/")));
    }

    #[test]
    fn an_earlier_versions_session_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let old = br#"{"session": {"homeserver_url": "http://hs", "number": null, "key_published": true,
            "matrix": {"user_id": "@a:hs", "device_id": "D", "access_token": "syt_clear"}},
            "contacts": {}}"#;
        std::fs::write(dir.path().join(STATE_FILE), old).unwrap();
        assert!(matches!(ClientState::load(dir.path()), Err(ClientError::UnencryptedDataDir { .. })));
        assert_eq!(std::fs::read(dir.path().join(STATE_FILE)).unwrap(), old);
        // A Matrix store without the marker is an earlier version's too, with or without a state file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(MATRIX_DIR)).unwrap();
        assert!(matches!(ClientState::load(dir.path()), Err(ClientError::UnencryptedDataDir { .. })));
        // Without a session it is taken over.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), br#"{"contacts": {}}"#).unwrap();
        assert!(!ClientState::load(dir.path()).unwrap().encrypted_at_rest);
    }

    #[test]
    fn corrupt_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{nope").unwrap();
        assert!(matches!(ClientState::load(dir.path()), Err(ClientError::StateCorrupt { .. })));
    }
}
