//! Fetching and verifying the trust list, keeping the last good one.
//!
//! [`CharterClient::refresh`] starts from the newest root it trusts (the one shipped with the program, or a
//! later one it reached before and kept in its state dir), follows `N+1.root.json` while the repository has
//! one (each signed by the threshold of the old and of the new root keys), then fetches `trust-list.json` and
//! accepts it only if it carries the list role's threshold of signatures, is not expired, and its version is
//! not below the last good list's (the same version only with the same content). An accepted list replaces
//! the last good one in the state dir; a refused one changes nothing there. [`CharterClient::last_good`]
//! re-verifies the kept list (signatures and expiry) without the network.

use crate::error::CharterError;
use crate::list::TrustList;
use crate::signed::{Envelope, RoleName, Root};
use crate::{LIST_FILE, ROOT_FILE};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use url::Url;

/// The largest root or list fetched (an endless response is cut here).
pub const MAX_FILE_SIZE: usize = 1 << 20;
/// How many root versions one refresh follows at most.
pub const MAX_ROOT_UPDATES: u64 = 64;

/// A list that passed every check, with what it was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The list.
    pub list: TrustList,
    /// The root version that verified it.
    pub root_version: u64,
}

/// Verifies a trust-list file against a trusted root, at `now`, given the last good list (if any).
pub fn verify_list(
    root: &Root,
    bytes: &[u8],
    now: SystemTime,
    last_good: Option<&Envelope>,
) -> Result<Verified, CharterError> {
    let env = Envelope::parse(bytes, "trust list")?;
    root.verify(RoleName::List, &env)?;
    let list: TrustList = env.body("trust list")?;
    list.validate()?;
    if let Some(prev) = last_good
        && let Ok(prev_list) = prev.body::<TrustList>("trust list")
    {
        if list.version < prev_list.version {
            return Err(CharterError::Rollback {
                what: "trust list",
                offered: list.version,
                trusted: prev_list.version,
            });
        }
        if list.version == prev_list.version && env.signed.get() != prev.signed.get() {
            return Err(CharterError::SameVersionDifferentContent { what: "trust list", version: list.version });
        }
    }
    if list.expires <= now {
        return Err(CharterError::Expired {
            what: "trust list",
            version: list.version,
            expires: crate::timefmt::format(list.expires),
        });
    }
    Ok(Verified { list, root_version: root.version })
}

/// Fetches, verifies and keeps the charter's trust list.
#[derive(Debug, Clone)]
pub struct CharterClient {
    base: Url,
    shipped_root: Vec<u8>,
    state_dir: PathBuf,
    http: reqwest::Client,
}

impl CharterClient {
    /// A client of the charter repository at `base` (`https://…/` or `file:///…/`), trusting `shipped_root`
    /// (the `root.json` shipped with the program), keeping its state in `state_dir` (created if missing).
    pub fn new(base: Url, shipped_root: Vec<u8>, state_dir: impl Into<PathBuf>) -> Result<Self, CharterError> {
        let base = if base.path().ends_with('/') {
            base
        } else {
            let mut b = base;
            let p = format!("{}/", b.path());
            b.set_path(&p);
            b
        };
        // The shipped root must at least be a well-formed, self-signed root.
        Root::from_envelope(&Envelope::parse(&shipped_root, "root")?)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| CharterError::Fetch { url: base.to_string(), reason: e.to_string() })?;
        Ok(CharterClient { base, shipped_root, state_dir: state_dir.into(), http })
    }

    /// The repository's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The newest root trusted so far: the kept one if it is newer than the shipped one.
    pub fn trusted_root(&self) -> Result<Root, CharterError> {
        let shipped = Root::from_envelope(&Envelope::parse(&self.shipped_root, "root")?)?;
        let kept_path = self.state_dir.join(ROOT_FILE);
        let kept = match std::fs::read(&kept_path) {
            Ok(b) => Some(Root::from_envelope(&Envelope::parse(&b, "root")?)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(CharterError::Io { path: kept_path, source: e }),
        };
        Ok(match kept {
            Some(k) if k.version > shipped.version => k,
            _ => shipped,
        })
    }

    fn kept_list(&self) -> Result<Option<Envelope>, CharterError> {
        let path = self.state_dir.join(LIST_FILE);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(Envelope::parse(&b, "trust list")?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CharterError::Io { path, source: e }),
        }
    }

    /// The last good list, re-verified (signatures against the trusted root, expiry at `now`).
    pub fn last_good(&self, now: SystemTime) -> Result<Verified, CharterError> {
        let root = self.trusted_root()?;
        let path = self.state_dir.join(LIST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CharterError::NoList(format!("no trust list fetched yet (from {})", self.base)));
            }
            Err(e) => return Err(CharterError::Io { path, source: e }),
        };
        verify_list(&root, &bytes, now, None)
    }

    /// Fetches the newest roots and the list, verifies them, and keeps the list as the last good one.
    /// On any error the last good list is left as it was.
    pub async fn refresh(&self, now: SystemTime) -> Result<Verified, CharterError> {
        let mut root = self.trusted_root()?;
        let start = root.version;
        while root.version < start + MAX_ROOT_UPDATES {
            let name = format!("{}.{ROOT_FILE}", root.version + 1);
            let Some(bytes) = self.fetch(&name, true).await? else { break };
            let next = root.verify_next(&Envelope::parse(&bytes, "root")?)?;
            write_atomic(&self.state_dir, ROOT_FILE, &bytes)?;
            root = next;
        }
        if root.expires <= now {
            return Err(CharterError::Expired {
                what: "root",
                version: root.version,
                expires: crate::timefmt::format(root.expires),
            });
        }
        let bytes = self.fetch(LIST_FILE, false).await?.unwrap_or_default();
        let last = self.kept_list()?;
        let verified = verify_list(&root, &bytes, now, last.as_ref())?;
        write_atomic(&self.state_dir, LIST_FILE, &bytes)?;
        Ok(verified)
    }

    /// Refreshes; when that fails, falls back to the last good list (if still valid) and returns the refresh
    /// error beside it, so the caller can report it.
    pub async fn refresh_or_last_good(
        &self,
        now: SystemTime,
    ) -> Result<(Verified, Option<CharterError>), CharterError> {
        match self.refresh(now).await {
            Ok(v) => Ok((v, None)),
            Err(e) => match self.last_good(now) {
                Ok(v) => Ok((v, Some(e))),
                Err(_) => Err(e),
            },
        }
    }

    /// Fetches `name` under the base; `Ok(None)` for a missing file when `missing_ok`.
    async fn fetch(&self, name: &str, missing_ok: bool) -> Result<Option<Vec<u8>>, CharterError> {
        let url = self
            .base
            .join(name)
            .map_err(|e| CharterError::Fetch { url: format!("{}{name}", self.base), reason: e.to_string() })?;
        let err = |reason: String| CharterError::Fetch { url: url.to_string(), reason };
        if url.scheme() == "file" {
            let path = url.to_file_path().map_err(|()| err("not a local path".into()))?;
            return match std::fs::read(&path) {
                Ok(b) if b.len() > MAX_FILE_SIZE => {
                    Err(CharterError::TooLarge { url: url.to_string(), limit: MAX_FILE_SIZE })
                }
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_ok => Ok(None),
                Err(e) => Err(err(e.to_string())),
            };
        }
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(err(format!("unsupported scheme {:?}", url.scheme())));
        }
        let mut resp = self.http.get(url.clone()).send().await.map_err(|e| err(e.to_string()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND && missing_ok {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > MAX_FILE_SIZE {
                return Err(CharterError::TooLarge { url: url.to_string(), limit: MAX_FILE_SIZE });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// Writes `dir/name` through a temporary file and a rename, so a reader never sees half a file.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CharterError> {
    std::fs::create_dir_all(dir).map_err(CharterError::io(dir))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    std::fs::write(&tmp, bytes).map_err(CharterError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(CharterError::io(&path))
}
