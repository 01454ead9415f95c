//! Registration lock through the client (issue #22): the owner sets a PIN; a SIM-swap attacker, who receives the
//! number's SMS code on a device of their own, gets nothing with the code alone or with a wrong PIN (no session,
//! nothing signed in); the owner on a new device gets in with the code and the PIN, as the same account. Against
//! a real `tincan-ext` (with `registration_lock.secret`) beside a real Synapse, through the client core's
//! `register` / `verify` / `verify_with_pin`. The lapse (the code alone works again after a week without an active
//! device) needs the extension's clock moved: `homeserver-ext` tests `registration_lock`.
//!
//! Skipped without the `tincan-ext` and `tincan-directory` binaries (see [`tincan_testkit::federation`]).

use crate::federation::{config, sign_up};
use tincan_client_core::TincanClient;
use tincan_testkit::federation::Federation;

const OWNER: &str = "+442079460501";
const PIN: &str = "731904";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_swap_attacker_with_the_code_and_no_pin_gets_nothing_and_the_owner_with_the_pin_gets_in()
-> anyhow::Result<()> {
    let settings =
        "[registration_lock]\nsecret = \"test-only-registration-lock-secret-0123456789\"\nslowdown_secs = 1\n";
    let Some(fed) = Federation::builder(&[("a", &["+44"])]).ext_settings("a", settings).start().await? else {
        return Ok(());
    };
    let p = fed.provider("a");
    let (d_owner, d_attacker, d_new) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);

    // The owner signs up and sets a PIN.
    let (owner, signed) = sign_up(&fed, "a", d_owner.path(), OWNER).await?;
    assert!(!owner.registration_lock().await?.enabled);
    owner.set_registration_lock(PIN).await?;
    let lock = owner.registration_lock().await?;
    assert!(lock.enabled && lock.lapses_in_ms.is_some_and(|ms| ms > 0), "{lock:?}");

    // The attacker has the number's SMS: the code alone is refused, and so is a wrong PIN; nothing signed in.
    let mut attacker = TincanClient::open(config(&fed, p, d_attacker.path())).await?;
    attacker.register(OWNER).await?;
    let code = p.ext.code(OWNER)?;
    let refused = attacker.verify(&code).await.expect_err("the code alone signs in to a locked account");
    assert!(refused.needs_pin() && refused.code() == "registration_locked", "{refused:?}");
    let wrong = attacker.verify_with_pin(&code, Some("000000")).await.expect_err("a wrong PIN signs in");
    assert_eq!(wrong.code(), "wrong_pin", "{wrong:?}");
    assert!(attacker.user_id().is_none(), "the attacker has a session");

    // The owner on a new device: the code asks for the PIN; with it (after the wrong PIN's pause), in, as the
    // same account.
    let mut owner2 = TincanClient::open(config(&fed, p, d_new.path())).await?;
    owner2.register(OWNER).await?;
    let code = p.ext.code(OWNER)?;
    assert!(owner2.verify(&code).await.expect_err("no PIN").needs_pin());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let back = owner2.verify_with_pin(&code, Some(PIN)).await?;
    assert_eq!(back.user_id, signed.user_id);
    assert_eq!(owner2.user_id().map(|u| u.to_string()), Some(signed.user_id.clone()));
    assert!(owner2.registration_lock().await?.enabled, "the lock stays on");

    // The PIN is nowhere in the extension's log.
    assert!(!p.ext.log_tail(100_000).contains(PIN), "the PIN was logged");
    Ok(())
}
