//! The charter's repository for tests: one key for everything, its root, and the signed trust list it serves
//! over loopback HTTP (`1.root.json`, `trust-list.json`). Shared with the CLI's tests (`#[path]`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tincan_charter::keys::SecretKey;
use tincan_charter::list::{ListInput, TrustList};
use tincan_charter::signed::{Envelope, Root};
use tincan_client_core::CharterConfig;
use tincan_common::Clock as _;

/// The charter: one key for everything, its root, and the list it serves over HTTP.
pub struct Charter {
    key: SecretKey,
    root: Vec<u8>,
    list: Arc<RwLock<Vec<u8>>>,
    addr: SocketAddr,
}

impl Charter {
    /// Serves the root (valid a day) and, once published, the list.
    pub async fn start() -> Charter {
        let key = SecretKey::generate_os();
        let expires = tincan_common::SystemClock.now() + Duration::from_secs(86_400);
        let root = Root::new(1, expires, &[key.public()], 1, &[key.public()], 1).unwrap();
        let mut env = Envelope::new(&root);
        env.sign(&key);
        let root = env.to_bytes();
        let list = Arc::new(RwLock::new(Vec::new()));
        let (served_root, served_list) = (root.clone(), list.clone());
        let app = axum::Router::new()
            .route("/charter/1.root.json", axum::routing::get(move || async move { served_root }))
            .route(
                "/charter/trust-list.json",
                axum::routing::get(move || async move { served_list.read().unwrap().clone() }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Charter { key, root, list, addr }
    }

    /// The repository's base URL (`tincan --charter-url`).
    pub fn url(&self) -> String {
        format!("http://{}/charter/", self.addr)
    }

    /// The root the client trusts (`tincan --charter-root`'s file content).
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// The client core's charter configuration.
    pub fn config(&self) -> CharterConfig {
        CharterConfig { url: self.url().parse().unwrap(), root: self.root.clone() }
    }

    /// Signs and serves `input` as list `version`, valid for an hour.
    pub fn publish_list(&self, input: ListInput, version: u64) {
        let expires = tincan_common::SystemClock.now() + Duration::from_secs(3600);
        self.sign_and_serve(&TrustList::new(input, version, expires).unwrap());
    }

    /// Signs and serves `input` as list `version` with every directory's DS records replaced by `ds` after the
    /// list was checked: what a charter signer that does not read DS records as clients do (an older one, or a
    /// faulty one) would publish.
    pub fn publish_list_with_unchecked_ds(&self, input: ListInput, ds: Vec<String>, version: u64) {
        let expires = tincan_common::SystemClock.now() + Duration::from_secs(3600);
        let mut list = TrustList::new(input, version, expires).unwrap();
        for d in &mut list.directories {
            d.ds = ds.clone();
        }
        self.sign_and_serve(&list);
    }

    fn sign_and_serve(&self, list: &TrustList) {
        let mut env = Envelope::new(list);
        env.sign(&self.key);
        *self.list.write().unwrap() = env.to_bytes();
    }
}
