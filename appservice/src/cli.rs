//! The operator commands every bridge binary shares: `registration`, `config check`, `run`.
//!
//! A bridge's `main.rs` parses [`Cli`], handles [`Command::Run`] itself (it owns the connector) and passes the
//! rest to [`run_tooling`].

use crate::config::AppserviceConfig;
use crate::registration::{Tokens, registration_yaml};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tincan_common::ConfigError;

/// Command line of a bridge.
#[derive(Debug, Parser)]
pub struct Cli {
    /// The TOML config file.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// Log JSON lines instead of human-readable lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the bridge.
    Run,
    /// Prints the registration YAML for the homeserver. Tokens come from the config when both are set, else
    /// fresh random tokens are generated (put them into the config as well).
    Registration,
    /// Config commands.
    Config {
        /// The action.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Loads and validates the config, then prints the effective config with secrets redacted.
    Check,
}

/// Loads the config named on the command line with environment overrides under `env_prefix`.
pub fn load(cli: &Cli, env_prefix: &str) -> Result<AppserviceConfig, ConfigError> {
    tincan_common::load_config(cli.config.as_deref(), env_prefix)
}

/// Runs `registration` and `config check`; `None` for `run` (the bridge binary's job).
pub fn run_tooling(cli: &Cli, env_prefix: &str, connector_ghost_prefix: &str) -> Option<ExitCode> {
    let command = cli.command.as_ref()?;
    if matches!(command, Command::Run) {
        return None;
    }
    let config = match load(cli, env_prefix) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Some(ExitCode::FAILURE);
        }
    };
    match command {
        Command::Run => None,
        Command::Registration => {
            let tokens = Tokens::from_config(&config).unwrap_or_else(|| {
                use rand::SeedableRng;
                eprintln!("note: fresh tokens generated; set appservice.as_token and appservice.hs_token to them");
                Tokens::generate(&mut rand::rngs::StdRng::from_os_rng())
            });
            print!("{}", registration_yaml(&config, config.ghost_prefix(connector_ghost_prefix), &tokens));
            Some(ExitCode::SUCCESS)
        }
        Command::Config { action: ConfigAction::Check } => {
            let problems = config.validate_tokens();
            match serde_json::to_string_pretty(&config) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("cannot print the config: {e}"),
            }
            if problems.is_empty() {
                eprintln!("config ok");
                Some(ExitCode::SUCCESS)
            } else {
                eprintln!("invalid config:\n  - {}", problems.join("\n  - "));
                Some(ExitCode::FAILURE)
            }
        }
    }
}
