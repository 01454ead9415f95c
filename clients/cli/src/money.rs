//! The money commands: `balance`, `topup CODE`, `history`, `rates +NUMBER`, against the provider's gateway
//! (`--gateway URL`), signed in with the user's Matrix identity (an OpenID token exchanged for an API token on
//! every command; nothing about the gateway is stored).

use crate::output::print;
use clap::Subcommand;
use serde_json::json;
use tincan_client_core::gateway::{Gateway, HistoryItem, Service};
use tincan_client_core::{ClientError, E164, TincanClient};

/// The money commands (flattened into `tincan`'s commands).
#[derive(Debug, Subcommand)]
pub enum MoneyCommand {
    /// Your balance at the provider: what you have, what is held for calls in progress, what you can spend.
    Balance,
    /// Top up with a voucher code.
    Topup {
        /// The code as printed (`XXXX-XXXX-XXXX-XXXX`; case, spaces and dashes do not matter).
        code: String,
    },
    /// Your account's movements, newest first.
    History {
        /// How many (1 to 200).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: u32,
        /// Older than this cursor (the `next` of the previous page).
        #[arg(long)]
        before: Option<String>,
    },
    /// What calling (or texting) a number costs you, and what your balance pays for.
    Rates {
        /// The number, international form (+49…).
        number: String,
        /// The price of a text message instead of a call.
        #[arg(long)]
        sms: bool,
    },
}

/// Runs a money command.
pub async fn run(
    client: &TincanClient,
    command: MoneyCommand,
    gateway: Option<&url::Url>,
    json: bool,
) -> anyhow::Result<()> {
    // The number is checked before anything goes over the network.
    let number = match &command {
        MoneyCommand::Rates { number, .. } => Some(E164::parse(number).map_err(ClientError::from)?),
        _ => None,
    };
    let url = gateway.ok_or(ClientError::NoGateway)?;
    let gw: Gateway = client.gateway(url).await?;
    match command {
        MoneyCommand::Balance => {
            let b = gw.balance().await?;
            print(json, &b, || {
                format!(
                    "Balance {} {c}: {} {c} available, {} {c} held for calls and messages in progress",
                    b.balance,
                    b.available,
                    b.held,
                    c = b.currency
                )
            });
        }
        MoneyCommand::Topup { code } => {
            let r = gw.top_up(&code).await?;
            print(json, &r, || format!("Credited {}. Balance now {}.", r.credited, r.balance));
        }
        MoneyCommand::History { limit, before } => {
            let page = gw.history(limit, before.as_deref()).await?;
            print(json, &page, || {
                if page.items.is_empty() {
                    return "No movements yet.".into();
                }
                let mut s = page.items.iter().map(line).collect::<Vec<_>>().join("\n");
                if let Some(next) = &page.next {
                    s.push_str(&format!("\nOlder: tincan history --before {next}"));
                }
                s
            });
        }
        MoneyCommand::Rates { sms, .. } => {
            let number = number.expect("parsed above");
            let service = if sms { Service::Sms } else { Service::Voice };
            let p = gw.price(number.as_str(), service).await?;
            let out = json!({"number": number.as_str(), "service": if sms { "sms" } else { "voice" }, "price": p});
            print(json, &out, || {
                let place = if p.description.is_empty() {
                    format!("prefix {}", p.prefix)
                } else {
                    format!("{}, prefix {}", p.description, p.prefix)
                };
                let c = &p.currency;
                if sms {
                    format!(
                        "{number} ({place}): {} {c} per SMS segment. Your available {} {c} pays for {} segments.",
                        p.per_segment,
                        p.available,
                        p.max_segments.unwrap_or(0)
                    )
                } else {
                    let connect = if is_zero(&p.connect_fee) {
                        String::new()
                    } else {
                        format!(" plus {} {c} when answered", p.connect_fee)
                    };
                    let secs = p.max_seconds.unwrap_or(0);
                    format!(
                        "{number} ({place}): {} {c} a minute{connect}, billed {}/{}. Your available {} {c} pays for \
                         {}:{:02} min.",
                        p.per_minute,
                        p.first_increment,
                        p.next_increment,
                        p.available,
                        secs / 60,
                        secs % 60
                    )
                }
            });
        }
    }
    Ok(())
}

/// `2026-12-06 10:41 UTC  +10.00  voucher  memo`.
fn line(i: &HistoryItem) -> String {
    let sign = if i.amount.starts_with('-') { "" } else { "+" };
    let memo = if i.memo.is_empty() { &i.reference } else { &i.memo };
    format!("{}  {sign}{}  {}  {memo}", utc(i.at_ms), i.amount, i.kind).trim_end().to_owned()
}

fn is_zero(amount: &str) -> bool {
    amount.bytes().all(|b| matches!(b, b'0' | b'.' | b'-'))
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM UTC`.
fn utc(ms: i64) -> String {
    format!("{} UTC", tincan_common::clock::utc_minute(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_553_660_000), "2026-12-06 10:41 UTC");
        assert_eq!(utc(-60_000), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn zero_amounts() {
        assert!(is_zero("0") && is_zero("0.00") && !is_zero("0.01"));
    }
}
