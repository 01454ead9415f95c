//! `keys check-ds`: the apex's DS set in the parent (a real Knot serving the parent zone with the delegation),
//! the charter's trust list and this directory's keys must agree; any record one has and another lacks fails
//! the command and is named.

use std::path::Path;
use tincan_testkit::dnssec::Knot;

use crate::harness::{APEX, cli};
use crate::provider_sync::Charter;

/// Knot serving the parent zone `tincan.test.` (from `dir/name.db`) with the delegation of the apex and `ds` as
/// its DS set.
async fn parent(dir: &Path, name: &str, ds: &[String]) -> Knot {
    let zone = dir.join(format!("{name}.db"));
    let records: String = ds.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(
        &zone,
        format!(
            "$TTL 300\ntincan.test. IN SOA ns.tincan.test. hostmaster.tincan.test. 1 3600 600 86400 300\n\
             tincan.test. IN NS ns.tincan.test.\nns.tincan.test. IN A 127.0.0.1\n\
             {APEX} IN NS ns.{APEX}\nns.{APEX} IN A 127.0.0.1\n{records}"
        ),
    )
    .unwrap();
    Knot::serve("tincan.test.", &zone).await.unwrap()
}

fn check(data: &Path, repo: &Path, root: &Path, knot: &Knot) -> (bool, String, String) {
    let url = format!("file://{}/", repo.display());
    let dns = knot.addr.to_string();
    let args =
        ["keys", "check-ds", "--charter-url", &url, "--charter-root", root.to_str().unwrap(), "--parent-dns", &dns];
    let out = cli(data, &args);
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ds_fails_when_the_parent_the_charter_and_the_keys_disagree() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, repo, root) = (tmp.path().join("data"), tmp.path().join("repo"), tmp.path().join("root.json"));
    let out = cli(&data, &["keys", "generate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let own: Vec<String> =
        String::from_utf8(cli(&data, &["keys", "ds"]).stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(own.len(), 1, "{own:?}");
    // Another key's DS: same apex and algorithm, another tag and digest.
    let fields: Vec<&str> = own[0].split_whitespace().collect();
    let digest = fields.last().unwrap();
    let flipped: String = digest.chars().map(|c| if c == 'A' { 'B' } else { 'A' }).collect();
    let stranger = format!(
        "{APEX} 3600 IN DS {} {} {} {flipped}",
        fields[fields.len() - 4].parse::<u16>().unwrap() ^ 1,
        fields[fields.len() - 3],
        fields[fields.len() - 2]
    );
    let charter = Charter::new();
    std::fs::write(&root, &charter.root).unwrap();

    // All three agree.
    charter.publish_ds(&repo, 1, APEX, &own);
    let agreeing = parent(tmp.path(), "agreeing", &own).await;
    let (ok, stdout, stderr) = check(&data, &repo, &root, &agreeing);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("agree"), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "parent, charter and keys, one record each:\n{stdout}");

    // The parent publishes another key's DS: refused, the stranger named on both sides.
    let hijacked = parent(tmp.path(), "hijacked", std::slice::from_ref(&stranger)).await;
    let (ok, _, stderr) = check(&data, &repo, &root, &hijacked);
    assert!(!ok, "a parent DS the charter does not name passed:\n{stderr}");
    assert!(
        stderr.contains("the parent publishes DS") && stderr.contains("which the charter's list does not name"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the charter's list names DS") && stderr.contains("which the parent does not publish"),
        "{stderr}"
    );

    // A stale list (the charter still names the old key) while the parent follows the keys: refused too.
    charter.publish_ds(&repo, 2, APEX, std::slice::from_ref(&stranger));
    let (ok, _, stderr) = check(&data, &repo, &root, &agreeing);
    assert!(!ok, "a charter DS the parent does not publish passed:\n{stderr}");
    assert!(
        stderr.contains("the charter's list names DS") && stderr.contains("which the parent does not publish"),
        "{stderr}"
    );

    // An unsigned delegation (the parent publishes no DS) does not agree with a list that names one.
    charter.publish_ds(&repo, 3, APEX, &own);
    let unsigned = parent(tmp.path(), "unsigned", &[]).await;
    let (ok, _, stderr) = check(&data, &repo, &root, &unsigned);
    assert!(!ok, "an unsigned delegation passed:\n{stderr}");
    assert!(
        stderr.contains("this directory's keys need DS") && stderr.contains("which the parent does not publish"),
        "{stderr}"
    );
}
