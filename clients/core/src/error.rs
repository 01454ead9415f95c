//! The client core's error type: one enum for everything a caller of [`TincanClient`](crate::TincanClient) can
//! meet, each variant typed so a UI can say what happened.

use crate::route::Route;
use crate::trust::KeyMismatch;
use tincan_enum_core::E164;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The input is not a phone number in international form.
    #[error("not a valid phone number: {0}")]
    InvalidNumber(#[from] tincan_enum_core::NumberError),
    /// No session: sign up (`register` then `verify`) first.
    #[error("not signed in: register and verify a number first")]
    NotLoggedIn,
    /// `verify` was called without a pending `register`.
    #[error("no registration in progress: call register first")]
    NoPendingRegistration,
    /// The operation needs the extension's URL and none is configured.
    #[error("no homeserver extension configured (set --ext / TINCAN_CLI_EXT_URL)")]
    NoExtension,
    /// The operation needs the directory and none is configured.
    #[error("no directory configured (set --dns, --apex and --trust-anchor)")]
    NoDirectory,
    /// The extension answered with a Matrix error.
    #[error("the extension refused: {errcode}: {error}")]
    Extension {
        /// HTTP status.
        status: u16,
        /// Matrix error code, e.g. `M_LIMIT_EXCEEDED`.
        errcode: String,
        /// Human-readable message.
        error: String,
        /// When to retry, for `M_LIMIT_EXCEEDED`.
        retry_after_ms: Option<u64>,
    },
    /// HTTP to the extension failed (connection, malformed body).
    #[error("could not reach the extension")]
    Http(#[from] reqwest::Error),
    /// HTTP to the homeserver failed outside matrix-sdk (the third-party protocol description).
    #[error("could not reach the homeserver")]
    Homeserver(#[source] reqwest::Error),
    /// The login type the extension returned is not one this client knows.
    #[error("unsupported login type from the extension: {0}")]
    UnsupportedLogin(String),
    /// The directory lookup failed; a DNSSEC validation failure is here too, never a route.
    #[error("directory lookup failed: {0}")]
    Lookup(#[from] tincan_enum_lookup::LookupError),
    /// The directory's answer is not backed by its transparency log (not logged, contradicted by the log, or
    /// the log forked), or the log could not be asked
    /// ([`LogCheckError::is_unavailable`](tincan_enum_lookup::log::LogCheckError::is_unavailable)). Never a
    /// verified contact.
    #[error("transparency log: {0}")]
    Log(#[from] tincan_enum_lookup::log::LogCheckError),
    /// The DS set the directory apex's parent zone publishes is not the one the charter's trust list names for
    /// the directory (a list left stale by a KSK roll, or a parent changed by someone else): the directory is
    /// not used, no route is given and no contact verified. Checked only when the client's DNS servers serve
    /// the parent zone (see [`charter`](crate::charter)).
    #[error(
        "the DS set of {apex} in its parent zone{} is not the one the charter's trust list names (only the \
         parent publishes: [{}]; only the list names: [{}]): the directory is not used",
        .parent_zone.as_ref().map(|z| format!(" {z}")).unwrap_or_default(),
        .parent_only.join(", "),
        .charter_only.join(", ")
    )]
    ParentDsMismatch {
        /// The directory's apex.
        apex: String,
        /// The parent zone, when its answer named it.
        parent_zone: Option<String>,
        /// DS records the parent publishes and the list does not name.
        parent_only: Vec<String>,
        /// DS records the list names and the parent does not publish.
        charter_only: Vec<String>,
    },
    /// The trust anchor pinned in the client's configuration (`DirectoryConfig::trust_anchor`, the CLI's
    /// `--trust-anchor`) has entries the DS set the charter's trust list names for that directory does not vouch
    /// for (a stale anchor after a KSK roll, or a wrong one): the directory is not used, no route is given and no
    /// contact verified. A pinned anchor is an override only within what the list vouches for (see
    /// [`charter`](crate::charter)).
    #[error(
        "the trust anchor pinned for {apex} has entries the charter's trust list does not vouch for (pinned only: \
         [{}]; the list names: [{}]): the directory is not used",
        .not_vouched.join(", "),
        .charter.join(", ")
    )]
    AnchorNotVouched {
        /// The directory's apex.
        apex: String,
        /// The pinned entries no listed DS record vouches for.
        not_vouched: Vec<String>,
        /// The DS records the list names for the directory.
        charter: Vec<String>,
    },
    /// The charter's trust list in use does not name the directory at all (its apex), whether its trust anchor
    /// is pinned in the client's configuration or to come from the list (such as a newer list that dropped the
    /// directory): a directory not on the list is not trusted, so it is not used — no route is given, no contact
    /// verified, and no bridge asked instead — as the extension refuses to work with a directory not on the list
    /// (see [`charter`](crate::charter)).
    #[error(
        "the charter's trust list does not name the directory {apex} (it names: [{}]): the directory is not used",
        .listed.join(", ")
    )]
    DirectoryNotListed {
        /// The directory's apex.
        apex: String,
        /// The apexes of the directories the list names.
        listed: Vec<String>,
    },
    /// A charter is configured but the client has no current trust list — none verified yet, or the last good
    /// one expired (a charter that cannot be reached, or whose list refreshes are blocked, lets it run out) — so
    /// nothing vouches for the directory's trust anchor, pinned in the configuration or not: the directory is
    /// not used — no route is given and no contact verified — until a current list is fetched
    /// ([`TincanClient::refresh_charter`](crate::TincanClient::refresh_charter)), as the extension stops when no
    /// valid list is left (see [`charter`](crate::charter)).
    #[error("no current charter trust list ({why}): the directory {apex} is not used until a current list is fetched")]
    TrustListNotCurrent {
        /// The directory's apex.
        apex: String,
        /// Why there is no current list (none verified yet, or when the last one expired).
        why: String,
    },
    /// The directory configuration is unusable (bad apex, unreadable anchor…).
    #[error("directory configuration: {0}")]
    DirectoryConfig(String),
    /// The number is in the directory but not on Matrix (or not in the directory at all).
    #[error("{number} is not reachable on the network yet (route: {route})")]
    NotOnNetwork {
        /// The number.
        number: E164,
        /// What the directory holds for it.
        route: Route,
    },
    /// No route reaches the number: not on Matrix, and none of the provider's bridges answers for it (see
    /// [`routing`](crate::routing)).
    #[error("{number} is not reachable on the network yet: {reason} (route: {})", .route.as_ref().map_or("no directory configured".to_owned(), |r| r.to_string()))]
    Unreachable {
        /// The number.
        number: E164,
        /// What the directory holds for it (`None` without a directory).
        route: Option<Route>,
        /// Why nothing reaches it.
        reason: crate::routing::Unreachable,
    },
    /// The provider's bridge did not join the conversation with its ghost in time: nothing sent.
    #[error("the provider's bridge did not answer ({ghost} did not join the conversation): nothing sent")]
    BridgeUnavailable {
        /// The bridge's ghost user.
        ghost: String,
    },
    /// The contact's key does not match the directory's: not sent.
    #[error(transparent)]
    KeyMismatch(Box<KeyMismatch>),
    /// The room a message would go to is not end-to-end encrypted: nothing was sent.
    #[error("room {room_id} is not end-to-end encrypted: nothing sent")]
    NotEncrypted {
        /// The room.
        room_id: String,
    },
    /// A Matrix ID from the directory or the extension is malformed.
    #[error("invalid Matrix ID {0}")]
    InvalidUserId(String),
    /// matrix-sdk failed.
    #[error("matrix: {0}")]
    Matrix(Box<matrix_sdk::Error>),
    /// matrix-sdk's HTTP layer failed.
    #[error("matrix: {0}")]
    MatrixHttp(Box<matrix_sdk::HttpError>),
    /// The matrix-sdk client could not be built (store, URL).
    #[error("matrix client: {0}")]
    Build(Box<matrix_sdk::ClientBuildError>),
    /// The crypto store failed.
    #[error("crypto store: {0}")]
    CryptoStore(#[from] matrix_sdk::encryption::CryptoStoreError),
    /// Our own state file could not be read or written.
    #[error("state file {path}: {source}")]
    State {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Our own state file is corrupt.
    #[error("state file {path} is corrupt: {source}")]
    StateCorrupt {
        /// The file.
        path: std::path::PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The data dir's key is missing, unreadable, readable by others, or not the key the data dir was
    /// encrypted with.
    #[error("store key: {0}")]
    StoreKey(String),
    /// The data dir was written by an earlier version that did not encrypt keys at rest; it is left untouched.
    #[error(
        "the data dir {path} was written by an earlier version of tincan that kept keys and the access token \
         unencrypted; it cannot be converted in place. Move it away (or delete it) and sign in again \
         (`tincan register`); the old device stays listed on your homeserver until you remove it"
    )]
    UnencryptedDataDir {
        /// The data dir.
        path: std::path::PathBuf,
    },
    /// The app's [`SessionStore`](crate::SessionStore) failed.
    #[error(transparent)]
    SessionStore(#[from] crate::session::SessionStoreError),
    /// A session is stored, but the data dir holds no keys for its device (an app's data cleared while its
    /// keychain kept the session): resuming would make the device new keys under its old id, which its peers
    /// cannot trust. Forget the session and sign in again (a new device).
    #[error(
        "a session for device {device_id} is stored, but the data dir holds no keys for that device; forget the \
         session and sign in again"
    )]
    SessionWithoutKeys {
        /// The stored session's device.
        device_id: String,
    },
    /// Our own cross-signing identity is missing after bootstrap.
    #[error("no cross-signing identity for this account")]
    NoOwnIdentity,
    /// The operation needs the provider's gateway and none is configured.
    #[error("no gateway configured (set --gateway / TINCAN_CLI_GATEWAY_URL)")]
    NoGateway,
    /// The gateway refused (its typed error: `voucher_used`, `no_rate`, `insufficient_funds`…).
    #[error("the gateway refused: {code}: {message}")]
    Gateway {
        /// HTTP status.
        status: u16,
        /// The gateway's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// HTTP to the gateway failed (connection, timeout).
    #[error("could not reach the gateway: {0}")]
    GatewayUnreachable(#[source] reqwest::Error),
    /// The gateway's URL cannot be used.
    #[error("gateway URL: {0}")]
    GatewayConfig(String),
    /// The gateway answered something that is not its API's document.
    #[error("the gateway's answer is not its API's: {0}")]
    GatewayAnswer(String),
    /// The charter's trust list could not be fetched or was refused (expired, rolled back, too few signatures),
    /// and there is no valid last good list.
    #[error("charter trust list: {0}")]
    Charter(#[from] tincan_charter::CharterError),
    /// Sign-up at a provider the charter's trust list does not list (or that does not offer Matrix, or whose
    /// prefixes do not cover the number).
    #[error("{0}")]
    ProviderNotListed(String),
    /// [`close_account`](crate::TincanClient::close_account) of an account whose number did not move away from
    /// its provider by a completed port (it never moved, the port was objected to or cancelled, or the number
    /// came back): it is the number's account, so it is not closed. Right after a port completes the provider may
    /// answer this for a few seconds, until it has heard of the completion: try again then.
    #[error(
        "this account's number has not moved away to another provider (no completed port), so the account is not \
         closed; right after a port completes, try again in a few seconds"
    )]
    NotMovedAway,
    /// [`close_account`](crate::TincanClient::close_account) while the port taking the account's number away is
    /// still pending: nothing closed; try again once it completed.
    #[error(
        "the port of this account's number to its new provider is still pending: the account is not closed; try \
         again once the port completed"
    )]
    PortPending,
    /// [`close_account`](crate::TincanClient::close_account) at a provider that cannot deactivate accounts (its
    /// extension has no way to: a JWT deployment without an admin token): the account is kept.
    #[error("this provider cannot close accounts ({error}): the account is kept")]
    CloseNotSupported {
        /// The extension's words.
        error: String,
    },
}

// Boxed: matrix-sdk's errors are large and would make every `Result` of this crate large.
macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),*) => {$(
        impl From<$ty> for ClientError {
            fn from(e: $ty) -> Self {
                ClientError::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(KeyMismatch: KeyMismatch, Matrix: matrix_sdk::Error, MatrixHttp: matrix_sdk::HttpError, Build: matrix_sdk::ClientBuildError);

/// The extension's answer to a sign-in of an account with a registration lock, without its PIN.
const REGISTRATION_LOCKED: &str = "IO.TINCAN.REGISTRATION_LOCKED";
/// The extension's answer to a wrong registration-lock PIN.
const WRONG_PIN: &str = "IO.TINCAN.WRONG_PIN";
/// The extension's answer to closing an account whose number did not move away.
const NOT_MOVED_AWAY: &str = "IO.TINCAN.NOT_MOVED_AWAY";
/// The extension's answer to closing an account while the port taking its number away is pending.
const PORT_PENDING: &str = "IO.TINCAN.PORT_PENDING";

impl ClientError {
    /// Whether a sign-in was refused because the account has a registration lock and no PIN (or a wrong one)
    /// was given: ask the user for the PIN and call
    /// [`verify_with_pin`](crate::TincanClient::verify_with_pin) with the same code.
    pub fn needs_pin(&self) -> bool {
        matches!(self, ClientError::Extension { errcode, .. } if errcode == REGISTRATION_LOCKED || errcode == WRONG_PIN)
    }

    /// The extension's refusal of `account/close` as its typed error: 409 `IO.TINCAN.NOT_MOVED_AWAY`
    /// ([`NotMovedAway`](Self::NotMovedAway)), 409 `IO.TINCAN.PORT_PENDING` ([`PortPending`](Self::PortPending)),
    /// 501 ([`CloseNotSupported`](Self::CloseNotSupported)); any other error as it was.
    pub(crate) fn of_close(self) -> ClientError {
        match self {
            ClientError::Extension { status: 409, errcode, .. } if errcode == NOT_MOVED_AWAY => {
                ClientError::NotMovedAway
            }
            ClientError::Extension { status: 409, errcode, .. } if errcode == PORT_PENDING => ClientError::PortPending,
            ClientError::Extension { status: 501, error, .. } => ClientError::CloseNotSupported { error },
            other => other,
        }
    }

    /// A stable code for the error, for scripts (`tincan --json`) and the bindings: these strings do not change.
    pub fn code(&self) -> &'static str {
        use tincan_enum_lookup::log::LogCheckError;
        match self {
            ClientError::InvalidNumber(_) => "invalid_number",
            ClientError::NotLoggedIn => "not_logged_in",
            ClientError::NoPendingRegistration => "no_pending_registration",
            ClientError::NoExtension => "no_extension",
            ClientError::NoDirectory => "no_directory",
            ClientError::Extension { errcode, .. } if errcode == REGISTRATION_LOCKED => "registration_locked",
            ClientError::Extension { errcode, .. } if errcode == WRONG_PIN => "wrong_pin",
            ClientError::Extension { .. } => "extension_refused",
            ClientError::Http(_) => "extension_unreachable",
            ClientError::Homeserver(_) => "homeserver_unreachable",
            ClientError::UnsupportedLogin(_) => "unsupported_login",
            ClientError::Lookup(l) if l.is_validation_failure() => "dnssec_validation_failed",
            ClientError::Lookup(_) => "lookup_failed",
            ClientError::Log(l) if l.is_unavailable() => "log_unavailable",
            ClientError::Log(LogCheckError::Inconsistent { .. }) => "log_forked",
            ClientError::Log(_) => "not_in_log",
            ClientError::ParentDsMismatch { .. } => "parent_ds_mismatch",
            ClientError::AnchorNotVouched { .. } => "anchor_not_vouched",
            ClientError::DirectoryNotListed { .. } => "directory_not_listed",
            ClientError::TrustListNotCurrent { .. } => "trust_list_not_current",
            ClientError::DirectoryConfig(_) => "directory_config",
            ClientError::NotOnNetwork { .. } => "not_on_network",
            ClientError::Unreachable { .. } => "not_reachable",
            ClientError::BridgeUnavailable { .. } => "bridge_unavailable",
            ClientError::KeyMismatch(_) => "key_mismatch",
            ClientError::NotEncrypted { .. } => "not_encrypted",
            ClientError::InvalidUserId(_) => "invalid_user_id",
            ClientError::Matrix(_) | ClientError::MatrixHttp(_) | ClientError::Build(_) => "matrix",
            ClientError::CryptoStore(_) => "crypto_store",
            ClientError::State { .. } | ClientError::StateCorrupt { .. } => "state",
            ClientError::SessionStore(_) => "session_store",
            ClientError::SessionWithoutKeys { .. } => "session_without_keys",
            ClientError::NoOwnIdentity => "no_identity",
            ClientError::StoreKey(_) => "store_key",
            ClientError::UnencryptedDataDir { .. } => "unencrypted_data_dir",
            ClientError::NoGateway => "no_gateway",
            ClientError::Gateway { .. } => "gateway_refused",
            ClientError::GatewayUnreachable(_) => "gateway_unreachable",
            ClientError::GatewayConfig(_) => "gateway_config",
            ClientError::GatewayAnswer(_) => "gateway_answer",
            ClientError::Charter(tincan_charter::CharterError::Fetch { .. }) => "charter_unreachable",
            ClientError::Charter(tincan_charter::CharterError::NoList(_)) => "no_trust_list",
            ClientError::Charter(_) => "trust_list_refused",
            ClientError::ProviderNotListed(_) => "provider_not_listed",
            ClientError::NotMovedAway => "not_moved_away",
            ClientError::PortPending => "port_pending",
            ClientError::CloseNotSupported { .. } => "close_not_supported",
        }
    }
}

/// `Result` with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, errcode: &str) -> ClientError {
        ClientError::Extension { status, errcode: errcode.into(), error: "words".into(), retry_after_ms: None }
    }

    #[test]
    fn the_extensions_refusals_of_account_close_are_typed() {
        assert!(matches!(refusal(409, NOT_MOVED_AWAY).of_close(), ClientError::NotMovedAway));
        assert!(matches!(refusal(409, PORT_PENDING).of_close(), ClientError::PortPending));
        let e = refusal(501, "M_UNRECOGNIZED").of_close();
        assert!(matches!(&e, ClientError::CloseNotSupported { error } if error == "words"), "{e:?}");
        assert_eq!(
            [NOT_MOVED_AWAY, PORT_PENDING].map(|c| refusal(409, c).of_close().code()),
            ["not_moved_away", "port_pending"]
        );
        assert_eq!(e.code(), "close_not_supported");
        // Anything else stays the extension's refusal: a dead token, a failed deactivation.
        for (status, errcode) in [(401, "M_UNAUTHORIZED"), (502, "M_UNKNOWN"), (409, "M_UNKNOWN")] {
            let e = refusal(status, errcode).of_close();
            assert!(matches!(&e, ClientError::Extension { status: s, .. } if *s == status), "{e:?}");
            assert_eq!(e.code(), "extension_refused");
        }
    }
}
