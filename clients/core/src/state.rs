//! Our own small JSON state beside matrix-sdk's SQLite store: the Matrix session (matrix-sdk persists keys and
//! rooms but not the access token), a registration in progress, and the contacts verified against the directory.
//!
//! Written atomically (temporary file + rename), readable only by the owner on Unix.

use crate::error::{ClientError, Result};
use crate::trust::TrustRecord;
use matrix_sdk::authentication::matrix::MatrixSession;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tincan_enum_core::E164;

/// The state file's name inside the data dir.
pub const STATE_FILE: &str = "state.json";

/// Everything the client keeps besides matrix-sdk's store.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClientState {
    /// The logged-in session, if any.
    #[serde(default)]
    pub session: Option<SavedSession>,
    /// A `register` waiting for its `verify`.
    #[serde(default)]
    pub pending: Option<PendingRegistration>,
    /// Contacts verified against the directory, by Matrix ID.
    #[serde(default)]
    pub contacts: BTreeMap<String, TrustRecord>,
}

/// A Matrix session and where it lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    /// The homeserver's client-server API base URL.
    pub homeserver_url: String,
    /// The number the account was signed up with, if it was.
    pub number: Option<E164>,
    /// matrix-sdk's session (user, device, access token).
    pub matrix: MatrixSession,
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
}

impl ClientState {
    /// Loads the state from `dir`, or the default when there is none yet.
    pub fn load(dir: &Path) -> Result<ClientState> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ClientError::StateCorrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientState::default()),
            Err(source) => Err(ClientError::State { path, source }),
        }
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
        });
        s.save(dir.path()).unwrap();
        let back = ClientState::load(dir.path()).unwrap();
        assert_eq!(back.pending.unwrap().sid, "sid");
    }

    #[test]
    fn corrupt_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{nope").unwrap();
        assert!(matches!(ClientState::load(dir.path()), Err(ClientError::StateCorrupt { .. })));
    }
}
