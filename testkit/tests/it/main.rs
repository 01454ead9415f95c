//! testkit's own integration tests: it really starts Synapse, PostgreSQL databases and Debian tools.

mod federation;
mod postgres;
mod synapse;
mod tools;
