//! Commands typed in an SMS DM (a message starting with `!` is a command, never sent):
//! `!price TEXT` (segments, encoding and price of TEXT to this number), `!numbers` (the numbers you send from),
//! `!number new` (another number from the pool), `!number use +NUMBER` (send from it, here and in new DMs),
//! `!help`. The answer comes as a notice from the ghost (ℹ …).

use super::Inner;
use super::status::notice;
use crate::protocol::segment::{self, Coding};
use ruma::UserId;
use tincan_appservice::PortalRef;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `!price TEXT`.
    Price(String),
    /// `!numbers`.
    Numbers,
    /// `!number new`.
    NewNumber,
    /// `!number use +NUMBER`.
    UseNumber(String),
    /// `!help`, or anything unknown after `!`.
    Help,
}

/// The command in `text`, if it is one (`!` first; `!!text` is text starting with one `!`, sent as SMS).
pub fn parse(text: &str) -> Option<Command> {
    let t = text.trim_start();
    let rest = t.strip_prefix('!')?;
    if rest.starts_with('!') {
        return None;
    }
    let (word, arg) = rest.split_once(char::is_whitespace).map_or((rest, ""), |(w, a)| (w, a.trim()));
    Some(match (word.to_ascii_lowercase().as_str(), arg) {
        ("price", a) if !a.is_empty() => Command::Price(a.to_owned()),
        ("numbers", "") => Command::Numbers,
        ("number", "new") => Command::NewNumber,
        ("number", a) if a.starts_with("use ") => Command::UseNumber(a[4..].trim().to_owned()),
        _ => Command::Help,
    })
}

const HELP: &str = "ℹ Commands: !price TEXT — what TEXT costs as SMS to this number; !numbers — the numbers you \
                    send from; !number new — get another number; !number use +NUMBER — send from that number. \
                    Start a message with !! to send one starting with !.";

/// Runs a command and answers in the portal.
pub(crate) async fn run(b: &Inner, user: &UserId, portal: &PortalRef, command: Command) {
    let answer = match answer(b, user, portal, command).await {
        Ok(a) => a,
        Err(e) => format!("⚠ {e}"),
    };
    let Some(handle) = b.handle.get() else { return };
    let id = format!("cmd.{}.{}", b.now_ms(), answer.len());
    if let Err(e) = notice(handle, &portal.key, &portal.other_user, &id, &answer).await {
        tracing::warn!(error = %e, "answering a command failed");
    }
}

async fn answer(
    b: &Inner,
    user: &UserId,
    portal: &PortalRef,
    command: Command,
) -> Result<String, crate::store::StoreError> {
    let to = portal.other_user.as_str();
    Ok(match command {
        Command::Help => HELP.to_owned(),
        Command::Price(text) => {
            let c = segment::count(&text);
            let coding = match c.coding {
                Coding::Gsm7 => "GSM 7-bit",
                Coding::Ucs2 => "UCS-2",
            };
            let what = format!("{} SMS ({coding}, {} characters)", c.parts, c.chars);
            if b.billing.is_free() {
                format!("ℹ That is {what} to {to}: free on this bridge.")
            } else {
                match b.billing.quote(user.as_str(), to, c.parts as u32).await {
                    Ok(q) => format!("ℹ That is {what} to {to}: {} {} ({} each).", q.total, q.currency, q.unit_price),
                    Err(e) => format!("⚠ That is {what} to {to}; no price: {e}"),
                }
            }
        }
        Command::Numbers => {
            let mut tx = b.store.begin().await?;
            let held = tx.numbers().held_by(user.as_str()).await?;
            let here = tx.numbers().conversation(user.as_str(), to).await?;
            if held.is_empty() {
                "ℹ You have no number yet: one is given to you with your first SMS.".to_owned()
            } else {
                let list: Vec<String> = held
                    .iter()
                    .map(|h| format!("{}{}", h.number, if h.is_default { " (default)" } else { "" }))
                    .collect();
                format!(
                    "ℹ Your numbers: {}. This chat sends from {}.",
                    list.join(", "),
                    here.as_deref().unwrap_or("your default")
                )
            }
        }
        Command::NewNumber => {
            let mut tx = b.store.begin().await?;
            match tx.numbers().assign(user.as_str(), b.now_ms() as i64).await? {
                Some(n) => {
                    tx.commit().await?;
                    format!("ℹ {n} is yours now. Send from it with !number use {n}")
                }
                None => "⚠ No number is free; ask the provider.".to_owned(),
            }
        }
        Command::UseNumber(n) => {
            let mut tx = b.store.begin().await?;
            if tx.numbers().set_default(user.as_str(), &n).await? {
                tx.numbers().set_conversation(user.as_str(), to, &n).await?;
                tx.commit().await?;
                format!("ℹ This chat and new ones send from {n} now.")
            } else {
                format!("⚠ {n} is not one of your numbers (see !numbers).")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("!price hello there"), Some(Command::Price("hello there".into())));
        assert_eq!(parse("  !numbers"), Some(Command::Numbers));
        assert_eq!(parse("!number new"), Some(Command::NewNumber));
        assert_eq!(parse("!number use +447700900002"), Some(Command::UseNumber("+447700900002".into())));
        assert_eq!(parse("!PRICE x"), Some(Command::Price("x".into())));
        assert_eq!(parse("!price"), Some(Command::Help));
        assert_eq!(parse("!whatever"), Some(Command::Help));
        assert_eq!(parse("hello !price"), None);
        assert_eq!(parse("!!important"), None, "!! escapes");
    }
}
