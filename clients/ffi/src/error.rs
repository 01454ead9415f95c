//! [`ClientError`]: the one error of the bindings. Each variant is a kind a UI handles differently; `code` is the
//! core's stable code ([`tincan_client_core::ClientError::code`]), the same the CLI prints with `--json`.

use tincan_client_core as core;

/// Why a call failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ClientError {
    /// Not a phone number in international form.
    #[error("{detail}")]
    InvalidNumber {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// Sign up first (`register`, then `verify`), or a `verify` without a pending `register`.
    #[error("{detail}")]
    NotSignedIn {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// The extension refused (a wrong or expired code, a rate limit…).
    #[error("{detail}")]
    Refused {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
        /// The Matrix error code, e.g. `M_LIMIT_EXCEEDED`.
        errcode: String,
        /// When to retry, for rate limits.
        retry_after_ms: Option<u64>,
    },
    /// The directory's answer cannot be trusted: DNSSEC validation failed, or its transparency log does not back
    /// it (or forked), or the charter's trust list was refused, or the directory's parent zone publishes another
    /// DS set than the list names, or a pinned trust anchor the list does not vouch for. Nothing was sent and no
    /// route is shown.
    #[error("{detail}")]
    Untrusted {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// The contact's key contradicts the directory's: nothing sent (unless forced).
    #[error("{detail}")]
    KeyMismatch {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
        /// The contact.
        user_id: String,
        /// The directory's key.
        directory_key: String,
        /// The homeserver's key.
        homeserver_key: String,
    },
    /// Sign-up at a provider the charter's trust list does not list (or not for Matrix, or not for the number).
    #[error("{detail}")]
    ProviderNotListed {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// `close_account` of an account whose number did not move away to another provider by a completed port:
    /// nothing closed (right after a port completes, try again in a few seconds).
    #[error("{detail}")]
    NotMovedAway {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// `close_account` while the port taking the number away is still pending: nothing closed; try again once
    /// it completed.
    #[error("{detail}")]
    PortPending {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// `close_account` at a provider that cannot deactivate accounts: the account is kept.
    #[error("{detail}")]
    CloseNotSupported {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// Nothing reaches the number: not on Tincan and no bridge of the provider for it.
    #[error("{detail}")]
    NotReachable {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
        /// The number.
        number: String,
    },
    /// A service could not be reached (the extension, the directory, its log, the homeserver, the charter, a
    /// bridge).
    #[error("{detail}")]
    Unavailable {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// Local storage: the data dir, its key, the crypto store.
    #[error("{detail}")]
    Storage {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// A configuration or argument the bindings were given is unusable.
    #[error("{detail}")]
    InvalidArgument {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
    /// Anything else (the homeserver refused, a room not encrypted…).
    #[error("{detail}")]
    Other {
        /// Stable code.
        code: String,
        /// What happened, for people.
        detail: String,
    },
}

impl ClientError {
    /// An argument the bindings cannot use.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ClientError::InvalidArgument { code: "invalid_argument".into(), detail: message.into() }
    }
}

impl From<core::ClientError> for ClientError {
    fn from(e: core::ClientError) -> Self {
        use core::ClientError as E;
        let code = e.code().to_owned();
        let detail = e.to_string();
        match e {
            E::InvalidNumber(_) => ClientError::InvalidNumber { code, detail },
            E::NotLoggedIn | E::NoPendingRegistration => ClientError::NotSignedIn { code, detail },
            E::Extension { errcode, retry_after_ms, .. } => {
                ClientError::Refused { code, detail, errcode, retry_after_ms }
            }
            E::Lookup(ref l) if l.is_validation_failure() => ClientError::Untrusted { code, detail },
            E::Log(ref l) if !l.is_unavailable() => ClientError::Untrusted { code, detail },
            E::ParentDsMismatch { .. } => ClientError::Untrusted { code, detail },
            E::AnchorNotVouched { .. } | E::DirectoryNotListed { .. } | E::TrustListNotCurrent { .. } => {
                ClientError::Untrusted { code, detail }
            }
            E::Charter(core::charter::CharterError::Fetch { .. }) => ClientError::Unavailable { code, detail },
            E::Charter(_) => ClientError::Untrusted { code, detail },
            E::ProviderNotListed(_) => ClientError::ProviderNotListed { code, detail },
            E::NotMovedAway => ClientError::NotMovedAway { code, detail },
            E::PortPending => ClientError::PortPending { code, detail },
            E::CloseNotSupported { .. } => ClientError::CloseNotSupported { code, detail },
            E::Http(_)
            | E::Homeserver(_)
            | E::Lookup(_)
            | E::Log(_)
            | E::MatrixHttp(_)
            | E::BridgeUnavailable { .. }
            | E::GatewayUnreachable(_) => ClientError::Unavailable { code, detail },
            E::KeyMismatch(m) => ClientError::KeyMismatch {
                code,
                detail,
                user_id: m.user_id.clone(),
                directory_key: m.directory.to_base64(),
                homeserver_key: m.homeserver.to_base64(),
            },
            E::NotOnNetwork { number, .. } | E::Unreachable { number, .. } => {
                ClientError::NotReachable { code, detail, number: number.to_string() }
            }
            E::State { .. }
            | E::StateCorrupt { .. }
            | E::StoreKey(_)
            | E::UnencryptedDataDir { .. }
            | E::SessionStore(_)
            | E::SessionWithoutKeys { .. }
            | E::CryptoStore(_) => ClientError::Storage { code, detail },
            E::NoExtension | E::NoDirectory | E::DirectoryConfig(_) | E::NoGateway | E::GatewayConfig(_) => {
                ClientError::InvalidArgument { code, detail }
            }
            _ => ClientError::Other { code, detail },
        }
    }
}
