//! Integration tests of `tincan-directory`: the DNS engine in-process against delv/dig/unbound-host/ldns-walk
//! (`dns_*`).

mod dns_behaviour;
mod dns_scale;
mod dns_support;
mod dns_transport;
mod dns_validation;
mod dns_walk;
