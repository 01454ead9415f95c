//! `tincan account close` (issue #22) through the real binary and the real chain (Synapse, `tincan-ext`, the
//! directory; see the core's `chain.rs`): closing is irreversible, so without `--yes` nothing is done
//! (`confirmation_needed`); with it, an account whose number never moved away to another provider is refused by
//! the extension (409 `IO.TINCAN.NOT_MOVED_AWAY`), which the CLI says in words and as `not_moved_away` (exit 1),
//! and the account and this data dir's session are kept. Closing after a completed port is the client core's
//! `porting` test (two providers).

use crate::acceptance::{sign_up, tincan};
use crate::chain::Chain;
use crate::cli::{err, json, out};

const NUM: &str = "+442079460801";
const TAMPERED_NUM: &str = "+442079460805";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_number_never_moved_is_not_closed() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(TAMPERED_NUM).await? else { return Ok(()) };
    let d = tempfile::tempdir()?;
    let signed = sign_up(&chain, d.path(), NUM);
    let user = signed["user_id"].as_str().expect("verify names the account").to_owned();

    // Without --yes: nothing done, and the user is told how to confirm.
    let o = tincan(&chain, d.path(), &["account", "close"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", out(&o), err(&o));
    assert!(err(&o).contains("irreversible") && err(&o).contains("--yes"), "{}", err(&o));
    let o = tincan(&chain, d.path(), &["--json", "account", "close"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(json(&o)["error"]["code"], "confirmation_needed", "{}", out(&o));

    // With --yes: the provider refuses, its refusal typed.
    let o = tincan(&chain, d.path(), &["--json", "account", "close", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", out(&o), err(&o));
    assert_eq!(json(&o)["error"]["code"], "not_moved_away", "{}\n{}", out(&o), chain.ext.log_tail(20));
    let o = tincan(&chain, d.path(), &["account", "close", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("has not moved away to another provider"), "{}", err(&o));
    assert!(out(&o).is_empty(), "{}", out(&o));

    // The account and the session are kept: still signed in, and the token still works (`whois` syncs with it
    // first; a deactivated account's token would fail there).
    let o = tincan(&chain, d.path(), &["--json", "status"]);
    assert_eq!(json(&o)["user_id"], user.as_str(), "{}", out(&o));
    let o = tincan(&chain, d.path(), &["--json", "whois", NUM]);
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    Ok(())
}
