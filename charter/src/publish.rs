//! Publishing: putting a root and a list into the directory a web server serves, after the checks a client
//! will make (so a bad list is refused here, before anyone fetches it).
//!
//! The directory holds `N.root.json` for every root version (clients follow the chain from the root they ship),
//! `root.json` (the newest) and `trust-list.json`.

use crate::client::{Verified, verify_list, write_atomic};
use crate::error::CharterError;
use crate::signed::{Envelope, Root};
use crate::{LIST_FILE, ROOT_FILE};
use std::path::Path;
use std::time::SystemTime;

/// Checks and publishes. The root must be self-signed by its root threshold and, from version 2 on, follow
/// the previous root published in `dir` (signed by its root threshold too). The list must verify against
/// the root at `now`, and its version must be above the published one's (or equal with the same content).
pub fn publish(dir: &Path, root_bytes: &[u8], list_bytes: &[u8], now: SystemTime) -> Result<Verified, CharterError> {
    let root_env = Envelope::parse(root_bytes, "root")?;
    let root = Root::from_envelope(&root_env)?;
    if root.expires <= now {
        return Err(CharterError::Expired {
            what: "root",
            version: root.version,
            expires: crate::timefmt::format(root.expires),
        });
    }
    let versioned = format!("{}.{ROOT_FILE}", root.version);
    match std::fs::read(dir.join(&versioned)) {
        Ok(existing) => {
            let existing = Envelope::parse(&existing, "root")?;
            if existing.signed.get() != root_env.signed.get() {
                return Err(CharterError::SameVersionDifferentContent { what: "root", version: root.version });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if root.version > 1 {
                let prev_name = format!("{}.{ROOT_FILE}", root.version - 1);
                let prev_path = dir.join(&prev_name);
                let prev = std::fs::read(&prev_path).map_err(CharterError::io(&prev_path))?;
                let prev = Root::from_envelope(&Envelope::parse(&prev, "root")?)?;
                prev.verify_next(&root_env)?;
            }
        }
        Err(e) => return Err(CharterError::Io { path: dir.join(versioned), source: e }),
    }
    if let Ok(current) = std::fs::read(dir.join(ROOT_FILE)) {
        let current: Root = Envelope::parse(&current, "root")?.body("root")?;
        if current.version > root.version {
            return Err(CharterError::Rollback { what: "root", offered: root.version, trusted: current.version });
        }
    }
    let published = match std::fs::read(dir.join(LIST_FILE)) {
        Ok(b) => Some(Envelope::parse(&b, "trust list")?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(CharterError::Io { path: dir.join(LIST_FILE), source: e }),
    };
    let verified = verify_list(&root, list_bytes, now, published.as_ref())?;
    let root_bytes = root_env.to_bytes();
    write_atomic(dir, &versioned, &root_bytes)?;
    write_atomic(dir, ROOT_FILE, &root_bytes)?;
    write_atomic(dir, LIST_FILE, list_bytes)?;
    Ok(verified)
}
