//! Integration tests of the SIP bridge against real peers: Synapse, sipp, baresip, rtpengine, PostgreSQL.

mod baresip;
mod bench;
mod calls;
mod delayed_offer;
mod devices;
mod failover;
mod harness;
mod media;
mod messages;
mod registrar;
mod store;
