//! Integration tests of the validating lookup against real DNS servers (Knot DNS serving zones signed by BIND's
//! tools or online, and the Tincan directory), no mocks.

mod directory;
mod knot;
mod network;
mod onlinesign;
mod signed_zone;
mod zone;
