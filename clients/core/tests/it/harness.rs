//! Shared set-up: a Synapse, users registered through its admin API, clients signed in with their tokens.

use std::sync::Arc;
use std::time::Duration;
use tincan_client_core::{ClientConfig, IncomingMessage, SessionStore, TincanClient};
use tincan_testkit::{RegisteredUser, Synapse};

/// A signed-in client and its data dir.
pub struct User {
    pub client: TincanClient,
    pub account: RegisteredUser,
    pub dir: tempfile::TempDir,
}

impl User {
    /// Registers `localpart` on `hs` and signs a fresh client in with the token.
    pub async fn new(hs: &Synapse, localpart: &str) -> anyhow::Result<User> {
        User::with_store(hs, localpart, None).await
    }

    /// [`new`](Self::new), the session kept in `store` (`None`: the data dir's state file).
    pub async fn with_store(
        hs: &Synapse,
        localpart: &str,
        store: Option<Arc<dyn SessionStore>>,
    ) -> anyhow::Result<User> {
        User::signed_in(hs, localpart, store, &hs.url()).await
    }

    /// [`new`](Self::new), the client reaching `hs` at `homeserver_url` (a proxy in front of it).
    pub async fn through(hs: &Synapse, localpart: &str, homeserver_url: &str) -> anyhow::Result<User> {
        User::signed_in(hs, localpart, None, homeserver_url).await
    }

    async fn signed_in(
        hs: &Synapse,
        localpart: &str,
        store: Option<Arc<dyn SessionStore>>,
        homeserver_url: &str,
    ) -> anyhow::Result<User> {
        let account = hs.register_user(localpart, false).await?;
        let dir = tempfile::Builder::new().prefix("tincan-client-").tempdir()?;
        let mut client = TincanClient::open(config(dir.path(), store)).await?;
        client.login_with_token(homeserver_url, &account.user_id, &account.device_id, &account.access_token).await?;
        Ok(User { client, account, dir })
    }

    /// Stops the client and opens its data dir again in a new one (a restart).
    pub async fn restart(self) -> anyhow::Result<User> {
        self.restart_with(None).await
    }

    /// [`restart`](Self::restart), the session kept in `store` (`None`: the data dir's state file).
    pub async fn restart_with(self, store: Option<Arc<dyn SessionStore>>) -> anyhow::Result<User> {
        let User { client, account, dir } = self;
        drop(client);
        let client = TincanClient::open(config(dir.path(), store)).await?;
        Ok(User { client, account, dir })
    }
}

/// A data dir's config (no extension, no directory), the session kept in `store` (`None`: the state file).
pub fn config(dir: &std::path::Path, store: Option<Arc<dyn SessionStore>>) -> ClientConfig {
    let mut c = ClientConfig::new(dir);
    c.session_store = store;
    c
}

/// Waits for the first incoming message matching `pred`.
pub async fn wait_for(
    stream: impl futures::Stream<Item = IncomingMessage>,
    pred: impl Fn(&IncomingMessage) -> bool,
) -> anyhow::Result<IncomingMessage> {
    use futures::StreamExt;
    let mut stream = Box::pin(stream.filter(move |m| futures::future::ready(pred(m))));
    tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .map_err(|_| anyhow::anyhow!("no matching message within 60 s"))?
        .ok_or_else(|| anyhow::anyhow!("stream ended"))
}
