//! Debian tools the tests drive (`delv`, `ldns-verify-zone`, `knotd`, `sipp`…), with an error naming the
//! package to install when one is missing.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Debian package that ships each tool the tests use.
pub const PACKAGES: &[(&str, &str)] = &[
    ("delv", "bind9-dnsutils"),
    ("dig", "bind9-dnsutils"),
    ("nsupdate", "bind9-dnsutils"),
    ("dnssec-verify", "bind9-utils"),
    ("dnssec-signzone", "bind9-utils"),
    ("dnssec-keygen", "bind9-utils"),
    ("named", "bind9"),
    ("ldns-verify-zone", "ldnsutils"),
    ("ldns-walk", "ldnsutils"),
    ("ldns-signzone", "ldnsutils"),
    ("ldns-keygen", "ldnsutils"),
    ("unbound", "unbound"),
    ("unbound-host", "unbound-host"),
    ("knotd", "knot"),
    ("knotc", "knot"),
    ("keymgr", "knot"),
    ("kzonecheck", "knot"),
    ("kdig", "knot-dnsutils"),
    ("nsd", "nsd"),
    ("dnsperf", "dnsperf"),
    ("sipp", "sip-tester"),
    ("kamailio", "kamailio"),
    ("rtpengine", "rtpengine-daemon"),
    ("baresip", "baresip-core"),
];

/// The package that ships `tool`, if known.
pub fn package_of(tool: &str) -> Option<&'static str> {
    PACKAGES.iter().find(|(t, _)| *t == tool).map(|(_, p)| *p)
}

/// Finds `tool` on PATH (and in /usr/sbin, /sbin, where Debian puts daemons).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Finds `tool` or fails with a message naming the Debian package to install.
pub fn find(tool: &str) -> anyhow::Result<PathBuf> {
    match which(tool) {
        Some(p) => Ok(p),
        None => match package_of(tool) {
            Some(pkg) => bail!("`{tool}` is not installed: run `apt-get install {pkg}` (dev/test installs it)"),
            None => bail!("`{tool}` is not installed and no Debian package is known for it"),
        },
    }
}

/// Like [`find`], but panics with the same message (for tests).
pub fn require(tool: &str) -> PathBuf {
    find(tool).unwrap_or_else(|e| panic!("{e}"))
}

/// A [`Command`] for `tool`, panicking with the package name when it is missing.
pub fn command(tool: &str) -> Command {
    Command::new(require(tool))
}

/// Runs a command to completion and returns its output, with the command line in any error.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let line = format!("{cmd:?}");
    cmd.output().with_context(|| format!("running {line}"))
}

/// `delv`'s output (stdout and stderr together) for `name`'s `rtype` at `server`, validated from `root` down
/// with the trust anchors in `anchor` (a BIND `trust-anchors` clause): `; fully validated` when they validate.
/// delv exits 0 either way, so callers read the text.
pub fn delv(server: SocketAddr, anchor: &Path, root: &str, name: &str, rtype: &str) -> anyhow::Result<String> {
    let out = run(command("delv")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "-a"])
        .arg(anchor)
        .args([&format!("+root={root}"), name, rtype]))?;
    Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Runs a command and fails unless it exits 0; returns stdout as text.
pub fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let line = format!("{cmd:?}");
    let out = run(cmd)?;
    if !out.status.success() {
        bail!(
            "{line} exited with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_its_package() {
        let err = find("ldns-walk-does-not-exist").unwrap_err().to_string();
        assert!(err.contains("no Debian package"), "{err}");
        // A known tool that is surely missing under an empty PATH still names its package.
        let known = PACKAGES.iter().find(|(t, _)| which(t).is_none());
        if let Some((tool, pkg)) = known {
            let err = find(tool).unwrap_err().to_string();
            assert!(err.contains(pkg), "{err}");
        }
    }
}
