//! Command-line arguments of `tincan`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Tincan: a phone-number messenger on Matrix.
#[derive(Debug, Parser)]
#[command(name = "tincan", version)]
pub struct Args {
    /// Where the session, keys and messages are kept (default: $XDG_DATA_HOME/tincan or
    /// ~/.local/share/tincan).
    #[arg(long, env = "TINCAN_CLI_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The key file that encrypts the data dir (Matrix keys and stores, the access token): made with a random
    /// key on first run, mode 0600. Default: store.key in the data dir.
    #[arg(long, env = "TINCAN_CLI_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// The homeserver extension's URL (sign-up, key publishing, contact import).
    #[arg(long = "ext", env = "TINCAN_CLI_EXT_URL", global = true)]
    pub ext: Option<url::Url>,
    /// DNS server(s) of the directory, `IP:PORT`; repeat or separate with commas.
    #[arg(long, env = "TINCAN_CLI_DNS", value_delimiter = ',', global = true)]
    pub dns: Vec<SocketAddr>,
    /// The ENUM apex of the directory.
    #[arg(long, env = "TINCAN_CLI_APEX", default_value = "e164.tincan.test.", global = true)]
    pub apex: String,
    /// A file with the apex's trust anchor (DS or DNSKEY record, or a `trust-anchors` clause).
    #[arg(long, env = "TINCAN_CLI_TRUST_ANCHOR", global = true)]
    pub trust_anchor: Option<PathBuf>,
    /// Accept unsigned directory answers (development only; they never verify a contact).
    #[arg(long, global = true)]
    pub allow_insecure: bool,
    /// The directory's API URL, whose transparency log (`/v1/log/…`) every answer is checked against.
    #[arg(long, env = "TINCAN_CLI_LOG_URL", global = true, requires = "log_key")]
    pub log_url: Option<url::Url>,
    /// The transparency log's Ed25519 public key (unpadded base64), pinned like the trust anchor.
    #[arg(long, env = "TINCAN_CLI_LOG_KEY", global = true, requires = "log_url")]
    pub log_key: Option<String>,
    /// The provider's gateway (balance, top-up, history, rates), e.g. `http://127.0.0.1:8095`.
    #[arg(long, env = "TINCAN_CLI_GATEWAY_URL", global = true)]
    pub gateway: Option<url::Url>,
    /// The charter's trust list (base URL of its repository): the directory's trust anchor and log key come from
    /// it unless --trust-anchor / --log-key override them, sign-up is offered only at listed providers, and
    /// contacts at unlisted providers are never verified. Fetched and verified at every command; the last good
    /// list is kept in the data dir.
    #[arg(long, env = "TINCAN_CLI_CHARTER_URL", global = true)]
    pub charter_url: Option<url::Url>,
    /// The charter's root.json to trust (default: the root built into this program, if any).
    #[arg(long, env = "TINCAN_CLI_CHARTER_ROOT", global = true)]
    pub charter_root: Option<PathBuf>,
    /// Machine-readable output (one JSON document per command; chat prints one JSON object a line).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log lines on stderr: `-v` also the libraries' warnings and errors (matrix-sdk…), `-vv` info, `-vvv`
    /// debug. By default only tincan's own warnings show; `RUST_LOG` overrides either.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign up (or sign in) with a phone number: an SMS code is sent to it.
    Register {
        /// The number, international form (+44…).
        phone: String,
        /// Sign up at this provider of the charter's trust list (see `tincan providers`) instead of --ext.
        #[arg(long)]
        provider: Option<String>,
    },
    /// The providers of the charter's trust list one may sign up with.
    Providers,
    /// Finish `register` with the code from the SMS.
    Verify {
        /// The code.
        code: String,
        /// The account's registration-lock PIN, when it has one (`registration_locked` says so).
        #[arg(long)]
        pin: Option<String>,
    },
    /// The registration lock: a PIN a new sign-in with your number by SMS code must also give.
    Lock {
        /// What to do.
        #[command(subcommand)]
        action: LockAction,
    },
    /// The account itself: close the one your number left behind when it moved to another provider.
    Account {
        /// What to do.
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Who is behind a number: route, DNSSEC status, key status.
    Whois {
        /// The number.
        phone: String,
    },
    /// Send a text to a number.
    Send {
        /// The number.
        phone: String,
        /// The text.
        text: String,
        /// Send even when the contact's key does not match the directory's.
        #[arg(long)]
        force: bool,
        /// Through a bridge (SMS): seconds to wait for its word on delivery (`delivered` or `failed`); after
        /// that the status is `sent`. 0: do not wait.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        wait: u64,
    },
    /// Chat with a number: history, then live messages; type a line to send it, Ctrl-D to leave.
    Chat {
        /// The number.
        phone: String,
        /// Messages of history to show.
        #[arg(long, default_value_t = 20)]
        history: u32,
        /// Through a bridge (SMS): seconds to watch each text sent for the bridge's word on delivery, printed
        /// when it comes (`delivered` or `failed`); after that it stays `sent`. 0: do not watch.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        wait: u64,
    },
    /// Everything that comes in, from everyone, as it comes: messages, and calls ringing and ending (a phone
    /// calling through the provider's SIP bridge shows with its number). Calls are not answered here: this
    /// client has no audio; answer in an app. Until Ctrl-C.
    Listen,
    /// Contacts.
    Contacts {
        /// What to do with them.
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// Show the signed-in account.
    Status,
    /// Money at the provider: balance, topup, history, rates.
    #[command(flatten)]
    Money(crate::money::MoneyCommand),
    /// Sign in with an existing access token (operators and tests).
    #[command(hide = true)]
    LoginToken {
        /// Homeserver URL.
        #[arg(long)]
        homeserver: String,
        /// Matrix ID.
        #[arg(long)]
        user_id: String,
        /// Device ID.
        #[arg(long)]
        device_id: String,
        /// Access token.
        #[arg(long, env = "TINCAN_CLI_ACCESS_TOKEN")]
        access_token: String,
    },
}

/// `contacts …`.
#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Find which numbers of a file (vCard, or one number a line) are on the network.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// The contacts verified against the directory.
    List,
}

/// `tincan lock …`.
#[derive(Debug, clap::Subcommand)]
pub enum LockAction {
    /// Sets (or replaces) the PIN (4 to 64 characters).
    Set {
        /// The PIN.
        pin: String,
    },
    /// Removes the lock.
    Remove,
    /// Whether the lock is on (and reports this device as active, which keeps it from lapsing).
    Status,
}

/// `tincan account …`.
#[derive(Debug, clap::Subcommand)]
pub enum AccountAction {
    /// Closes (deactivates) this account at its provider (--ext), once your number moved away from it to another
    /// provider by a completed port. Irreversible: the account's sessions end, it leaves its chats, and the
    /// provider forgets it; this data dir's session is forgotten too.
    Close {
        /// Confirms that the account is to be closed for good (without it nothing is done).
        #[arg(long)]
        yes: bool,
    },
}
