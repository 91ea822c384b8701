//! A flushd process for benchmark runs, on a private queue directory.
//!
//! It runs with the daemon's defaults, as a user would start it beside
//! Postfix: `-c` a main.cf that lists the benchmark domain in
//! `relay_domains`, `-o queue_directory=...`, a line-protocol listener and a
//! Postfix-protocol listener on its own socket path. Its log goes to a file.

use super::transport::LineConnection;
use flush_proto::request::Stats;
use flush_proto::{Request, Status};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long flushd may take to start or stop.
pub const FLUSHD_TIMEOUT: Duration = Duration::from_secs(15);

/// A running flushd; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct FlushdProcess {
    child: Child,
    queue: PathBuf,
    log: PathBuf,
}

impl FlushdProcess {
    /// Creates the queue directory `root/queue` with deferred/, incoming/,
    /// flush/ and public/ (those that are missing) and returns its path.
    ///
    /// # Errors
    /// A directory cannot be created.
    pub fn prepare_queue(root: &Path) -> io::Result<PathBuf> {
        let queue = root.join("queue");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&queue)?;
        for sub in ["deferred", "incoming", "flush", "public"] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(queue.join(sub))?;
        }
        Ok(queue)
    }

    /// Writes `root/etc/main.cf`, prepares the queue directory `root/queue`
    /// ([`prepare_queue`](Self::prepare_queue)), and starts `binary` on it
    /// with `overrides` (`name=value`, passed as `-o`); returns once it
    /// answers `stats`.
    ///
    /// # Errors
    /// Files cannot be written, the program cannot start, or it does not
    /// answer within [`FLUSHD_TIMEOUT`] (its log is in the error).
    pub fn start(
        binary: &Path,
        root: &Path,
        domain: &str,
        overrides: &[String],
    ) -> io::Result<FlushdProcess> {
        let etc = root.join("etc");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&etc)?;
        let queue = Self::prepare_queue(root)?;
        fs::write(
            etc.join("main.cf"),
            format!(
                "# flush-bench\nqueue_directory = {}\nrelay_domains = {domain}\n",
                queue.display()
            ),
        )?;
        let log = root.join("flushd.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&etc)
            .arg("-o")
            .arg(format!("queue_directory={}", queue.display()))
            .args(overrides.iter().flat_map(|o| ["-o", o.as_str()]))
            .arg("--listen")
            .arg(format!(
                "unix:{}",
                queue.join("public/flush.line").display()
            ))
            .arg("--postfix-listen")
            .arg(queue.join("public/flush"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()?;
        let mut daemon = FlushdProcess { child, queue, log };
        let deadline = Instant::now() + FLUSHD_TIMEOUT;
        loop {
            if daemon.stats().is_ok() {
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(io::Error::other(format!(
                    "flushd exited ({status}): {}",
                    daemon.log_text()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "flushd did not answer within {FLUSHD_TIMEOUT:?}: {}",
                    daemon.log_text()
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its queue directory.
    pub fn queue(&self) -> &Path {
        &self.queue
    }

    /// Its line-protocol address.
    pub fn line_address(&self) -> String {
        format!("unix:{}", self.queue.join("public/flush.line").display())
    }

    /// Its Postfix-protocol socket.
    pub fn postfix_socket(&self) -> PathBuf {
        self.queue.join("public/flush")
    }

    /// What it logged so far (the last 4 kB).
    pub fn log_text(&self) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Its `stats` document.
    ///
    /// # Errors
    /// It does not answer, or not with OK and JSON.
    pub fn stats(&self) -> io::Result<Value> {
        let mut conn = LineConnection::connect(&self.line_address(), Duration::from_secs(10))?;
        let reply = conn.request(&Request::Stats(Stats))?;
        if reply.status != Status::Ok {
            return Err(io::Error::other(format!("stats: {}", reply.status)));
        }
        serde_json::from_str(&reply.detail).map_err(io::Error::other)
    }

    /// Stops it: SIGTERM, and SIGKILL if it has not exited within
    /// [`FLUSHD_TIMEOUT`].
    ///
    /// # Errors
    /// It had to be killed, or exited with a failure.
    pub fn stop(mut self) -> io::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> io::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return exit_result(status);
        }
        if let Some(pid) = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + FLUSHD_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return exit_result(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(io::Error::other("flushd did not stop on SIGTERM; killed"))
    }
}

fn exit_result(status: std::process::ExitStatus) -> io::Result<()> {
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("flushd exited: {status}")))
    }
}

impl Drop for FlushdProcess {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// The `flushd` program beside the running one (same build directory), if any.
pub fn sibling_flushd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.join("flushd");
    path.is_file().then_some(path)
}

/// The number of live writers in a `stats` document.
pub fn live_writers(stats: &Value) -> Option<u64> {
    stats.get("writers")?.get("live_writers")?.as_u64()
}
