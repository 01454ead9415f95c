//! The ENUM directory's pure core: no I/O, shared by the directory server, the lookup library and the clients.
//!
//! - [`E164`]: a phone number, parsed and normalised with the `phonenumber` crate (libphonenumber metadata).
//! - [`owner_name`] / [`number_from_owner`]: number ↔ ENUM owner name under any apex (RFC 6116 §2: the digits
//!   reversed, one per label), e.g. `+442079460001` ↔ `1.0.0.0.6.4.9.7.0.2.4.4.<apex>`.
//! - [`Service`] / [`naptr_rdata`] / [`service_from_naptr`]: the NAPTR records of one number (flags `u`, regexp
//!   `!^.*$!<uri>!`, replacement `.`) for `E2U+x-matrix`, `E2U+sip`, `E2U+sms:tel` and `E2U+voice:tel`.
//! - [`MasterKey`] / [`key_txt`] / [`key_from_txt`]: the TXT record `"v=tc1; mk=<unpadded base64>"` that carries a
//!   user's ed25519 master cross-signing key.
//! - [`NumberRecord`]: everything the directory publishes for one number.

mod key;
mod naptr;
mod number;
mod record;
mod service;

pub use key::{KeyError, MasterKey, key_from_txt, key_txt};
pub use naptr::{naptr_rdata, service_from_naptr};
pub use number::{E164, NumberError, number_from_owner, owner_name};
pub use record::NumberRecord;
pub use service::{Service, ServiceError, ServiceType};

/// Re-exported so users name the same `Name`, `NAPTR` and `TXT` types as this crate.
pub use hickory_proto;

#[cfg(test)]
mod proptests;
