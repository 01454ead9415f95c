//! One function per command, on the client core.

use crate::args::{AccountAction, Args, Command, ContactsCommand, LockAction};
use crate::output::{EXIT_NOT_DELIVERED, Unconfirmed, print};
use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tincan_client_core::{
    CallSignal, CallSignalKind, CallerSource, ClientConfig, ClientError, Contact, Decision, Delivery, DirectoryConfig,
    IncomingMessage, KeyStatus, Route, SentToNumber, StoreKey, TincanClient, TransparencyLogConfig, Validation,
    Warning, contacts::parse_contacts,
};
use tokio::io::AsyncBufReadExt;

/// Runs the command.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let mut client = TincanClient::open(config(&args)?).await?;
    if args.charter_url.is_some() {
        let status = client.refresh_charter().await?;
        if let Some(why) = &status.refused {
            eprintln!(
                "warning: the charter's newest trust list was refused ({why}); using list version {}",
                status.version
            );
        }
    }
    match args.command {
        Command::Providers => {
            let providers =
                client.providers().ok_or_else(|| anyhow::anyhow!("no charter configured (--charter-url)"))?;
            print(json, &providers, || {
                providers
                    .iter()
                    .map(|p| format!("{}  {}  numbers {}", p.name, p.ext_url, p.prefixes.join(" ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Register { phone, provider } => {
            if let Some(name) = &provider {
                client.use_provider(name)?;
            }
            let r = client.register(&phone).await?;
            print(json, &r, || format!("A code was sent to {phone}. Run: tincan verify CODE"));
        }
        Command::Lock { action } => match action {
            LockAction::Set { pin } => {
                client.set_registration_lock(&pin).await?;
                print(json, &json!({"enabled": true}), || {
                    "Registration lock set: a new sign-in with your number needs this PIN too.".into()
                });
            }
            LockAction::Remove => {
                client.remove_registration_lock().await?;
                print(json, &json!({"enabled": false}), || "Registration lock removed.".into());
            }
            LockAction::Status => {
                let lock = client.registration_lock().await?;
                print(json, &lock, || match lock.lapses_in_ms {
                    Some(ms) if lock.enabled => format!(
                        "Registration lock on; it lapses if no device of yours is active for {} days.",
                        ms / 86_400_000
                    ),
                    _ if lock.enabled => "Registration lock on.".into(),
                    _ => "No registration lock.".into(),
                });
            }
        },
        Command::Account { action: AccountAction::Close { yes } } => {
            let user = client.user_id().ok_or(ClientError::NotLoggedIn)?;
            if !yes {
                return Err(Unconfirmed(format!(
                    "closing {user} is irreversible (its sessions end, it leaves its chats, the provider forgets \
                     it): run `tincan account close --yes` to close it; nothing was done"
                ))
                .into());
            }
            let closed = client.close_account().await?;
            print(json, &json!({"closed": closed}), || {
                format!("Closed {closed}: the provider deactivated the account; this data dir is signed out.")
            });
        }
        Command::Verify { code, pin } => {
            let s = client.verify_with_pin(&code, pin.as_deref()).await?;
            print(json, &s, || {
                let key = s.master_key.map(|k| k.to_base64()).unwrap_or_else(|| "none".into());
                let published = if s.published_for.is_empty() {
                    "not published yet".to_owned()
                } else {
                    format!("published in the directory for {}", s.published_for.join(", "))
                };
                let port = match &s.port {
                    Some(p) if p.state == "pending" => format!(
                        "\nYour number is being moved here from its provider (port {}); it reaches this account \
                         once that provider releases it, at the latest {} UTC.",
                        p.id,
                        tincan_common::clock::utc_minute(p.window_ends_at_ms)
                    ),
                    Some(p) => format!("\nPort {} of your number: {}.", p.id, p.state),
                    None => String::new(),
                };
                format!(
                    "Signed in as {} (device {}){}.\nMaster key {key}: {published}.{port}",
                    s.user_id,
                    s.device_id,
                    if s.new_account { ", new account" } else { "" }
                )
            });
        }
        Command::Whois { phone } => {
            if client.matrix().is_some() {
                client.sync_once(Duration::ZERO).await?;
            }
            let c = client.check_contact(&phone).await?;
            print(json, &c, || describe(&c));
        }
        Command::Send { phone, text, force, wait } => {
            client.sync_once(Duration::ZERO).await?;
            let sent = client.send_to_number_waiting(&phone, &text, force, Duration::from_secs(wait)).await?;
            if let Decision::Matrix { warning: Some(Warning::ForcedMismatch(m)), .. } = &sent.decision {
                eprintln!("WARNING: sent although {m} (--force)");
            }
            print(json, &sent, || {
                let via = match &sent.decision {
                    Decision::Matrix { .. } => String::new(),
                    Decision::Sip { uri, .. } => format!(" by SIP to {uri}, not end-to-end encrypted"),
                    Decision::Sms { .. } => " by SMS, end-to-end encrypted only as far as the provider's bridge".into(),
                    Decision::Pstn { .. } => " through the phone network, not end-to-end encrypted".into(),
                };
                let status = match (&sent.delivery, sent.decision.is_bridged()) {
                    (_, false) => String::new(),
                    (Delivery::Sent, true) if wait == 0 => String::new(),
                    (Delivery::Sent, true) => format!("\nNo delivery report within {wait} s."),
                    (Delivery::Delivered, true) => "\nDelivered.".into(),
                    (Delivery::Failed { reason }, true) => format!("\nNOT DELIVERED: {reason}"),
                };
                format!(
                    "Sent to {} ({}){via}{}{status}",
                    phone,
                    sent.sent.user_id,
                    key_note(sent.sent.key_status.as_ref())
                )
            });
            if let Delivery::Failed { reason } = &sent.delivery {
                eprintln!("error: not delivered: {reason}");
                return Ok(ExitCode::from(EXIT_NOT_DELIVERED));
            }
        }
        Command::Chat { phone, history, wait } => {
            chat(&client, &phone, history, Duration::from_secs(wait), json).await?
        }
        Command::Listen => listen(&client, json).await?,
        Command::Contacts { command: ContactsCommand::Import { file } } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = parse_contacts(&text);
            for bad in &parsed.invalid {
                eprintln!("skipped (not an international number): {bad}");
            }
            let found = client
                .import_contacts(&parsed.numbers, |done, total| {
                    if !json {
                        eprint!("\rlooking up {done}/{total}");
                    }
                })
                .await?;
            if !json {
                eprintln!();
            }
            let not_found: Vec<_> = parsed.numbers.iter().filter(|n| !found.iter().any(|c| &c.number == *n)).collect();
            let out = json!({
                "checked": parsed.numbers.len(),
                "invalid": parsed.invalid,
                "found": found,
                "not_found": not_found,
            });
            print(json, &out, || {
                let mut s = format!("{} of {} numbers are on the network", found.len(), parsed.numbers.len());
                for c in &found {
                    s.push_str(&format!("\n  {}  {}", c.number, c.user_id));
                }
                for n in &not_found {
                    s.push_str(&format!("\n  {n}  not on the network"));
                }
                s
            });
        }
        Command::Contacts { command: ContactsCommand::List } => {
            let list = client.verified_contacts();
            print(json, &list, || {
                if list.is_empty() {
                    return "No verified contacts yet.".into();
                }
                list.iter()
                    .map(|r| format!("{}  {}  verified key {}", r.number, r.user_id, r.key))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Status => {
            let user = client.user_id().map(|u| u.to_string());
            let number = client.number();
            let out = json!({"user_id": user, "number": number, "signed_in": user.is_some()});
            print(json, &out, || match (&user, &number) {
                (Some(u), Some(n)) => format!("Signed in as {u} ({n})"),
                (Some(u), None) => format!("Signed in as {u}"),
                _ => "Not signed in. Run: tincan register +NUMBER".into(),
            });
        }
        Command::Money(command) => crate::money::run(&client, command, args.gateway.as_ref(), json).await?,
        Command::LoginToken { homeserver, user_id, device_id, access_token } => {
            let key = client.login_with_token(&homeserver, &user_id, &device_id, &access_token).await?;
            let out = json!({"user_id": user_id, "device_id": device_id, "master_key": key});
            print(json, &out, || format!("Signed in as {user_id}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn config(args: &Args) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new(args.data_dir.clone().unwrap_or_else(default_data_dir));
    if let Some(key_file) = &args.key_file {
        c.store_key = StoreKey::File(key_file.clone());
    }
    c.ext_url = args.ext.clone();
    if let Some(url) = &args.charter_url {
        let root = match &args.charter_root {
            Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            None => tincan_client_core::CharterConfig::shipped_root()
                .ok_or_else(|| anyhow::anyhow!("this build has no charter root: give --charter-root"))?
                .to_vec(),
        };
        c.charter = Some(tincan_client_core::CharterConfig { url: url.clone(), root });
        if args.trust_anchor.is_none() {
            // The anchor (and, unless given, the log) come from the trust list.
            c.directory = Some(DirectoryConfig {
                servers: args.dns.clone(),
                apex: args.apex.clone(),
                trust_anchor: String::new(),
                allow_insecure: args.allow_insecure,
                log: match (&args.log_url, &args.log_key) {
                    (Some(url), Some(key)) => Some(TransparencyLogConfig { url: url.clone(), key: key.clone() }),
                    _ => None,
                },
            });
        }
    }
    if let Some(anchor) = &args.trust_anchor {
        let text = std::fs::read_to_string(anchor).with_context(|| format!("reading {}", anchor.display()))?;
        c.directory = Some(DirectoryConfig {
            servers: args.dns.clone(),
            apex: args.apex.clone(),
            trust_anchor: text,
            allow_insecure: args.allow_insecure,
            log: match (&args.log_url, &args.log_key) {
                (Some(url), Some(key)) => Some(TransparencyLogConfig { url: url.clone(), key: key.clone() }),
                _ => None,
            },
        });
    }
    Ok(c)
}

/// `$XDG_DATA_HOME/tincan`, else `~/.local/share/tincan`.
fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("tincan")
}

fn describe(c: &Contact) -> String {
    let validation = match c.route.validation() {
        Validation::Secure => "DNSSEC: fully validated",
        Validation::Insecure => "DNSSEC: NOT validated (insecure answers allowed)",
    };
    let mut s = format!("{}: {} ({validation})", c.number, c.route);
    if let Route::Matrix { key, .. } = &c.route {
        match key {
            Some(k) => s.push_str(&format!("\ndirectory key: {k}")),
            None => s.push_str("\ndirectory key: none published"),
        }
        s.push_str(&format!("\nkey status: {}", key_line(c.key_status.as_ref())));
    } else {
        s.push_str("\nnot reachable on the network yet");
    }
    s
}

fn key_line(k: Option<&KeyStatus>) -> String {
    match k {
        None => "unknown (not signed in)".into(),
        Some(KeyStatus::Verified { .. }) => "verified through the directory".into(),
        Some(KeyStatus::Changed { previous, current }) => {
            format!("verified through the directory; KEY CHANGED from {previous} to {current}")
        }
        Some(KeyStatus::Mismatch(m)) => format!("NOT VERIFIED: {m}"),
        Some(KeyStatus::NoDirectoryKey) => "not verified: the directory publishes no key".into(),
        Some(KeyStatus::NoIdentity) => "not verified: the contact has no cross-signing key yet".into(),
        Some(KeyStatus::InsecureAnswer) => "not verified: the directory's answer is not DNSSEC-validated".into(),
        Some(KeyStatus::NotListed { server }) => {
            format!("not verified: {server} is not a provider on the charter's trust list")
        }
        Some(KeyStatus::NoTransparencyLog) => {
            "not verified: no transparency log configured (--log-url, --log-key)".into()
        }
        Some(KeyStatus::Moved { previous_user, from, to, .. }) => format!(
            "MOVED to provider {to}: the number you verified for {previous_user} at {from} was ported (the \
             transparency log shows it); its new key matches the directory and is verified at the next check"
        ),
        Some(KeyStatus::Reassigned { previous_user, .. }) => format!(
            "verified through the directory; NUMBER CHANGED HANDS: you verified it for {previous_user}, it now \
             belongs to another account and the transparency log shows no port — confirm with your contact"
        ),
    }
}

fn key_note(k: Option<&KeyStatus>) -> String {
    match k {
        Some(KeyStatus::Verified { .. }) => ", verified".into(),
        Some(other) => format!(", key {}", key_line(Some(other))),
        None => String::new(),
    }
}

async fn chat(client: &TincanClient, phone: &str, history: u32, wait: Duration, json: bool) -> anyhow::Result<()> {
    client.sync_once(Duration::ZERO).await?;
    // The route is the core's decision; a key mismatch shows the contact's history but sends nothing.
    let (peer, messages) = match client.start_chat(phone, false).await {
        Ok(chat) => {
            if json {
                println!("{}", json!({"chat": chat}));
            } else {
                match &chat.contact {
                    Some(c) if matches!(chat.decision, Decision::Matrix { .. }) => println!("{}", describe(c)),
                    _ => println!("{phone}: {}", via(&chat.decision)),
                }
            }
            (chat.decision.user_id().to_owned(), client.room_history(&chat.room_id, history).await?)
        }
        Err(ClientError::KeyMismatch(m)) => {
            let contact = client.check_contact(phone).await?;
            if json {
                println!("{}", json!({"contact": contact}));
            } else {
                println!("{}", describe(&contact));
            }
            eprintln!(
                "WARNING: {m}. Messages you type will NOT be sent; run `tincan whois` again once it is resolved."
            );
            (m.user_id.clone(), client.history(&m.user_id, history).await?)
        }
        Err(e) => return Err(e.into()),
    };
    for m in &messages {
        show(m, json);
    }
    let mut incoming = Box::pin(client.messages());
    let sync = client.spawn_sync()?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    // Texts sent through a bridge, each until the bridge's word on it or `wait`.
    let mut reports = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                if line.trim().is_empty() { continue; }
                // The route is decided for every message: a contact who joins Tincan is reached over Matrix next.
                match client.send_to_number_watched(phone, &line, false).await {
                    Ok((sent, pending)) => {
                        if json {
                            println!("{}", json!({"sent": sent}));
                        }
                        if let Some(pending) = pending.filter(|_| !wait.is_zero()) {
                            reports.push(async move {
                                let delivery = client.await_delivery(pending, wait).await;
                                (sent, line, delivery)
                            });
                        }
                    }
                    Err(e) => eprintln!("error: not sent: {e}"),
                }
            }
            Some(m) = incoming.next() => {
                if m.sender == peer || m.room_id.is_empty() { show(&m, json); }
            }
            Some((mut sent, text, delivery)) = reports.next() => match delivery {
                Ok(d) => {
                    sent.delivery = d;
                    show_delivery(&sent, &text, wait, json);
                }
                Err(e) => eprintln!("error: no word on delivery of {text:?}: {e}"),
            },
        }
    }
    if !reports.is_empty() {
        eprintln!("note: {} text(s) left without the bridge's word on delivery (status sent)", reports.len());
    }
    sync.abort();
    Ok(())
}

/// What a bridge said of a text sent in `chat`: `{"delivery": …}` (the `send --json` object with the final
/// `status`), or a line for people.
fn show_delivery(sent: &SentToNumber, text: &str, wait: Duration, json: bool) {
    if json {
        println!("{}", json!({"delivery": sent}));
        return;
    }
    match &sent.delivery {
        Delivery::Delivered => println!("[delivered] {text}"),
        Delivery::Failed { reason } => println!("[NOT DELIVERED: {reason}] {text}"),
        Delivery::Sent => println!("[no delivery report within {} s] {text}", wait.as_secs()),
    }
}

/// How a route reaches the number, in words.
fn via(d: &Decision) -> String {
    match d {
        Decision::Matrix { user_id, .. } => format!("Matrix {user_id}"),
        Decision::Sip { uri, ghost } => format!("SIP {uri} through the provider's bridge ({ghost})"),
        Decision::Sms { ghost } => format!("SMS through the provider's bridge ({ghost})"),
        Decision::Pstn { ghost } => format!("the phone network through the provider's bridge ({ghost})"),
    }
}

fn show(m: &IncomingMessage, json: bool) {
    if json {
        println!("{}", json!({"message": m}));
    } else {
        let who = m.sender_number.as_ref().map(|n| n.to_string()).unwrap_or_else(|| m.sender.clone());
        let lock = if m.encrypted { "" } else { " [NOT ENCRYPTED]" };
        println!("<{who}>{lock} {}", m.body);
    }
}

/// `tincan listen`: messages and call signalling from everyone, until Ctrl-C. With `--json` a first line
/// `{"listening": {"user_id": …}}` once the sync runs, then one `{"message": …}` or `{"call": …}` a line.
async fn listen(client: &TincanClient, json: bool) -> anyhow::Result<()> {
    let mut messages = Box::pin(client.messages());
    let mut calls = Box::pin(client.calls());
    let sync = client.spawn_sync()?;
    let me = client.user_id().map(|u| u.to_string());
    if json {
        println!("{}", json!({"listening": {"user_id": me}}));
    } else {
        eprintln!("Listening as {} (Ctrl-C to stop).", me.as_deref().unwrap_or("nobody"));
    }
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            Some(m) = messages.next() => show(&m, json),
            Some(c) = calls.next() => show_call(&c, json),
            _ = &mut stop => break,
        }
    }
    sync.abort();
    Ok(())
}

/// A call event: `{"call": …}`, or a line for people (the candidates and SDP left out).
fn show_call(c: &CallSignal, json: bool) {
    if json {
        println!("{}", json!({"call": c}));
        return;
    }
    let who = match &c.caller {
        Some(caller) => match caller.known_by {
            CallerSource::VerifiedContact => caller.number.to_string(),
            CallerSource::SipBridge => format!("{} (by SIP, through the provider's bridge)", caller.number),
            CallerSource::SmsBridge => format!("{} (through the provider's bridge)", caller.number),
        },
        None => c.sender.clone(),
    };
    let what = match &c.kind {
        CallSignalKind::Invite { video: true, .. } => format!("incoming video call from {who}"),
        CallSignalKind::Invite { .. } => format!("incoming call from {who}"),
        CallSignalKind::Answer { .. } => format!("call answered by {who}"),
        CallSignalKind::SelectAnswer { .. } => format!("call with {who} taken"),
        CallSignalKind::Negotiate { .. } => format!("media changed by {who}"),
        CallSignalKind::Hangup { reason: Some(r) } => format!("call ended by {who} ({r})"),
        CallSignalKind::Hangup { reason: None } => format!("call ended by {who}"),
        CallSignalKind::Reject => format!("call refused by {who}"),
    };
    let lock = if c.encrypted { "" } else { " [NOT ENCRYPTED]" };
    println!("[call {}]{lock} {what}", c.call_id);
}
