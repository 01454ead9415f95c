//! `tincan-ext` configuration: one TOML file, then `TINCAN_EXT_…` environment overrides (see
//! [`tincan_common::config`]).

use serde::{Deserialize, Serialize};
use tincan_common::Secret;
use tincan_common::config::Validate;

/// The whole extension config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// The homeserver's `server_name` (user ids are `@localpart:server_name`).
    pub server_name: String,
    /// The homeserver's client-server API base URL, returned to clients and used for `/keys/query`,
    /// OpenID validation and appservice calls.
    pub homeserver_url: String,
    /// `sqlite://path?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// SMS sending.
    pub sms: SmsConfig,
    /// Code sessions.
    pub codes: CodesConfig,
    /// Abuse controls.
    pub limits: LimitsConfig,
    /// How accounts are created and logged in on the homeserver.
    pub homeserver: HomeserverConfig,
    /// Publishing numbers to the ENUM directory.
    pub directory: DirectoryConfig,
    /// The OpenID provider (sign-in by phone number for stock clients).
    pub oidc: crate::oidc::config::OidcConfig,
    /// The Identity Service: fetching other homeservers, tokens and lookups.
    pub identity: IdentityConfig,
    /// Registration lock: a PIN a new sign-in by SMS code must also give.
    pub registration_lock: RegistrationLockConfig,
    /// The charter's trust list: when set, work only with a directory the list names (see [`crate::charter`]).
    pub charter: crate::charter::CharterConfig,
    /// Number porting between providers (see [`crate::porting`]).
    pub porting: PortingConfig,
}

impl Default for ExtConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            server_name: "localhost".into(),
            homeserver_url: "http://127.0.0.1:8008".into(),
            database_url: "sqlite://tincan-ext.db?mode=rwc".into(),
            sms: SmsConfig::default(),
            codes: CodesConfig::default(),
            limits: LimitsConfig::default(),
            homeserver: HomeserverConfig::default(),
            directory: DirectoryConfig::default(),
            oidc: Default::default(),
            identity: IdentityConfig::default(),
            registration_lock: RegistrationLockConfig::default(),
            charter: Default::default(),
            porting: PortingConfig::default(),
        }
    }
}

/// Which SMS backend sends codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmsBackend {
    /// Not chosen: the config check asks the operator to choose (no SMS can be sent).
    #[default]
    None,
    /// Log the code and append it to a file (development only: `serve --dev-sms` must say so, and every
    /// start warns).
    Dev,
    /// POST JSON to an HTTP endpoint.
    Webhook,
    /// SMPP 3.4/5.0 to an SMSC.
    Smpp,
}

/// SMS sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// The backend.
    pub backend: SmsBackend,
    /// Message text; `{code}`, `{app}` and `{domain}` are replaced. Lines mentioning `{domain}` are dropped
    /// when `webotp_domain` is empty. The last line `@{domain} #{code}` lets browsers autofill (WebOTP).
    pub template: String,
    /// Product name shown in the message.
    pub app_name: String,
    /// The web origin's host for the WebOTP line; empty to leave the line out.
    pub webotp_domain: String,
    /// Dev sink: the file codes are appended to.
    pub dev_file: String,
    /// Webhook URL (receives `{"to": "+…", "text": "…"}`).
    pub webhook_url: String,
    /// Bearer token for the webhook.
    pub webhook_token: Secret,
    /// SMPP: the SMSC address, `host:port`.
    pub smpp_address: String,
    /// SMPP: `system_id`.
    pub smpp_system_id: String,
    /// SMPP: password.
    pub smpp_password: Secret,
    /// SMPP: `system_type` (often empty).
    pub smpp_system_type: String,
    /// SMPP: the sender (`source_addr`), alphanumeric or a number.
    pub smpp_source_addr: String,
    /// SMPP: the longest a connection and bind to the SMSC may take (also the longest a sign-up waits for
    /// another's connect); past it the request fails with 502 instead of queueing behind a slow SMSC.
    pub smpp_connect_timeout_secs: u64,
    /// The longest handing one code SMS to the backend may take, whatever it waits for (a webhook that does not
    /// answer, an SMSC that never acknowledges a `submit_sm`, a retry on a new bind). Past it the request answers
    /// 504 and its session is removed; other sign-ups go on meanwhile.
    pub send_timeout_secs: u64,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            backend: SmsBackend::None,
            template: "{code} is your {app} code. Do not share it.\n\n@{domain} #{code}".into(),
            app_name: "Tincan".into(),
            webotp_domain: String::new(),
            dev_file: "tincan-ext-sms.log".into(),
            webhook_url: String::new(),
            webhook_token: Secret::default(),
            smpp_address: "127.0.0.1:2775".into(),
            smpp_system_id: String::new(),
            smpp_password: Secret::default(),
            smpp_system_type: String::new(),
            smpp_source_addr: "Tincan".into(),
            smpp_connect_timeout_secs: 5,
            send_timeout_secs: 10,
        }
    }
}

/// Code sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodesConfig {
    /// Key of the stored code hashes (HMAC-SHA256), at least 32 characters; keep it out of the database and
    /// its backups (`TINCAN_EXT_CODES__SECRET_FILE=/path`). Changing it invalidates the codes in flight.
    pub secret: Secret,
    /// How long a code is valid.
    pub ttl_secs: u64,
    /// Wrong codes allowed per session before it is dead.
    pub max_attempts: u32,
    /// Minimum time between two SMS for one session.
    pub resend_after_secs: u64,
    /// How long an Identity Service validation stays usable (`getValidated3pid`, `3pid/bind`); Sydent: 24 h.
    pub validated_ttl_secs: u64,
    /// A `3pid/bind` that moves a number from one Matrix ID to another needs a validation made after the
    /// existing binding and at most this long ago.
    pub rebind_within_secs: u64,
}

impl Default for CodesConfig {
    fn default() -> Self {
        Self {
            secret: Secret::default(),
            ttl_secs: 600,
            max_attempts: 5,
            resend_after_secs: 30,
            validated_ttl_secs: 86_400,
            rebind_within_secs: 600,
        }
    }
}

/// One token bucket: `burst` tokens, `refill` tokens added every `period_secs`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Capacity.
    pub burst: u32,
    /// Tokens added per period.
    pub refill: u32,
    /// The period.
    pub period_secs: u64,
}

/// Abuse controls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Per destination number.
    pub per_number: BucketConfig,
    /// Per prefix: the country calling code and the next `prefix_national_digits` digits (`+44 791…`), which
    /// catches pumping through a range of numbers (SMS to many numbers of one premium or rigged range).
    pub per_prefix: BucketConfig,
    /// How many digits after the country calling code form a prefix.
    pub prefix_national_digits: usize,
    /// Per client IP (IPv4 by address, IPv6 by /64).
    pub per_ip: BucketConfig,
    /// Per country calling code.
    pub per_country: BucketConfig,
    /// Every SMS this node sends, all numbers together: the ceiling of what pumping can cost in a period.
    /// When it is spent, sign-ups get `M_LIMIT_EXCEEDED` and `/metrics` raises
    /// `tincan_ext_sms_global_budget_exhausted`.
    pub global: BucketConfig,
    /// ISO 3166 regions (`GB`, `DE`) whose numbers may get an SMS; `["*"]` for every country. Required: the
    /// config check refuses an empty list, so the operator chooses where sign-up SMS may go.
    pub allowed_countries: Vec<String>,
    /// Number prefixes (`+4490`) never sent an SMS.
    pub blocked_prefixes: Vec<String>,
    /// Refuse numbers libphonenumber classifies as premium-rate or shared-cost.
    pub block_premium: bool,
    /// Addresses or CIDR ranges of this deployment's reverse proxies. Only a request from one of them is
    /// believed about `X-Forwarded-For`, read from the right: the rightmost address that is not a trusted proxy
    /// is the client (what the client wrote itself, further left, is ignored). Empty: the TCP peer is the
    /// client.
    pub trusted_proxies: Vec<String>,
    /// Codes checked (`register/verify`, `submitToken`) per client IP, over all sessions.
    pub verify_per_ip: BucketConfig,
    /// Codes checked per number, over all its sessions (each session also dies after `codes.max_attempts`).
    pub verify_per_number: BucketConfig,
    /// Numbers looked up (`lookup` addresses) per Matrix user, over all their Identity Service tokens.
    pub lookup_per_user: BucketConfig,
    /// Numbers looked up (`lookup` addresses) with one Identity Service token; a user's tokens also share
    /// `lookup_per_user`.
    pub lookup_per_token: BucketConfig,
    /// Numbers looked up per client IP.
    pub lookup_per_ip: BucketConfig,
    /// Numbers looked up by all users of one other homeserver together (this `server_name`'s users are not
    /// counted here), so a server minting users cannot walk the directory.
    pub lookup_per_homeserver: BucketConfig,
    /// Buckets kept in memory at most (refilled ones are dropped first, then the least recently used).
    pub max_tracked: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_number: BucketConfig { burst: 5, refill: 5, period_secs: 3600 },
            per_prefix: BucketConfig { burst: 50, refill: 50, period_secs: 3600 },
            prefix_national_digits: 3,
            per_ip: BucketConfig { burst: 20, refill: 20, period_secs: 3600 },
            per_country: BucketConfig { burst: 1000, refill: 1000, period_secs: 3600 },
            global: BucketConfig { burst: 2000, refill: 2000, period_secs: 3600 },
            allowed_countries: Vec::new(),
            blocked_prefixes: Vec::new(),
            block_premium: true,
            trusted_proxies: Vec::new(),
            verify_per_ip: BucketConfig { burst: 60, refill: 60, period_secs: 3600 },
            verify_per_number: BucketConfig { burst: 15, refill: 15, period_secs: 3600 },
            lookup_per_user: BucketConfig { burst: 1000, refill: 1000, period_secs: 3600 },
            lookup_per_token: BucketConfig { burst: 500, refill: 500, period_secs: 3600 },
            lookup_per_ip: BucketConfig { burst: 5000, refill: 5000, period_secs: 3600 },
            lookup_per_homeserver: BucketConfig { burst: 20_000, refill: 20_000, period_secs: 3600 },
            max_tracked: 100_000,
        }
    }
}

/// How the extension talks to the homeserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HomeserverBackend {
    /// Short-lived HS256 JWTs for `org.matrix.login.jwt` (Synapse `jwt_config`).
    #[default]
    Jwt,
    /// An application service registering users in its namespace.
    Appservice,
}

/// How accounts are created and logged in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeserverConfig {
    /// The backend.
    pub backend: HomeserverBackend,
    /// JWT: the HS256 secret shared with the homeserver's `jwt_config.secret`.
    pub jwt_secret: Secret,
    /// JWT: `iss` claim (must match `jwt_config.issuer` when the homeserver checks it); empty to omit.
    pub jwt_issuer: String,
    /// JWT: lifetime of a login token.
    pub jwt_ttl_secs: u64,
    /// Appservice: the token the extension uses towards the homeserver.
    pub as_token: Secret,
    /// Appservice: the token the homeserver uses towards the extension.
    pub hs_token: Secret,
    /// Appservice: registration id.
    pub appservice_id: String,
    /// Appservice: the sender localpart.
    pub sender_localpart: String,
    /// Prefix of generated localparts (also the appservice namespace).
    pub localpart_prefix: String,
    /// The URL the homeserver reaches the extension at (appservice `url`).
    pub extension_url: String,
    /// JWT: a Synapse admin's access token, used only through Synapse's admin API to deactivate an account its
    /// user closes after its number moved away (see [`crate::porting::old_account`]), and to read when an
    /// account's devices were last seen before its registration lock is judged lapsed (see
    /// [`crate::registration_lock`]). Empty: such accounts can only be kept (closing answers 501), and a lock
    /// lapses on the activity reported to the extension alone. Keep it in a file
    /// (`TINCAN_EXT_HOMESERVER__ADMIN_TOKEN_FILE=/path`).
    pub admin_token: Secret,
}

impl Default for HomeserverConfig {
    fn default() -> Self {
        Self {
            backend: HomeserverBackend::Jwt,
            jwt_secret: Secret::default(),
            jwt_issuer: String::new(),
            jwt_ttl_secs: 120,
            as_token: Secret::default(),
            hs_token: Secret::default(),
            appservice_id: "tincan-ext".into(),
            sender_localpart: "tincan".into(),
            localpart_prefix: "tc_".into(),
            extension_url: "http://127.0.0.1:8090".into(),
            admin_token: Secret::default(),
        }
    }
}

/// The ENUM directory: publishing through its registrar API and, when `dns_servers` is set, answering
/// Identity Service lookups for other providers' numbers (a mirror of the directory's number list, each hit
/// resolved through DNSSEC-validated DNS and checked against the directory's transparency log).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// Registrar API base URL; empty disables publishing.
    pub url: String,
    /// This provider's bearer token.
    pub token: Secret,
    /// DNS servers (`ip:port`) answering the ENUM zone: the directory or a DNSSEC-aware resolver. Empty
    /// disables lookups of numbers registered by other providers.
    pub dns_servers: Vec<String>,
    /// The ENUM apex, e.g. `e164.tincan.example.`.
    pub apex: String,
    /// The apex's trust anchor: a DS or DNSKEY record, or a `trust-anchors { … };` clause
    /// (`tincan-directory keys ds` prints it).
    pub trust_anchor: String,
    /// Accept answers without a DNSSEC chain to the anchor (development only; bogus answers are refused
    /// anyway).
    pub allow_insecure: bool,
    /// The transparency log's Ed25519 public key, unpadded base64: the `log_key` of the directory's
    /// `GET /v1/log/sth`, pinned out of band like the trust anchor. Required with `dns_servers`: an answer is
    /// served only when its inclusion proof verifies under this key (see [`crate::log_witness`]).
    pub log_key: String,
    /// The log API's base URL (it serves `/v1/log/…`); empty: `url`.
    pub log_url: String,
    /// Seconds between two syncs of the number-list mirror (one also runs at start).
    pub sync_interval_secs: u64,
    /// Numbers per listing page (the directory allows 1 to 1000).
    pub sync_page_size: u32,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            token: Secret::default(),
            dns_servers: Vec::new(),
            apex: String::new(),
            trust_anchor: String::new(),
            allow_insecure: false,
            log_key: String::new(),
            log_url: String::new(),
            sync_interval_secs: 300,
            sync_page_size: 1000,
        }
    }
}

/// The Identity Service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// `account/register` checks an OpenID token with the homeserver `matrix_server_name` names (a name the
    /// client chose), located by Matrix server discovery (`.well-known/matrix/server`, SRV, port 8448): each
    /// request (connect, TLS, answer) may take at most this long, and redirects are never followed (but for
    /// `.well-known`, as the spec says: at most 5, to `https` URLs, each checked like the name).
    pub homeserver_timeout_secs: u64,
    /// DNS servers (`ip:port`) that locate other homeservers (SRV `_matrix-fed._tcp`, `_matrix._tcp`, and
    /// addresses). Empty: the system's resolvers (`/etc/resolv.conf`, and `/etc/hosts` for addresses). Either
    /// way a name that does not exist is the client's mistake (400) and a DNS failure (timeout, SERVFAIL) is
    /// 502.
    pub homeserver_dns_servers: Vec<String>,
    /// Addresses or CIDR ranges that are not on the public internet (loopback, private, link-local,
    /// unique-local, CGNAT…) but that `account/register` may contact anyway. Empty: a server name resolving
    /// only to such addresses is refused (`M_FORBIDDEN`), so a client cannot make the extension call into
    /// its own network. The configured `homeserver_url` (for `server_name`) is always allowed.
    pub homeserver_allowed_addresses: Vec<String>,
    /// How long an Identity Service access token from `account/register` is valid; then the client
    /// registers again with a fresh OpenID token from its homeserver.
    pub token_ttl_secs: u64,
    /// Answer `lookup` with `algorithm: none` (plaintext numbers). Off: `hash_details` offers only `sha256`
    /// and `none` is refused with `M_INVALID_PARAM`.
    pub lookup_allow_none: bool,
    /// Validated DNS resolutions of directory hits running at once, over all lookups together, so a lookup
    /// cannot trip the directory's response-rate limit for everyone.
    pub lookup_resolve_concurrency: usize,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            homeserver_timeout_secs: 5,
            homeserver_allowed_addresses: Vec::new(),
            homeserver_dns_servers: Vec::new(),
            token_ttl_secs: 86_400,
            lookup_allow_none: false,
            lookup_resolve_concurrency: 8,
        }
    }
}

/// Registration lock (see [`crate::registration_lock`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationLockConfig {
    /// The Argon2id secret ("pepper") PINs are hashed with, at least 32 characters, kept out of the database
    /// and its backups (`TINCAN_EXT_REGISTRATION_LOCK__SECRET_FILE=/path`). Empty: users cannot set a lock
    /// (the endpoints answer 404). Changing it makes every PIN wrong: the locks then only lapse.
    pub secret: Secret,
    /// The lock lapses when no device of the account was active this long (Signal: 7 days).
    pub lapse_secs: u64,
    /// Wrong PINs per account before it is locked out until the lock lapses.
    pub max_failures: u32,
    /// The wait after the first wrong PIN; it doubles with each further one, up to an hour.
    pub slowdown_secs: u64,
}

impl Default for RegistrationLockConfig {
    fn default() -> Self {
        Self { secret: Secret::default(), lapse_secs: 7 * 86_400, max_failures: 10, slowdown_secs: 2 }
    }
}

/// What the losing side answers a port of a number whose account has no live registration lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnlockedPorts {
    /// Say nothing: the number moves when the directory's objection window ends (a day by default), so a
    /// subscriber who did not ask for the port has that long to set a registration lock, which makes the next
    /// look at the port object.
    #[default]
    Wait,
    /// Release at once: the number moves as soon as the directory hears it.
    Release,
}

/// Number porting (see [`crate::porting`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortingConfig {
    /// The answer to a port of one of our numbers whose account has no live registration lock (a locked one
    /// is refused with `registration_locked`, a number with no account here with `not_in_service`).
    pub unlocked: UnlockedPorts,
    /// Seconds between two looks at the directory's open ports and ours still pending (webhooks are not
    /// retried, so this catches a missed one); one also runs at start. 0: webhooks only.
    pub poll_interval_secs: u64,
    /// With `unlocked = "release"`: how long a request that does not carry the new account's master key yet
    /// waits for it (the gaining client uploads it just after signing in) before it is released without one.
    /// Released with the key, the number moves in one port entry, which clients that verified the old key show
    /// as a move; a key following the move is an ordinary change to them. The wait ends at the next look after
    /// it (the directory's `amended` webhook, else the poll). 0: release at once.
    pub release_key_wait_secs: u64,
    /// A kept old account whose number moved away answers messages sent to it with the moved notice at most
    /// once per room this often (see [`crate::porting::old_account`]).
    pub moved_reply_interval_secs: u64,
}

impl Default for PortingConfig {
    fn default() -> Self {
        Self {
            unlocked: UnlockedPorts::Wait,
            poll_interval_secs: 300,
            release_key_wait_secs: 120,
            moved_reply_interval_secs: 3600,
        }
    }
}

impl Validate for ExtConfig {
    fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push(format!("listen: {:?} is not an address:port", self.listen));
        }
        if url::Url::parse(&self.homeserver_url).is_err() {
            p.push(format!("homeserver_url: {:?} is not a URL", self.homeserver_url));
        }
        if !(crate::store::is_sqlite_url(&self.database_url) || crate::store::is_postgres_url(&self.database_url)) {
            p.push("database_url: must start with sqlite: or postgres:// (postgresql://)".into());
        }
        if !self.sms.template.contains("{code}") {
            p.push("sms.template: must contain {code}".into());
        }
        match self.sms.backend {
            SmsBackend::None => p.push(
                "sms.backend: not chosen; set \"webhook\" or \"smpp\" (\"dev\" writes codes to a file, for \
                 development only, with `serve --dev-sms`)"
                    .into(),
            ),
            SmsBackend::Dev => {}
            SmsBackend::Webhook if url::Url::parse(&self.sms.webhook_url).is_err() => {
                p.push("sms.webhook_url: required (a URL) with backend = \"webhook\"".into())
            }
            SmsBackend::Webhook => {}
            SmsBackend::Smpp => {
                if self.sms.smpp_system_id.is_empty() {
                    p.push("sms.smpp_system_id: required with backend = \"smpp\"".into());
                }
                if cfg!(not(feature = "smpp")) {
                    p.push("sms.backend: this build has no SMPP support (feature \"smpp\")".into());
                }
            }
        }
        if self.codes.secret.expose().len() < 32 {
            p.push(
                "codes.secret: required, at least 32 characters (the key of stored code hashes; \
                 TINCAN_EXT_CODES__SECRET_FILE reads it from a file)"
                    .into(),
            );
        }
        if self.sms.send_timeout_secs == 0 || self.sms.send_timeout_secs > 120 {
            p.push("sms.send_timeout_secs: must be 1 to 120".into());
        }
        if self.codes.max_attempts == 0 || self.codes.ttl_secs == 0 || self.codes.validated_ttl_secs == 0 {
            p.push("codes: max_attempts, ttl_secs and validated_ttl_secs must be positive".into());
        }
        if self.limits.allowed_countries.is_empty() {
            p.push(
                "limits.allowed_countries: choose the countries sign-up SMS may go to (ISO 3166 codes like \
                 [\"GB\", \"DE\"], or [\"*\"] for every country)"
                    .into(),
            );
        }
        for t in &self.limits.trusted_proxies {
            if let Err(e) = t.parse::<crate::net::Cidr>() {
                p.push(format!("limits.trusted_proxies: {e}"));
            }
        }
        for a in &self.identity.homeserver_allowed_addresses {
            if let Err(e) = a.parse::<crate::net::Cidr>() {
                p.push(format!("identity.homeserver_allowed_addresses: {e}"));
            }
        }
        for a in &self.identity.homeserver_dns_servers {
            if a.parse::<std::net::SocketAddr>().is_err() {
                p.push(format!("identity.homeserver_dns_servers: {a:?} is not an ip:port"));
            }
        }
        if self.identity.homeserver_timeout_secs == 0
            || self.identity.token_ttl_secs == 0
            || self.identity.lookup_resolve_concurrency == 0
        {
            p.push(
                "identity: homeserver_timeout_secs, token_ttl_secs and lookup_resolve_concurrency must be positive"
                    .into(),
            );
        }
        let rl = &self.registration_lock;
        if !rl.secret.is_empty() && rl.secret.expose().len() < 32 {
            p.push("registration_lock.secret: at least 32 characters (or empty: no registration locks)".into());
        }
        if rl.lapse_secs == 0 || rl.max_failures == 0 {
            p.push("registration_lock: lapse_secs and max_failures must be positive".into());
        }
        if self.limits.prefix_national_digits > 12 {
            p.push("limits.prefix_national_digits: at most 12".into());
        }
        for r in self.limits.allowed_countries.iter().filter(|r| *r != "*") {
            if r.len() != 2 || !r.chars().all(|c| c.is_ascii_uppercase()) {
                p.push(format!("limits.allowed_countries: {r:?} is not an ISO 3166 code like \"GB\""));
            }
        }
        for b in &self.limits.blocked_prefixes {
            if !b.starts_with('+') || b.len() < 2 || !b[1..].chars().all(|c| c.is_ascii_digit()) {
                p.push(format!("limits.blocked_prefixes: {b:?} is not like \"+4490\""));
            }
        }
        match self.homeserver.backend {
            HomeserverBackend::Jwt
                if self.homeserver.jwt_secret.is_empty() || self.homeserver.jwt_secret.expose().len() < 16 =>
            {
                p.push("homeserver.jwt_secret: required, at least 16 characters, with backend = \"jwt\"".into())
            }
            HomeserverBackend::Appservice
                if self.homeserver.as_token.is_empty() || self.homeserver.hs_token.is_empty() =>
            {
                p.push("homeserver.as_token and homeserver.hs_token: required with backend = \"appservice\"".into())
            }
            _ => {}
        }
        if !self.directory.url.is_empty() && self.directory.token.is_empty() {
            p.push("directory.token: required when directory.url is set".into());
        }
        let d = &self.directory;
        if !d.dns_servers.is_empty() {
            if d.url.is_empty() {
                p.push(
                    "directory.url: required when directory.dns_servers is set (the number list comes from it)".into(),
                );
            }
            if let Err(e) = crate::mirror::build_lookup(d) {
                p.push(e.to_string());
            }
            if let Err(e) = crate::log_witness::LogWitness::from_config(d) {
                p.push(e.to_string());
            }
            if d.sync_interval_secs == 0 {
                p.push("directory.sync_interval_secs: must be positive".into());
            }
            if !(1..=1000).contains(&d.sync_page_size) {
                p.push("directory.sync_page_size: must be 1 to 1000".into());
            }
        }
        p.extend(self.oidc.problems());
        p.extend(self.charter.problems(&self.directory.url));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_secrets_are_empty_not_the_placeholder() {
        let env = [
            ("TINCAN_EXT_HOMESERVER__JWT_SECRET".to_string(), "0123456789abcdef01".to_string()),
            ("TINCAN_EXT_CODES__SECRET".to_string(), "test-only-code-secret-0123456789abcdef".to_string()),
            ("TINCAN_EXT_SMS__BACKEND".to_string(), "dev".to_string()),
            ("TINCAN_EXT_LIMITS__ALLOWED_COUNTRIES".to_string(), "[\"*\"]".to_string()),
        ];
        let c: ExtConfig = tincan_common::config::load_config_from(None, "TINCAN_EXT_", env).unwrap();
        assert_ne!(c.homeserver.hs_token.expose(), "[redacted]");
        assert!(c.homeserver.hs_token.is_empty());
        assert!(c.sms.smpp_password.is_empty());
        assert_eq!(c.homeserver.jwt_secret.expose(), "0123456789abcdef01");
    }

    #[test]
    fn appservice_backend_requires_real_tokens() {
        let env = [("TINCAN_EXT_HOMESERVER__BACKEND".to_string(), "appservice".to_string())];
        let err = tincan_common::config::load_config_from::<ExtConfig>(None, "TINCAN_EXT_", env).unwrap_err();
        assert!(err.to_string().contains("homeserver.as_token"), "{err}");
    }

    #[test]
    fn directory_lookups_need_the_registrar_apex_and_anchor() {
        let env = [
            ("TINCAN_EXT_HOMESERVER__JWT_SECRET".to_string(), "0123456789abcdef01".to_string()),
            ("TINCAN_EXT_DIRECTORY__DNS_SERVERS".to_string(), "[\"127.0.0.1:53\"]".to_string()),
        ];
        let err = tincan_common::config::load_config_from::<ExtConfig>(None, "TINCAN_EXT_", env).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("directory.url") && err.contains("directory.apex"), "{err}");
        assert!(err.contains("directory.log_key: required"), "{err}");
    }
}
