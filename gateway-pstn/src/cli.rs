//! The `tincan-gateway` command line: `serve`, `config check`, `ledger check`, `tokens add|list|revoke`,
//! `accounts create|adjust`, `rates import|export|list`, `carriers add|import|list`, `vouchers create|list`,
//! `calls export`. Every subcommand takes `--config FILE`, `--data-dir DIR` and `--api ADDR`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::TryRngCore;
use tincan_common::config::Validate;
use tincan_common::{Clock, ConfigError, SystemClock};

use crate::charging::{AccountId, IdempotencyKey};
use crate::config::{ENV_PREFIX, GatewayConfig};
use crate::ledger::{Ledger, LedgerError};
use crate::money::{Amount, Currency};
use crate::serve::{self, ServeError};
use crate::storage::{CarrierKind, EntryKind, Scope, StorageError, TokenHash, unix_ms};

/// The provider's business service: accounts, prepaid ledger, rates and the provider API.
#[derive(Debug, Parser)]
#[command(name = "tincan-gateway", version)]
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
    /// Data directory (default: $XDG_DATA_HOME/tincan-gateway).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// API listen address (default 127.0.0.1:8095).
    #[arg(long, global = true, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the provider API.
    Serve,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect the books.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Manage API tokens of services and operators.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Manage rate decks (price plans).
    #[command(subcommand)]
    Rates(RatesCommand),
    /// Manage carriers (SIP trunks, SMSCs) and their cost decks.
    #[command(subcommand)]
    Carriers(CarriersCommand),
    /// Manage vouchers.
    #[command(subcommand)]
    Vouchers(VouchersCommand),
    /// Call detail records.
    #[command(subcommand)]
    Calls(CallsCommand),
}

/// `calls …`.
#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// Print call detail records as CSV (every attempt of every call, answered or not), oldest first.
    Export {
        /// Only this account's.
        #[arg(long)]
        account: Option<i64>,
        /// Only records with an id above this (the last id of a previous export).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

/// `vouchers …`.
#[derive(Debug, Subcommand)]
pub enum VouchersCommand {
    /// Make a batch of single-use codes; prints them (once), one a line.
    Create {
        /// What each code is worth, like 10.00.
        #[arg(long)]
        amount: Amount,
        /// How many codes.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Their currency (default: accounts.currency).
        #[arg(long)]
        currency: Option<Currency>,
        /// A name for the batch.
        #[arg(long, default_value = "vouchers")]
        name: String,
    },
    /// List batches and how many of their codes were used.
    List,
}

/// `rates …`.
#[derive(Debug, Subcommand)]
pub enum RatesCommand {
    /// Replace a plan's rate deck with a CSV file (`prefix,description,connect_fee,per_minute,increments,per_sms`);
    /// nothing is written unless every line is good.
    Import {
        /// The plan (accounts are rated by their plan, then `default`).
        #[arg(long, default_value = "default")]
        plan: String,
        /// The CSV file.
        file: PathBuf,
    },
    /// Print a plan's rate deck as CSV.
    Export {
        /// The plan.
        #[arg(long, default_value = "default")]
        plan: String,
    },
    /// List plans and their sizes.
    List,
}

/// `carriers …`.
#[derive(Debug, Subcommand)]
pub enum CarriersCommand {
    /// Add a carrier.
    Add {
        /// Unique name.
        name: String,
        /// `sip` (calls) or `smsc` (SMS).
        #[arg(long)]
        kind: String,
        /// Lower goes first among equal costs.
        #[arg(long, default_value_t = 10)]
        priority: i32,
        /// The most calls or SMS in flight at once it accepts.
        #[arg(long, default_value_t = 30)]
        max_concurrent: i32,
    },
    /// Replace a carrier's cost deck with a CSV file (the rate deck format).
    Import {
        /// The carrier.
        name: String,
        /// The CSV file.
        file: PathBuf,
    },
    /// List carriers.
    List,
}

/// `config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config (secrets redacted); exit 1 listing every problem.
    Check,
}

/// `ledger …`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Prove the invariants on the live database: every entry's legs sum to zero, every balance is the sum of
    /// its legs and every held sum the sum of its open holds, no balance below its holds but through debt
    /// entries, every settled hold charged exactly once. Exit 1 listing every problem.
    Check,
}

/// `tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make a token; prints it (once) on stdout.
    Add {
        /// What it may do.
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// The service's or operator's name (scopes its idempotency keys and holds).
        name: String,
    },
    /// List service and operator tokens.
    List,
    /// Revoke a token by id.
    Revoke {
        /// The id `tokens list` shows.
        id: i64,
    },
}

/// `--scope` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// Quote and holds on any account (SMS bridge, call routing).
    Service,
    /// Accounts, vouchers, rates, adjustments.
    Operator,
}

/// `accounts …`.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create a business account (or a user's); prints its id.
    Create {
        /// A business's name.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        business: Option<String>,
        /// A Matrix user's ID.
        #[arg(long)]
        user: Option<String>,
        /// Its currency (default: accounts.currency).
        #[arg(long)]
        currency: Option<Currency>,
    },
    /// Credit (or, negative, debit) an account by hand, once per key.
    Adjust {
        /// The account id.
        account: i64,
        /// The amount, like 10.00 or -2.50.
        #[arg(allow_hyphen_values = true)]
        amount: Amount,
        /// Why.
        #[arg(long)]
        memo: String,
        /// The idempotency key (default: a fresh one: the adjustment is made once per run).
        #[arg(long)]
        key: Option<String>,
    },
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
    /// A ledger rule refused the command.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The system random generator failed.
    #[error("no randomness available for a token")]
    Random,
    /// Writing to stdout failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl GlobalArgs {
    /// Loads the config (file, environment), applies the command-line overrides and validates the result.
    pub fn load(&self) -> Result<GatewayConfig, ConfigError> {
        let mut config: GatewayConfig = tincan_common::load_config(self.config.as_deref(), ENV_PREFIX)?;
        if let Some(d) = &self.data_dir {
            config.data_dir = Some(d.clone());
        }
        if let Some(a) = self.api {
            config.api.listen = a;
        }
        let problems = config.validate();
        if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
    }
}

/// Runs one command; the exit code is 0 on success.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if let Command::Config(ConfigCommand::Check) = cli.command {
        return Ok(config_check(&cli.global));
    }
    let config = cli.global.load()?;
    match cli.command {
        Command::Config(_) => unreachable!("handled above"),
        Command::Serve => {
            serve::serve(
                config,
                clock,
                |addr| {
                    println!("tincan-gateway listening: api http://{addr}");
                    let _ = std::io::stdout().flush();
                },
                serve::shutdown_signal(),
            )
            .await?;
        }
        Command::Ledger(LedgerCommand::Check) => {
            let storage = serve::open_storage(&config, clock).await?;
            let mut tx = storage.begin_read().await?;
            let report = tx.journal().check().await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "checked {} accounts, {} entries, {} open holds",
                report.accounts, report.entries, report.open_holds
            )?;
            if !report.problems.is_empty() {
                for p in &report.problems {
                    writeln!(out, "PROBLEM: {p}")?;
                }
                writeln!(out, "ledger check FAILED: {} problem(s)", report.problems.len())?;
                return Ok(ExitCode::FAILURE);
            }
            writeln!(out, "ledger check passed")?;
        }
        Command::Tokens(TokensCommand::Add { scope, name }) => {
            if name.is_empty()
                || name.len() > 100
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(CliError::Usage("a token name is 1 to 100 characters of A-Z a-z 0-9 - _ .".into()));
            }
            let storage = serve::open_storage(&config, clock.clone()).await?;
            let token = new_token()?;
            let scope = match scope {
                ScopeArg::Service => Scope::Service,
                ScopeArg::Operator => Scope::Operator,
            };
            let mut tx = storage.begin().await?;
            tx.tokens().add(TokenHash::of(&token), scope, &name, None, None, unix_ms(clock.now())).await?;
            tx.commit().await?;
            writeln!(std::io::stdout(), "{token}")?;
        }
        Command::Tokens(TokensCommand::List) => {
            let storage = serve::open_storage(&config, clock).await?;
            let mut tx = storage.begin_read().await?;
            let mut out = std::io::stdout().lock();
            for t in tx.tokens().list().await? {
                writeln!(out, "{}\t{}\t{}", t.id, t.scope.as_str(), t.subject)?;
            }
        }
        Command::Tokens(TokensCommand::Revoke { id }) => {
            let storage = serve::open_storage(&config, clock).await?;
            let mut tx = storage.begin().await?;
            if !tx.tokens().delete(id).await? {
                return Err(CliError::Usage(format!("no token {id}")));
            }
            tx.commit().await?;
        }
        Command::Rates(cmd) => return rates(cmd, &config, clock).await,
        Command::Vouchers(VouchersCommand::Create { amount, count, currency, name }) => {
            let storage = serve::open_storage(&config, clock.clone()).await?;
            let ledger = Ledger::start(storage, clock, config.ledger);
            let currency = currency.unwrap_or(config.accounts.currency);
            let (_, codes) = crate::vouchers::create_batch(&ledger, &name, amount, currency, count, None)
                .await
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let mut out = std::io::stdout().lock();
            for c in codes {
                writeln!(out, "{c}")?;
            }
        }
        Command::Vouchers(VouchersCommand::List) => {
            let storage = serve::open_storage(&config, clock).await?;
            let mut tx = storage.begin_read().await?;
            let mut out = std::io::stdout().lock();
            for (b, used) in tx.vouchers().batches().await? {
                writeln!(out, "{}\t{}\t{} {}\t{used}/{} used", b.id, b.name, b.amount, b.currency, b.count)?;
            }
        }
        Command::Carriers(cmd) => return carriers(cmd, &config, clock).await,
        Command::Calls(CallsCommand::Export { account, after }) => {
            let storage = serve::open_storage(&config, clock).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", crate::storage::CALL_RECORDS_CSV_HEADER)?;
            let mut after = after;
            loop {
                let mut tx = storage.begin_read().await?;
                let page = tx.call_records().list(account.map(AccountId), after, 1000).await?;
                drop(tx);
                for r in &page {
                    writeln!(out, "{}", r.csv_row())?;
                }
                match page.last() {
                    Some(r) if page.len() == 1000 => after = r.id,
                    _ => break,
                }
            }
        }
        Command::Accounts(AccountsCommand::Create { business, user, currency }) => {
            let storage = serve::open_storage(&config, clock.clone()).await?;
            let ledger = Ledger::start(storage, clock, config.ledger);
            let currency = currency.unwrap_or(config.accounts.currency);
            let a = match (business, user) {
                (Some(name), _) => ledger.create_business(&name, currency).await?,
                (None, Some(user)) => ledger.user_account(&user, None, currency).await?,
                (None, None) => return Err(CliError::Usage("--business NAME or --user @USER:SERVER".into())),
            };
            writeln!(std::io::stdout(), "{}", a.id)?;
        }
        Command::Accounts(AccountsCommand::Adjust { account, amount, memo, key }) => {
            let storage = serve::open_storage(&config, clock.clone()).await?;
            let ledger = Ledger::start(storage, clock, config.ledger);
            let key = IdempotencyKey::new(key.map_or_else(|| new_token().map(|t| t[4..36].to_owned()), Ok)?)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let id = AccountId(account);
            if amount.is_positive() {
                ledger.credit("cli", &key, id, amount, EntryKind::Adjustment, "operator", &memo).await?;
            } else if amount.is_negative() {
                ledger.take_back("cli", &key, id, -amount, EntryKind::Adjustment, "operator").await?;
            } else {
                return Err(CliError::Usage("the amount is not zero".into()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn rates(cmd: RatesCommand, config: &GatewayConfig, clock: Arc<dyn Clock>) -> Result<ExitCode, CliError> {
    let storage = serve::open_storage(config, clock).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        RatesCommand::Import { plan, file } => {
            let deck = read_deck(&file)?;
            let mut tx = storage.begin().await?;
            tx.rates().replace(&plan, &deck).await?;
            tx.commit().await?;
            writeln!(out, "plan {plan}: {} prefixes", deck.len())?;
        }
        RatesCommand::Export { plan } => {
            let mut tx = storage.begin_read().await?;
            write!(out, "{}", crate::rating::to_csv(&tx.rates().deck(&plan).await?))?;
        }
        RatesCommand::List => {
            let mut tx = storage.begin_read().await?;
            for (plan, n) in tx.rates().plans().await? {
                writeln!(out, "{plan}\t{n}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn carriers(cmd: CarriersCommand, config: &GatewayConfig, clock: Arc<dyn Clock>) -> Result<ExitCode, CliError> {
    let storage = serve::open_storage(config, clock).await?;
    let mut out = std::io::stdout().lock();
    match cmd {
        CarriersCommand::Add { name, kind, priority, max_concurrent } => {
            let kind = match kind.as_str() {
                "sip" => CarrierKind::Sip,
                "smsc" => CarrierKind::Smsc,
                _ => return Err(CliError::Usage("--kind sip or smsc".into())),
            };
            if name.is_empty() || name.len() > 100 || max_concurrent < 1 {
                return Err(CliError::Usage("a name of 1 to 100 characters and --max-concurrent of 1 or more".into()));
            }
            let mut tx = storage.begin().await?;
            let c = tx.carriers().add(&name, kind, priority, max_concurrent).await?;
            tx.commit().await?;
            writeln!(out, "{}", c.id)?;
        }
        CarriersCommand::Import { name, file } => {
            let deck = read_deck(&file)?;
            let mut tx = storage.begin().await?;
            let c =
                tx.carriers().by_name(&name).await?.ok_or_else(|| CliError::Usage(format!("no carrier {name:?}")))?;
            tx.carriers().replace_deck(c.id, &deck).await?;
            tx.commit().await?;
            writeln!(out, "carrier {name}: {} prefixes", deck.len())?;
        }
        CarriersCommand::List => {
            let mut tx = storage.begin_read().await?;
            for c in tx.carriers().list().await? {
                let state = if c.enabled { "enabled" } else { "disabled" };
                writeln!(
                    out,
                    "{}\t{}\t{}\tpriority {}\tmax {}\t{state}",
                    c.id,
                    c.name,
                    c.kind.as_str(),
                    c.priority,
                    c.max_concurrent
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_deck(file: &std::path::Path) -> Result<crate::rating::RateDeck, CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    crate::rating::parse_csv(&text).map_err(|e| CliError::Usage(e.to_string()))
}

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

/// A new bearer token: `tcg_` and 64 hex digits from the operating system's generator.
pub fn new_token() -> Result<String, CliError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| CliError::Random)?;
    Ok(format!("tcg_{}", hex::encode(bytes)))
}
