//! The Tincan client core, on matrix-sdk (vodozemac underneath) with its SQLite store.
//!
//! - Sign up with a phone number through the homeserver extension ([`TincanClient::register`],
//!   [`TincanClient::verify`]), then a normal homeserver login; cross-signing is bootstrapped on first sign-up
//!   and the master key published through the extension; the session is saved in the data dir, or in the app's
//!   own [`SessionStore`] (a keychain), and restored by [`TincanClient::open`] (see [`session`]). The data dir is private (0700) and encrypted at rest: matrix-sdk's stores and
//!   the access token, with a key from a key file made on first run (see [`at_rest`]).
//! - Resolve a number in the DNSSEC-validated directory ([`TincanClient::resolve`] → [`Route`]); a bogus
//!   answer is an error, never a route.
//! - Verify a contact's master key against the directory ([`TincanClient::check_contact`] → [`KeyStatus`]):
//!   only a DNSSEC-validated answer that the directory's transparency log backs (inclusion proof under a pinned
//!   key, tree head consistent with the last one seen) can verify; the verification is a local trust record
//!   (see [`trust`]).
//! - Send text into an encrypted DM ([`TincanClient::send_text`]), refused on a key mismatch unless forced,
//!   [`ClientError::NotOnNetwork`] when the route is not Matrix; incoming messages as a stream
//!   ([`TincanClient::messages`]); call signalling (`m.call.*`) as a stream too ([`TincanClient::calls`], see
//!   [`calls`]: the core carries no audio, an app answers with a media stack of its own).
//! - Reach a number the one way [`routing::decide`] picks ([`TincanClient::send_to_number`],
//!   [`TincanClient::start_chat`]): Matrix when the validated directory says so, else the provider's SIP or SMS
//!   bridge found through the homeserver's third-party lookup, else [`ClientError::Unreachable`]. A bridge is
//!   texted in an encrypted DM with its ghost (end-to-bridge encryption), and what it says became of the text
//!   (delivered, failed and why) is [`Delivery`] ([`TincanClient::send_to_number_waiting`], see [`delivery`]).
//! - Push: an HTTP pusher for the device ([`TincanClient::register_pusher`]) and the notification path that
//!   fetches and decrypts one event ([`TincanClient::decrypt_notification`]).
//! - Contact import with the Identity Service v2 hashed lookup ([`TincanClient::import_contacts`]).
//! - The provider's gateway (balance, voucher top-up, history, prices) signed in with an OpenID token
//!   ([`TincanClient::gateway`], [`gateway`]).
//! - The charter's signed trust list ([`charter`]): the directory's anchor and log key, the providers offered
//!   at sign-up, and no verified contact at a provider that is not listed.

#![warn(missing_docs)]
// matrix-sdk's sync futures are deep: proving them `Send` needs more than the default 128.
#![recursion_limit = "256"]

pub mod at_rest;
pub mod calls;
pub mod charter;
mod client;
pub mod config;
pub mod contacts;
pub mod delivery;
pub mod error;
pub mod ext;
pub mod gateway;
pub mod route;
pub mod routing;
pub mod session;
pub mod state;
pub mod trust;

pub use at_rest::StoreKey;
pub use calls::{CallSignal, CallSignalKind, Caller, CallerSource};
pub use charter::{CharterConfig, CharterStatus};
pub use client::{
    Chat, Contact, ImportedContact, IncomingMessage, MovedNotice, PendingDelivery, PushConfig, Sent, SentToNumber,
    SignedIn, TincanClient,
};
pub use config::{ClientConfig, DirectoryConfig, TransparencyLogConfig};
pub use delivery::Delivery;
pub use error::{ClientError, Result};
pub use route::{Route, Validation};
pub use routing::{BridgeKind, Decision, Intent, RouteKind, Unreachable, Warning};
pub use session::{SessionStore, SessionStoreError};
pub use trust::{DirectoryKey, KeyMismatch, KeyStatus, TrustRecord};

/// Re-exported: why an answer fails the transparency log check ([`ClientError::Log`]).
pub use tincan_enum_lookup::log::LogCheckError;

/// Re-exported so callers name the same types.
pub use tincan_enum_core::{E164, MasterKey};
