//! The charter's trust list: the extension works only with a directory the list names.
//!
//! Off unless `[charter] url` is set. Then, at start, the list is fetched and verified with the charter's root
//! (signature threshold, expiry, never older than the last good list, kept in `state_dir`), and the
//! configured directory (`[directory] url`, and `apex` and `log_key` when set) must be one of its directories,
//! else the extension does not start: a pinned log key the charter does not give for that directory is refused
//! like an unlisted directory, so a wrong or stale key cannot hide a directory's log from the extension's check. While serving, the list is refreshed every `refresh_secs`; when a newer list no
//! longer names the directory, or no valid list is left (the last good one expired), the extension stops with
//! an error (a supervisor restarting it meets the start check again).

use crate::config::ExtConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tincan_charter::{CharterClient, CharterError, TrustList};
use tincan_common::Clock;

/// `[charter]`: the charter's trust list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CharterConfig {
    /// The charter repository's base URL (`https://…/` or `file:///…/`); empty: the check is off.
    pub url: String,
    /// The charter's `root.json` (a file).
    pub root_file: String,
    /// Where the last good list and newer roots are kept.
    pub state_dir: String,
    /// Seconds between two refreshes of the list while serving.
    pub refresh_secs: u64,
}

impl Default for CharterConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            root_file: String::new(),
            state_dir: "tincan-ext-charter".into(),
            refresh_secs: 3600,
        }
    }
}

impl CharterConfig {
    /// Whether the check is on.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Config problems.
    pub fn problems(&self, directory_url: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled() {
            return p;
        }
        if url::Url::parse(&self.url).is_err() {
            p.push(format!("charter.url: {:?} is not a URL", self.url));
        }
        if self.root_file.is_empty() {
            p.push("charter.root_file: required when charter.url is set".into());
        }
        if directory_url.is_empty() {
            p.push("charter.url is set but directory.url is empty: there is no directory to check".into());
        }
        if self.refresh_secs == 0 {
            p.push("charter.refresh_secs: must be at least 1".into());
        }
        p
    }
}

/// Why the extension refuses to work with its directory.
#[derive(Debug, thiserror::Error)]
pub enum CharterCheckError {
    /// The list could not be fetched or verified, and there is no valid last good list.
    #[error("charter trust list: {0}")]
    List(#[from] CharterError),
    /// The root file could not be read.
    #[error("charter.root_file {path}: {source}")]
    Root {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configured directory is not on the list.
    #[error(
        "the directory {url} (apex {apex:?}, log key {log_key:?}, trust anchor pinned: {anchor_pinned}) is not on the charter's trust list (version {version}): refusing to work with it"
    )]
    NotListed {
        /// `directory.url`.
        url: String,
        /// `directory.apex`.
        apex: String,
        /// `directory.log_key`.
        log_key: String,
        /// Whether `directory.trust_anchor` is set (it must be vouched for by the listed DS set).
        anchor_pinned: bool,
        /// The list's version.
        version: u64,
    },
}

/// Whether the list names the configured directory: its API URL (trailing slash ignored) and, when the
/// config has them, its apex, its transparency log key, and a trust anchor the list's DS set vouches for
/// ([`anchor_vouched`]).
pub fn directory_listed(list: &TrustList, config: &ExtConfig) -> bool {
    let want = config.directory.url.trim_end_matches('/');
    let log_key = config.directory.log_key.trim();
    let anchor = config.directory.trust_anchor.trim();
    list.directories.iter().any(|d| {
        d.api_url.as_str().trim_end_matches('/') == want
            && (config.directory.apex.is_empty()
                || d.apex.trim_end_matches('.').eq_ignore_ascii_case(config.directory.apex.trim_end_matches('.')))
            && (log_key.is_empty() || d.log_key == log_key)
            && (anchor.is_empty() || anchor_vouched(anchor, &d.ds))
    })
}

/// Whether the charter's DS set `ds` vouches for every entry of the pinned trust anchor `pinned`
/// ([`TrustAnchor::not_vouched_by`](tincan_enum_lookup::TrustAnchor::not_vouched_by), as the client checks it):
/// a DS entry must be one of the listed DS records (key tag, algorithm, digest type and digest), a DNSKEY entry a
/// key one of them covers; both for the same zone. A pinned anchor naming a key the charter does not vouch for would
/// validate other providers' numbers against keys nobody on the list stands behind (a stale anchor after a
/// KSK roll, or a wrong one). An anchor that does not parse is vouched for by nothing. A pinned subset of the
/// list (the current DS alone while the list names both during a roll) is fine.
pub fn anchor_vouched(pinned: &str, ds: &[String]) -> bool {
    use tincan_enum_lookup::TrustAnchor;
    let (Ok(pinned), Ok(listed)) = (TrustAnchor::parse(pinned), TrustAnchor::parse(&ds.join("\n"))) else {
        return false;
    };
    pinned.not_vouched_by(&listed).is_empty()
}

/// The charter client of the config.
pub fn client(config: &ExtConfig) -> Result<CharterClient, CharterCheckError> {
    let c = &config.charter;
    let root =
        std::fs::read(&c.root_file).map_err(|source| CharterCheckError::Root { path: c.root_file.clone(), source })?;
    let url = url::Url::parse(&c.url).map_err(|e| CharterError::Fetch { url: c.url.clone(), reason: e.to_string() })?;
    Ok(CharterClient::new(url, root, &c.state_dir)?)
}

/// Refreshes the list (falling back to the last good one) and checks the directory is on it.
pub async fn check(client: &CharterClient, config: &ExtConfig, clock: &dyn Clock) -> Result<u64, CharterCheckError> {
    let (v, refused) = client.refresh_or_last_good(clock.now()).await?;
    if let Some(why) = refused {
        tracing::warn!(error = %why, version = v.list.version, "the charter's newest list was refused; using the last good one");
    }
    if !directory_listed(&v.list, config) {
        return Err(CharterCheckError::NotListed {
            url: config.directory.url.clone(),
            apex: config.directory.apex.clone(),
            log_key: config.directory.log_key.clone(),
            anchor_pinned: !config.directory.trust_anchor.trim().is_empty(),
            version: v.list.version,
        });
    }
    Ok(v.list.version)
}

/// Re-checks every `refresh_secs`; returns (an error) only when the directory is no longer acceptable.
pub async fn watch(client: CharterClient, config: ExtConfig, clock: std::sync::Arc<dyn Clock>) -> CharterCheckError {
    let every = Duration::from_secs(config.charter.refresh_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        match check(&client, &config, &*clock).await {
            Ok(version) => tracing::debug!(version, "the directory is on the charter's trust list"),
            Err(e) => return e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_charter::list::{ListInput, Service, TrustedDirectory, TrustedProvider};

    const LOG_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn list() -> TrustList {
        let directory = TrustedDirectory {
            id: "d".into(),
            apex: "e164.tincan.test.".into(),
            ds: vec![format!("e164.tincan.test. 3600 IN DS 1 15 2 {}", "00".repeat(32))],
            api_url: "http://127.0.0.1:1/".parse().unwrap(),
            log_key: LOG_KEY.into(),
            dns: vec![],
        };
        let provider = TrustedProvider {
            name: "Test".into(),
            homeservers: vec!["hs.test".into()],
            ext_url: "http://127.0.0.1:2/".parse().unwrap(),
            directory: "d".into(),
            provider_id: "test".into(),
            prefixes: vec!["+44".into()],
            services: vec![Service::Matrix],
        };
        let input = ListInput { directories: vec![directory], providers: vec![provider] };
        let expires = std::time::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        TrustList::new(input, 1, expires).unwrap()
    }

    fn config(url: &str, apex: &str, log_key: &str) -> ExtConfig {
        let mut c = ExtConfig::default();
        c.directory.url = url.into();
        c.directory.apex = apex.into();
        c.directory.log_key = log_key.into();
        c
    }

    #[test]
    fn a_pinned_log_key_must_be_the_one_the_charter_gives_for_the_directory() {
        let list = list();
        assert!(directory_listed(&list, &config("http://127.0.0.1:1", "", "")), "url alone");
        assert!(directory_listed(&list, &config("http://127.0.0.1:1/", "e164.tincan.test", LOG_KEY)));
        assert!(directory_listed(&list, &config("http://127.0.0.1:1/", "", &format!(" {LOG_KEY}\n"))), "trimmed");
        let other = "22qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        assert!(!directory_listed(&list, &config("http://127.0.0.1:1/", "", other)), "another log key");
        assert!(!directory_listed(&list, &config("http://127.0.0.1:1/", "other.test", LOG_KEY)), "another apex");
        assert!(!directory_listed(&list, &config("http://127.0.0.1:3/", "", LOG_KEY)), "another directory");
    }

    #[test]
    fn a_pinned_trust_anchor_must_be_vouched_for_by_the_charters_ds_set() {
        let (current, next, stranger) = ("9A".repeat(32), "7B".repeat(32), "5C".repeat(32));
        let ds = |tag: u16, digest: &str| format!("e164.tincan.test. 3600 IN DS {tag} 15 2 {digest}");
        let mut list = list();
        list.directories[0].ds = vec![ds(4711, &current), ds(4712, &next)];
        let pinned = |anchor: String| {
            let mut c = config("http://127.0.0.1:1/", "", "");
            c.directory.trust_anchor = anchor;
            directory_listed(&list, &c)
        };
        assert!(pinned(ds(4711, &current)), "the current DS alone (the list names both during a roll)");
        assert!(pinned(format!("{}\n{}", ds(4712, &next), ds(4711, &current))), "both, in another order");
        let clause = format!("trust-anchors {{ \"e164.tincan.test.\" static-ds 4711 15 2 \"{current}\"; }};");
        assert!(pinned(clause), "the same DS as a BIND clause");
        assert!(pinned(format!("E164.TINCAN.TEST. IN DS 4711 15 2 {}", current.to_lowercase())), "case and TTL");
        assert!(!pinned(ds(4713, &stranger)), "a DS the charter does not list");
        assert!(!pinned(format!("{}\n{}", ds(4711, &current), ds(4713, &stranger))), "one of them not listed");
        assert!(!pinned(ds(4711, &stranger)), "a listed tag with another digest");
        assert!(!pinned(format!("other.test. 3600 IN DS 4711 15 2 {current}")), "the same DS for another zone");
        assert!(!pinned("not an anchor".into()), "unparsable");
    }
}
