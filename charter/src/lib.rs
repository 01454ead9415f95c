//! The charter's signed trust list.
//!
//! The charter organisation says which ENUM directories are trusted (apex, DS set, transparency-log key) and
//! which providers a client may sign up with (homeserver names, extension URL, directory provider id, number
//! prefixes, services). It publishes that as a **trust list** signed with offline keys; clients, directories
//! and extensions fetch it, verify it against the charter's **root** (shipped with them), and refuse lists that
//! are expired, rolled back or signed by fewer keys than the root's threshold. See `charter/README.md` for why
//! this is a small signed format of our own rather than TUF metadata through `tough`.
//!
//! - [`keys`]: Ed25519 key files (made and kept offline, mode 0600) and key ids.
//! - [`signed`]: the signed envelope, the root (keys, roles, thresholds) and threshold verification.
//! - [`list`]: the trust list itself and its validation.
//! - [`publish`]: writing a verified root and list into the directory a web server serves.
//! - [`client`]: fetching, verifying and keeping the last good list (never going back).

pub mod client;
pub mod error;
pub mod keys;
pub mod list;
pub mod publish;
pub mod signed;
pub mod timefmt;

pub use client::{CharterClient, Verified};
pub use error::CharterError;
pub use list::{Service, TrustList, TrustedDirectory, TrustedProvider};
pub use signed::{Envelope, RoleName, Root};

/// The file name of the trust list in a published charter repository.
pub const LIST_FILE: &str = "trust-list.json";
/// The file name of the newest root in a published charter repository (each root is also `N.root.json`).
pub const ROOT_FILE: &str = "root.json";
