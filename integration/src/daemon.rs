//! Runs the real `flushd` binary on a temporary queue directory and talks to it
//! as clients do: the line protocol on `public/flush.line`, and Postfix's attr0
//! protocol on `public/flush` (the wire format of `src/util/attr_print0.c` and
//! `src/util/attr_scan0.c`, as `src/global/flush_clnt.c` uses it).
//!
//! Also the queue fixtures end-to-end tests need: deferred queue files hashed
//! as `src/global/mail_queue.c` does, a `public/qmgr` FIFO and its reader, and
//! generators of valid queue IDs.
//!
//! This is test support: it panics with a clear message where a test cannot go
//! on, and returns `io::Result` where a test may want to look at the error.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use tempfile::TempDir;

/// How long a client waits for one reply before giving up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Flushd::start`] waits for the line socket to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The domain [`FlushdOptions::default`] makes eligible for fast flush.
pub const TEST_DOMAIN: &str = "relay.test";

/// Upper bound on one reply (line or attribute list) a test client reads.
const MAX_REPLY: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Building the binaries

/// The directory holding this test's build products (`<target>/<profile>`),
/// after building flush-bin's binaries there once per test process.
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build_flush_bin)
}

/// Runs `cargo build -p flush-bin --bins` in the profile and target directory of
/// the running test binary, and returns `<target>/<profile>`.
///
/// The test binary lives in `<target>/<profile>/deps/`, whatever
/// `CARGO_TARGET_DIR` and the profile were, so its path is the ground truth;
/// passing `--target-dir` keeps the nested build in the same place.
fn build_flush_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| {
            panic!(
                "test binary {} is not in <target>/<profile>/deps",
                exe.display()
            )
        })
        .to_path_buf();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if profile_dir.parent() != Some(Path::new(&dir)) => {
            // The test binary is authoritative; say so rather than guess.
            eprintln!(
                "note: CARGO_TARGET_DIR={} differs from the test binary's target dir; using the latter",
                Path::new(&dir).display()
            );
            profile_dir.parent().map(Path::to_path_buf)
        }
        _ => profile_dir.parent().map(Path::to_path_buf),
    }
    .unwrap_or_else(|| panic!("no target directory above {}", profile_dir.display()));
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args(["build", "-p", "flush-bin", "--bins", "--target-dir"])
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        status.success(),
        "`cargo build -p flush-bin --bins` ({profile}) failed with {status}; see its output above"
    );
    profile_dir
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
    /// Listen for Postfix clients on `<queue>/public/flush` (else `--no-postfix-listen`).
    pub postfix_listen: bool,
    /// Further command-line arguments, after all the others.
    pub args: Vec<String>,
    /// Further environment variables (`RUST_LOG=debug` is set unless given here).
    pub env: Vec<(String, String)>,
}

impl Default for FlushdOptions {
    fn default() -> Self {
        FlushdOptions {
            queue_dir: None,
            fast_flush_domains: Some(TEST_DOMAIN.to_string()),
            main_cf: Vec::new(),
            overrides: Vec::new(),
            postfix_listen: true,
            args: Vec::new(),
            env: Vec::new(),
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

    /// Starts flushd with `--no-postfix-listen`.
    pub fn no_postfix_listen(mut self) -> Self {
        self.postfix_listen = false;
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

/// Creates the queue subdirectories flushd works with.
pub fn make_queue_dir(queue: &Path) -> io::Result<()> {
    for sub in ["deferred", "incoming", "flush", "public"] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(queue.join(sub))?;
    }
    Ok(())
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
        let postfix_socket = queue.join("public/flush");
        let log_path = tmp.path().join("flushd.log");
        let log = fs::File::create(&log_path).unwrap_or_else(|e| panic!("log file: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));

        let mut cmd = Command::new(flushd_binary());
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

    /// The Postfix-protocol socket, `<queue>/public/flush` (there only when the
    /// daemon was started with `postfix_listen`).
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

// ---------------------------------------------------------------------------
// The Postfix protocol client (attr0)

/// What a Postfix flush server announces on connect.
pub const PROTOCOL_ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";

/// One request-reply exchange with a Postfix-protocol server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostfixExchange {
    /// The reply exactly as received (the attribute list, final NUL included).
    pub reply: Vec<u8>,
    /// The reply's attributes, in order.
    pub attrs: Vec<(String, String)>,
    /// The `status` attribute (Postfix prints -1 as 4294967295).
    pub status: u32,
}

/// Encodes an attribute list: `name NUL value NUL` per attribute, then `NUL`.
pub fn encode_attrs(attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in attrs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out.push(0);
    out
}

/// An attribute list as read: its raw bytes, and whether it ended properly
/// (as opposed to end of file in the middle).
struct AttrList {
    raw: Vec<u8>,
    attrs: Vec<(String, String)>,
    complete: bool,
}

/// Reads one attribute list (or what arrives before end of file).
fn read_attr_list(reader: &mut impl BufRead) -> io::Result<AttrList> {
    let mut list = AttrList {
        raw: Vec::new(),
        attrs: Vec::new(),
        complete: false,
    };
    let mut limited = reader.by_ref().take(MAX_REPLY);
    loop {
        let mut name = Vec::new();
        if limited.read_until(0, &mut name)? == 0 {
            return Ok(list);
        }
        list.raw.extend_from_slice(&name);
        if name.pop() != Some(0) {
            return Ok(list);
        }
        if name.is_empty() {
            list.complete = true;
            return Ok(list);
        }
        let mut value = Vec::new();
        limited.read_until(0, &mut value)?;
        list.raw.extend_from_slice(&value);
        if value.pop() != Some(0) {
            return Ok(list);
        }
        list.attrs.push((
            String::from_utf8_lossy(&name).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
}

/// Connects to a Postfix-protocol socket and checks the announcement.
fn postfix_connect(socket: &Path) -> io::Result<BufReader<UnixStream>> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut reader = BufReader::new(stream);
    let hello = read_attr_list(&mut reader)?;
    if hello.raw != PROTOCOL_ANNOUNCEMENT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "unexpected announcement {:?}",
                String::from_utf8_lossy(&hello.raw)
            ),
        ));
    }
    Ok(reader)
}

/// Sends `payload` after the announcement and parses the reply list.
fn postfix_exchange(socket: &Path, payload: &[u8]) -> io::Result<PostfixExchange> {
    let mut reader = postfix_connect(socket)?;
    reader.get_mut().write_all(payload)?;
    let reply = read_attr_list(&mut reader)?;
    if !reply.complete {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("incomplete reply {:?}", String::from_utf8_lossy(&reply.raw)),
        ));
    }
    let status = reply
        .attrs
        .iter()
        .find(|(name, _)| name == "status")
        .and_then(|(_, value)| value.parse::<u32>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "no numeric status in {:?}",
                    String::from_utf8_lossy(&reply.raw)
                ),
            )
        })?;
    Ok(PostfixExchange {
        reply: reply.raw,
        attrs: reply.attrs,
        status,
    })
}

/// One Postfix-protocol request, as `flush_clnt.c` sends it: connect, read and
/// check the `protocol` announcement, send `attrs` as one list, read the reply.
///
/// # Errors
/// Connection and I/O errors (including the read timeout), `InvalidData` for a
/// wrong announcement or a reply without a numeric `status`, `UnexpectedEof`
/// when the server closes before a complete reply.
pub fn postfix_request(socket: &Path, attrs: &[(&str, &str)]) -> io::Result<PostfixExchange> {
    postfix_exchange(socket, &encode_attrs(attrs))
}

/// The master(8) wakeup: `W NUL` after the announcement, then the reply
/// (flush(8) answers status 0 and starts a refresh).
///
/// # Errors
/// As [`postfix_request`].
pub fn postfix_wakeup(socket: &Path) -> io::Result<PostfixExchange> {
    postfix_exchange(socket, b"W\0")
}

/// Sends arbitrary bytes after the announcement and returns whatever comes
/// back: one complete attribute list, or the bytes before end of file (empty
/// when the server closes without replying). For byte-for-byte comparisons.
///
/// # Errors
/// Connection and I/O errors (including the read timeout), and a wrong
/// announcement.
pub fn postfix_raw(socket: &Path, payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut reader = postfix_connect(socket)?;
    reader.get_mut().write_all(payload)?;
    Ok(read_attr_list(&mut reader)?.raw)
}

// ---------------------------------------------------------------------------
// Queue fixtures

/// The alphabet of Postfix's long queue IDs (`safe_ultostr.c`): digits and
/// consonants, 52 characters; inode numbers use the first 51 (no `z`).
const SAFE_CHARS: &[u8] = b"0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/// The hash key of a queue ID, as `mail_queue_dir()` computes it: a short ID
/// is its own key; for a long ID (time, `z`, inode) it is the 4-character
/// base-52 microseconds field before the last `z`, printed as 5 upper-case hex
/// digits (0 if it does not decode).
pub fn hash_key(id: &str) -> String {
    let bytes = id.as_bytes();
    match bytes.iter().rposition(|&b| b == b'z') {
        Some(z) if z >= 10 => {
            let usec = bytes[z - 4..z].iter().try_fold(0u64, |acc, &c| {
                SAFE_CHARS
                    .iter()
                    .position(|&s| s == c)
                    .map(|d| acc * 52 + d as u64)
            });
            format!("{:05X}", usec.unwrap_or(0))
        }
        _ => id.to_string(),
    }
}

/// `<queue>/<queue_name>/<h>/<id>`: the path of a queue file at the default
/// `hash_queue_depth` of 1, for a hashed queue (`deferred`, `defer`).
pub fn hashed_path(queue: &Path, queue_name: &str, id: &str) -> PathBuf {
    let key = hash_key(id);
    let first = key.get(..1).unwrap_or("0");
    queue.join(queue_name).join(first).join(id)
}

/// Creates a complete (mode 0700) queue file `deferred/<h>/<id>`, hashed as
/// Postfix does at `hash_queue_depth = 1`, and returns its path.
/// Panics on file-system errors.
pub fn make_deferred(queue: &Path, id: &str) -> PathBuf {
    let path = hashed_path(queue, "deferred", id);
    make_queue_file(&path, 0o700);
    path
}

/// Creates a queue file at `path` with `mode` (creating its directories).
/// Panics on file-system errors.
pub fn make_queue_file(path: &Path, mode: u32) {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(path, b"test queue file\n")
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The queue IDs (file names) under `<queue>/<queue_name>/`, at any hash
/// depth, sorted. Empty if the directory does not exist.
pub fn queue_ids(queue: &Path, queue_name: &str) -> Vec<String> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < 16 {
                walk(&entry.path(), depth + 1, out);
            } else if kind.is_file() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&queue.join(queue_name), 0, &mut out);
    out.sort();
    out
}

/// Where queue file `id` is now: `Some("deferred")`, `Some("incoming")`, ...
/// (searching deferred, incoming, active, hold, corrupt), or `None`.
pub fn find_queue_file(queue: &Path, id: &str) -> Option<&'static str> {
    ["deferred", "incoming", "active", "hold", "corrupt"]
        .into_iter()
        .find(|name| queue_ids(queue, name).iter().any(|x| x == id))
}

/// The lines of logfile `flush/<site_path>`; empty if it does not exist.
pub fn flush_log(queue: &Path, site_path: &str) -> Vec<String> {
    fs::read_to_string(queue.join("flush").join(site_path))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A valid short (upper-case hex) queue ID, distinct for each `n`, spread over
/// the 16 hash directories: 5 hex digits of "microseconds" (a bijection of the
/// low 20 bits of `n`) followed by an "inode number" made from the rest.
pub fn short_queue_id(n: u32) -> String {
    // Multiplying by an odd number is a bijection modulo 2^20.
    let usec = n.wrapping_mul(0x0009_E379) & 0x000F_FFFF;
    let inode = (n >> 20) + 0x1A2B;
    format!("{usec:05X}{inode:X}")
}

/// A valid long queue ID (`enable_long_queue_ids`), distinct for each `n`:
/// base-52 seconds (6 characters), base-52 microseconds (4), `z`, base-51 inode.
pub fn long_queue_id(n: u32) -> String {
    fn encode(mut value: u64, base: u64, pad: usize) -> String {
        let mut digits = Vec::new();
        while value > 0 || digits.len() < pad.max(1) {
            digits.push(SAFE_CHARS[(value % base) as usize]);
            value /= base;
        }
        digits.reverse();
        String::from_utf8_lossy(&digits).into_owned()
    }
    let seconds = 1_700_000_000 + u64::from(n / 1_000_000);
    let usec = u64::from(n.wrapping_mul(7919) % 1_000_000);
    let inode = 100_000 + u64::from(n);
    format!(
        "{}{}z{}",
        encode(seconds, 52, 6),
        encode(usec, 52, 4),
        encode(inode, 51, 0)
    )
}

// ---------------------------------------------------------------------------
// The qmgr FIFO

/// Creates a FIFO at `path` (mode 0622, as Postfix's `public/qmgr`).
/// Panics on errors.
pub fn make_fifo(path: &Path) {
    use rustix::fs::{FileType, Mode, CWD};
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o622), 0)
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// A reader kept open on a FIFO, non-blocking, so that a writer opening it
/// non-blocking (as Postfix's triggers do) finds a reader, and the test can
/// collect what was written.
pub struct FifoReader {
    file: fs::File,
    seen: Vec<u8>,
}

impl FifoReader {
    /// Opens `path` for reading without blocking.
    ///
    /// # Errors
    /// The `open(2)` error.
    pub fn open(path: &Path) -> io::Result<FifoReader> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(FifoReader {
            file: fs::File::from(fd),
            seen: Vec::new(),
        })
    }

    /// Creates `<queue>/public/qmgr` as a FIFO and opens a reader on it.
    /// Panics on errors.
    pub fn qmgr(queue: &Path) -> FifoReader {
        let path = queue.join("public/qmgr");
        make_fifo(&path);
        FifoReader::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    }

    /// Reads what is in the FIFO now, appends it to everything seen so far,
    /// and returns the new bytes.
    pub fn read_available(&mut self) -> Vec<u8> {
        let mut new = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.file.read(&mut buf) {
                // 0: no writer has it open right now; nothing more to read.
                Ok(0) => break,
                Ok(n) => new.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: drained
            }
        }
        self.seen.extend_from_slice(&new);
        new
    }

    /// Every byte read so far.
    pub fn seen(&self) -> &[u8] {
        &self.seen
    }

    /// Polls until everything seen so far satisfies `done`, or `timeout`
    /// passes; returns everything seen.
    pub fn collect_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            self.read_available();
            if done(&self.seen) || Instant::now() >= deadline {
                return self.seen.clone();
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

// ---------------------------------------------------------------------------
// Waiting

/// Polls `cond` every 10 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn short_ids_are_valid_distinct_and_spread() {
        let ids: Vec<String> = (0..5000).map(short_queue_id).collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert!(id.len() >= 6 && id.len() <= 255, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                "{id}"
            );
        }
        let dirs: HashSet<char> = ids.iter().filter_map(|id| id.chars().next()).collect();
        assert_eq!(dirs.len(), 16);
        // Distinct across the 2^20 boundary too.
        assert_ne!(short_queue_id(5), short_queue_id(5 + (1 << 20)));
    }

    #[test]
    fn short_id_hashes_by_first_character() {
        let q = Path::new("/q");
        assert_eq!(
            hashed_path(q, "deferred", "4F2A81B3C"),
            Path::new("/q/deferred/4/4F2A81B3C")
        );
    }

    #[test]
    fn long_id_hashes_by_hex_microseconds() {
        // Microseconds field "bQm" padded to "0bQm": in the base-52 alphabet
        // b = 31, Q = 22, m = 40, so 31 * 52^2 + 22 * 52 + 40 = 85008 = 0x14C10.
        assert_eq!(hash_key("4Vhc7M0bQmzJ3kN"), "14C10");
        assert_eq!(
            hashed_path(Path::new("/q"), "deferred", "4Vhc7M0bQmzJ3kN"),
            Path::new("/q/deferred/1/4Vhc7M0bQmzJ3kN")
        );
        // A 'z' too close to the start is not a long ID: hashed as itself.
        assert_eq!(hash_key("ABCz123"), "ABCz123");
    }

    #[test]
    fn long_ids_round_trip_their_microseconds() {
        for n in [0u32, 1, 77, 123_456, 999_999] {
            let id = long_queue_id(n);
            let z = id.rfind('z').unwrap();
            assert!(z >= 10, "{id}");
            let usec = u64::from(n.wrapping_mul(7919) % 1_000_000);
            assert_eq!(hash_key(&id), format!("{usec:05X}"), "{id}");
            assert!(id.bytes().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
    }

    #[test]
    fn attr_lists_encode_and_parse() {
        let bytes = encode_attrs(&[("request", "add"), ("site", "a.test")]);
        assert_eq!(bytes, b"request\0add\0site\0a.test\0\0");
        let mut reader = BufReader::new(&bytes[..]);
        let list = read_attr_list(&mut reader).unwrap();
        assert!(list.complete);
        assert_eq!(list.raw, bytes);
        assert_eq!(list.attrs[1], ("site".to_string(), "a.test".to_string()));
        // Truncated input is reported as incomplete, with what arrived.
        let mut reader = BufReader::new(&b"status\x000"[..]);
        let list = read_attr_list(&mut reader).unwrap();
        assert!(!list.complete);
        assert_eq!(list.raw, b"status\x000");
    }

    #[test]
    fn fixtures_build_a_queue() {
        let tmp = tempfile::tempdir().unwrap();
        make_queue_dir(tmp.path()).unwrap();
        let id = short_queue_id(42);
        let path = make_deferred(tmp.path(), &id);
        assert!(path.starts_with(tmp.path().join("deferred")));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(queue_ids(tmp.path(), "deferred"), vec![id.clone()]);
        assert_eq!(find_queue_file(tmp.path(), &id), Some("deferred"));
        assert_eq!(find_queue_file(tmp.path(), "ABCDEF"), None);
    }

    #[test]
    fn fifo_reader_collects_what_writers_send() {
        let tmp = tempfile::tempdir().unwrap();
        make_queue_dir(tmp.path()).unwrap();
        let mut reader = FifoReader::qmgr(tmp.path());
        let path = tmp.path().join("public/qmgr");
        // A non-blocking writer succeeds only because the reader is open.
        for byte in [b"F", b"I"] {
            let fd = rustix::fs::open(
                &path,
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            fs::File::from(fd).write_all(byte).unwrap();
        }
        let seen = reader.collect_until(Duration::from_secs(2), |b| b.len() >= 2);
        assert_eq!(seen, b"FI");
    }
}
