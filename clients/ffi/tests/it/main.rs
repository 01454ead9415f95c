//! Integration tests of the bindings: the generated Python bindings driven against the real chain.

#[path = "../../../core/tests/it/chain.rs"]
mod chain;
#[path = "../../../core/tests/it/log_proxy.rs"]
mod log_proxy;
mod python;
