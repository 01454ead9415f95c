//! Authoritative DNS for the directory's zones: DNSSEC-signed NAPTR and TXT per number, compact denial of
//! existence (RFC 9824), over UDP and TCP.
//!
//! # Public API (for the storage/API engineer and the binary)
//! - [`ZoneKeys`] (`keys`): a KSK + ZSK, [`KeyAlgorithm::EcdsaP256Sha256`] (13, default) or
//!   [`KeyAlgorithm::Ed25519`] (15). `ZoneKeys::generate(alg, created_unix)`, or load each [`ZoneKey`] with
//!   `ZoneKey::from_pkcs8(role, alg, created, &bytes)` and `ZoneKeys::new(ksk, zsk)`. Persist
//!   `key.to_pkcs8()`, `role()`, `algorithm()`, `created()`. `ZoneKeys::ds_presentation(&apex)` prints the DS
//!   for the parent (`apex. IN DS <tag> <alg> 2 <HEX>`), `ZoneKey::dnskey_presentation` the DNSKEY.
//! - [`Zone`] (`zone`): one apex, in memory. `Zone::new(ZoneConfig, Arc<ZoneKeys>, Arc<dyn Clock>, serial)`;
//!   `upsert(&NumberRecord)` (signs now, bumps the serial) = `sign_record` (before storing; the [`SignedEntry`]
//!   bytes are persisted with the number) + `install` (after the commit), `remove(&E164)`, `get(&E164)`,
//!   `load_stored(e164, bytes)` + `finish_load()` for start-up (persisted signatures, no signing),
//!   `load(iter)` (unsigned records, signed lazily), `refresh()` (re-sign what nears expiry), `serial()`.
//! - [`Zones`]: the zones a server answers for (`Zones::new(vec![Arc<Zone>])`, `insert`, `get`).
//! - [`answer`]`(&Zones, &request_bytes, Transport) -> Option<Vec<u8>>`: the whole query handling, no I/O.
//! - [`server::run`]`(Arc<Zones>, UdpSocket, TcpListener, ServerConfig, Arc<Metrics>, shutdown)`: serves until
//!   `shutdown` resolves; [`Metrics`] are plain atomics by qtype and rcode.
//! - [`server::run_with`] takes an [`server::Interceptor`] too: requests it wants (zone transfer, TSIG) are
//!   handed to it instead of the engine (the `xfr` module's `Transfers`).
//! - [`ServerConfig`] (serde, `deny_unknown_fields`) includes the response-rate-limit settings [`RrlConfig`] and
//!   the global budget of online signatures for UDP denials, [`SigningBudgetConfig`].
//!
//! # Notes
//! - [`ZoneConfig`] has no serde (hickory's `Name` has none without hickory's `serde` feature); its timers are
//!   seconds: `record_ttl` 300, `apex_ttl` 3600, `negative_ttl` (SOA minimum) 300, `signature_validity` 14 d,
//!   `signature_refresh` 7 d (re-sign when less remains), `inception_skew` 1 h, `negative_signature_validity` 1 d.
//! - After `Zone::load`, the server's refresher (first tick at start) signs every number in a blocking task;
//!   a query arriving first signs that number itself, once. `ZoneKeys::signatures_made()` counts signatures.
//! - Without DO (or with DO and the RFC 9824 Compact-Answers-OK EDNS flag) a missing name is NXDOMAIN; with DO it
//!   is NOERROR with the NXNAME NSEC. AXFR/IXFR are REFUSED for now (zone transfer is a later issue).
//! - Compact-denial NSEC signatures are cached per NSEC rdata (query name + type bitmap), bounded by
//!   `ZoneConfig::negative_cache_entries`; see `negcache`.
//! - UDP answers never exceed 1232 octets ([`MAX_UDP_PAYLOAD`]); loopback clients are exempt from RRL by default.

mod answer;
pub(crate) mod apex;
pub mod budget;
mod entry;
pub mod keys;
mod negcache;
mod numbers;
pub mod rrl;
pub mod server;
pub(crate) mod sign;
pub(crate) mod wire;
pub mod zone;
mod zones;

pub use answer::{Answer, MAX_UDP_PAYLOAD, Transport, answer, answer_budgeted, answer_detailed};
pub use budget::{SigningBudget, SigningBudgetConfig};
pub use entry::SignedEntry;
pub use keys::{KeyAlgorithm, KeyError, KeyRole, ZoneKey, ZoneKeys};
pub use rrl::{RateLimiter, RrlConfig};
pub use server::{Metrics, ServerConfig, ServerError};
pub use wire::Rcode;
pub use zone::{RefreshedSink, Zone, ZoneConfig, ZoneError};
pub use zones::Zones;
