//! `keys export --format knot`: the zone's live keys as PKCS#8 PEM files plus the `keymgr` commands that put them
//! into a Knot DNS 3.2 KASP database with the rollover schedule's timers (and delete the keys that left the DNSKEY
//! set for good), so a secondary signing online (`mod-onlinesign`) signs with exactly the directory's keys and the
//! DS at the parent stays the same. Run again at every rollover step, then `knotc reload`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hickory_proto::rr::Name;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::keys::{KeyError, zone_key};
use crate::rollover::Policy;
use crate::storage::{DnssecKey, KeyRole, KeyState, Storage};

/// Why the export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or loading the keys failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The zone has no live key.
    #[error("{0} has no live key: run `tincan-directory keys generate`")]
    NoKeys(String),
}

/// One exported key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The PEM file (inside the export directory).
    pub file: String,
    /// The arguments after `keymgr -c CONF ZONE import-pem FILE`: algorithm, role and the timers.
    pub keymgr_args: Vec<String>,
    /// The timers alone (`publish=… active=… retire=… remove=…`, Unix seconds), for `keymgr … set TAG`.
    pub timers: Vec<String>,
    /// The key tag.
    pub key_tag: u16,
}

/// When Knot should publish, activate, retire and remove a key (Unix seconds; `None`: not planned), from its
/// state, the other keys' states and the rollover schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timers {
    publish: u64,
    active: u64,
    retire: Option<u64>,
    remove: Option<u64>,
}

impl Timers {
    fn of(k: &DnssecKey, keys: &[DnssecKey], policy: &Policy) -> Timers {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let (created, since) = (secs(k.created_at), secs(k.changed_at));
        // The time the key of `role` now in `state` takes over (its next event), if any.
        let takes_over = |role: KeyRole, state: KeyState| {
            keys.iter()
                .find(|o| o.role == role && o.state == state)
                .and_then(|o| policy.next_event(o))
                .map(|(_, at)| secs(at))
        };
        let zsk_retire = policy.zsk_retire_wait.as_secs();
        match (k.role, k.state) {
            // Pre-publication: in DNSKEY now, signing once the wait is over; the active one retires then.
            (KeyRole::Zsk, KeyState::Published) => {
                Timers { publish: since, active: since + policy.zsk_publish_wait.as_secs(), retire: None, remove: None }
            }
            (KeyRole::Zsk, KeyState::Active) => {
                let retire = takes_over(KeyRole::Zsk, KeyState::Published);
                Timers { publish: created, active: since, retire, remove: retire.map(|r| r + zsk_retire) }
            }
            (KeyRole::Zsk, _) => {
                Timers { publish: created, active: created, retire: Some(since), remove: Some(since + zsk_retire) }
            }
            // Double-DS: a KSK enters DNSKEY when it becomes active, and the old one leaves at that moment (the
            // active KSK's `retire` and `remove` are the staged one's `publish` and `active`).
            (KeyRole::Ksk, KeyState::Staged) => {
                let at = since + policy.ksk_ds_wait.as_secs();
                Timers { publish: at, active: at, retire: None, remove: None }
            }
            (KeyRole::Ksk, KeyState::Active) => {
                let retire = takes_over(KeyRole::Ksk, KeyState::Staged);
                Timers { publish: since, active: since, retire, remove: retire }
            }
            // Retiring: out of DNSKEY since it changed state (its DS stays at the parent a while).
            (KeyRole::Ksk, _) => Timers { publish: created, active: created, retire: Some(since), remove: Some(since) },
        }
    }

    fn args(&self) -> Vec<String> {
        let mut out = vec![format!("publish={}", self.publish), format!("active={}", self.active)];
        out.extend(self.retire.map(|t| format!("retire={t}")));
        out.extend(self.remove.map(|t| format!("remove={t}")));
        out
    }
}

/// Writes every key in the DNSKEY RRset of `apex` (active, pre-published or inactive) and a staged KSK (whose DS
/// the parent publishes before it enters the DNSKEY RRset) to `dir` as `ksk-<tag>.pem` / `zsk-<tag>.pem` (mode
/// 0600), with `import.sh`, which for each key updates the timers of the key if Knot holds it already
/// (`keymgr … set <tag> …`) or imports it (`keymgr … import-pem …`), and deletes the keys that left the DNSKEY
/// RRset for good. The timers follow `policy`. Knot 3.2's online signing (with `manual: on`) takes the keys'
/// states when it loads them and does not act on a timer passing, so the export is run again at every step,
/// followed by `knotc reload`; with the staged KSK exported too, Knot's keys and timers are consistent whenever it
/// loads them (the active KSK is retired at the moment the staged one is published). Returns what it wrote.
pub async fn knot(
    storage: &dyn Storage,
    apex: &Name,
    policy: &Policy,
    dir: &Path,
) -> Result<Vec<Exported>, ExportError> {
    let apex_str = apex.to_ascii();
    let mut tx = storage.begin().await?;
    let keys = tx.keys().for_apex(&apex_str).await?;
    drop(tx);
    // What is in the DNSKEY RRset now: active keys, and (during a rollover) pre-published or inactive ZSKs; and a
    // staged KSK (DS first), with timers that publish it when it replaces the active one. A retiring KSK or a
    // retired key is no longer in DNSKEY and never will be again: it is deleted from Knot.
    let exported = |k: &&DnssecKey| {
        matches!(k.state, KeyState::Active | KeyState::Published | KeyState::Inactive | KeyState::Staged)
    };
    let live: Vec<_> = keys.iter().filter(exported).collect();
    if live.is_empty() {
        return Err(ExportError::NoKeys(apex_str));
    }
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Write { path: dir.to_owned(), source })?;
    let mut out = Vec::new();
    for k in live {
        let loaded = zone_key(k)?;
        let role = match k.role {
            KeyRole::Ksk => "ksk",
            KeyRole::Zsk => "zsk",
        };
        let file = format!("{role}-{}.pem", loaded.key_tag());
        write_private(&dir.join(&file), &pem(&k.pkcs8))?;
        let created = k.created_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let timers = Timers::of(k, &keys, policy).args();
        let mut args = vec![
            format!("algorithm={}", loaded.algorithm().number()),
            format!("ksk={}", if k.role == KeyRole::Ksk { "yes" } else { "no" }),
            format!("zsk={}", if k.role == KeyRole::Zsk { "yes" } else { "no" }),
            format!("created={created}"),
        ];
        args.extend(timers.iter().cloned());
        out.push(Exported { file, keymgr_args: args, timers, key_tag: loaded.key_tag() });
    }
    let mut script = format!(
        "#!/bin/sh\n# Imports the DNSSEC keys of {apex_str} into Knot DNS's KASP database, or updates the timers of those it \
         holds.\n# Run as Knot's user with Knot's config: sh import.sh -c /etc/knot/knot.conf\n# then, if knotd runs: \
         knotc -c /etc/knot/knot.conf reload (mod-onlinesign loads its keys when the module starts)\nset -e\ncd \
         \"$(dirname \"$0\")\"\n"
    );
    for e in &out {
        script.push_str(&format!(
            "keymgr \"$@\" {apex_str} set {} {} >/dev/null 2>&1 || keymgr \"$@\" {apex_str} import-pem {} {}\n",
            e.key_tag,
            e.timers.join(" "),
            e.file,
            e.keymgr_args.join(" ")
        ));
    }
    for k in keys.iter().filter(|k| matches!(k.state, KeyState::Retiring | KeyState::Retired)) {
        let tag = zone_key(k)?.key_tag();
        script.push_str(&format!("keymgr \"$@\" {apex_str} delete {tag} >/dev/null 2>&1 || true\n"));
    }
    let path = dir.join("import.sh");
    std::fs::write(&path, script).map_err(|source| ExportError::Write { path, source })?;
    Ok(out)
}
fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str("-----END PRIVATE KEY-----\n");
    s
}

fn write_private(path: &Path, text: &str) -> Result<(), ExportError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let err = |source| ExportError::Write { path: path.to_owned(), source };
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollover::RolloverConfig;
    use crate::storage::KeyAlgorithm;
    use std::time::Duration;

    fn key(id: i64, role: KeyRole, state: KeyState, created: u64, changed: u64) -> DnssecKey {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        DnssecKey {
            id,
            apex: "e164.tincan.test.".into(),
            role,
            algorithm: KeyAlgorithm::EcdsaP256,
            pkcs8: Vec::new(),
            state,
            created_at: at(created),
            changed_at: at(changed),
        }
    }

    fn timers(keys: &[DnssecKey], policy: &Policy) -> Vec<Vec<String>> {
        keys.iter().map(|k| Timers::of(k, keys, policy).args()).collect()
    }

    /// Parent DS TTL 120 s, DNSKEY TTL 60 s, largest TTL 60 s, propagation 10 s.
    fn policy() -> Policy {
        let config = RolloverConfig { propagation_delay: 10, parent_ds_ttl: 120, ..RolloverConfig::default() };
        Policy::new(&config, 60, 60)
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn ksk_timers_follow_the_double_ds_timeline() {
        let p = policy();
        // The active KSK since 1000; a new one staged at 2000 replaces it at 2000 + 120 + 10.
        let staged =
            [key(1, KeyRole::Ksk, KeyState::Active, 1000, 1000), key(2, KeyRole::Ksk, KeyState::Staged, 2000, 2000)];
        assert_eq!(
            timers(&staged, &p),
            [args("publish=1000 active=1000 retire=2130 remove=2130"), args("publish=2130 active=2130")],
            "the old KSK leaves the DNSKEY set the moment the new one enters it"
        );
        // At 2130 the new KSK is active; the old one is retiring (not in DNSKEY; not exported).
        let swapped =
            [key(1, KeyRole::Ksk, KeyState::Retiring, 1000, 2130), key(2, KeyRole::Ksk, KeyState::Active, 2000, 2130)];
        assert_eq!(timers(&swapped, &p)[1], args("publish=2130 active=2130"));
        // Without a rollover under way, nothing is planned.
        let alone = [key(1, KeyRole::Ksk, KeyState::Active, 1000, 1000)];
        assert_eq!(timers(&alone, &p), [args("publish=1000 active=1000")]);
    }

    #[test]
    fn zsk_timers_follow_the_pre_publication_timeline() {
        let p = policy();
        // Published at 2000: signs at 2000 + 60 + 10; the old one retires then and leaves 70 s later.
        let published =
            [key(1, KeyRole::Zsk, KeyState::Active, 1000, 1000), key(2, KeyRole::Zsk, KeyState::Published, 2000, 2000)];
        assert_eq!(
            timers(&published, &p),
            [args("publish=1000 active=1000 retire=2070 remove=2140"), args("publish=2000 active=2070")]
        );
        let active =
            [key(1, KeyRole::Zsk, KeyState::Inactive, 1000, 2070), key(2, KeyRole::Zsk, KeyState::Active, 2000, 2070)];
        assert_eq!(
            timers(&active, &p),
            [args("publish=1000 active=1000 retire=2070 remove=2140"), args("publish=2000 active=2070")]
        );
    }
}
