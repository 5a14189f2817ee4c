//! Processes a test starts: output to files, signals by pid, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Sends `sig` (a `kill` option such as `-TERM`, `-STOP`, `-KILL`) to `pid`; panics if it fails.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill (Debian package procps)");
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// A process a test started. Its stdout and stderr go to files in a directory given at start;
/// it is killed (SIGKILL) and reaped when dropped, so a failing test leaves nothing running.
pub struct Proc {
    child: Child,
    name: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `command` with stdin closed, stdout in `logs/NAME.out` and stderr in
    /// `logs/NAME.err` (appended to, so a restarted process keeps one log).
    pub fn spawn(name: &str, command: &mut Command, logs: &Path) -> Proc {
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let open = |path: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("log file {}: {e}", path.display()))
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(open(&stdout))
            .stderr(open(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Proc {
            child,
            name: name.to_string(),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`-TERM`, `-STOP`, `-CONT` …) to the process.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// SIGTERM: asks the process to stop.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// SIGKILL and reap: no chance to finish anything, as in a crash. Harmless if it exited.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Waits for the process to exit, at most `limit`; panics (with its stderr) after that.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}: {}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics, with its stderr, if the process has exited: for loops waiting on it to get ready.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!("{} exited early ({status}): {}", self.name, self.stderr());
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_to_files_and_signals_reach_the_process() {
        let logs = tempfile::tempdir().expect("tempdir");
        let mut done = Proc::spawn(
            "echo",
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            logs.path(),
        );
        assert!(done.wait_exit(Duration::from_secs(10)).success());
        assert_eq!(
            (done.stdout(), done.stderr()),
            ("out\n".into(), "err\n".into())
        );

        let mut sleeper = Proc::spawn("sleep", Command::new("sleep").arg("60"), logs.path());
        assert!(sleeper.running());
        sleeper.terminate();
        let status = sleeper.wait_exit(Duration::from_secs(10));
        assert!(!status.success(), "SIGTERM ended it: {status}");
    }
}
