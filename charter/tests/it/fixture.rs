//! A charter with keys, a served repository (loopback HTTP) and list builders.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tincan_charter::keys::SecretKey;
use tincan_charter::list::{ListInput, Service, TrustList, TrustedDirectory, TrustedProvider};
use tincan_charter::signed::{Envelope, Root};

/// A fixed "now" for verification (2033-05-18); files expire relative to it.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

pub fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// Serves the files of a directory, which a test may switch (to replay an old repository).
pub struct Server {
    pub addr: SocketAddr,
    dir: Arc<RwLock<PathBuf>>,
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        let shared = Arc::new(RwLock::new(dir.to_owned()));
        let state = shared.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let dir = state.read().unwrap().clone();
            async move {
                let name = uri.path().strip_prefix("/charter/").unwrap_or("/");
                if name.is_empty() || name.contains("..") || name.contains('/') {
                    return Err(axum::http::StatusCode::NOT_FOUND);
                }
                std::fs::read(dir.join(name)).map_err(|_| axum::http::StatusCode::NOT_FOUND)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, dir: shared }
    }

    pub fn url(&self) -> url::Url {
        format!("http://{}/charter/", self.addr).parse().unwrap()
    }

    /// Serves another directory from now on.
    pub fn serve(&self, dir: &Path) {
        *self.dir.write().unwrap() = dir.to_owned();
    }
}

/// The charter: one root key, three list keys with a threshold of two.
pub struct Charter {
    pub root_key: SecretKey,
    pub list_keys: [SecretKey; 3],
    pub root: Envelope,
}

impl Charter {
    pub fn new() -> Charter {
        let root_key = SecretKey::generate_os();
        let list_keys = [SecretKey::generate_os(), SecretKey::generate_os(), SecretKey::generate_os()];
        let pubs: Vec<_> = list_keys.iter().map(SecretKey::public).collect();
        let root = Root::new(1, now() + days(365), &[root_key.public()], 1, &pubs, 2).unwrap();
        let mut env = Envelope::new(&root);
        env.sign(&root_key);
        Charter { root_key, list_keys, root: env }
    }

    pub fn root_bytes(&self) -> Vec<u8> {
        self.root.to_bytes()
    }

    /// A list with these providers (by name; homeserver `<name>.test`), signed by the given list keys.
    pub fn list(&self, version: u64, expires: SystemTime, providers: &[&str], signers: &[usize]) -> Vec<u8> {
        let list = TrustList::new(input(providers), version, expires).unwrap();
        let mut env = Envelope::new(&list);
        for i in signers {
            env.sign(&self.list_keys[*i]);
        }
        env.to_bytes()
    }
}

pub fn directory() -> TrustedDirectory {
    TrustedDirectory {
        id: "main".into(),
        apex: "e164.tincan.test.".into(),
        ds: vec![
            "e164.tincan.test. 3600 IN DS 12345 15 2 0000000000000000000000000000000000000000000000000000000000000000"
                .into(),
        ],
        api_url: "http://127.0.0.1:1/".parse().unwrap(),
        log_key: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
        dns: vec![],
    }
}

pub fn provider(name: &str) -> TrustedProvider {
    TrustedProvider {
        name: name.into(),
        homeservers: vec![format!("{name}.test")],
        ext_url: format!("http://{name}.test/").parse().unwrap(),
        directory: "main".into(),
        provider_id: name.into(),
        prefixes: vec!["+44".into()],
        services: vec![Service::Matrix, Service::Sms],
    }
}

pub fn input(providers: &[&str]) -> ListInput {
    ListInput { directories: vec![directory()], providers: providers.iter().map(|p| provider(p)).collect() }
}

/// Writes a repository's files (root as 1.root.json and root.json, the list) into `dir`, bypassing the
/// publisher's checks (what a compromised or stale mirror could serve).
pub fn write_repo(dir: &Path, root: &[u8], list: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("1.root.json"), root).unwrap();
    std::fs::write(dir.join("root.json"), root).unwrap();
    std::fs::write(dir.join("trust-list.json"), list).unwrap();
}
