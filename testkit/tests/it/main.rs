//! testkit's own integration tests: it really starts Synapse, PostgreSQL databases and Debian tools.

mod postgres;
mod synapse;
mod tools;
