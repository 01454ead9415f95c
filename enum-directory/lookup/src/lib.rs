//! Validating ENUM lookup: a phone number → its routes in the Tincan directory, DNSSEC-validated up to a
//! configured trust anchor. Used by the homeserver extension and the client.
//!
//! For a number such as `+442079460001` under the apex `e164.tincan.example.`, [`Lookup::resolve`] asks for the
//! NAPTR and TXT records of `1.0.0.0.6.4.9.7.0.2.4.4.e164.tincan.example.` (RFC 6116) through hickory's
//! validating resolver and returns a [`Resolution`]:
//!
//! - [`Routes`]: the Matrix user (`E2U+x-matrix`), SIP URIs (`E2U+sip`), the SMS and voice numbers
//!   (`E2U+sms:tel`, `E2U+voice:tel`);
//! - the owner's master cross-signing key (`v=tc1; mk=…` TXT);
//! - the [`ValidationStatus`].
//!
//! Outcomes:
//! - a registered number → `Ok(Resolution)` with routes and/or key, status `Secure`;
//! - a number the directory does not hold → `Ok(Resolution)` with no routes and no key
//!   ([`Resolution::is_registered`] is false), after validating the denial: a compact denial (RFC 9824, NODATA
//!   with an NSEC at the name listing NXNAME, as the directory serves) or a classic NSEC proof;
//! - a bogus answer (bad or missing signature, wrong key, unproven denial) → [`LookupError::Bogus`], never a
//!   route;
//! - no chain to the anchor → [`LookupError::Insecure`], unless [`LookupConfig::allow_insecure`];
//! - network trouble → [`LookupError::Timeout`], [`LookupError::Refused`], [`LookupError::ServerFailure`]….
//!
//! The trust anchor is the apex's DS (what `tincan-directory keys ds` prints) or DNSKEY, in presentation format
//! or as a delv/BIND `trust-anchors` clause: see [`TrustAnchor::parse`].
//!
//! ```no_run
//! use tincan_enum_lookup::{Lookup, LookupConfig, TrustAnchor};
//! use tincan_enum_core::E164;
//! use hickory_proto::rr::Name;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let anchor: TrustAnchor = "e164.tincan.test. IN DS 34765 13 2 \
//!     9B097B35A42CF0CF13DC07908BB0AEF5FFCB78596D037734B1B5413BD29833BF".parse()?;
//! let apex = Name::from_ascii("e164.tincan.test.")?;
//! let lookup = Lookup::new(LookupConfig::new(vec!["127.0.0.1:5353".parse()?], apex, anchor))?;
//!
//! let found = lookup.resolve(&E164::parse("+442079460001")?).await?;
//! if let Some(user) = &found.routes.matrix {
//!     println!("{} is {user}, key {:?}", found.number, found.key);
//! } else if !found.is_registered() {
//!     println!("{} is not in the directory", found.number);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Notes:
//! - hickory's validator trusts a non-root anchor only for the exact keys given, so this crate first fetches
//!   the apex DNSKEY RRset, checks that a key the anchor trusts signs it, and hands the whole set to the
//!   validator; the set is re-fetched when its TTL (at most 5 minutes) runs out or when an answer fails to
//!   validate (a key rollover), see `keys.rs`.
//! - Answers are cached for their TTL.
//! - [`parent::parent_ds`] reads the apex's DS set as its parent zone publishes it, to compare with a trust
//!   list's (the client compares it with the charter's).
//! - [`log::fetch_inclusion`] and [`log::check_logged`] check a resolution against the directory's
//!   transparency log (the proof that the number's newest logged entry publishes what DNS answered).

#![warn(missing_docs)]

mod anchor;
mod config;
mod error;
mod keys;
pub mod log;
pub mod parent;
mod resolve;
mod routes;

pub use anchor::{AnchorEntry, AnchorError, TrustAnchor};
pub use config::LookupConfig;
pub use error::{BogusReason, ConfigError, LookupError, Result};
pub use resolve::{Lookup, NXNAME, Resolution, ValidationStatus, name_servers};
pub use routes::{ConflictingKeys, MatrixUser, Routes, key_from_txts};

/// Re-exported so callers name the same types.
pub use tincan_enum_core::{E164, MasterKey};
