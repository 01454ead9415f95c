//! [`SessionStore`]: the app keeps the session where it decides (the platform keychain/keystore), the way
//! Element X's apps keep theirs; the core asks it on `open` and tells it after sign-in and when the session is
//! forgotten (`tincan_client_core::session`).

use std::sync::Arc;
use tincan_client_core as core;

/// The signed-in session as the app stores it. Enough to resume the same device on the next `open`: the device's
/// keys stay in the data dir's encrypted store. The access token is sealed with the data dir's key (it opens only
/// with `ClientConfig.store_key`, for this user and device), so it is never in clear, wherever the app keeps it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StoredSession {
    /// The homeserver's client-server API base URL.
    pub homeserver_url: String,
    /// Our Matrix ID.
    pub user_id: String,
    /// Our device.
    pub device_id: String,
    /// The number the account was signed up with.
    pub number: Option<String>,
    /// The access token, sealed (opaque to the app).
    pub access_token_sealed: String,
    /// Whether our master key was published through the extension.
    pub key_published: bool,
}

/// The app's storage for the session (`ClientConfig.session_store`), called on a background thread, rarely: on
/// `open`, after sign-in, after the key is published, when the session is forgotten.
#[uniffi::export(foreign)]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// The stored session, `None` when there is none.
    fn load(&self) -> Result<Option<StoredSession>, SessionStoreError>;
    /// Stores `session`, replacing any stored one.
    fn save(&self, session: StoredSession) -> Result<(), SessionStoreError>;
    /// Removes the stored session.
    fn clear(&self) -> Result<(), SessionStoreError>;
}

/// Why the app's session store failed (raised by the app; any other exception it raises arrives as this too).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SessionStoreError {
    /// The store could not do it.
    #[error("{detail}")]
    Failed {
        /// What happened, in the app's words.
        detail: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for SessionStoreError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        SessionStoreError::Failed { detail: e.reason }
    }
}

impl From<SessionStoreError> for core::SessionStoreError {
    fn from(e: SessionStoreError) -> Self {
        core::SessionStoreError(e.to_string())
    }
}

/// The app's store as the core's.
#[derive(Debug)]
pub(crate) struct AppSessionStore(pub(crate) Arc<dyn SessionStore>);

impl core::SessionStore for AppSessionStore {
    fn load(&self) -> Result<Option<core::state::SavedSession>, core::SessionStoreError> {
        let Some(s) = self.0.load()? else { return Ok(None) };
        let number = s
            .number
            .map(|n| core::E164::parse(&n))
            .transpose()
            .map_err(|e| core::SessionStoreError(format!("the stored session's number: {e}")))?;
        Ok(Some(core::state::SavedSession {
            homeserver_url: s.homeserver_url,
            number,
            user_id: s.user_id,
            device_id: s.device_id,
            access_token: core::at_rest::SealedToken::from_sealed(s.access_token_sealed),
            key_published: s.key_published,
        }))
    }

    fn save(&self, s: &core::state::SavedSession) -> Result<(), core::SessionStoreError> {
        Ok(self.0.save(StoredSession {
            homeserver_url: s.homeserver_url.clone(),
            user_id: s.user_id.clone(),
            device_id: s.device_id.clone(),
            number: s.number.as_ref().map(ToString::to_string),
            access_token_sealed: s.access_token.as_sealed().to_owned(),
            key_published: s.key_published,
        })?)
    }

    fn clear(&self) -> Result<(), core::SessionStoreError> {
        Ok(self.0.clear()?)
    }
}
