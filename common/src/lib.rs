//! Conventions shared by every Tincan service.
//!
//! - [`appservice`]: the application-service registration file, namespace regexes and `hs_token` check.
//! - [`config`]: one TOML file, then `TINCAN_…` environment overrides (`__` for nesting), `*_file` secrets,
//!   unknown keys rejected, a `validate()` per section.
//! - [`secret`]: a newtype whose `Debug`/`Display` never print the value.
//! - [`telemetry`]: tracing set-up, human logs by default and JSON with a flag.
//! - [`clock`]: the only place that reads the wall clock, so tests can inject time.
//! - `matrix_client` (feature `matrix-client`): one call to a homeserver's API with ruma's request and response
//!   types over reqwest.

pub mod appservice;
pub mod clock;
pub mod config;
pub mod html;
#[cfg(feature = "matrix-client")]
pub mod matrix_client;
pub mod secret;
pub mod telemetry;

pub use clock::{Clock, MockClock, SystemClock};
pub use config::{ConfigError, load_config};
pub use secret::Secret;
