//! `tincan-sms`: the SMS bridge (`run`, `registration`, `config check`; see the README).

use clap::Parser;
use std::process::ExitCode;
use tincan_appservice::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tincan_common::telemetry::init(if cli.log_json {
        tincan_common::telemetry::LogFormat::Json
    } else {
        tincan_common::telemetry::LogFormat::Human
    });
    tincan_sms::cli::main(&cli)
}
