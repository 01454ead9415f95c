//! Images over SMPP as links, when the operator enables it (`sms.mms.images_as_links`): the image a user sends
//! is kept under `sms.mms.link_dir` by a random 128-bit token and served at `GET /m/<token>` on `sms.listen`
//! (behind the operator's public `sms.mms.link_base_url`) for `sms.mms.link_ttl_hours`; the SMS carries the
//! link. Whoever has the link sees the image: that is the operator's choice, which is why it is off by
//! default (then images are refused with a notice).

use crate::config::MmsConfig;
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The MIME types kept (and served) as they are; anything else is served as `application/octet-stream`.
const SAFE_TYPES: [&str; 5] = ["image/jpeg", "image/png", "image/gif", "image/webp", "image/heic"];

/// A token: 32 lower-case hex digits.
fn token_ok(t: &str) -> bool {
    t.len() == 32 && t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn paths(dir: &Path, token: &str) -> (PathBuf, PathBuf) {
    (dir.join(token), dir.join(format!("{token}.type")))
}

/// Keeps `data` (of `mimetype`) under `dir`; returns the link to it.
pub(crate) fn store(
    config: &MmsConfig,
    rng: &mut impl RngCore,
    mimetype: Option<&str>,
    data: &[u8],
) -> std::io::Result<String> {
    let dir = Path::new(&config.link_dir);
    std::fs::create_dir_all(dir)?;
    let mut raw = [0u8; 16];
    rng.fill_bytes(&mut raw);
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let (file, kind) = paths(dir, &token);
    let mimetype = mimetype.filter(|m| SAFE_TYPES.contains(m)).unwrap_or("application/octet-stream");
    // The type first: a file without its type is never served.
    std::fs::write(&kind, mimetype)?;
    std::fs::write(&file, data)?;
    Ok(format!("{}/m/{token}", config.link_base_url.trim_end_matches('/')))
}

/// The image behind `token` and its type, while it has not expired at `now` (an expired one is removed).
pub(crate) fn load(config: &MmsConfig, token: &str, now: SystemTime) -> Option<(String, Vec<u8>)> {
    if !token_ok(token) {
        return None;
    }
    let (file, kind) = paths(Path::new(&config.link_dir), token);
    let modified = std::fs::metadata(&file).ok()?.modified().ok()?;
    let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
    if age > Duration::from_secs(config.link_ttl_hours * 3600) {
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&kind);
        return None;
    }
    let mimetype = std::fs::read_to_string(&kind).ok()?;
    Some((mimetype, std::fs::read(&file).ok()?))
}

/// Removes the expired images; returns how many.
pub(crate) fn sweep(config: &MmsConfig, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(&config.link_dir) else { return 0 };
    let ttl = Duration::from_secs(config.link_ttl_hours * 3600);
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !token_ok(&name) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| now.duration_since(t).unwrap_or(Duration::ZERO) > ttl);
        if old {
            let (file, kind) = paths(Path::new(&config.link_dir), &name);
            let _ = std::fs::remove_file(file);
            let _ = std::fs::remove_file(kind);
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn images_are_kept_by_an_unguessable_token_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let config = MmsConfig {
            images_as_links: true,
            link_base_url: "https://sms.example.net/".into(),
            link_dir: dir.path().display().to_string(),
            link_ttl_hours: 1,
            ..MmsConfig::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let link = store(&config, &mut rng, Some("image/png"), b"png bytes").unwrap();
        let token = link.strip_prefix("https://sms.example.net/m/").unwrap();
        // The files' own clock (the file system's), a second on.
        let now = std::fs::metadata(dir.path().join(token)).unwrap().modified().unwrap() + Duration::from_secs(1);
        assert!(token_ok(token), "{link}");
        assert_eq!(load(&config, token, now), Some(("image/png".to_owned(), b"png bytes".to_vec())));
        // Types that a browser could run are served as bytes.
        let other = store(&config, &mut rng, Some("text/html"), b"<script>").unwrap();
        let other = other.rsplit('/').next().unwrap();
        assert_eq!(load(&config, other, now).unwrap().0, "application/octet-stream");
        assert_eq!(load(&config, "../../etc/passwd", now), None);
        assert_eq!(load(&config, &"0".repeat(32), now), None);
        assert_eq!(load(&config, token, now + Duration::from_secs(7200)), None, "expired");
        assert_eq!(sweep(&config, now), 0);
        assert_eq!(sweep(&config, now + Duration::from_secs(7200)), 1, "the other one");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing left");
    }
}
