//! The SIP side Tincan's SIP bridge and PSTN gateway share.
//!
//! - [`stack`]: the SIP stack behind a small trait ([`stack::SipStack`]), with one binding on rsipstack
//!   ([`stack::rsip_stack`]); every URI it touches is parsed by [`uri`].
//! - [`resolve`]: RFC 3263 (NAPTR → SRV → A/AAAA) resolution of SIP URIs with hickory.
//! - [`enum_route`]: a phone number → its SIP route through the validating ENUM lookup (DNSSEC-validated
//!   answers only).
//! - [`rtpengine`] and [`bencode`]: the rtpengine ng control protocol.
//! - [`sdp`]: the SDP the bridge reads itself (hold, codecs, trickled candidates).
//! - [`digest`]: SIP digest authentication for a registrar.

#![warn(missing_docs)]

pub mod bencode;
pub mod digest;
pub mod enum_route;
pub mod resolve;
pub mod rtpengine;
pub mod sdp;
pub mod stack;
pub mod uri;
