//! The Application Service API (`/_matrix/app/v1/…`) plus `/metrics` and `/healthz`.
//!
//! Every `/_matrix` route checks the `hs_token` (`Authorization: Bearer`, constant-time comparison):
//! missing → 401 `M_MISSING_TOKEN`, wrong → 403 `M_FORBIDDEN`. Unknown routes answer 404 `M_UNRECOGNIZED`.
//! One file per operation.

mod auth;
mod error;
mod ops;
mod ping;
mod rooms;
mod thirdparty;
mod transactions;
mod users;

pub use error::ApiError;
/// The third-party lookup's number normaliser (for the fuzz target in `appservice/fuzz`).
pub use thirdparty::normalise as normalise_number;
/// The transaction body parser (for the fuzz target in `appservice/fuzz`).
pub use transactions::parse as parse_transaction;

/// The largest transaction body accepted (32 MiB). Synapse puts up to 100 timeline events (at most 64 KiB
/// each), 100 ephemeral events and 100 to-device messages in one transaction, so a body can exceed axum's
/// 2 MiB default; one it refused would be retried forever. A larger body is answered 413.
pub const MAX_TRANSACTION_BYTES: usize = 32 * 1024 * 1024;

use crate::BridgeHandle;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

/// The router of the AS API, bound to a bridge.
pub fn router(bridge: BridgeHandle) -> Router {
    let matrix = Router::new()
        .route(
            "/_matrix/app/v1/transactions/{txn_id}",
            put(transactions::handler).layer(DefaultBodyLimit::max(MAX_TRANSACTION_BYTES)),
        )
        .route("/_matrix/app/v1/users/{user_id}", get(users::handler))
        .route("/_matrix/app/v1/rooms/{room_alias}", get(rooms::handler))
        .route("/_matrix/app/v1/ping", post(ping::handler))
        .route("/_matrix/app/v1/thirdparty/protocol/{protocol}", get(thirdparty::protocol))
        .route("/_matrix/app/v1/thirdparty/user/{protocol}", get(thirdparty::user))
        .route_layer(axum::middleware::from_fn_with_state(bridge.clone(), auth::require_hs_token));
    Router::new()
        .merge(matrix)
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .fallback(error::unrecognized)
        .method_not_allowed_fallback(error::unrecognized)
        .with_state(bridge)
}
