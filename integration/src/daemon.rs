//! Runs the real `flushd` binary on a temporary queue directory, and talks to
//! it over the line protocol (`public/flush.line`, PROTOCOL.md section 1).
//!
//! The binary is built once per test process with the test's own profile and
//! target directory (the binaries belong to flush-bin, so `CARGO_BIN_EXE_*`
//! is not available here).
//!
//! The Postfix-protocol client and the queue fixtures live in
//! [`crate::postfix_client`] and [`crate::fixtures`]; they are re-exported
//! here so that a test needs one `use integration::daemon::...`.
//!
//! This is test support: it panics with a clear message where a test cannot
//! go on, and returns `io::Result` where a test may want to see the error.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use tempfile::TempDir;

pub use crate::fixtures::{
    find_queue_file, flush_log, hash_key, hashed_path, long_queue_id, make_deferred, make_fifo,
    make_queue_dir, make_queue_file, queue_ids, short_queue_id, wait_until, FifoReader,
};
pub use crate::postfix_client::{
    encode_attrs, postfix_raw, postfix_request, postfix_wakeup, PostfixExchange,
    PROTOCOL_ANNOUNCEMENT,
};
/// How long a client waits for one reply before giving up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Flushd::start`] waits for the line socket to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The domain [`FlushdOptions::default`] makes eligible for fast flush.
pub const TEST_DOMAIN: &str = "relay.test";

/// Upper bound on one reply (line or attribute list) a test client reads.
pub const MAX_REPLY: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Building the binaries

/// The directory holding this test's build products (`<target>/<profile>`),
/// after building flush-bin's binaries there once per test process. A failed
/// build is remembered, so every test reports it without building again.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(build_flush_bin) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `cargo build -p flush-bin --bins` in the profile and target directory
/// of the running test binary, and returns `<target>/<profile>`.
///
/// The test binary lives in `<target>/<profile>/deps/`, wherever
/// `CARGO_TARGET_DIR` put it and whatever the profile, so its path is the
/// ground truth; `--target-dir` keeps the nested build in the same place.
fn build_flush_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe.parent().and_then(Path::parent).ok_or_else(|| {
        format!(
            "test binary {} is not in <target>/<profile>/deps",
            exe.display()
        )
    })?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("no target directory above {}", profile_dir.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "flush-bin", "--bins", "--target-dir"])
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        return Err(format!(
            "`cargo build -p flush-bin --bins` ({profile}) failed with {}:\n{tail}",
            out.status
        ));
    }
    Ok(profile_dir.to_path_buf())
}

/// Path of the `flushd` binary, built (once per test process) in the same
/// profile and target directory as the running test.
///
/// Panics if the build fails.
pub fn flushd_binary() -> PathBuf {
    bin_dir().join("flushd")
}

/// Path of the `flushctl` binary, built like [`flushd_binary`].
pub fn flushctl_binary() -> PathBuf {
    bin_dir().join("flushctl")
}

// ---------------------------------------------------------------------------
// Running the daemon

/// How to start a [`Flushd`]. Build it with `FlushdOptions::default()` and the
/// chainable setters below.
#[derive(Debug, Clone)]
pub struct FlushdOptions {
    /// An existing queue directory to serve; `None` creates a fresh one in the
    /// daemon's temp dir, with `deferred/`, `incoming/`, `flush/` and `public/`.
    pub queue_dir: Option<PathBuf>,
    /// The `fast_flush_domains` line of main.cf; `None` leaves it out (so
    /// flushd's default, `$relay_domains`, applies).
    pub fast_flush_domains: Option<String>,
    /// Further `name = value` lines for main.cf.
    pub main_cf: Vec<(String, String)>,
    /// `-o name=value` overrides on the command line.
    pub overrides: Vec<(String, String)>,
    /// Listen for Postfix clients (else `--no-postfix-listen`).
    pub postfix_listen: bool,
    /// Where to listen for Postfix clients; `None`: `<queue>/public/flush`
    /// (which a running Postfix master holds when the queue is shared).
    pub postfix_socket: Option<PathBuf>,
    /// Further command-line arguments, after all the others.
    pub args: Vec<String>,
    /// Further environment variables (`RUST_LOG=debug` is set unless given here).
    pub env: Vec<(String, String)>,
    /// Run as this user and group ID (for example Postfix's `mail_owner`,
    /// when flushd shares a queue directory with a real Postfix). A fresh
    /// queue directory is then given to that user too.
    pub user: Option<(u32, u32)>,
    /// Start the daemon with this open-file limit, soft and hard (through
    /// util-linux's `prlimit`, which then runs flushd in its place).
    pub open_file_limit: Option<u64>,
}

impl Default for FlushdOptions {
    fn default() -> Self {
        FlushdOptions {
            queue_dir: None,
            fast_flush_domains: Some(TEST_DOMAIN.to_string()),
            main_cf: Vec::new(),
            overrides: Vec::new(),
            postfix_listen: true,
            postfix_socket: None,
            args: Vec::new(),
            env: Vec::new(),
            user: None,
            open_file_limit: None,
        }
    }
}

impl FlushdOptions {
    /// Serves this existing queue directory instead of a fresh one.
    pub fn queue_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.queue_dir = Some(dir.into());
        self
    }

    /// Sets `fast_flush_domains` in main.cf.
    pub fn domains(mut self, list: &str) -> Self {
        self.fast_flush_domains = Some(list.to_string());
        self
    }

    /// Adds a `name = value` line to main.cf.
    pub fn main_cf(mut self, name: &str, value: &str) -> Self {
        self.main_cf.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds `-o name=value` to the command line.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.overrides.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Listens for Postfix clients on `path` instead of `<queue>/public/flush`.
    pub fn postfix_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.postfix_listen = true;
        self.postfix_socket = Some(path.into());
        self
    }

    /// Starts flushd with `--no-postfix-listen`.
    pub fn no_postfix_listen(mut self) -> Self {
        self.postfix_listen = false;
        self
    }

    /// Starts the daemon with at most `limit` open files.
    pub fn open_file_limit(mut self, limit: u64) -> Self {
        self.open_file_limit = Some(limit);
        self
    }

    /// Runs the daemon as user `uid`, group `gid` (the test must run as root).
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Sets an environment variable for the daemon.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }
}

/// A running flushd, killed (SIGKILL) when dropped if it is still running.
/// When a test panics, the drop prints the daemon's log to stderr.
pub struct Flushd {
    child: Child,
    exit: Option<ExitStatus>,
    // Held for its Drop: the config, the log and (by default) the queue live here.
    tmp: TempDir,
    queue: PathBuf,
    conf_dir: PathBuf,
    line_socket: PathBuf,
    postfix_socket: PathBuf,
    log_path: PathBuf,
}

impl Flushd {
    /// Writes main.cf, starts flushd and waits (up to [`START_TIMEOUT`]) until
    /// its line socket accepts a connection and, with `postfix_listen`, the
    /// Postfix socket exists.
    ///
    /// The readiness probe is one connection to the line socket that sends
    /// nothing: it shows in the gateway's connection counters.
    ///
    /// Panics (with the daemon's log) if it cannot start or exits early.
    pub fn start(opts: FlushdOptions) -> Flushd {
        let tmp = tempfile::Builder::new()
            .prefix("flushd-test.")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let queue = match &opts.queue_dir {
            Some(dir) => dir.clone(),
            None => {
                let q = tmp.path().join("queue");
                make_queue_dir(&q).unwrap_or_else(|e| panic!("queue dir {}: {e}", q.display()));
                q
            }
        };
        let conf_dir = tmp.path().join("etc");
        fs::create_dir(&conf_dir).unwrap_or_else(|e| panic!("{}: {e}", conf_dir.display()));
        let mut main_cf = format!("queue_directory = {}\n", queue.display());
        if let Some(domains) = &opts.fast_flush_domains {
            main_cf.push_str(&format!("fast_flush_domains = {domains}\n"));
        }
        for (name, value) in &opts.main_cf {
            main_cf.push_str(&format!("{name} = {value}\n"));
        }
        fs::write(conf_dir.join("main.cf"), main_cf).unwrap_or_else(|e| panic!("main.cf: {e}"));

        let line_socket = queue.join("public/flush.line");
        let postfix_socket = opts
            .postfix_socket
            .clone()
            .unwrap_or_else(|| queue.join("public/flush"));
        let log_path = tmp.path().join("flushd.log");
        let log = fs::File::create(&log_path).unwrap_or_else(|e| panic!("log file: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));

        let mut cmd = match opts.open_file_limit {
            Some(limit) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(flushd_binary());
                prlimit
            }
            None => Command::new(flushd_binary()),
        };
        cmd.arg("-c").arg(&conf_dir);
        for (name, value) in &opts.overrides {
            cmd.arg("-o").arg(format!("{name}={value}"));
        }
        cmd.arg("--listen")
            .arg(format!("unix:{}", line_socket.display()));
        if opts.postfix_listen {
            cmd.arg("--postfix-listen").arg(&postfix_socket);
        } else {
            cmd.arg("--no-postfix-listen");
        }
        cmd.args(&opts.args);
        cmd.env("RUST_LOG", "debug");
        for (name, value) in &opts.env {
            cmd.env(name, value);
        }
        if let Some((uid, gid)) = opts.user {
            use std::os::unix::process::CommandExt;
            // The daemon must read its config; the log is an inherited fd.
            for dir in [tmp.path(), conf_dir.as_path()] {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                    .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
            }
            if opts.queue_dir.is_none() {
                chown_tree(&queue, uid, gid)
                    .unwrap_or_else(|e| panic!("chown {}: {e}", queue.display()));
            }
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", flushd_binary().display()));

        let mut daemon = Flushd {
            child,
            exit: None,
            tmp,
            queue,
            conf_dir,
            line_socket,
            postfix_socket,
            log_path,
        };
        daemon.wait_ready(opts.postfix_listen);
        daemon
    }

    fn wait_ready(&mut self, postfix_listen: bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                panic!(
                    "flushd exited during start-up with {status}; log:\n{}",
                    self.log()
                );
            }
            let line_ok = UnixStream::connect(&self.line_socket).is_ok();
            let postfix_ok = !postfix_listen || is_socket(&self.postfix_socket);
            if line_ok && postfix_ok {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "flushd not ready after {START_TIMEOUT:?} (line socket {}, postfix socket {}); log:\n{}",
                    self.line_socket.display(),
                    self.postfix_socket.display(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The line-protocol socket, `<queue>/public/flush.line`.
    pub fn line_socket(&self) -> &Path {
        &self.line_socket
    }

    /// The Postfix-protocol socket, `<queue>/public/flush` unless set in the
    /// options (there only when the daemon was started with `postfix_listen`).
    pub fn postfix_socket(&self) -> &Path {
        &self.postfix_socket
    }

    /// The queue directory the daemon serves.
    pub fn queue_dir(&self) -> &Path {
        &self.queue
    }

    /// The directory holding the daemon's main.cf.
    pub fn config_dir(&self) -> &Path {
        &self.conf_dir
    }

    /// The daemon's temp dir (config, log, and the default queue directory).
    pub fn temp_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    /// A new line-protocol client connected to the daemon.
    ///
    /// Panics if the connection fails.
    pub fn client(&self) -> LineClient {
        LineClient::connect(&self.line_socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.line_socket.display()))
    }

    /// Sends `signal` to the daemon.
    ///
    /// # Errors
    /// The `kill(2)` error, for example when the process is gone.
    pub fn send_signal(&self, signal: Signal) -> io::Result<()> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).map_err(io::Error::from)
    }

    /// Waits up to `timeout` for the daemon to exit; its status, or `None` if
    /// it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    return self.exit;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            // A failure means it is already gone; wait_exit collects the status.
            let _ = self.send_signal(Signal::TERM);
        }
        self.wait_exit(timeout)
    }
}

impl Drop for Flushd {
    fn drop(&mut self) {
        if self.exit.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- flushd log ({}) ----\n{}---- end of flushd log ----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Gives `dir` and everything under it to `uid`:`gid`.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if fs::symlink_metadata(dir)?.is_dir() {
        for entry in fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn is_socket(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

// ---------------------------------------------------------------------------
// The line protocol client

/// A line-protocol client over a UNIX-domain socket, with a read timeout of
/// [`REPLY_TIMEOUT`].
pub struct LineClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl LineClient {
    /// Connects to a line-protocol socket.
    ///
    /// # Errors
    /// Connection and socket-option errors.
    pub fn connect(path: &Path) -> io::Result<LineClient> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(LineClient {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one request line (a newline is added) and returns the reply line
    /// without its newline. Panics on I/O errors, a timeout or end of file.
    pub fn request(&mut self, line: &str) -> String {
        self.send_raw(format!("{line}\n").as_bytes());
        self.read_reply()
    }

    /// Writes raw bytes. Panics on I/O errors.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to flushd: {e}"));
    }

    /// Reads one reply line, without its newline. Panics on I/O errors, a
    /// timeout or end of file.
    pub fn read_reply(&mut self) -> String {
        match self.try_read_reply() {
            Ok(Some(line)) => line,
            Ok(None) => panic!("flushd closed the connection instead of replying"),
            Err(e) => panic!("reading a reply from flushd: {e}"),
        }
    }

    /// Reads one reply line; `None` at end of file.
    ///
    /// # Errors
    /// I/O errors, including the read timeout (`WouldBlock`/`TimedOut`), and
    /// `InvalidData` for a reply that is not UTF-8 or has no newline.
    pub fn try_read_reply(&mut self) -> io::Result<Option<String>> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.pop() != Some(b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "reply without newline",
            ));
        }
        String::from_utf8(buf)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Sends `stats` and parses the JSON after `OK `. Panics if the reply is
    /// not `OK` followed by JSON.
    pub fn stats(&mut self) -> serde_json::Value {
        let reply = self.request("stats");
        let json = reply
            .strip_prefix("OK ")
            .unwrap_or_else(|| panic!("stats reply is not OK: {reply}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("stats JSON ({e}): {json}"))
    }

    /// Shuts down the sending half, so the server sees end of file.
    ///
    /// # Errors
    /// The `shutdown(2)` error.
    pub fn close_write(&mut self) -> io::Result<()> {
        self.writer.shutdown(std::net::Shutdown::Write)
    }
}
