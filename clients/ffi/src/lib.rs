//! UniFFI bindings of the Tincan client core, the way Element X sits on matrix-rust-sdk
//! (`bindings/matrix-sdk-ffi`): one [`Client`] object shared with the UI thread (every method takes `&self`),
//! async methods the foreign language awaits, streams as listener interfaces with a [`TaskHandle`] that stops
//! them, and one error type ([`ClientError`]) whose `code` is the core's stable error code.
//!
//! Nothing of matrix-sdk or ruma appears in this API: records and enums here are plain data. Kotlin, Swift and
//! Python bindings are generated from the built library (`dev/bindings`); the Python ones are tested against the
//! real chain (`tests/python`, driven by `tests/it`).
//!
//! All core work runs on one multi-threaded tokio runtime owned by this library ([`runtime`]): an async method
//! spawns its future there and the foreign executor awaits the join handle, so it does not matter which event
//! loop (Kotlin coroutines, Swift tasks, Python asyncio) polls it.

#![warn(missing_docs)]
// matrix-sdk's futures are deep: proving them `Send` needs more than the default 128.
#![recursion_limit = "256"]

mod client;
mod error;
mod session;
mod task;
mod types;

pub use client::{Client, MessageListener, open};
pub use error::ClientError;
pub use session::{SessionStore, SessionStoreError, StoredSession};
pub use task::TaskHandle;
pub use types::*;

use std::sync::LazyLock;

uniffi::setup_scaffolding!();

/// The runtime every binding call runs its core work on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tincan-ffi")
            .build()
            .expect("the tokio runtime starts")
    });
    &RUNTIME
}

/// Runs `fut` on [`runtime`] and waits for it from whatever executor polls the returned future; a panic in it is
/// resumed here (UniFFI turns it into the foreign language's internal error).
pub(crate) async fn on_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    match runtime().spawn(fut).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("binding task cancelled: {e}"),
    }
}

/// Does nothing: measures what one call through the bindings costs.
#[uniffi::export]
pub fn noop() {}

/// The core's version, for an app's about screen.
#[uniffi::export]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
