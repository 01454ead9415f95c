//! [`TincanClient`]: a Matrix client on matrix-sdk (SQLite store, end-to-end encryption) that signs up with a
//! phone number, finds contacts through the DNSSEC-validated directory and checks their keys against it.
//!
//! This file holds opening, sign-up and session handling; `client/messaging.rs` the DMs and the incoming
//! stream; `client/directory.rs` resolution, key verification and contact import.

mod directory;
mod joined;
mod late_keys;
mod messaging;
mod push;
mod reach;
mod sync;

pub use directory::{Contact, ImportedContact};
pub use messaging::{IncomingMessage, MovedNotice, Sent};
pub use push::PushConfig;
pub use reach::{Chat, PendingDelivery, SentToNumber};

use crate::at_rest::{self, DataKey};
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::ext::{ExtClient, Login, RequestCodeResponse};
use crate::state::{ClientState, MATRIX_DIR, PendingRegistration, SavedSession};
use matrix_sdk::authentication::SessionTokens;
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use matrix_sdk::store::RoomLoadSettings;
use matrix_sdk::{Client, SessionMeta, SqliteStoreConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_common::{Clock, SystemClock};
use tincan_enum_core::{E164, MasterKey};
use tincan_enum_lookup::{Lookup, LookupConfig, TrustAnchor};
use tincan_translog::TreeHeadVerifier;
use tokio::sync::broadcast;

/// The result of a successful `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct SignedIn {
    /// Our Matrix ID.
    pub user_id: String,
    /// Our device.
    pub device_id: String,
    /// Whether the extension created the account now (else: a new device of the number's account).
    pub new_account: bool,
    /// Our master cross-signing key.
    pub master_key: Option<MasterKey>,
    /// The numbers whose directory record now carries the key (empty when publishing failed or is off).
    pub published_for: Vec<String>,
    /// When another provider held the number: its port to this provider, which the directory completes when
    /// that provider releases the number or its objection window ends (the master key goes with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<crate::ext::PortStatus>,
}

/// The Tincan client. Cheap to clone the parts that matter (`matrix()`); one per data dir.
pub struct TincanClient {
    config: ClientConfig,
    ext: Option<ExtClient>,
    lookup: Option<Lookup>,
    log: Option<LogWitness>,
    /// The charter's DS set compared with the parent's before lookups (see [`crate::charter`]).
    parent_ds: Option<crate::charter::ParentDsCheck>,
    http: reqwest::Client,
    key: DataKey,
    state: Arc<Mutex<ClientState>>,
    matrix: Option<Client>,
    clock: Arc<dyn Clock>,
    incoming: broadcast::Sender<IncomingMessage>,
    /// What the sync shows of conversations, for delivery reports of bridged texts.
    signals: broadcast::Sender<crate::delivery::Signal>,
    /// Call signalling in our rooms (see [`calls`](Self::calls)).
    calls: broadcast::Sender<crate::calls::CallSignal>,
    /// Messages that arrived before their room keys, delivered when the keys come.
    late: late_keys::LateKeys,
    /// Whether [`spawn_sync`](Self::spawn_sync)'s loop runs (then nobody else syncs).
    syncing: Arc<AtomicBool>,
    charter: Option<crate::charter::CharterState>,
    /// Why the directory could not be set up from the charter's list at the last refresh (see
    /// [`refresh_charter`](Self::refresh_charter)): it is refused until a refresh sets it up.
    directory_unusable: Option<String>,
    /// The session's activity reports to the extension (see [`report_activity`](Self::report_activity)).
    activity: Option<AbortOnDrop>,
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for TincanClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TincanClient")
            .field("data_dir", &self.config.data_dir)
            .field("user_id", &self.user_id())
            .finish_non_exhaustive()
    }
}

impl TincanClient {
    /// Opens the client on its data dir, restoring the saved session if there is one.
    pub async fn open(config: ClientConfig) -> Result<TincanClient> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`open`](Self::open) with a given clock (verification times).
    ///
    /// The data dir is made private (0700) and its key loaded (made on first run, see
    /// [`at_rest`](crate::at_rest)); an earlier version's unencrypted data dir is
    /// [`ClientError::UnencryptedDataDir`] and stays as it was.
    pub async fn open_with_clock(config: ClientConfig, clock: Arc<dyn Clock>) -> Result<TincanClient> {
        let mut state = ClientState::load(&config.data_dir)?;
        at_rest::private_dir(&config.data_dir)?;
        let key = at_rest::load_key(&config.store_key, !state.encrypted_at_rest)?;
        if !state.encrypted_at_rest {
            state.encrypted_at_rest = true;
            state.save(&config.data_dir)?;
        }
        if let Some(store) = &config.session_store {
            state.session = stored_session(store.as_ref(), &mut state, &config.data_dir)?;
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let ext = config.ext_url.clone().map(|u| ExtClient::new(u, http.clone()));
        let charter = match &config.charter {
            Some(c) => Some(crate::charter::CharterState::open(c, &config.data_dir, clock.now())?),
            None => None,
        };
        let (lookup, log, parent_ds) = directory_parts(&config, charter.as_ref(), clock.now())?;
        let (incoming, _) = broadcast::channel(256);
        let (signals, _) = broadcast::channel(1024);
        let (calls, _) = broadcast::channel(256);
        let saved = state.session.clone();
        let state = Arc::new(Mutex::new(state));
        let late =
            late_keys::LateKeys::new(incoming.clone(), signals.clone(), calls.clone(), state.clone(), key.clone());
        let mut me = TincanClient {
            config,
            ext,
            lookup,
            log,
            parent_ds,
            http,
            key,
            state,
            matrix: None,
            clock,
            incoming,
            signals,
            calls,
            late,
            syncing: Arc::new(AtomicBool::new(false)),
            charter,
            directory_unusable: None,
            activity: None,
        };
        if let Some(saved) = saved {
            if !me.config.data_dir.join(MATRIX_DIR).exists() {
                return Err(ClientError::SessionWithoutKeys { device_id: saved.device_id });
            }
            let token = me.key.open(&saved.access_token, &saved.user_id, &saved.device_id)?;
            let client = me.build_matrix(&saved.homeserver_url).await?;
            restore(&client, parse_user(&saved.user_id)?, saved.device_id.into(), token).await?;
            me.install(client);
            me.report_activity();
        }
        Ok(me)
    }

    /// While the session is open, tells the extension this device is active — now and every
    /// `config.activity_report_every` (a day) — so the account's registration lock (if any) does not lapse
    /// under a long-running app. Best effort, in the background: a report that fails (offline) is the next
    /// one's. Replaces an earlier session's reports; they end with the client or its session.
    fn report_activity(&mut self) {
        let (Some(ext), Some(client)) = (self.ext.clone(), self.matrix.clone()) else {
            self.activity = None;
            return;
        };
        let every = self.config.activity_report_every;
        self.activity = Some(AbortOnDrop(tokio::spawn(async move {
            loop {
                if let Some(token) = client.access_token()
                    && let Err(e) = ext.registration_lock(&token).await
                {
                    tracing::debug!(error = %e, "could not report activity for the registration lock");
                }
                tokio::time::sleep(every).await;
            }
        })));
    }

    /// Our Matrix ID, when signed in.
    pub fn user_id(&self) -> Option<OwnedUserId> {
        self.matrix.as_ref().and_then(|c| c.user_id().map(ToOwned::to_owned))
    }

    /// The number we signed up with, when we did.
    pub fn number(&self) -> Option<E164> {
        self.lock().session.as_ref().and_then(|s| s.number.clone())
    }

    /// The underlying matrix-sdk client, when signed in.
    pub fn matrix(&self) -> Option<&Client> {
        self.matrix.as_ref()
    }

    fn client(&self) -> Result<&Client> {
        self.matrix.as_ref().ok_or(ClientError::NotLoggedIn)
    }

    fn ext(&self) -> Result<&ExtClient> {
        self.ext.as_ref().ok_or(ClientError::NoExtension)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves the state file; with an app's [`SessionStore`](crate::SessionStore) it holds no session (see
    /// [`save_session`](Self::save_session)).
    fn save(&self) -> Result<()> {
        let state = self.lock();
        if self.config.session_store.is_some() && state.session.is_some() {
            let mut without = state.clone();
            without.session = None;
            return without.save(&self.config.data_dir);
        }
        state.save(&self.config.data_dir)
    }

    /// Saves the state file and the session where it is kept (the state file, or the app's store).
    fn save_session(&self) -> Result<()> {
        self.save()?;
        if let Some(store) = &self.config.session_store {
            // Not under the state lock: the store is the app's code.
            let session = self.lock().session.clone();
            match session {
                Some(s) => store.save(&s)?,
                None => store.clear()?,
            }
        }
        Ok(())
    }

    /// Fetches the charter's trust list and verifies it (see [`charter`](crate::charter)); a refused or
    /// unreachable list leaves the last good one in use ([`CharterStatus::refused`](crate::CharterStatus) says
    /// why). The directory is set up again from the list in use: its anchor and log when they come from the
    /// list, and the list's check of it, so a list that no longer names it refuses it from then on
    /// ([`ClientError::DirectoryNotListed`]). When it cannot be set up from the list (a DS set the client cannot
    /// read) the refresh fails with [`ClientError::DirectoryConfig`], and so does every lookup until a refresh
    /// succeeds: the lookup built on the older list is not kept (see [`crate::charter`]).
    pub async fn refresh_charter(&mut self) -> Result<crate::CharterStatus> {
        let charter = self
            .charter
            .as_ref()
            .ok_or(ClientError::Charter(tincan_charter::CharterError::NoList("no charter configured".into())))?;
        let status = charter.refresh(self.clock.now()).await?;
        match directory_parts(&self.config, self.charter.as_ref(), self.clock.now()) {
            Ok((lookup, log, parent_ds)) => {
                (self.lookup, self.log, self.parent_ds) = (lookup, log, parent_ds);
                self.directory_unusable = None;
                Ok(status)
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    version = status.version,
                    "the directory cannot be set up from the charter's list: refused until a refresh does"
                );
                (self.lookup, self.log, self.parent_ds) = (None, None, None);
                self.directory_unusable = Some(match &e {
                    ClientError::DirectoryConfig(why) => why.clone(),
                    other => other.to_string(),
                });
                Err(e)
            }
        }
    }

    /// The providers one may sign up with: the charter's listed providers offering Matrix (empty without a
    /// valid list; `None` when no charter is configured).
    pub fn providers(&self) -> Option<Vec<crate::charter::TrustedProvider>> {
        let charter = self.charter.as_ref()?;
        let list = charter.current(self.clock.now());
        Some(
            list.map(|l| {
                l.providers.into_iter().filter(|p| p.services.contains(&crate::charter::Service::Matrix)).collect()
            })
            .unwrap_or_default(),
        )
    }

    /// Signs up through the listed provider `name` from now on (its extension URL from the trust list).
    pub fn use_provider(&mut self, name: &str) -> Result<()> {
        let p = self.providers().unwrap_or_default().into_iter().find(|p| p.name == name).ok_or_else(|| {
            ClientError::ProviderNotListed(format!("no provider {name:?} offering Matrix on the charter's trust list"))
        })?;
        self.config.ext_url = Some(p.ext_url.clone());
        self.ext = Some(ExtClient::new(p.ext_url, self.http.clone()));
        Ok(())
    }

    /// With a charter: the extension must be a listed provider's, offer Matrix, and cover the number.
    fn check_provider(&self, number: &E164) -> Result<()> {
        let Some(charter) = &self.charter else { return Ok(()) };
        let list = charter.current(self.clock.now()).ok_or(ClientError::Charter(
            tincan_charter::CharterError::NoList("refresh the charter's trust list".into()),
        ))?;
        let ext = self.config.ext_url.as_ref().ok_or(ClientError::NoExtension)?;
        let p = crate::charter::provider_by_ext(&list, ext).ok_or_else(|| {
            ClientError::ProviderNotListed(format!("the extension {ext} is not a provider on the charter's trust list"))
        })?;
        if !p.services.contains(&crate::charter::Service::Matrix) || !p.covers(number.as_str()) {
            return Err(ClientError::ProviderNotListed(format!(
                "{} does not offer Matrix accounts for {number}",
                p.name
            )));
        }
        Ok(())
    }

    /// Whether the charter lets a contact at `server` count as verified: yes without a charter; with one, only
    /// when the server is a listed provider's.
    pub(crate) fn listed_server(&self, server: &str) -> bool {
        match &self.charter {
            None => true,
            Some(c) => c.current(self.clock.now()).is_some_and(|l| l.provider_by_homeserver(server).is_some()),
        }
    }

    /// Step 1 of sign-up: asks the extension to text a code to `phone`. Asking again for the same number
    /// resends (a new `send_attempt` in the same session). With a charter, only at a listed provider.
    pub async fn register(&self, phone: &str) -> Result<RequestCodeResponse> {
        let number = E164::parse(phone)?;
        self.check_provider(&number)?;
        let (client_secret, send_attempt) = match self.lock().pending.as_ref() {
            Some(p) if p.number == number => (p.client_secret.clone(), p.send_attempt + 1),
            _ => (random_secret(&mut StdRng::from_os_rng()), 1),
        };
        let resp = self.ext()?.request_code(number.as_str(), &client_secret, send_attempt).await?;
        let ext_url = self.config.ext_url.as_ref().map(|u| u.to_string());
        self.lock().pending =
            Some(PendingRegistration { number, sid: resp.sid.clone(), client_secret, send_attempt, ext_url });
        self.save()?;
        Ok(resp)
    }

    /// Step 2 of sign-up: the code → a homeserver login (a new device), cross-signing bootstrapped on first
    /// sign-up and the master key published through the extension. An account with a registration lock also
    /// needs its PIN: this fails with an error whose [`needs_pin`](ClientError::needs_pin) is true (code
    /// `registration_locked`), and [`verify_with_pin`](Self::verify_with_pin) with the same code and the PIN
    /// signs in.
    pub async fn verify(&mut self, code: &str) -> Result<SignedIn> {
        self.verify_with_pin(code, None).await
    }

    /// [`verify`](Self::verify) with the account's registration-lock PIN. A wrong PIN is `wrong_pin`; the
    /// extension limits wrong PINs per account (a pause that doubles, then none accepted until the lock lapses:
    /// `M_LIMIT_EXCEEDED` with `retry_after_ms`). The pending registration stays, so the code can be sent again
    /// with the PIN.
    pub async fn verify_with_pin(&mut self, code: &str, pin: Option<&str>) -> Result<SignedIn> {
        let pending = self.lock().pending.clone().ok_or(ClientError::NoPendingRegistration)?;
        // The extension the code came from, which also publishes the new master key (setup_encryption).
        if let Some(url) = pending.ext_url.as_deref().and_then(|u| url::Url::parse(u).ok())
            && self.config.ext_url.as_ref() != Some(&url)
        {
            self.config.ext_url = Some(url.clone());
            self.ext = Some(ExtClient::new(url, self.http.clone()));
        }
        let ext = self.ext()?.clone();
        let resp = ext.verify_code(&pending.sid, &pending.client_secret, code.trim(), pin).await?;
        let client = self.build_matrix(&resp.homeserver_url).await?;
        match resp.login {
            Login::Jwt { token } => {
                let mut data = matrix_sdk::ruma::serde::JsonObject::new();
                data.insert("token".into(), token.into());
                client
                    .matrix_auth()
                    .login_custom("org.matrix.login.jwt", data)
                    .map_err(|e| ClientError::UnsupportedLogin(e.to_string()))?
                    .initial_device_display_name(&self.config.device_name)
                    .send()
                    .await?;
            }
            Login::Session { access_token, device_id } => {
                let user_id = parse_user(&resp.user_id)?;
                restore(&client, user_id, device_id.into(), access_token).await?;
            }
        }
        self.lock().pending = None;
        self.adopt(client, &resp.homeserver_url, Some(pending.number))?;
        let (master_key, published_for) = self.setup_encryption().await?;
        let device_id = self.client()?.device_id().map(|d| d.to_string()).unwrap_or_default();
        Ok(SignedIn {
            user_id: resp.user_id,
            device_id,
            new_account: resp.new_account,
            master_key,
            published_for,
            port: resp.port,
        })
    }

    /// Signs in with an existing access token (a session created elsewhere, e.g. by an operator's admin API),
    /// then sets up encryption like `verify` does.
    pub async fn login_with_token(
        &mut self,
        homeserver_url: &str,
        user_id: &str,
        device_id: &str,
        access_token: &str,
    ) -> Result<Option<MasterKey>> {
        let client = self.build_matrix(homeserver_url).await?;
        restore(&client, parse_user(user_id)?, device_id.into(), access_token.to_owned()).await?;
        self.adopt(client, homeserver_url, None)?;
        Ok(self.setup_encryption().await?.0)
    }

    /// Saves the session (the access token sealed), installs the event handlers.
    fn adopt(&mut self, client: Client, homeserver_url: &str, number: Option<E164>) -> Result<()> {
        let matrix = client.matrix_auth().session().ok_or(ClientError::NotLoggedIn)?;
        let (user_id, device_id) = (matrix.meta.user_id.to_string(), matrix.meta.device_id.to_string());
        let access_token = self.key.seal(&matrix.tokens.access_token, &user_id, &device_id);
        self.lock().session = Some(SavedSession {
            homeserver_url: homeserver_url.to_owned(),
            number,
            user_id,
            device_id,
            access_token,
            key_published: false,
        });
        self.save_session()?;
        self.install(client);
        self.report_activity();
        Ok(())
    }

    /// First sync (uploads the device keys), cross-signing bootstrap when the account has none, and the master
    /// key published through the extension (when one is configured and it was not done yet).
    async fn setup_encryption(&self) -> Result<(Option<MasterKey>, Vec<String>)> {
        let client = self.client()?;
        client.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await?;
        client.encryption().bootstrap_cross_signing_if_needed(None).await?;
        let key = self.own_master_key().await?;
        let already = self.lock().session.as_ref().is_some_and(|s| s.key_published);
        let mut published = Vec::new();
        if let (Some(ext), Some(key), false) = (self.ext.as_ref(), key, already) {
            let token = client.access_token().ok_or(ClientError::NotLoggedIn)?;
            match ext.publish_master_key(&token, &key.to_base64()).await {
                Ok(numbers) => {
                    published = numbers;
                    if let Some(s) = self.lock().session.as_mut() {
                        s.key_published = true;
                    }
                    self.save_session()?;
                }
                // Not fatal: the account works; the next sign-in retries.
                Err(e) => tracing::warn!(error = %e, "publishing the master key failed"),
            }
        }
        Ok((key, published))
    }

    /// Sets (or replaces) our registration-lock PIN (4 to 64 characters): a later sign-in with our number by
    /// SMS code — on a new device, or by whoever gets the number's SMS — then also needs it, until no device of
    /// ours was active for the extension's lapse time (7 days by default; see
    /// [`registration_lock`](Self::registration_lock)). The PIN is sent to the extension only.
    pub async fn set_registration_lock(&self, pin: &str) -> Result<()> {
        let token = self.client()?.access_token().ok_or(ClientError::NotLoggedIn)?;
        self.ext()?.set_registration_lock(&token, pin).await
    }

    /// Removes our registration lock.
    pub async fn remove_registration_lock(&self) -> Result<()> {
        let token = self.client()?.access_token().ok_or(ClientError::NotLoggedIn)?;
        self.ext()?.remove_registration_lock(&token).await
    }

    /// Whether we have a registration lock. The call tells the extension this device is active, which keeps
    /// the lock from lapsing; the client makes it by itself while a session is open (at
    /// [`open`](Self::open) or sign-in, then every `activity_report_every`).
    pub async fn registration_lock(&self) -> Result<crate::ext::RegistrationLock> {
        let token = self.client()?.access_token().ok_or(ClientError::NotLoggedIn)?;
        self.ext()?.registration_lock(&token).await
    }

    /// Closes (deactivates) our account at its provider, once our number moved away from it to another
    /// provider by a completed port (issue #22: the old account can be kept or closed). Irreversible: the
    /// homeserver ends the account's tokens and it leaves its rooms (nothing is erased), and the provider forgets
    /// it. On success the session is forgotten here too (its token is dead) → the closed Matrix ID. Refusals:
    /// [`ClientError::NotMovedAway`] (the number did not move away; right after a port completes, try again in a
    /// few seconds), [`ClientError::PortPending`], [`ClientError::CloseNotSupported`]; the session stays then.
    pub async fn close_account(&mut self) -> Result<String> {
        let token = self.client()?.access_token().ok_or(ClientError::NotLoggedIn)?;
        let closed = self.ext()?.close_account(&token).await?;
        self.forget_session()?;
        Ok(closed)
    }

    /// Our own master cross-signing key.
    pub async fn own_master_key(&self) -> Result<Option<MasterKey>> {
        let client = self.client()?;
        let me = client.user_id().ok_or(ClientError::NotLoggedIn)?;
        let identity = client.encryption().get_user_identity(me).await?;
        Ok(identity.and_then(|i| master_key_of(&i)))
    }

    async fn build_matrix(&self, homeserver_url: &str) -> Result<Client> {
        let url = url::Url::parse(homeserver_url).map_err(|_| ClientError::InvalidUserId(homeserver_url.into()))?;
        let store = SqliteStoreConfig::new(self.config.data_dir.join(MATRIX_DIR)).key(Some(self.key.bytes()));
        Ok(Client::builder()
            .homeserver_url(url)
            .sqlite_store_with_config_and_cache_path(store, None::<&Path>)
            .build()
            .await?)
    }

    /// Forgets the session locally, in the state file or the app's store (the device stays on the server).
    pub fn forget_session(&mut self) -> Result<()> {
        self.matrix = None;
        self.activity = None;
        self.lock().session = None;
        self.save_session()
    }

    /// Our device, when signed in.
    pub fn device_id(&self) -> Option<String> {
        self.matrix.as_ref().and_then(|c| c.device_id().map(ToString::to_string))
    }

    /// One sync round trip (at most `timeout` of long-polling), then accepts pending invites to encrypted rooms,
    /// so a one-shot command sees a DM someone just opened with us.
    pub async fn sync_once(&self, timeout: Duration) -> Result<()> {
        let client = self.client()?;
        let mut keys = late_keys::LateKeys::subscribe(client).await;
        let resp = client.sync_once(SyncSettings::default().timeout(timeout)).await?;
        let invited = client.invited_rooms();
        let any = !resp.rooms.invited.is_empty() || !invited.is_empty();
        // The invite handler may be joining them concurrently: either join is fine.
        futures::future::join_all(
            invited.into_iter().map(|room| messaging::accept_invite(room, client.clone(), self.late.clone())),
        )
        .await;
        if any {
            // The joined room's timeline, room keys and DM marking arrive with the next sync.
            client.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await?;
        }
        // Messages that came before their keys, whose keys came now.
        self.late.retry(client, &late_keys::LateKeys::arrived_now(&mut keys)).await;
        Ok(())
    }

    /// Syncs in a background task until aborted (incoming messages reach [`messages`](Self::messages)); network
    /// failures and homeserver outages are retried with backoff, and only an error no retry cures (the session
    /// revoked) ends the task. Messages that arrived before their room keys (in this run or an earlier one) are
    /// delivered when the keys come.
    pub fn spawn_sync(&self) -> Result<tokio::task::JoinHandle<()>> {
        let client = self.client()?.clone();
        let syncing = SyncingFlag::raise(&self.syncing);
        let late = self.late.clone();
        Ok(tokio::spawn(async move {
            // Lowered when the loop ends or the task is aborted.
            let _syncing = syncing;
            // Subscribed before the first sync, which may bring keys.
            let keys = late_keys::LateKeys::subscribe(&client).await;
            let e = tokio::select! {
                e = sync::sync_forever(&client) => e,
                never = late.watch(&client, keys) => match never {},
            };
            tracing::warn!(error = %e, "sync stopped");
        }))
    }

    /// Whether [`spawn_sync`](Self::spawn_sync)'s loop runs.
    pub(crate) fn is_syncing(&self) -> bool {
        self.syncing.load(Ordering::SeqCst)
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.unix_seconds()
    }
}

/// [`TincanClient::syncing`] raised while it lives.
struct SyncingFlag(Arc<AtomicBool>);

impl SyncingFlag {
    fn raise(flag: &Arc<AtomicBool>) -> SyncingFlag {
        flag.store(true, Ordering::SeqCst);
        SyncingFlag(flag.clone())
    }
}

impl Drop for SyncingFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The session in the app's `store`. One the state file still holds (written before the app supplied a store)
/// moves into the store when the store has none, and leaves the state file either way.
fn stored_session(
    store: &dyn crate::SessionStore,
    state: &mut ClientState,
    data_dir: &Path,
) -> Result<Option<SavedSession>> {
    let kept = store.load()?;
    let Some(old) = state.session.take() else { return Ok(kept) };
    if kept.is_none() {
        store.save(&old)?;
    }
    state.save(data_dir)?;
    Ok(kept.or(Some(old)))
}

/// A master key from a matrix-sdk identity.
fn master_key_of(identity: &matrix_sdk::encryption::identities::UserIdentity) -> Option<MasterKey> {
    let key = identity.master_key().get_first_key()?;
    MasterKey::from_bytes(*key.as_bytes()).ok()
}

async fn restore(client: &Client, user_id: OwnedUserId, device_id: OwnedDeviceId, access_token: String) -> Result<()> {
    let session = MatrixSession {
        meta: SessionMeta { user_id, device_id },
        tokens: SessionTokens { access_token, refresh_token: None },
    };
    client.matrix_auth().restore_session(session, RoomLoadSettings::default()).await?;
    Ok(())
}

fn parse_user(s: &str) -> Result<OwnedUserId> {
    s.try_into().map_err(|_| ClientError::InvalidUserId(s.to_owned()))
}

/// The lookup, log witness and parent DS check of the directory in effect (see [`crate::charter`]).
type DirectoryParts = (Option<Lookup>, Option<LogWitness>, Option<crate::charter::ParentDsCheck>);

fn directory_parts(
    config: &ClientConfig,
    charter: Option<&crate::charter::CharterState>,
    now: std::time::SystemTime,
) -> Result<DirectoryParts> {
    let Some(d) = crate::charter::effective_directory(config.directory.as_ref(), charter, now)? else {
        return Ok((None, None, None));
    };
    let log = d.log.as_ref().map(LogWitness::new).transpose()?;
    let lookup = build_lookup(&d)?;
    let pinned = config.directory.as_ref().map(|c| c.trust_anchor.as_str()).filter(|a| !a.trim().is_empty());
    let parent_ds = crate::charter::ParentDsCheck::new(charter, &lookup, pinned, now)?;
    Ok((Some(lookup), log, parent_ds))
}

fn build_lookup(d: &crate::config::DirectoryConfig) -> Result<Lookup> {
    let apex = hickory_proto::rr::Name::from_ascii(&d.apex)
        .map_err(|e| ClientError::DirectoryConfig(format!("apex {}: {e}", d.apex)))?;
    let anchor = TrustAnchor::parse(&d.trust_anchor).map_err(|e| ClientError::DirectoryConfig(e.to_string()))?;
    let mut cfg = LookupConfig::new(d.servers.clone(), apex, anchor);
    cfg.allow_insecure = d.allow_insecure;
    Lookup::new(cfg).map_err(|e| ClientError::DirectoryConfig(e.to_string()))
}

/// The directory's transparency log as the client checks answers against it.
struct LogWitness {
    url: String,
    key: TreeHeadVerifier,
}

impl LogWitness {
    fn new(c: &crate::config::TransparencyLogConfig) -> Result<LogWitness> {
        let key = TreeHeadVerifier::from_base64(c.key.trim())
            .map_err(|e| ClientError::DirectoryConfig(format!("transparency log key: {e}")))?;
        Ok(LogWitness { url: c.url.as_str().to_owned(), key })
    }
}

/// A client secret for the extension's session (`[0-9a-zA-Z]{32}`).
fn random_secret<R: Rng + ?Sized>(rng: &mut R) -> String {
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..32).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}
