//! The ENUM directory. So far: the DNSSEC-signed authoritative DNS engine ([`dns`]); storage, the registrar
//! API and the binary land beside it.
#![warn(missing_docs)]

pub mod dns;
