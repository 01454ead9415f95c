//! Tests of the real `tincan` binary: its own contracts without services (`cli`), and the acceptance
//! against the real chain of Synapse, the homeserver extension and the directory (`acceptance`).

mod acceptance;
// The real chain is shared with the client core's tests.
#[path = "../../../core/tests/it/chain.rs"]
mod chain;
mod cli;
