//! `tincan-ext`: the homeserver extension's binary.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tincan_common::telemetry::{self, LogFormat};
use tincan_homeserver_ext::{App, ExtConfig};

const ENV_PREFIX: &str = "TINCAN_EXT_";

#[derive(Debug, Parser)]
#[command(name = "tincan-ext", version, about = "Phone-number sign-up and phone identity for a Matrix homeserver")]
struct Cli {
    /// Config file (TOML); `TINCAN_EXT_…` environment variables override it.
    #[arg(long, short, global = true, env = "TINCAN_EXT_CONFIG")]
    config: Option<PathBuf>,
    /// JSON log lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Confirms `sms.backend = "dev"` (codes written to a file and the log, never sent): development only.
        #[arg(long)]
        dev_sms: bool,
    },
    /// Config commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the appservice registration file for the homeserver.
    Registration,
    /// Make a new Identity Service lookup pepper current.
    RotatePepper,
    /// Sync the mirror of the directory's number list once, now (`serve` also does it periodically).
    SyncDirectory,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate the config, then print the effective config (secrets redacted).
    Check,
}

fn load(cli: &Cli) -> anyhow::Result<ExtConfig> {
    Ok(tincan_common::load_config::<ExtConfig>(cli.config.as_deref(), ENV_PREFIX)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(if cli.log_json { LogFormat::Json } else { LogFormat::Human });
    match &cli.command {
        Command::Serve { dev_sms } => {
            let config = load(&cli)?;
            tincan_homeserver_ext::sms::check_dev(&config.sms, *dev_sms)?;
            tincan_homeserver_ext::run(config).await?
        }
        Command::Config { command: ConfigCommand::Check } => {
            let config = load(&cli)?;
            println!("{}", toml::to_string_pretty(&config).context("printing config")?);
            eprintln!("config OK");
        }
        Command::Registration => println!("{}", tincan_homeserver_ext::homeserver::registration_yaml(&load(&cli)?)),
        Command::RotatePepper => {
            let config = load(&cli)?;
            let clock = std::sync::Arc::new(tincan_common::SystemClock);
            let app = App::from_config(config, clock).await?;
            tincan_homeserver_ext::identity::rotate_pepper(&app).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("new pepper is current; bindings and the directory mirror re-hashed");
        }
        Command::SyncDirectory => {
            let config = load(&cli)?;
            let clock = std::sync::Arc::new(tincan_common::SystemClock);
            let app = App::from_config(config, clock).await?;
            let s = tincan_homeserver_ext::mirror::sync(&app).await?;
            eprintln!(
                "directory mirror synced: {} listed in {} pages, {} written, {} removed",
                s.listed, s.pages, s.upserted, s.deleted
            );
        }
    }
    Ok(())
}
