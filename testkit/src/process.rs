//! Child processes that never outlive the test that started them.
//!
//! Each child runs in its own process group. Dropping the guard (also while a test panics and unwinds) stops
//! the whole group: SIGTERM, then SIGKILL after a grace period. A tiny `sh` watchdog, started beside each
//! child, stops the group too when the test process itself dies without unwinding (SIGKILL, abort, timeout),
//! so no Synapse or knotd is ever left behind.

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process_group};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running child process (and its process group), stopped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    watchdog: Option<Child>,
    log: Option<PathBuf>,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group; stdin is closed, stdout/stderr are inherited unless the command
    /// sets them.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> anyhow::Result<Self> {
        let name = name.into();
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("starting {name}: {cmd:?}"))?;
        let watchdog = spawn_watchdog(child.id());
        Ok(Self { name, child, watchdog, log: None, exited: None })
    }

    /// Spawns `cmd` with stdout and stderr appended to `log` (read it with [`ChildGuard::log_tail`]).
    pub fn spawn_logged(name: impl Into<String>, mut cmd: Command, log: impl AsRef<Path>) -> anyhow::Result<Self> {
        let log = log.as_ref().to_owned();
        let file = File::options().create(true).append(true).open(&log).with_context(|| format!("{log:?}"))?;
        cmd.stdout(file.try_clone()?).stderr(file);
        let mut guard = Self::spawn(name, cmd)?;
        guard.log = Some(log);
        Ok(guard)
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Fails with the end of the child's log if it has already exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.try_wait()? {
            bail!("{} exited early with {status}\n{}", self.name, self.log_tail(40));
        }
        Ok(())
    }

    /// The last `lines` lines of the child's log, if it has one.
    pub fn log_tail(&self, lines: usize) -> String {
        let Some(log) = &self.log else { return String::new() };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends `signal` to the child's process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process_group(pid, signal);
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_wait() {
            self.signal(Signal::KILL); // leftovers of the group, if any
            return Some(status);
        }
        self.signal(Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.try_wait() {
                self.signal(Signal::KILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.signal(Signal::KILL);
        self.exited = self.child.wait().ok();
        self.exited
    }

    /// Stops the process group with a 10-second grace period.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_within(Duration::from_secs(10))
    }

    /// Kills the process group at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.signal(Signal::KILL);
        self.exited = self.child.wait().ok();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Starts `sh` polling this test process; when it is gone, the child's group is stopped.
fn spawn_watchdog(pgid: u32) -> Option<Child> {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
         kill -TERM -{pgid} 2>/dev/null; sleep 5; kill -KILL -{pgid} 2>/dev/null"
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// True while a process with this id exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; Z = zombie, X = dead.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_stops_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        // A grandchild in the same group must go too.
        cmd.arg("-c").arg(format!("sleep 300 & echo $! > {}; wait", pidfile.display()));
        let guard = ChildGuard::spawn("sleeper", cmd).unwrap();
        let pid = guard.pid();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
        let grandchild: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        assert!(is_alive(pid) && is_alive(grandchild));
        drop(guard);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!is_alive(pid), "child still running");
        assert!(!is_alive(grandchild), "grandchild still running");
    }
}
