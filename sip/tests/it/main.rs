//! Integration tests of the shared SIP crate against real peers: rtpengine's ng port, Knot serving SIP
//! NAPTR/SRV records, the directory's signed ENUM zone, and sipp on the other end of the stack.

mod enum_route;
mod resolve;
mod rtpengine;
mod stack;
