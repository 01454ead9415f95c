//! The charter's errors: one enum for signing, publishing and verifying.

use crate::signed::RoleName;
use std::path::PathBuf;

/// Why a charter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CharterError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A secret key file may be read by others (it must be 0600 or stricter, like an SSH key).
    #[error("{path}: the key file is readable by group or others (mode {mode:o}); chmod 600 it")]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A key file or public key is malformed.
    #[error("bad key: {0}")]
    BadKey(String),
    /// A file is not a well-formed charter document.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What it should have been (root, trust list, envelope, list input).
        what: &'static str,
        /// Why not.
        reason: String,
    },
    /// The trust list's content is invalid (duplicate names, a provider naming an unknown directory, …).
    #[error("invalid trust list: {0}")]
    InvalidList(String),
    /// The root is invalid (a threshold of zero or above its key count, an unknown key id …).
    #[error("invalid root: {0}")]
    InvalidRoot(String),
    /// Fewer valid signatures of the role's keys than its threshold.
    #[error("the {role} role needs {threshold} valid signature(s) of its keys, found {valid}")]
    Threshold {
        /// The role.
        role: RoleName,
        /// Valid signatures by distinct keys of the role.
        valid: usize,
        /// What the root requires.
        threshold: u32,
    },
    /// The signing key is not one of the role's keys.
    #[error("key {keyid} is not a key of the {role} role")]
    NotARoleKey {
        /// The key.
        keyid: String,
        /// The role.
        role: RoleName,
    },
    /// The document expired.
    #[error("the {what} (version {version}) expired at {expires}")]
    Expired {
        /// Root or trust list.
        what: &'static str,
        /// Its version.
        version: u64,
        /// When it expired (RFC 3339).
        expires: String,
    },
    /// A document older than one already trusted (rollback), or the same version with other content.
    #[error("the {what} offered has version {offered}, the one trusted has version {trusted}: refused (rollback)")]
    Rollback {
        /// Root or trust list.
        what: &'static str,
        /// The version offered.
        offered: u64,
        /// The version trusted.
        trusted: u64,
    },
    /// The same version with different content (two different lists signed with one version number).
    #[error("the {what} offered has version {version} like the one trusted, but different content: refused")]
    SameVersionDifferentContent {
        /// Root or trust list.
        what: &'static str,
        /// The version.
        version: u64,
    },
    /// The next root does not have the next version number.
    #[error("root {found} found where root {expected} was expected")]
    RootVersion {
        /// The version expected (trusted + 1).
        expected: u64,
        /// The version in the file.
        found: u64,
    },
    /// The charter repository could not be fetched.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// What.
        url: String,
        /// Why.
        reason: String,
    },
    /// A fetched file is larger than allowed.
    #[error("{url} is larger than {limit} bytes: refused")]
    TooLarge {
        /// What.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// No trust list has been verified yet, or the last good one expired.
    #[error("no valid trust list: {0}")]
    NoList(String),
}

impl CharterError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CharterError {
        let path = path.into();
        move |source| CharterError::Io { path, source }
    }
}
