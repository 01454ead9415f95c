//! The Tincan bridge core: the Matrix application-service side every Tincan bridge shares, written once.
//!
//! After mautrix bridgev2: a bridge supplies a [`NetworkConnector`] (and a [`NetworkApi`] per login) that
//! speaks only its network; this crate does the rest:
//! - [`server`]: the Application Service API (transactions, user and alias queries, ping, third-party
//!   `m.protocol.pstn` lookups), `/metrics`, `/healthz`;
//! - [`bridge`]: the durable inbox (exactly-once transactions), ghosts, portals, per-portal ordered queues;
//! - [`store`]: state in SQLite or PostgreSQL behind repository traits;
//! - [`homeserver`]: client-server API calls as the bridge or its ghosts, with retry and backoff;
//! - [`registration`], [`cli`], [`config`]: operator tooling.

pub mod bridge;
pub mod cli;
pub mod config;
pub mod connector;
pub mod homeserver;
pub mod ids;
pub mod metrics;
pub mod registration;
pub mod server;
pub mod store;

pub use bridge::{Bridge, BridgeBuilder, BridgeError, BridgeHandle};
pub use config::AppserviceConfig;
pub use connector::{
    Capabilities, ConnectorError, MatrixCall, MatrixMessage, Media, MediaKind, MessageStatus, NetworkApi,
    NetworkConnector, NewLogin, PortalRef, RemoteEvent, RemoteEventKind, RemoteProfile,
};
pub use ids::{PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};

/// The third-party protocol of phone numbers (Element's dial pad looks numbers up with it).
pub const PSTN_PROTOCOL: &str = "m.protocol.pstn";
/// The user field of [`PSTN_PROTOCOL`]: an E.164 number.
pub const PSTN_FIELD: &str = "m.id.phone";
