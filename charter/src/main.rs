//! `tincan-charter`: the charter's offline tool. Makes keys, writes and signs roots and trust lists, verifies
//! them, and publishes them into the directory a web server serves. See `charter/README.md`.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use tincan_charter::keys::{self, SecretKey};
use tincan_charter::list::{ListInput, TrustList};
use tincan_charter::signed::{Envelope, LIST_TYPE, ROOT_TYPE, RoleName, Root};
use tincan_charter::{CharterClient, publish};
use tincan_common::{Clock as _, SystemClock};

/// The charter's trust list: keys, signing, publishing, checking.
#[derive(Debug, Parser)]
#[command(name = "tincan-charter", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Roots (who signs what, how many must).
    Root {
        #[command(subcommand)]
        command: RootCommand,
    },
    /// Trust lists.
    List {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Add your signature to a root or list file (in place). Signing a list needs `--root`; signing a new
    /// root version needs `--root` with the previous root when your key is only in the previous one.
    Sign {
        /// Your secret key file (mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// The root whose roles the key must belong to (for a list: the root clients trust).
        #[arg(long)]
        root: Option<PathBuf>,
        /// The file to sign.
        file: PathBuf,
    },
    /// Check a root or list file: signatures against the thresholds, expiry, and (lists) content.
    Verify {
        /// The root to check a list against, or the previous root to check a new root against.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The file.
        file: PathBuf,
    },
    /// Check and copy a root and a list into the served directory (`N.root.json`, `root.json`,
    /// `trust-list.json`). Refuses anything a client would refuse, and a list version not above the
    /// published one.
    Publish {
        /// The root (self-signed by its root threshold; from version 2 on, also by the previous root's).
        #[arg(long)]
        root: PathBuf,
        /// The signed list.
        #[arg(long)]
        list: PathBuf,
        /// The directory the web server serves.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Fetch and verify the published list as a client does, printing it as JSON.
    Fetch {
        /// The root shipped to clients.
        #[arg(long)]
        root: PathBuf,
        /// The repository's base URL (`https://…/` or `file:///…/`).
        #[arg(long)]
        url: url::Url,
        /// Where to keep the last good list and newer roots (like a client's data dir).
        #[arg(long)]
        state: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Make a key: `FILE` (secret, mode 0600, never overwritten) and `FILE.pub`.
    New {
        /// The secret key file to create.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RootCommand {
    /// Write an unsigned root; then each root key holder runs `sign`.
    New {
        /// A public key (`*.pub`) of the root role; repeat.
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        /// Signatures a root needs.
        #[arg(long, default_value_t = 1)]
        root_threshold: u32,
        /// A public key of the list role; repeat.
        #[arg(long = "list-key", required = true)]
        list_keys: Vec<PathBuf>,
        /// Signatures a list needs.
        #[arg(long, default_value_t = 1)]
        list_threshold: u32,
        /// Expiry: RFC 3339, or a duration from now (`365d`, `12h`).
        #[arg(long, default_value = "365d")]
        expires: String,
        /// The current root, when this one replaces it (the version becomes its version + 1).
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Where to write it (not overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ListCommand {
    /// Write an unsigned list from a TOML file of `[[directory]]` and `[[provider]]` tables; then each list
    /// key holder runs `sign`.
    New {
        /// The TOML input.
        #[arg(long)]
        input: PathBuf,
        /// Expiry: RFC 3339, or a duration from now (`30d`, `12h`).
        #[arg(long, default_value = "30d")]
        expires: String,
        /// The list published now: the new version is its version + 1.
        #[arg(long, conflicts_with = "version")]
        previous: Option<PathBuf>,
        /// The version, when there is no previous list.
        #[arg(long)]
        version: Option<u64>,
        /// Where to write it (not overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tincan-charter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> SystemTime {
    SystemClock.now()
}

/// `2030-01-01T00:00:00Z`, `30d`, `12h` → a time.
fn parse_expires(s: &str) -> Result<SystemTime> {
    let unit = |n: &str, secs: u64| -> Result<SystemTime> {
        let n: u64 = n.parse().with_context(|| format!("bad duration {s:?}"))?;
        Ok(now() + Duration::from_secs(n * secs))
    };
    if let Some(n) = s.strip_suffix('d') {
        return unit(n, 86_400);
    }
    if let Some(n) = s.strip_suffix('h') {
        return unit(n, 3_600);
    }
    tincan_charter::timefmt::parse(s)
        .map_err(|e| anyhow::anyhow!("--expires {s:?}: neither a duration like 30d or 12h nor RFC 3339 ({e})"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (never overwritten)", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-sign");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn doc_type(env: &Envelope) -> Result<String> {
    let v: serde_json::Value = env.body("document")?;
    Ok(v.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_owned())
}

fn load_root(path: &Path) -> Result<Root> {
    let env = Envelope::parse(&read(path)?, "root")?;
    Root::from_envelope(&env).with_context(|| format!("root {}", path.display()))
}

async fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Key { command: KeyCommand::New { file } } => {
            let key = SecretKey::generate_os();
            let pub_file = key.write_new(&file)?;
            println!(
                "key {} written to {} (keep it offline), public half {}",
                key.public().keyid(),
                file.display(),
                pub_file.display()
            );
        }
        Command::Root {
            command: RootCommand::New { root_keys, root_threshold, list_keys, list_threshold, expires, previous, out },
        } => {
            let load = |ps: &[PathBuf]| ps.iter().map(|p| keys::read_public(p)).collect::<Result<Vec<_>, _>>();
            let version = match &previous {
                Some(p) => load_root(p)?.version + 1,
                None => 1,
            };
            let root = Root::new(
                version,
                parse_expires(&expires)?,
                &load(&root_keys)?,
                root_threshold,
                &load(&list_keys)?,
                list_threshold,
            )?;
            write_new(&out, &Envelope::new(&root).to_bytes())?;
            println!(
                "root version {version} written to {} (unsigned: {} root signature(s) needed)",
                out.display(),
                root_threshold
            );
        }
        Command::List { command: ListCommand::New { input, expires, previous, version, out } } => {
            let text = String::from_utf8(read(&input)?).context("the input is not UTF-8")?;
            let input: ListInput = toml::from_str(&text).with_context(|| format!("{}", input.display()))?;
            let version = match (previous, version) {
                (Some(p), _) => {
                    let prev: TrustList = Envelope::parse(&read(&p)?, "trust list")?.body("trust list")?;
                    prev.version + 1
                }
                (None, Some(v)) => v,
                (None, None) => 1,
            };
            let list = TrustList::new(input, version, parse_expires(&expires)?)?;
            write_new(&out, &Envelope::new(&list).to_bytes())?;
            println!(
                "list version {version} written to {} ({} directories, {} providers; unsigned)",
                out.display(),
                list.directories.len(),
                list.providers.len()
            );
        }
        Command::Sign { key, root, file } => {
            let key = SecretKey::read(&key)?;
            let mut env = Envelope::parse(&read(&file)?, "document")?;
            let kind = doc_type(&env)?;
            let given = root.as_deref().map(load_root).transpose()?;
            match kind.as_str() {
                ROOT_TYPE => {
                    let this: Root = env.body("root")?;
                    this.validate()?;
                    let in_this = this.check_signer(RoleName::Root, &key.public()).is_ok();
                    let in_prev = given.as_ref().is_some_and(|r| r.check_signer(RoleName::Root, &key.public()).is_ok());
                    if !in_this && !in_prev {
                        this.check_signer(RoleName::Root, &key.public())?;
                    }
                }
                LIST_TYPE => {
                    let Some(r) = &given else { bail!("signing a list needs --root (the root with the list keys)") };
                    r.check_signer(RoleName::List, &key.public())?;
                    let list: TrustList = env.body("trust list")?;
                    list.validate()?;
                }
                other => bail!("{}: not a charter root or list (type {other:?})", file.display()),
            }
            env.sign(&key);
            write_replace(&file, &env.to_bytes())?;
            println!(
                "signed {} with key {} ({} signature(s) now)",
                file.display(),
                key.public().keyid(),
                env.signatures.len()
            );
        }
        Command::Verify { root, file } => {
            let bytes = read(&file)?;
            let env = Envelope::parse(&bytes, "document")?;
            match doc_type(&env)?.as_str() {
                ROOT_TYPE => {
                    let this = Root::from_envelope(&env)?;
                    if let Some(prev) = &root {
                        load_root(prev)?.verify_next(&env)?;
                    } else if this.version > 1 {
                        bail!("root version {} also needs --root with version {}", this.version, this.version - 1);
                    }
                    if this.expires <= now() {
                        bail!("root version {} has expired", this.version);
                    }
                    println!("root version {}: signatures OK", this.version);
                }
                LIST_TYPE => {
                    let Some(root) = root else { bail!("verifying a list needs --root") };
                    let v = tincan_charter::client::verify_list(&load_root(&root)?, &bytes, now(), None)?;
                    println!(
                        "list version {}: signatures OK, {} directories, {} providers",
                        v.list.version,
                        v.list.directories.len(),
                        v.list.providers.len()
                    );
                }
                other => bail!("{}: not a charter root or list (type {other:?})", file.display()),
            }
        }
        Command::Publish { root, list, dir } => {
            let v = publish::publish(&dir, &read(&root)?, &read(&list)?, now())?;
            println!(
                "published list version {} (root version {}) in {}",
                v.list.version,
                v.root_version,
                dir.display()
            );
        }
        Command::Fetch { root, url, state } => {
            let client = CharterClient::new(url, read(&root)?, state)?;
            let v = client.refresh(now()).await?;
            println!("{}", serde_json::to_string_pretty(&v.list)?);
        }
    }
    Ok(())
}
