//! `tincan-sip`: the SIP bridge. `run` (default), `registration` (the homeserver's appservice file),
//! `config check` — the command line every bridge shares (`tincan_appservice::cli::Cli`), with this bridge's
//! own config type.

use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use tincan_appservice::cli::{Cli, Command, ConfigAction};
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_sip::config::{ENV_PREFIX, SipBridgeConfig};

/// Like `tincan_common::telemetry::init`, but the default filter keeps rsipstack at `warn`: at `info` it logs
/// every SIP message whole, numbers and message texts included, which must not reach logs in clear.
fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rsipstack=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let config: SipBridgeConfig = match tincan_common::load_config(cli.config.as_deref(), ENV_PREFIX) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Config { action: ConfigAction::Check } => {
            println!("{}", serde_json::to_string_pretty(&config).unwrap_or_default());
            let problems = config.core().validate_tokens();
            if problems.is_empty() {
                eprintln!("config ok");
                ExitCode::SUCCESS
            } else {
                eprintln!("invalid config:\n  - {}", problems.join("\n  - "));
                ExitCode::FAILURE
            }
        }
        Command::Registration => {
            let core = config.core();
            let tokens = Tokens::from_config(&core).unwrap_or_else(|| {
                use rand::SeedableRng;
                eprintln!("note: fresh tokens generated; set appservice.as_token and appservice.hs_token to them");
                Tokens::generate(&mut rand::rngs::StdRng::from_os_rng())
            });
            print!("{}", registration_yaml(&core, core.ghost_prefix("sip_"), &tokens));
            ExitCode::SUCCESS
        }
        Command::Run => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async move {
                let running = match tincan_sip::run::start(config, Arc::new(tincan_common::SystemClock)).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("tincan-sip: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("stopping");
                running.stop().await;
                ExitCode::SUCCESS
            })
        }
    }
}
