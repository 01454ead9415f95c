//! Integration tests of the SIP bridge against real peers: Synapse, sipp, baresip, rtpengine, PostgreSQL.

mod calls;
mod harness;
mod messages;
mod registrar;
mod store;
