//! Starts the real `tincan-gateway` binary on a free port with a temporary data dir, and talks to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tincan_testkit::ChildGuard;
use tincan_testkit::ports::free_port;

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tincan-gateway"))
}

/// A running gateway.
pub struct Gateway {
    pub guard: ChildGuard,
    pub api: SocketAddr,
    pub data_dir: PathBuf,
    pub env: Vec<(String, String)>,
    /// The extra global arguments it was started with (kept for a restart).
    pub args: Vec<std::ffi::OsString>,
}

impl Gateway {
    /// Starts `serve` on a fresh port with `data_dir` (SQLite there unless `env` names a database).
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Gateway {
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_on(data_dir, api, env).await
    }

    /// Starts `serve` on `api`.
    pub async fn start_on(data_dir: &Path, api: SocketAddr, env: Vec<(String, String)>) -> Gateway {
        Self::start_with_args(data_dir, api, env, &[]).await
    }

    /// Starts `serve` on `api` with extra global arguments (`--config FILE`).
    pub async fn start_with_args(
        data_dir: &Path,
        api: SocketAddr,
        env: Vec<(String, String)>,
        args: &[&std::ffi::OsStr],
    ) -> Gateway {
        let mut cmd = bin();
        cmd.args(args);
        cmd.arg("serve").arg("--data-dir").arg(data_dir).arg("--api").arg(api.to_string()).env("RUST_LOG", "info");
        // Tests send many requests quickly; the rate-limit test sets its own.
        cmd.env("TINCAN_GATEWAY_API__RATE_LIMIT__BURST", "1000000");
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let log = data_dir.join("serve.log");
        let mut guard = ChildGuard::spawn_logged("tincan-gateway", cmd, &log).unwrap();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            guard.ensure_running().unwrap();
            if let Ok(r) = http.get(format!("http://{api}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "not healthy after 30 s\n{}", guard.log_tail(40));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = args.iter().map(|a| a.to_os_string()).collect();
        Gateway { guard, api, data_dir: data_dir.to_owned(), env, args }
    }

    /// Kills the process (SIGKILL) and starts it again on the same port, data and arguments.
    pub async fn crash_and_restart(self) -> Gateway {
        let Gateway { mut guard, api, data_dir, env, args } = self;
        guard.kill();
        drop(guard);
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        Self::start_with_args(&data_dir, api, env, &args).await
    }

    /// The base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Runs a CLI command against the same data and environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(&self.data_dir, args, &env)
    }

    /// Runs a CLI command that must succeed; returns its stdout, trimmed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// Runs `tincan-gateway --data-dir DIR ARGS…` with `env`.
pub fn cli(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    bin().arg("--data-dir").arg(data_dir).args(args).envs(env.iter().copied()).output().unwrap()
}
