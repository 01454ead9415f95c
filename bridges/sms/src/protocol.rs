//! The SMS protocol logic, pure (no I/O): what goes into `submit_sm` and what comes out of `deliver_sm`.
//!
//! - [`gsm7`] / [`ucs2`]: the two alphabets, both ways.
//! - [`segment`]: the encoding of an outgoing text and its parts, never cutting an escape or a surrogate pair.
//! - [`udh`]: the concatenation header.
//! - [`reassembly`]: inbound parts back into messages, in any order, with a timeout.
//! - [`dlr`]: delivery receipts, TLV and text forms.
//! - [`keywords`]: STOP/START per country.
//!
//! rusmpp-extra has GSM 7-bit and UCS-2 encoders and a multipart builder, but no decoders, its UCS-2 refuses
//! characters beyond the BMP (emoji), and it sizes GSM 7-bit parts in octets of the 140-octet user data rather
//! than in septets (134 characters a part instead of 153): this module writes both alphabets itself and its
//! tests check its GSM table against rusmpp-extra's.

pub mod dlr;
pub mod gsm7;
pub mod keywords;
pub mod reassembly;
pub mod segment;
pub mod ucs2;
pub mod udh;
