//! `keys export --format knot`: the zone's live keys as PKCS#8 PEM files plus the `keymgr import-pem` commands
//! that put them into a Knot DNS 3.2 KASP database, so a secondary signing online (`mod-onlinesign`) signs with
//! exactly the directory's keys and the DS at the parent stays the same.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hickory_proto::rr::Name;

use crate::keys::{KeyError, zone_key};
use crate::storage::{KeyRole, KeyState, Storage};

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
    /// The arguments after `keymgr -c CONF ZONE import-pem FILE`.
    pub keymgr_args: Vec<String>,
    /// The key tag.
    pub key_tag: u16,
}

/// Writes every key in the DNSKEY RRset of `apex` (active, pre-published or inactive) to `dir` as `ksk-<tag>.pem` / `zsk-<tag>.pem`
/// (mode 0600) and `import.sh`, which runs `keymgr "$@" <apex> import-pem …` for each. Returns what it wrote.
pub async fn knot(storage: &dyn Storage, apex: &Name, dir: &Path) -> Result<Vec<Exported>, ExportError> {
    let apex_str = apex.to_ascii();
    let mut tx = storage.begin().await?;
    let keys = tx.keys().for_apex(&apex_str).await?;
    drop(tx);
    // What is in the DNSKEY RRset now: active keys, and (during a rollover) pre-published or inactive ZSKs. A staged
    // KSK (DS first) or a retiring one is not; export again at each rollover step.
    let live: Vec<_> = keys
        .iter()
        .filter(|k| matches!(k.state, KeyState::Active | KeyState::Published | KeyState::Inactive))
        .collect();
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
        let created = k.created_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut args = vec![
            format!("algorithm={}", loaded.algorithm().number()),
            format!("ksk={}", if k.role == KeyRole::Ksk { "yes" } else { "no" }),
            format!("zsk={}", if k.role == KeyRole::Zsk { "yes" } else { "no" }),
            format!("created={created}"),
            format!("publish={created}"),
        ];
        if k.state == KeyState::Active {
            args.push(format!("active={created}"));
        }
        out.push(Exported { file, keymgr_args: args, key_tag: loaded.key_tag() });
    }
    let mut script = format!(
        "#!/bin/sh\n# Imports the DNSSEC keys of {apex_str} into Knot DNS's KASP database. Run as Knot's user with \
         Knot's config,\n# before Knot loads the zone: sh import.sh -c /etc/knot/knot.conf\nset -e\ncd \"$(dirname \"$0\")\"\n"
    );
    for e in &out {
        script.push_str(&format!("keymgr \"$@\" {apex_str} import-pem {} {}\n", e.file, e.keymgr_args.join(" ")));
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
