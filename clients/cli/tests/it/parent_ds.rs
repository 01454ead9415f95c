//! `tincan whois` refuses a directory whose parent zone publishes another DS set than the charter's trust list
//! names (exit 3, `--json` code `parent_ds_mismatch`, no key status), and answers when they agree; the real
//! directory, Knot as the parent and Unbound as the resolver (`parent_dns`).

use crate::cli::{err, json, out};
use crate::parent_dns::{NUM, ParentWorld, USER};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use tincan_charter::list::{ListInput, TrustedDirectory};
use tincan_testkit::directory::APEX;

/// `tincan ARGS` with the charter's list (anchor and log from it) and `dns` as the DNS server.
fn tincan(w: &ParentWorld, root: &Path, data: &Path, dns: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tincan"))
        .arg("--data-dir")
        .arg(data)
        .args(["--dns", &dns.to_string(), "--apex", APEX, "--charter-url", &w.charter.url(), "--charter-root"])
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("tincan runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whois_refuses_a_directory_whose_parent_ds_is_not_the_charters() -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root.json");
    std::fs::write(&root, w.charter.root())?;

    let agreeing = w.resolver("agreeing", &w.own).await?;
    let o = tincan(&w, &root, &tmp.path().join("a"), agreeing.addr, &["--json", "whois", NUM]);
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    assert_eq!(json(&o)["route"]["user_id"], USER, "{}", out(&o));

    let hijacked = w.resolver("hijacked", std::slice::from_ref(&w.stranger)).await?;
    let data = tmp.path().join("h");
    let o = tincan(&w, &root, &data, hijacked.addr, &["--json", "whois", NUM]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", out(&o), err(&o));
    let v = json(&o);
    assert_eq!(v["error"]["code"], "parent_ds_mismatch", "{v}");
    assert!(v.get("key_status").is_none() && v.get("route").is_none(), "{v}");
    let o = tincan(&w, &root, &data, hijacked.addr, &["whois", NUM]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(
        err(&o).contains("WARNING") && err(&o).contains("is not the one the charter's trust list names"),
        "{}",
        err(&o)
    );
    assert!(!out(&o).contains(USER), "no route shown: {}", out(&o));
    Ok(())
}

/// `--trust-anchor` pinned to a key the charter's list no longer names (the list moved to another key): exit 3,
/// `anchor_not_vouched`, a WARNING and no route, even with the directory alone as DNS (no parent to compare).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whois_refuses_a_pinned_trust_anchor_the_charter_does_not_vouch_for() -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root.json");
    std::fs::write(&root, w.charter.root())?;
    let anchor = tmp.path().join("anchor.ds");
    std::fs::write(&anchor, w.own.join("\n"))?;
    let pinned = anchor.to_str().unwrap();

    // Pinned while the list names it: answered.
    let data = tmp.path().join("a");
    let o = tincan(&w, &root, &data, w.directory.dns, &["--trust-anchor", pinned, "--json", "whois", NUM]);
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    assert_eq!(json(&o)["route"]["user_id"], USER, "{}", out(&o));

    let listed = TrustedDirectory {
        id: "test".into(),
        apex: APEX.into(),
        ds: vec![w.stranger.clone()],
        api_url: w.directory.api.parse()?,
        log_key: w.directory.log_key().await?,
        dns: vec![],
    };
    w.charter.publish_list(ListInput { directories: vec![listed], providers: vec![] }, 2);
    let data = tmp.path().join("r");
    let o = tincan(&w, &root, &data, w.directory.dns, &["--trust-anchor", pinned, "--json", "whois", NUM]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", out(&o), err(&o));
    let v = json(&o);
    assert_eq!(v["error"]["code"], "anchor_not_vouched", "{v}");
    assert!(v.get("key_status").is_none() && v.get("route").is_none(), "{v}");
    let o = tincan(&w, &root, &data, w.directory.dns, &["--trust-anchor", pinned, "whois", NUM]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("WARNING") && err(&o).contains("does not vouch for"), "{}", err(&o));
    assert!(!out(&o).contains(USER), "no route shown: {}", out(&o));
    Ok(())
}

/// The charter drops the directory from a new, valid list (version 2 names only another apex): `whois` with
/// the anchor from the list stops with exit 3, `directory_not_listed` and a WARNING, on the run that fetches
/// version 2 and on the next one (which opens on the stored version 2); once version 3 names the directory
/// again, the next run fetches it and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whois_refuses_a_directory_the_charter_list_drops_and_answers_once_it_is_listed_again() -> anyhow::Result<()> {
    let Some(w) = ParentWorld::start().await? else { return Ok(()) };
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("root.json");
    std::fs::write(&root, w.charter.root())?;
    let data = tmp.path().join("d");
    let log_key = w.directory.log_key().await?;
    let publish_at = |apex: &str, version: u64| -> anyhow::Result<()> {
        let listed = TrustedDirectory {
            id: "test".into(),
            apex: apex.into(),
            // A DS record's owner is the apex it is listed for (the charter refuses others).
            ds: w.own.iter().map(|l| l.replacen(APEX, apex, 1)).collect(),
            api_url: w.directory.api.parse()?,
            log_key: log_key.clone(),
            dns: vec![],
        };
        w.charter.publish_list(ListInput { directories: vec![listed], providers: vec![] }, version);
        Ok(())
    };

    let o = tincan(&w, &root, &data, w.directory.dns, &["--json", "whois", NUM]);
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    assert_eq!(json(&o)["route"]["user_id"], USER, "{}", out(&o));

    publish_at("other.tincan.test.", 2)?;
    for run in ["fetching version 2", "on the stored version 2"] {
        let o = tincan(&w, &root, &data, w.directory.dns, &["--json", "whois", NUM]);
        assert_eq!(o.status.code(), Some(3), "{run}: {}\n{}", out(&o), err(&o));
        let v = json(&o);
        assert_eq!(v["error"]["code"], "directory_not_listed", "{run}: {v}");
        assert!(v.get("route").is_none() && !out(&o).contains(USER), "{run}: {v}");
    }
    let o = tincan(&w, &root, &data, w.directory.dns, &["whois", NUM]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("WARNING") && err(&o).contains("does not name the directory"), "{}", err(&o));

    publish_at(APEX, 3)?;
    let o = tincan(&w, &root, &data, w.directory.dns, &["--json", "whois", NUM]);
    assert!(o.status.success(), "listed again: {}\n{}", out(&o), err(&o));
    assert_eq!(json(&o)["route"]["user_id"], USER, "{}", out(&o));
    Ok(())
}
