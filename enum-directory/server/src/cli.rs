//! The `tincan-directory` command line: `serve`, `provider add|list|sync`,
//! `keys generate|ds|roll|status|check-ds`,
//! `numbers import`, `audit`,
//! `config check`.
//! Every subcommand takes `--config FILE`, `--data-dir DIR`, `--dns ADDR`, `--api ADDR` and `--apex NAME`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ring::rand::{SecureRandom, SystemRandom};
use tincan_common::config::Validate;
use tincan_common::{Clock, ConfigError, SystemClock};

use crate::audit::{self, AuditArgs, AuditError};
use crate::config::{DirectoryConfig, ENV_PREFIX};
use crate::dns::Zone;
use crate::import::{self, ImportError, ImportOptions};
use crate::keys::{self, KeyError};
use crate::rollover;
use crate::serve::{self, ServeError};
use crate::storage::{KeyAlgorithm, KeyRole, Prefix, StorageError, TokenHash};

/// The ENUM directory: DNSSEC-signed phone-number directory with a registrar API.
#[derive(Debug, Parser)]
#[command(name = "tincan-directory", version)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML config file (default: embedded defaults).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (default: $XDG_DATA_HOME/tincan-directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// DNS listen address, UDP and TCP (default 127.0.0.1:5353).
    #[arg(long, global = true, value_name = "ADDR")]
    pub dns: Option<SocketAddr>,
    /// Registrar API listen address (default 127.0.0.1:8053).
    #[arg(long, global = true, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// Zone apex (default e164.tincan.test.).
    #[arg(long, global = true, value_name = "NAME")]
    pub apex: Option<String>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS and the registrar API.
    Serve,
    /// Manage providers.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Manage the zone's DNSSEC keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage numbers in bulk.
    #[command(subcommand)]
    Numbers(NumbersCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Audit a directory through its API and DNS: tree head signature, consistency with an earlier head, log
    /// entries against their leaves, and DNS answers against the log (`--dns ADDR` is the server to query).
    Audit(AuditArgs),
}

/// `provider …`.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Add a provider; prints its new bearer token (once) on stdout.
    Add {
        /// Unique provider name.
        name: String,
        /// A prefix the provider may serve, e.g. +44 (repeat for several).
        #[arg(long = "prefix", required = true, value_name = "PREFIX")]
        prefixes: Vec<Prefix>,
        /// Allow prefixes that overlap another provider's (one covers the other, e.g. +44 and +4420). Without
        /// it such an add is refused: numbers in a shared range go to whichever provider writes first.
        #[arg(long)]
        shared: bool,
    },
    /// List providers and their prefixes.
    List,
    /// Import the providers of this directory from the charter's trust list (verified: signature threshold,
    /// expiry, never an older list than the last sync). Adds the missing ones (printing `name<TAB>token` once
    /// for each), sets the listed prefixes of the others, and reports providers the list does not name.
    Sync {
        /// The charter repository's base URL (`https://…/`, or `file:///…/`).
        #[arg(long, value_name = "URL")]
        charter_url: url::Url,
        /// The charter's root.json.
        #[arg(long, value_name = "FILE")]
        charter_root: PathBuf,
        /// Take away the prefixes of providers the list does not name (they can no longer write numbers).
        #[arg(long)]
        suspend_unlisted: bool,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `numbers …`.
#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Register numbers for a provider from a JSON-lines file, one
    /// `{"e164":"+44…","services":[{"type":"matrix","uri":"…"}],"ed25519":"…"}` per line. The whole file is
    /// validated first (nothing is written if a line is bad); then batches are written, each in one transaction;
    /// a rerun skips numbers already stored exactly so. Restart `serve` afterwards to publish them.
    Import {
        /// The provider the numbers are registered for (must serve their prefixes).
        #[arg(long, value_name = "NAME")]
        provider: String,
        /// Numbers per transaction.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        batch: usize,
        /// Seconds between progress lines on stderr.
        #[arg(long, default_value_t = 2, value_name = "SECS")]
        progress_secs: u64,
        /// The JSON-lines file.
        file: PathBuf,
    },
}

/// `keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a KSK and a ZSK for the apex unless it already has them.
    Generate {
        /// Algorithm of the new keys (default: dns.algorithm from the config).
        #[arg(long, value_enum)]
        algorithm: Option<AlgorithmArg>,
    },
    /// Print the DS records for the parent zone, one per line.
    Ds,
    /// Start a rollover now (ZSK by pre-publication, KSK by double-DS); `serve` carries it through.
    Roll {
        /// Which key.
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Show each key's state and timestamps, the next scheduled step, and the DS set the parent must publish.
    Status,
    /// Check that the apex's DS set published in the parent zone is the trust anchor the charter's trust list
    /// (verified as `provider sync` does) names for this directory, and that both are what this directory's
    /// keys need (`keys ds`). Prints the three sets (`parent|charter|keys DS TAG ALG DIGTYPE DIGEST`); exits 1
    /// naming every record one set has and another lacks.
    CheckDs {
        /// The charter repository's base URL (`https://…/`, or `file:///…/`).
        #[arg(long, value_name = "URL")]
        charter_url: url::Url,
        /// The charter's root.json.
        #[arg(long, value_name = "FILE")]
        charter_root: PathBuf,
        /// A DNS server to ask for the apex's DS (a resolver, or a server of the parent zone); repeat for
        /// several. Default: the system's resolvers.
        #[arg(long = "parent-dns", value_name = "ADDR")]
        parent_dns: Vec<SocketAddr>,
        /// Seconds to wait for each DNS answer.
        #[arg(long, default_value_t = 5, value_name = "SECS")]
        timeout_secs: u64,
    },
    /// Write the zone's live private keys for a secondary that signs online (see the README's "Zone transfer").
    Export {
        /// The target software.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Directory to write the PEM files and import.sh into (created; files are mode 0600).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `keys roll` roles.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// The zone-signing key.
    Zsk,
    /// The key-signing key.
    Ksk,
}

/// `keys export --format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// Knot DNS 3.2 `mod-onlinesign`: PKCS#8 PEM files and the `keymgr import-pem` commands.
    Knot,
}

/// `config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config (secrets redacted); exit 1 listing every problem.
    Check,
}

/// `--algorithm` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgorithmArg {
    /// ECDSA P-256 SHA-256 (13).
    Ecdsap256,
    /// Ed25519 (15).
    Ed25519,
}

impl From<AlgorithmArg> for KeyAlgorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Ecdsap256 => KeyAlgorithm::EcdsaP256,
            AlgorithmArg::Ed25519 => KeyAlgorithm::Ed25519,
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Key handling failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The audit found a problem.
    #[error("audit failed: {0}")]
    Audit(#[from] AuditError),
    /// A bulk import failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The provider name is taken.
    #[error("a provider named {0:?} already exists")]
    ProviderExists(String),
    /// A new provider's prefix overlaps another provider's, and `--shared` was not given.
    #[error(
        "prefix {prefix} overlaps {theirs} of provider {provider:?}: numbers there would go to whichever provider \
         writes first; give --shared if both are meant to serve that range"
    )]
    PrefixOverlap {
        /// The new provider's prefix.
        prefix: Prefix,
        /// The provider already serving an overlapping prefix.
        provider: String,
        /// That provider's prefix.
        theirs: Prefix,
    },
    /// The system random generator failed.
    #[error("no randomness available for a token")]
    Random,
    /// Writing to stdout failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// Exporting keys failed.
    #[error(transparent)]
    Export(#[from] crate::xfr::export::ExportError),
    /// The charter's trust list could not be fetched or was refused.
    #[error("charter trust list: {0}")]
    Charter(#[from] tincan_charter::CharterError),
    /// `provider sync` failed.
    #[error(transparent)]
    Sync(#[from] crate::provider_sync::SyncError),
    /// `keys check-ds` could not check, or found the DS sets disagree.
    #[error(transparent)]
    DsCheck(#[from] crate::ds_check::DsCheckError),
}

impl GlobalArgs {
    /// Loads the config (file, environment), applies the command-line overrides and validates the result.
    pub fn load(&self) -> Result<DirectoryConfig, ConfigError> {
        let mut config: DirectoryConfig = tincan_common::load_config(self.config.as_deref(), ENV_PREFIX)?;
        if let Some(d) = &self.data_dir {
            config.data_dir = Some(d.clone());
        }
        if let Some(a) = self.dns {
            config.dns.listen = a;
        }
        if let Some(a) = self.api {
            config.api.listen = a;
        }
        if let Some(a) = &self.apex {
            config.dns.apex = a.clone();
        }
        let problems = config.validate();
        if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
    }
}

/// The first of `prefixes` that overlaps (covers or lies under) a prefix of one of `others`: the prefix, the
/// other provider's name and its prefix.
fn first_overlap(prefixes: &[Prefix], others: &[crate::storage::Provider]) -> Option<(Prefix, String, Prefix)> {
    prefixes.iter().find_map(|p| {
        others
            .iter()
            .find_map(|o| o.prefixes.iter().find(|q| p.overlaps(q)).map(|q| (p.clone(), o.name.clone(), q.clone())))
    })
}

/// Runs one command; the exit code is 0 on success.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if let Command::Config(ConfigCommand::Check) = cli.command {
        return Ok(config_check(&cli.global));
    }
    if let Command::Audit(args) = &cli.command {
        let report = audit::run(args, cli.global.dns).await?;
        println!(
            "audit passed: tree size {}, consistent with {}, {} entries checked, {} numbers checked in DNS",
            report.tree_size,
            report.consistent_with.map_or("no saved head".into(), |n| format!("the saved head of {n}")),
            report.entries_checked,
            report.numbers_checked
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = cli.global.load()?;
    match cli.command {
        Command::Serve => {
            serve::serve(
                config,
                clock,
                |l| {
                    println!("tincan-directory listening: dns {} (udp+tcp), api http://{}", l.dns, l.api);
                    let _ = std::io::stdout().flush();
                },
                serve::shutdown_signal(),
            )
            .await?;
        }
        Command::Provider(ProviderCommand::Add { name, prefixes, shared }) => {
            let storage = serve::open_storage(&config, clock).await?;
            let token = new_token()?;
            let mut tx = storage.begin().await?;
            if !shared {
                // In the transaction that adds, with the prefixes locked: no add slips in between the check and the
                // commit (two concurrent adds on PostgreSQL both passed the check before).
                tx.providers().lock_prefixes().await?;
                let others = tx.providers().list().await?;
                if let Some((prefix, provider, theirs)) = first_overlap(&prefixes, &others) {
                    return Err(CliError::PrefixOverlap { prefix, provider, theirs });
                }
            }
            match tx.providers().add(&name, TokenHash::of(&token), &prefixes).await {
                Ok(_) => {}
                Err(StorageError::Duplicate(_)) => return Err(CliError::ProviderExists(name)),
                Err(e) => return Err(e.into()),
            }
            tx.commit().await?;
            writeln!(std::io::stdout(), "{token}")?;
        }
        Command::Provider(ProviderCommand::List) => {
            let storage = serve::open_storage(&config, clock).await?;
            let mut tx = storage.begin().await?;
            let mut out = std::io::stdout().lock();
            for p in tx.providers().list().await? {
                let prefixes: Vec<&str> = p.prefixes.iter().map(|p| p.as_str()).collect();
                writeln!(out, "{}\t{}", p.name, prefixes.join(","))?;
            }
        }
        Command::Provider(ProviderCommand::Sync { charter_url, charter_root, suspend_unlisted, dry_run }) => {
            let root = std::fs::read(&charter_root).map_err(CliError::Output)?;
            let charter = tincan_charter::CharterClient::new(charter_url, root, config.data_dir().join("charter"))?;
            let verified = charter.refresh(clock.now()).await?;
            let storage = serve::open_storage(&config, clock).await?;
            let apex = config.apex().map_err(ServeError::from)?.to_ascii();
            // Planned and applied in one transaction holding the prefix lock (see provider_sync::sync).
            let (plan, tokens) =
                crate::provider_sync::sync(&*storage, &verified.list, &apex, suspend_unlisted, dry_run, || {
                    new_token().ok()
                })
                .await?;
            let mut out = std::io::stdout().lock();
            for (name, prefixes) in &plan.add {
                eprintln!("add {name} {}", join_prefixes(prefixes));
            }
            for (name, old, new) in &plan.update {
                eprintln!("update {name}: {} -> {}", join_prefixes(old), join_prefixes(new));
            }
            for name in &plan.unlisted {
                let what = if suspend_unlisted {
                    "suspend (prefixes removed)"
                } else {
                    "not on the list (kept; --suspend-unlisted)"
                };
                eprintln!("{what} {name}");
            }
            for (name, token) in tokens {
                writeln!(out, "{name}\t{token}")?;
            }
            eprintln!(
                "trust list version {}: {} added, {} updated, {} unchanged, {} unlisted{}",
                verified.list.version,
                plan.add.len(),
                plan.update.len(),
                plan.unchanged.len(),
                plan.unlisted.len(),
                if dry_run { " (dry run: nothing changed)" } else { "" }
            );
        }
        Command::Keys(KeysCommand::Generate { algorithm }) => {
            let apex = config.apex().map_err(ServeError::from)?;
            let storage = serve::open_storage(&config, clock.clone()).await?;
            let algo = algorithm.map(KeyAlgorithm::from).unwrap_or(config.dns.algorithm);
            let ensured = keys::ensure(&*storage, &*clock, &apex, algo).await?;
            let what = if ensured.generated { "generated" } else { "already present" };
            for k in &ensured.keys {
                eprintln!("{apex}: {:?} {:?} {:?} ({what})", k.role, k.algorithm, k.state);
            }
        }
        Command::Keys(KeysCommand::Ds) => {
            let apex = config.apex().map_err(ServeError::from)?;
            let storage = serve::open_storage(&config, clock).await?;
            let mut out = std::io::stdout().lock();
            for line in keys::ds_records(&*storage, &apex).await? {
                writeln!(out, "{line}")?;
            }
        }
        Command::Keys(KeysCommand::CheckDs { charter_url, charter_root, parent_dns, timeout_secs }) => {
            use crate::ds_check::{self, DsCheckError};
            let apex = config.apex().map_err(ServeError::from)?;
            let root = std::fs::read(&charter_root).map_err(CliError::Output)?;
            let charter = tincan_charter::CharterClient::new(charter_url, root, config.data_dir().join("charter"))?;
            let verified = charter.refresh(clock.now()).await?;
            let listed = verified
                .list
                .directory_by_apex(&apex.to_ascii())
                .ok_or_else(|| DsCheckError::NotListed(apex.to_ascii()))?;
            let charter_ds = ds_check::parse_ds("the charter's", &apex, &listed.ds)?;
            let storage = serve::open_storage(&config, clock).await?;
            let own = ds_check::parse_ds("this directory's", &apex, &keys::ds_records(&*storage, &apex).await?)?;
            let parent = ds_check::parent_ds(&apex, &parent_dns, Duration::from_secs(timeout_secs.max(1))).await?;
            let mut out = std::io::stdout().lock();
            for (which, set) in [("parent", &parent), ("charter", &charter_ds), ("keys", &own)] {
                for r in set {
                    writeln!(out, "{which} {r}")?;
                }
            }
            let problems = ds_check::compare(&parent, &charter_ds, &own);
            if !problems.is_empty() {
                return Err(DsCheckError::Mismatch { apex: apex.to_ascii(), problems }.into());
            }
            eprintln!(
                "{apex}: the parent's DS set, the charter's (trust list version {}) and this directory's keys agree \
                 ({} records)",
                verified.list.version,
                own.len()
            );
        }
        Command::Keys(KeysCommand::Roll { role }) => {
            let apex = config.apex().map_err(ServeError::from)?;
            let storage = serve::open_storage(&config, clock.clone()).await?;
            let role = match role {
                RoleArg::Zsk => KeyRole::Zsk,
                RoleArg::Ksk => KeyRole::Ksk,
            };
            let t = rollover::roll(&*storage, &*clock, &apex, role, config.dns.algorithm).await?;
            eprintln!("{apex}: new {:?} {} is {:?}; `keys status` shows the timeline", t.role, t.key_tag, t.to);
        }
        Command::Keys(KeysCommand::Status) => {
            let apex = config.apex().map_err(ServeError::from)?;
            let storage = serve::open_storage(&config, clock.clone()).await?;
            let policy = config.rollover_policy();
            let mut tx = storage.begin().await?;
            let all = tx.keys().for_apex(&apex.to_ascii()).await?;
            drop(tx);
            let mut out = std::io::stdout().lock();
            for k in &all {
                let tag = keys::zone_key(k)?.key_tag();
                let next = match policy.next_event(k) {
                    Some((what, at)) => format!("; {what} at {}", unix_secs(at)),
                    None => String::new(),
                };
                writeln!(
                    out,
                    "{} {} tag {tag} {} created {} {} since {}{next}",
                    k.role.as_str(),
                    k.algorithm.as_str(),
                    k.state.as_str(),
                    unix_secs(k.created_at),
                    k.state.as_str(),
                    unix_secs(k.changed_at)
                )?;
            }
            writeln!(out, "DS set the parent must publish now:")?;
            for line in keys::ds_records(&*storage, &apex).await? {
                writeln!(out, "{line}")?;
            }
        }
        Command::Keys(KeysCommand::Export { format: ExportFormat::Knot, out }) => {
            let apex = config.apex().map_err(ServeError::from)?;
            let storage = serve::open_storage(&config, clock).await?;
            for e in crate::xfr::export::knot(&*storage, &apex, &config.rollover_policy(), &out).await? {
                eprintln!("{}: key tag {} → {}", apex, e.key_tag, out.join(&e.file).display());
            }
            eprintln!("run: sh {} -c /etc/knot/knot.conf", out.join("import.sh").display());
        }
        Command::Numbers(NumbersCommand::Import { provider, batch, progress_secs, file }) => {
            let apex = config.apex().map_err(ServeError::from)?;
            let storage = serve::open_storage(&config, clock.clone()).await?;
            keys::ensure(&*storage, &*clock, &apex, config.dns.algorithm).await?;
            let zone_keys = Arc::new(keys::load(&*storage, &apex).await?);
            let zone_config = config.zone().map_err(ServeError::from)?;
            let zone = Arc::new(Zone::new(zone_config, zone_keys, clock.clone(), 0).map_err(ServeError::from)?);
            let options = ImportOptions { batch, progress_every: Duration::from_secs(progress_secs) };
            let started = Instant::now();
            let summary =
                import::import(&*storage, zone, &provider, &file, &options, &mut |line| eprintln!("{line}")).await?;
            writeln!(
                std::io::stdout(),
                "imported {} numbers for {provider}: {} added, {} changed, {} unchanged, in {:.1} s",
                summary.numbers,
                summary.added,
                summary.changed,
                summary.unchanged,
                started.elapsed().as_secs_f64()
            )?;
        }
        Command::Config(ConfigCommand::Check) | Command::Audit(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the effective config as TOML (secrets redacted), or every problem found and exit code 1.
fn config_check(args: &GlobalArgs) -> ExitCode {
    match args.load() {
        Ok(config) => {
            let text = toml::to_string_pretty(&config).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
            print!("{text}");
            if config.database.url.is_none() {
                println!("# database: {} (default)", config.database_url().expose());
            }
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(problems)) => {
            eprintln!("config has {} problem(s):", problems.len());
            for p in problems {
                eprintln!("  - {p}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("config problem:\n  - {e}");
            ExitCode::FAILURE
        }
    }
}

/// Unix seconds, as `keys status` prints times.
fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh bearer token: `tcd_` and 32 random bytes, unpadded URL-safe base64.
fn join_prefixes(p: &[Prefix]) -> String {
    if p.is_empty() { "(none)".into() } else { p.iter().map(Prefix::as_str).collect::<Vec<_>>().join(",") }
}

fn new_token() -> Result<String, CliError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| CliError::Random)?;
    Ok(format!("tcd_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}
