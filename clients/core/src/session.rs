//! Where the signed-in session (homeserver, user, device, access token) is kept between runs: by default in the
//! data dir's state file, or in a [`SessionStore`] the app supplies (`ClientConfig::session_store`), e.g. on the
//! phone's keychain/keystore, the way Element X keeps its sessions.
//!
//! The access token reaches a store sealed with the data dir's key ([`SealedToken`], see
//! [`at_rest`](crate::at_rest)): whatever the app keeps it in, it is not in clear, and it opens only with the
//! key that also opens the crypto store. The device's keys stay in the data dir's encrypted crypto store; the
//! session only says which device to resume, so a restart with the stored session is the same device and keeps
//! decrypting its rooms.
//!
//! [`SealedToken`]: crate::at_rest::SealedToken

use crate::state::SavedSession;

/// The app's storage for the session. Called rarely (on open, after sign-in, when the key is published, on
/// forgetting the session), from a background thread; a call may block briefly (a keychain access).
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// The stored session, `None` when there is none (never signed in, or cleared).
    fn load(&self) -> Result<Option<SavedSession>, SessionStoreError>;
    /// Stores `session`, replacing any stored one.
    fn save(&self, session: &SavedSession) -> Result<(), SessionStoreError>;
    /// Removes the stored session.
    fn clear(&self) -> Result<(), SessionStoreError>;
}

/// The app's session store failed: its own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the app's session store failed: {0}")]
pub struct SessionStoreError(pub String);
