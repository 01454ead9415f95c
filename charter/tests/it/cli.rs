//! The `tincan-charter` binary: keys, a root, a list, signatures, publishing, fetching.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

fn charter(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tincan-charter")).current_dir(dir).args(args).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = charter(dir, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = charter(dir, args);
    assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

const LIST: &str = r#"
[[directory]]
id = "main"
apex = "e164.tincan.test."
ds = ["e164.tincan.test. 3600 IN DS 12345 15 2 0000000000000000000000000000000000000000000000000000000000000000"]
api_url = "http://127.0.0.1:1/"
log_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo"

[[provider]]
name = "Alpha"
homeservers = ["alpha.test"]
ext_url = "http://127.0.0.1:2/"
directory = "main"
provider_id = "alpha"
prefixes = ["+44"]
services = ["matrix", "sms"]
"#;

#[test]
fn keys_root_list_sign_publish_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for k in ["root", "list1", "list2"] {
        ok(d, &["key", "new", k]);
        assert_eq!(std::fs::metadata(d.join(k)).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // A key file is never overwritten.
    let before = std::fs::read(d.join("root")).unwrap();
    assert!(fails(d, &["key", "new", "root"]).contains("exists"));
    assert_eq!(std::fs::read(d.join("root")).unwrap(), before);
    ok(
        d,
        &[
            "root",
            "new",
            "--root-key",
            "root.pub",
            "--list-key",
            "list1.pub",
            "--list-key",
            "list2.pub",
            "--list-threshold",
            "2",
            "--out",
            "root.json",
        ],
    );
    // Unsigned, the root does not verify.
    assert!(fails(d, &["verify", "root.json"]).contains("root role needs 1"));
    // A list key cannot sign the root.
    assert!(fails(d, &["sign", "--key", "list1", "root.json"]).contains("not a key of the root role"));
    ok(d, &["sign", "--key", "root", "root.json"]);
    ok(d, &["verify", "root.json"]);

    std::fs::write(d.join("list.toml"), LIST).unwrap();
    ok(d, &["list", "new", "--input", "list.toml", "--out", "v1.json"]);
    ok(d, &["sign", "--key", "list1", "--root", "root.json", "v1.json"]);
    // One of two signatures: verify and publish refuse.
    assert!(
        fails(d, &["verify", "--root", "root.json", "v1.json"])
            .contains("list role needs 2 valid signature(s) of its keys, found 1")
    );
    assert!(fails(d, &["publish", "--root", "root.json", "--list", "v1.json", "--dir", "www"]).contains("found 1"));
    // The root key is not a list key.
    assert!(
        fails(d, &["sign", "--key", "root", "--root", "root.json", "v1.json"]).contains("not a key of the list role")
    );
    ok(d, &["sign", "--key", "list2", "--root", "root.json", "v1.json"]);
    assert!(ok(d, &["publish", "--root", "root.json", "--list", "v1.json", "--dir", "www"]).contains("version 1"));

    // The next version: numbered from the published one; publishing the old one again is refused.
    ok(d, &["list", "new", "--input", "list.toml", "--previous", "www/trust-list.json", "--out", "v2.json"]);
    ok(d, &["sign", "--key", "list1", "--root", "root.json", "v2.json"]);
    ok(d, &["sign", "--key", "list2", "--root", "root.json", "v2.json"]);
    ok(d, &["publish", "--root", "root.json", "--list", "v2.json", "--dir", "www"]);
    assert!(fails(d, &["publish", "--root", "root.json", "--list", "v1.json", "--dir", "www"]).contains("rollback"));

    // An expired list cannot be made valid by signing.
    ok(
        d,
        &[
            "list",
            "new",
            "--input",
            "list.toml",
            "--version",
            "3",
            "--expires",
            "2001-01-01T00:00:00Z",
            "--out",
            "old.json",
        ],
    );
    ok(d, &["sign", "--key", "list1", "--root", "root.json", "old.json"]);
    ok(d, &["sign", "--key", "list2", "--root", "root.json", "old.json"]);
    assert!(fails(d, &["verify", "--root", "root.json", "old.json"]).contains("expired"));

    // A client's view, from the served directory.
    let url = format!("file://{}/www/", d.display());
    let out = ok(d, &["fetch", "--root", "root.json", "--url", &url, "--state", "state"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["version"], 2);
    assert_eq!(list["providers"][0]["provider_id"], "alpha");
}

#[test]
fn a_readable_key_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["key", "new", "k"]);
    ok(d, &["root", "new", "--root-key", "k.pub", "--list-key", "k.pub", "--out", "root.json"]);
    std::fs::set_permissions(d.join("k"), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(fails(d, &["sign", "--key", "k", "root.json"]).contains("chmod 600"));
}

/// A list naming a DS record clients cannot read is refused: `list new` makes no list to sign or publish.
#[test]
fn a_list_with_an_unreadable_ds_is_not_made() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bad = LIST.replace(&"0".repeat(64), "not-a-digest");
    std::fs::write(d.join("list.toml"), bad).unwrap();
    let e = fails(d, &["list", "new", "--input", "list.toml", "--out", "v1.json"]);
    assert!(e.contains("directory main: DS record") && e.contains("unreadable"), "{e}");
    assert!(!d.join("v1.json").exists());
}

/// A list naming a DS with an algorithm clients do not validate with (3, DSA) is refused naming the directory.
#[test]
fn a_list_with_a_ds_algorithm_clients_refuse_is_not_made() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let bad = LIST.replace("IN DS 12345 15 2", "IN DS 12345 3 2");
    assert_ne!(bad, LIST);
    std::fs::write(d.join("list.toml"), bad).unwrap();
    let e = fails(d, &["list", "new", "--input", "list.toml", "--out", "v1.json"]);
    assert!(
        e.contains("directory main: DS record") && e.contains("algorithm 3 is not one clients validate with"),
        "{e}"
    );
    assert!(!d.join("v1.json").exists());
}
