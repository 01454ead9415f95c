use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tincan_testkit::Synapse;
use tincan_testkit::process::is_alive;

#[tokio::test]
async fn registers_a_user_and_whoami_answers() {
    let synapse = Synapse::start().await.unwrap();
    let alice = synapse.register_user("alice", false).await.unwrap();
    assert_eq!(alice.user_id, "@alice:hs.test");
    assert_eq!(synapse.whoami(&alice.access_token).await.unwrap(), "@alice:hs.test");
    // A wrong token is refused.
    assert!(synapse.whoami("not-a-token").await.is_err());
}

#[tokio::test]
async fn config_extends_homeserver_yaml() {
    let synapse = Synapse::builder()
        .server_name("other.test")
        .config(
            serde_json::json!({"jwt_config": {"enabled": true, "secret": "test-only-secret", "algorithm": "HS256"}}),
        )
        .start()
        .await
        .unwrap();
    let flows: serde_json::Value =
        reqwest::get(format!("{}/_matrix/client/v3/login", synapse.url())).await.unwrap().json().await.unwrap();
    assert!(flows.to_string().contains("org.matrix.login.jwt"), "{flows}");
    let bob = synapse.register_user("bob", true).await.unwrap();
    assert_eq!(bob.user_id, "@bob:other.test");
}

/// Runs one of the `#[ignore]`d children below in a new test process and returns the pid it reported.
fn run_child(test: &str, kill_after_pid: bool) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("synapse.pid");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--ignored", "--nocapture"]).env("TINCAN_CHILD_PIDFILE", &pidfile);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pidfile)
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "child test never reported a Synapse pid");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child test ended ({status}) before reporting a Synapse pid");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if kill_after_pid {
        child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    }
    let status = child.wait().unwrap();
    if !kill_after_pid {
        assert!(!status.success(), "the child test was meant to panic");
    }
    pid
}

fn assert_gone_within(pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    while is_alive(pid) {
        assert!(Instant::now() < deadline, "Synapse (pid {pid}) outlived its test");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_panicking_test_leaves_no_synapse_behind() {
    let pid = run_child("synapse::child_starts_synapse_then_panics", false);
    // Drop ran during unwinding: Synapse is gone by the time the child process exited.
    assert_gone_within(pid, Duration::from_secs(2));
}

#[test]
fn a_killed_test_process_leaves_no_synapse_behind() {
    let pid = run_child("synapse::child_starts_synapse_then_waits", true);
    // No Drop ran; the watchdog notices the dead test process within a second and stops the group.
    assert_gone_within(pid, Duration::from_secs(15));
}

fn report_pid(synapse: &Synapse) {
    let pidfile = PathBuf::from(std::env::var_os("TINCAN_CHILD_PIDFILE").expect("run by the parent test"));
    std::fs::write(pidfile, synapse.pid().to_string()).unwrap();
}

#[tokio::test]
#[ignore = "run as a child process by a_panicking_test_leaves_no_synapse_behind"]
async fn child_starts_synapse_then_panics() {
    let synapse = Synapse::start().await.unwrap();
    report_pid(&synapse);
    panic!("deliberate panic with Synapse running (pid {})", synapse.pid());
}

#[tokio::test]
#[ignore = "run as a child process by a_killed_test_process_leaves_no_synapse_behind"]
async fn child_starts_synapse_then_waits() {
    let synapse = Synapse::start().await.unwrap();
    report_pid(&synapse);
    tokio::time::sleep(Duration::from_secs(120)).await;
}
