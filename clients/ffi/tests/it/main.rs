//! Integration tests of the bindings: the Rust side of the exported API and the generated Python bindings, both
//! against the real chain (Synapse, tincan-ext, the directory); the Kotlin and Swift bindings generate.

mod bench;
#[path = "../../../core/tests/it/chain.rs"]
mod chain;
#[path = "../../../core/tests/it/log_proxy.rs"]
mod log_proxy;
mod push_gateway;
mod python;
mod real_chain;
