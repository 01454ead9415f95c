//! The plain records and enums of the bindings, converted from the core's types (which carry matrix-sdk and
//! parsed-number types the foreign side has no use for: numbers and keys cross as strings).

use tincan_client_core as core;

/// Where the client keeps its data and which services it talks to.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ClientConfig {
    /// The data dir (the app's private storage).
    pub data_dir: String,
    /// The 32-byte key that encrypts the data dir at rest (matrix-sdk's stores and the access token), kept by
    /// the app in the platform keystore/keychain. `None`: a key file in the data dir, made on first run
    /// (development only: it sits beside what it protects).
    pub store_key: Option<Vec<u8>>,
    /// The homeserver extension's URL (sign-up, key publishing, contact import).
    pub ext_url: Option<String>,
    /// The directory, for lookups and key verification.
    pub directory: Option<DirectoryConfig>,
    /// The display name of new devices.
    pub device_name: String,
    /// Where the session is kept: the app's store (the platform keychain/keystore), or `None` for the data dir.
    #[uniffi(default = None)]
    pub session_store: Option<std::sync::Arc<dyn crate::SessionStore>>,
    /// The charter's trust list: the directory's anchor and log key when `directory.trust_anchor` is empty, and
    /// the providers one may sign up with and whose users can be verified. `None`: no list.
    #[uniffi(default = None)]
    pub charter: Option<CharterConfig>,
}

/// Where the charter publishes its trust list, and the root the app trusts.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CharterConfig {
    /// The charter repository's base URL (serves `trust-list.json` and `N.root.json`), e.g.
    /// `https://charter.example/`.
    pub url: String,
    /// The charter's `root.json` the app ships with (its bytes).
    pub root: Vec<u8>,
}

/// How to reach and trust the ENUM directory.
#[derive(Debug, Clone, uniffi::Record)]
pub struct DirectoryConfig {
    /// DNS servers, `ip:port`.
    pub servers: Vec<String>,
    /// The ENUM apex, e.g. `e164.tincan.test.`.
    pub apex: String,
    /// The apex's trust anchor (DS or DNSKEY in presentation format, or a `trust-anchors` clause).
    pub trust_anchor: String,
    /// Accept unsigned answers (development only; never verifies a contact).
    pub allow_insecure: bool,
    /// The directory's transparency log API URL; with `log_key`, every answer is checked against it.
    pub log_url: Option<String>,
    /// The log's Ed25519 public key, unpadded base64, pinned out of band.
    pub log_key: Option<String>,
}

/// A code was sent by SMS.
#[derive(Debug, Clone, uniffi::Record)]
pub struct CodeRequest {
    /// The sign-up session.
    pub sid: String,
    /// Seconds the code stays valid.
    pub expires_in_secs: u64,
    /// Milliseconds before a resend is allowed.
    pub resend_after_ms: u64,
}

impl From<core::ext::RequestCodeResponse> for CodeRequest {
    fn from(r: core::ext::RequestCodeResponse) -> Self {
        Self { sid: r.sid, expires_in_secs: r.expires_in, resend_after_ms: r.resend_after_ms }
    }
}

/// Signed in after `verify`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SignedIn {
    /// Our Matrix ID.
    pub user_id: String,
    /// Our device.
    pub device_id: String,
    /// Whether the account was created now.
    pub new_account: bool,
    /// Our master cross-signing key (unpadded base64).
    pub master_key: Option<String>,
    /// The numbers whose directory record carries the key.
    pub published_for: Vec<String>,
}

impl From<core::SignedIn> for SignedIn {
    fn from(s: core::SignedIn) -> Self {
        Self {
            user_id: s.user_id,
            device_id: s.device_id,
            new_account: s.new_account,
            master_key: s.master_key.map(|k| k.to_base64()),
            published_for: s.published_for,
        }
    }
}

/// What the validated directory holds for a number.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Route {
    /// A Matrix (Tincan) user.
    Matrix {
        /// `@localpart:server`.
        user_id: String,
        /// The master key the directory vouches for.
        key: Option<String>,
        /// Whether the answer was DNSSEC-validated (else: insecure answers allowed).
        secure: bool,
    },
    /// SIP URIs only.
    Sip {
        /// The URIs.
        uris: Vec<String>,
        /// DNSSEC-validated.
        secure: bool,
    },
    /// The phone network.
    Tel {
        /// Where SMS terminates.
        sms: Option<String>,
        /// Where voice terminates.
        voice: Option<String>,
        /// DNSSEC-validated.
        secure: bool,
    },
    /// Nothing (a validated denial).
    NotListed {
        /// DNSSEC-validated.
        secure: bool,
    },
}

fn secure(v: core::Validation) -> bool {
    v == core::Validation::Secure
}

impl From<core::Route> for Route {
    fn from(r: core::Route) -> Self {
        match r {
            core::Route::Matrix { user_id, key, validation } => {
                Route::Matrix { user_id, key: key.map(|k| k.to_base64()), secure: secure(validation) }
            }
            core::Route::Sip { uris, validation } => Route::Sip { uris, secure: secure(validation) },
            core::Route::Tel { sms, voice, validation } => Route::Tel {
                sms: sms.map(|n| n.to_string()),
                voice: voice.map(|n| n.to_string()),
                secure: secure(validation),
            },
            core::Route::None { validation } => Route::NotListed { secure: secure(validation) },
        }
    }
}

/// A contact's key, checked against the directory.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum KeyStatus {
    /// The homeserver's master key is the directory's.
    Verified {
        /// The key.
        key: String,
    },
    /// Verified, with a different key than before: tell the user.
    Changed {
        /// The key verified before.
        previous: String,
        /// The key now.
        current: String,
    },
    /// The homeserver's key contradicts the directory's: sending is refused unless forced.
    Mismatch {
        /// The directory's key.
        directory_key: String,
        /// The homeserver's key.
        homeserver_key: String,
    },
    /// The directory publishes no key.
    NoDirectoryKey,
    /// The contact has no cross-signing identity yet.
    NoIdentity,
    /// The answer was not DNSSEC-validated.
    InsecureAnswer,
    /// No transparency log is configured.
    NoTransparencyLog,
    /// The contact's provider is not on the charter's trust list.
    NotListed {
        /// The contact's Matrix server name.
        server: String,
    },
    /// The number moved to another provider and Matrix ID (a port the transparency log proves); verified at
    /// the next check.
    Moved {
        /// The Matrix ID verified for the number before.
        previous_user: String,
        /// The provider it left.
        from: String,
        /// The provider it moved to.
        to: String,
        /// The new key.
        key: String,
    },
    /// Verified, but the number led to another Matrix ID before and the transparency log shows no port: it
    /// changed hands without its owner moving it. Tell the user, as for a key change.
    Reassigned {
        /// The Matrix ID verified for the number before.
        previous_user: String,
        /// Its key then.
        previous_key: String,
        /// The new Matrix ID's key.
        key: String,
    },
}

impl From<core::KeyStatus> for KeyStatus {
    fn from(s: core::KeyStatus) -> Self {
        match s {
            core::KeyStatus::Verified { key } => KeyStatus::Verified { key: key.to_base64() },
            core::KeyStatus::Changed { previous, current } => {
                KeyStatus::Changed { previous: previous.to_base64(), current: current.to_base64() }
            }
            core::KeyStatus::Mismatch(m) => {
                KeyStatus::Mismatch { directory_key: m.directory.to_base64(), homeserver_key: m.homeserver.to_base64() }
            }
            core::KeyStatus::NoDirectoryKey => KeyStatus::NoDirectoryKey,
            core::KeyStatus::NoIdentity => KeyStatus::NoIdentity,
            core::KeyStatus::InsecureAnswer => KeyStatus::InsecureAnswer,
            core::KeyStatus::NoTransparencyLog => KeyStatus::NoTransparencyLog,
            core::KeyStatus::NotListed { server } => KeyStatus::NotListed { server },
            core::KeyStatus::Moved { previous_user, from, to, key, .. } => {
                KeyStatus::Moved { previous_user, from, to, key: key.to_base64() }
            }
            core::KeyStatus::Reassigned { previous_user, previous_key, key } => {
                KeyStatus::Reassigned { previous_user, previous_key: previous_key.to_base64(), key: key.to_base64() }
            }
        }
    }
}

/// A number as the directory and the contact's keys say.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Contact {
    /// The number (E.164).
    pub number: String,
    /// The validated route.
    pub route: Route,
    /// The Matrix user, when on Matrix.
    pub user_id: Option<String>,
    /// The key status, when on Matrix and signed in.
    pub key_status: Option<KeyStatus>,
}

impl From<core::Contact> for Contact {
    fn from(c: core::Contact) -> Self {
        Self {
            number: c.number.to_string(),
            route: c.route.into(),
            user_id: c.user_id,
            key_status: c.key_status.map(Into::into),
        }
    }
}

/// A text or a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Intent {
    /// A text.
    Text,
    /// A call.
    Call,
}

impl From<Intent> for core::Intent {
    fn from(i: Intent) -> Self {
        match i {
            Intent::Text => core::Intent::Text,
            Intent::Call => core::Intent::Call,
        }
    }
}

/// The route the core chose (the user never picks).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Decision {
    /// End-to-end encrypted over Matrix.
    Matrix {
        /// The contact.
        user_id: String,
        /// Set when the contact is not verified against the directory (show it to the user).
        warning: Option<String>,
    },
    /// Through the provider's SIP bridge.
    Sip {
        /// The bridge's ghost user.
        ghost: String,
        /// The directory's SIP URI.
        uri: String,
    },
    /// A text through the provider's SMS bridge.
    Sms {
        /// The bridge's ghost user.
        ghost: String,
    },
    /// A call through the phone network.
    Pstn {
        /// The bridge's ghost user.
        ghost: String,
    },
}

impl From<core::Decision> for Decision {
    fn from(d: core::Decision) -> Self {
        match d {
            core::Decision::Matrix { user_id, warning } => Decision::Matrix {
                user_id,
                warning: warning.map(|w| match w {
                    core::Warning::Unverified { key_status: Some(s) } => {
                        format!("not verified against the directory ({})", status_word(&s))
                    }
                    core::Warning::Unverified { key_status: None } => "not verified against the directory".into(),
                    core::Warning::ForcedMismatch(m) => format!("sent although {m}"),
                }),
            },
            core::Decision::Sip { ghost, uri } => Decision::Sip { ghost, uri },
            core::Decision::Sms { ghost } => Decision::Sms { ghost },
            core::Decision::Pstn { ghost } => Decision::Pstn { ghost },
        }
    }
}

fn status_word(s: &core::KeyStatus) -> &'static str {
    match s {
        core::KeyStatus::Verified { .. } | core::KeyStatus::Changed { .. } | core::KeyStatus::Reassigned { .. } => {
            "verified, unsigned answer"
        }
        core::KeyStatus::Mismatch(_) => "key mismatch",
        core::KeyStatus::NoDirectoryKey => "no key in the directory",
        core::KeyStatus::NoIdentity => "no cross-signing identity yet",
        core::KeyStatus::InsecureAnswer => "unsigned directory answer",
        core::KeyStatus::NoTransparencyLog => "no transparency log",
        core::KeyStatus::NotListed { .. } => "provider not on the charter's trust list",
        core::KeyStatus::Moved { .. } => "number moved to another provider; verified at the next check",
    }
}

/// A message sent to a number.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SentMessage {
    /// The room.
    pub room_id: String,
    /// The event.
    pub event_id: String,
    /// The recipient (the contact or a bridge's ghost).
    pub user_id: String,
    /// The route taken.
    pub decision: Decision,
    /// The contact's key status at sending time (Matrix only).
    pub key_status: Option<KeyStatus>,
    /// What became of it as far as the client knows (through a bridge: what the bridge said within the wait).
    pub delivery: Delivery,
}

impl From<core::SentToNumber> for SentMessage {
    fn from(s: core::SentToNumber) -> Self {
        Self {
            room_id: s.sent.room_id,
            event_id: s.sent.event_id,
            user_id: s.sent.user_id,
            decision: s.decision.into(),
            key_status: s.sent.key_status.map(Into::into),
            delivery: s.delivery.into(),
        }
    }
}

/// A text's fate: over Matrix always `Sent`; through a bridge, what the bridge reported.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Delivery {
    /// Sent into the conversation; no word from the bridge (yet, or within the wait).
    Sent,
    /// The bridge says the message reached the phone.
    Delivered,
    /// The bridge says it did not.
    Failed {
        /// The bridge's words.
        reason: String,
    },
}

impl From<core::Delivery> for Delivery {
    fn from(d: core::Delivery) -> Self {
        match d {
            core::Delivery::Sent => Delivery::Sent,
            core::Delivery::Delivered => Delivery::Delivered,
            core::Delivery::Failed { reason } => Delivery::Failed { reason },
        }
    }
}

/// A conversation opened with a number ([`Client::start_chat`](crate::Client::start_chat)).
#[derive(Debug, Clone, uniffi::Record)]
pub struct Chat {
    /// The room.
    pub room_id: String,
    /// The route its messages take (the core's decision).
    pub decision: Decision,
    /// What the directory says of the number, when one is configured.
    pub contact: Option<Contact>,
}

impl From<core::Chat> for Chat {
    fn from(c: core::Chat) -> Self {
        Self { room_id: c.room_id, decision: c.decision.into(), contact: c.contact.map(Into::into) }
    }
}

/// A text message received.
#[derive(Debug, Clone, uniffi::Record)]
pub struct IncomingMessage {
    /// The room.
    pub room_id: String,
    /// The event.
    pub event_id: String,
    /// The sender's Matrix ID.
    pub sender: String,
    /// The sender's number, when a verified contact.
    pub sender_number: Option<String>,
    /// The text.
    pub body: String,
    /// Whether it arrived end-to-end encrypted.
    pub encrypted: bool,
    /// Origin server time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl From<core::IncomingMessage> for IncomingMessage {
    fn from(m: core::IncomingMessage) -> Self {
        Self {
            room_id: m.room_id,
            event_id: m.event_id,
            sender: m.sender,
            sender_number: m.sender_number.map(|n| n.to_string()),
            body: m.body,
            encrypted: m.encrypted,
            timestamp_ms: m.timestamp_ms,
        }
    }
}
