//! `tincan-appservice`: the core's operator tooling (`registration`, `config check`) without a network.
//! Bridges (`tincan-bridge-sms`, …) ship their own binary with the same commands plus `run`.

use clap::Parser;
use std::process::ExitCode;
use tincan_appservice::cli::{Cli, run_tooling};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tincan_common::telemetry::init(if cli.log_json {
        tincan_common::telemetry::LogFormat::Json
    } else {
        tincan_common::telemetry::LogFormat::Human
    });
    // No connector here: the ghost prefix must come from the config.
    match run_tooling(&cli, "TINCAN_APPSERVICE_", "") {
        Some(code) => code,
        None => {
            eprintln!("the core has no network connector: run a bridge binary (e.g. tincan-bridge-sms) instead");
            ExitCode::from(2)
        }
    }
}
