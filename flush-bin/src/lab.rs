//! A private, real Postfix (Debian 12's postfix 3.7) in a temp dir, for tests:
//! its own config, queue and data directories, smtpd on a free loopback port,
//! all mail routed to a closed loopback port so that it is deferred, and the
//! master.cf `flush` service replaceable by another program (flushd).
//!
//! Mirrors the set-up notes in /work/shared/POSTFIX-LAB.md; the master.cf
//! columns are those of Postfix's `src/master/master_ent.c`. That file also
//! shows why a replacement needs its own `daemon_directory`: master(8) always
//! runs `$daemon_directory/<command>`, even when the command column holds a
//! full path. So the lab copies the stock daemons into a private directory and
//! adds the replacement there under its own name.
//!
//! It lives in flush-bin because `flush-bench compare --postfix` runs on it;
//! the integration tests reach it as `integration::postfix_lab`.
//!
//! Nothing here sends mail anywhere but 127.0.0.1. Every lab process belongs
//! to the process group of the lab's master, which `stop()` (and Drop) end.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

/// Polls `cond` every 10 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The `postfix` command.
pub const POSTFIX: &str = "/usr/sbin/postfix";
/// The `postqueue` command.
pub const POSTQUEUE: &str = "/usr/sbin/postqueue";
/// The `sendmail` command.
pub const SENDMAIL: &str = "/usr/sbin/sendmail";

/// The closed loopback port all lab mail is routed to (discard; nothing
/// listens there, so every delivery is deferred at once).
pub const CLOSED_PORT: u16 = 9;

/// The domain [`LabOptions::default`] lists in `relay_domains`.
pub const LAB_DOMAIN: &str = "relay.test";

/// How long the lab waits for Postfix to start or stop.
const LAB_TIMEOUT: Duration = Duration::from_secs(15);

/// Services of the stock master.cf left out of the lab: pipe(8) services for
/// users and programs this machine does not have, and nothing uses.
const SKIPPED_COMMANDS: &[&str] = &["pipe"];

/// Whether Postfix is installed.
pub fn postfix_available() -> bool {
    Path::new(POSTFIX).exists()
}

/// Whether a Postfix test can run: `false` (return early) when Postfix is not
/// installed and the `CI` environment variable is not set.
///
/// Panics when `CI` is set and Postfix is missing: CI must install it, and
/// its tests must not pass by skipping.
pub fn require_postfix() -> bool {
    if postfix_available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI is set but {POSTFIX} is missing: install Debian's postfix package (see .ci/run)"
        );
    }
    eprintln!("skipping: {POSTFIX} is not installed (set CI=1 to make this a failure)");
    false
}

/// The user and group IDs of the `postfix` account (Postfix's default
/// `mail_owner`), from /etc/passwd; `None` if there is no such account.
pub fn postfix_ids() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "postfix" {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
///
/// # Errors
/// The bind error.
pub fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// How to build a [`PostfixLab`].
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The test domains: `relay_domains` (and so, by default, `fast_flush_domains`).
    pub domains: Vec<String>,
    /// `None`: Postfix's own flush(8). `Some(path)`: this program runs as the
    /// `flush` service. The lab then uses a private `daemon_directory` (copies
    /// of the stock daemons) holding, under the program's file name, a wrapper
    /// script that execs `path` and saves its stderr (see
    /// [`PostfixLab::flush_stderr`]); master.cf names it like a stock daemon:
    /// `flush unix n - n 1000? 0 flushd`.
    pub flush_command: Option<PathBuf>,
    /// Arguments after the flush command in master.cf.
    pub flush_args: Vec<String>,
    /// Environment for a replacement flush command (`RUST_LOG=debug` unless set here).
    pub flush_env: Vec<(String, String)>,
    /// The wakeup column of the flush service (`1000?` unless set).
    pub flush_wakeup: Option<String>,
    /// Further `name = value` lines for main.cf (later lines win).
    pub main_cf: Vec<(String, String)>,
    /// Further lines for master.cf.
    pub master_cf: Vec<String>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            domains: vec![LAB_DOMAIN.to_string()],
            flush_command: None,
            flush_args: Vec::new(),
            flush_env: Vec::new(),
            flush_wakeup: None,
            main_cf: Vec::new(),
            master_cf: Vec::new(),
        }
    }
}

/// A private Postfix instance. Created stopped; `start()` it. Dropping it stops
/// it and makes sure none of its processes survive.
pub struct PostfixLab {
    tmp: TempDir,
    config_dir: PathBuf,
    queue_dir: PathBuf,
    maillog: PathBuf,
    flush_stderr: PathBuf,
    /// How a replacement flush command's maillog records are tagged
    /// (`/<program>[`), if there is one.
    flush_tag: Option<String>,
    port: u16,
    /// The master's process ID (its process group) while running.
    master_pid: Option<i32>,
}

impl PostfixLab {
    /// Writes main.cf and master.cf into a new temp dir and runs `postfix
    /// check` on it, which creates the queue and data directories with their
    /// owners and modes. Does not start it.
    ///
    /// Not `postfix set-permissions`: that also resets the modes of system
    /// files outside the lab (Debian's 2555 postqueue and postdrop become
    /// 2755), which a test has no business doing.
    ///
    /// # Errors
    /// File-system errors, a failing `postfix` command (its output is in the
    /// error), or something listening on the "closed" port.
    pub fn new(opts: LabOptions) -> io::Result<PostfixLab> {
        if TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, CLOSED_PORT)),
            Duration::from_secs(1),
        )
        .is_ok()
        {
            return Err(io::Error::other(format!(
                "something listens on 127.0.0.1:{CLOSED_PORT}; the lab needs it closed"
            )));
        }
        let tmp = tempfile::Builder::new().prefix("postfix-lab.").tempdir()?;
        // Postfix daemons run as the postfix user: it must reach the queue.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
        let root = tmp.path().to_path_buf();
        let config_dir = root.join("etc");
        let queue_dir = root.join("queue");
        // The data directory is left to `postfix check`, which creates it
        // owned by the postfix user.
        for dir in [&config_dir, &queue_dir] {
            fs::create_dir(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        let maillog = root.join("maillog");
        let flush_stderr = root.join("flush.stderr");
        let port = free_loopback_port()?;

        let flush_command = match &opts.flush_command {
            None => None,
            Some(program) => Some(private_daemon_dir(&root, program, &opts, &flush_stderr)?),
        };
        let daemon_dir = flush_command.as_ref().map(|_| root.join("libexec"));
        fs::write(
            config_dir.join("main.cf"),
            main_cf(&root, daemon_dir.as_deref(), &opts),
        )?;
        let stock = [
            "/etc/postfix/master.cf",
            "/usr/share/postfix/master.cf.dist",
        ]
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .ok_or_else(|| io::Error::other("no stock master.cf found"))?;
        fs::write(
            config_dir.join("master.cf"),
            master_cf(&stock, port, flush_command.as_deref(), &opts),
        )?;

        let lab = PostfixLab {
            tmp,
            config_dir,
            queue_dir,
            maillog,
            flush_stderr,
            flush_tag: opts
                .flush_command
                .as_ref()
                .and_then(|program| program.file_name())
                .map(|name| format!("/{}[", name.to_string_lossy())),
            port,
            master_pid: None,
        };
        lab.postfix_ok(&["check"])?;
        Ok(lab)
    }

    /// Starts the master and waits until smtpd accepts connections and the
    /// `public/flush` and `public/qmgr` endpoints exist.
    ///
    /// # Errors
    /// A failing `postfix start` or a lab not ready in time (with the maillog).
    pub fn start(&mut self) -> io::Result<()> {
        self.postfix_ok(&["start"])?;
        let ready = wait_until(LAB_TIMEOUT, || {
            self.master_pid = self.read_master_pid();
            self.master_pid.is_some()
                && TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
                && self.queue_dir.join("public/flush").exists()
                && self.queue_dir.join("public/qmgr").exists()
        });
        if !ready {
            return Err(io::Error::other(format!(
                "postfix lab not ready after {LAB_TIMEOUT:?}; maillog:\n{}",
                self.maillog()
            )));
        }
        Ok(())
    }

    /// Stops the master (`postfix stop`), then waits until every process of
    /// its process group is gone, killing the stragglers.
    ///
    /// # Errors
    /// Processes that survive SIGKILL (should not happen).
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(pgid) = self.master_pid.take().or_else(|| self.read_master_pid()) else {
            return Ok(());
        };
        // postfix stop sends SIGTERM, waits up to 5 s, then kills the group.
        let _ = self.postfix(&["stop"]);
        if wait_until(LAB_TIMEOUT, || process_group_members(pgid).is_empty()) {
            return Ok(());
        }
        if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        if wait_until(Duration::from_secs(5), || {
            process_group_members(pgid).is_empty()
        }) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "postfix lab processes {:?} survive SIGKILL",
                process_group_members(pgid)
            )))
        }
    }

    /// The master's process ID from `pid/master.pid`, if it is alive.
    fn read_master_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.queue_dir.join("pid/master.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// The lab's process IDs (the master's process group); empty when stopped.
    pub fn processes(&self) -> Vec<i32> {
        self.master_pid
            .map(process_group_members)
            .unwrap_or_default()
    }

    /// Runs `postfix -c DIR ARGS`.
    ///
    /// # Errors
    /// When the command cannot be run.
    pub fn postfix(&self, args: &[&str]) -> io::Result<Output> {
        Command::new(POSTFIX)
            .arg("-c")
            .arg(&self.config_dir)
            .args(args)
            .output()
    }

    fn postfix_ok(&self, args: &[&str]) -> io::Result<()> {
        let out = self.postfix(args)?;
        if out.status.success() {
            // Warnings (for example from `check`) show in a failing test's output.
            if !out.stderr.is_empty() {
                eprintln!(
                    "postfix {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "postfix {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    /// The lab's temp dir.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The lab's `queue_directory`.
    pub fn queue_dir(&self) -> &Path {
        &self.queue_dir
    }

    /// The lab's `config_directory` (main.cf, master.cf).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The loopback port smtpd listens on.
    pub fn smtp_port(&self) -> u16 {
        self.port
    }

    /// The maillog so far (empty if not written yet).
    pub fn maillog(&self) -> String {
        fs::read(&self.maillog)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// What a replacement flush command wrote to stderr (all its processes).
    pub fn flush_stderr(&self) -> String {
        fs::read(&self.flush_stderr)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// What a replacement flush command logged: its records in the maillog
    /// (through postlogd, as a Postfix daemon logs), then its stderr (where
    /// it reports what postlogd was not there to take).
    pub fn flush_messages(&self) -> String {
        let mut text = String::new();
        if let Some(tag) = &self.flush_tag {
            for line in self.maillog().lines().filter(|line| line.contains(tag)) {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str(&self.flush_stderr());
        text
    }

    /// Runs `postqueue -c DIR ARGS`.
    ///
    /// # Errors
    /// When the command cannot be run.
    pub fn postqueue(&self, args: &[&str]) -> io::Result<Output> {
        Command::new(POSTQUEUE)
            .arg("-c")
            .arg(&self.config_dir)
            .args(args)
            .output()
    }

    /// Runs `sendmail -C DIR ARGS` with `stdin` as its input.
    ///
    /// # Errors
    /// When the command cannot be run or its input cannot be written.
    pub fn sendmail(&self, args: &[&str], stdin: &[u8]) -> io::Result<Output> {
        let mut child = Command::new(SENDMAIL)
            .arg("-C")
            .arg(&self.config_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin)?;
        }
        child.wait_with_output()
    }

    /// An SMTP session with the lab's smtpd: reads the greeting, then sends
    /// each line (CRLF added) and reads its reply. Returns one entry per reply,
    /// the greeting first; a multi-line reply is one entry with its lines
    /// joined by `\n`. Stops early if the server closes.
    ///
    /// To send a message, give `DATA`, then the whole message ending in a line
    /// `.` as one entry.
    ///
    /// # Errors
    /// Connection and I/O errors (including a 10 s read timeout).
    pub fn smtp_session(&self, lines: &[&str]) -> io::Result<Vec<String>> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut replies = Vec::new();
        match read_smtp_reply(&mut reader)? {
            Some(greeting) => replies.push(greeting),
            None => return Ok(replies),
        }
        for line in lines {
            writer.write_all(format!("{line}\r\n").as_bytes())?;
            match read_smtp_reply(&mut reader)? {
                Some(reply) => replies.push(reply),
                None => break,
            }
        }
        Ok(replies)
    }

    /// Sends one message over SMTP and returns its queue ID (from
    /// `250 2.0.0 Ok: queued as ID`).
    ///
    /// # Errors
    /// I/O errors, or `Other` with the transcript when the mail is not queued.
    pub fn send_mail(&self, from: &str, to: &str) -> io::Result<String> {
        let mail_from = format!("MAIL FROM:<{from}>");
        let rcpt_to = format!("RCPT TO:<{to}>");
        let body = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: flushd lab test\r\n\r\nTest message.\r\n."
        );
        let replies =
            self.smtp_session(&["EHLO lab.test", &mail_from, &rcpt_to, "DATA", &body, "QUIT"])?;
        replies
            .get(5)
            .and_then(|reply| reply.split("queued as ").nth(1))
            .map(|id| id.trim().to_string())
            .ok_or_else(|| io::Error::other(format!("mail not queued: {replies:?}")))
    }

    /// The queue IDs in deferred/, sorted.
    pub fn deferred_ids(&self) -> Vec<String> {
        crate::bench::fixture::queue_ids(&self.queue_dir, "deferred")
    }

    /// The lines of logfile `flush/<site_path>`; empty if it does not exist.
    pub fn flush_log(&self, site_path: &str) -> Vec<String> {
        crate::bench::fixture::flush_log(&self.queue_dir, site_path)
    }

    /// How many maillog lines about `queue_id` contain `needle`.
    pub fn maillog_count(&self, queue_id: &str, needle: &str) -> usize {
        let prefix = format!(" {queue_id}: ");
        self.maillog()
            .lines()
            .filter(|l| l.contains(&prefix) && l.contains(needle))
            .count()
    }

    /// How many delivery attempts of `queue_id` ended in `status=deferred`.
    pub fn deferrals(&self, queue_id: &str) -> usize {
        self.maillog_count(queue_id, "status=deferred")
    }

    /// How many times the queue manager moved `queue_id` into the active
    /// queue (from incoming/ or deferred/): one per delivery attempt.
    pub fn activations(&self, queue_id: &str) -> usize {
        self.maillog_count(queue_id, "(queue active)")
    }
}

impl Drop for PostfixLab {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("postfix lab {}: {e}", self.tmp.path().display());
        }
        if thread::panicking() {
            eprintln!(
                "---- postfix lab maillog ----\n{}---- end of maillog ----",
                self.maillog()
            );
            let stderr = self.flush_stderr();
            if !stderr.is_empty() {
                eprintln!("---- flush service stderr ----\n{stderr}---- end ----");
            }
        }
    }
}

/// main.cf for a lab rooted at `root` (see POSTFIX-LAB.md), with a private
/// `daemon_directory` if given.
fn main_cf(root: &Path, daemon_dir: Option<&Path>, opts: &LabOptions) -> String {
    let root = root.display();
    let domains = opts.domains.join(", ");
    let closed = format!("smtp:[127.0.0.1]:{CLOSED_PORT}");
    let mut lines: Vec<(String, String)> = [
        ("compatibility_level", "3.6".to_string()),
        ("config_directory", format!("{root}/etc")),
        ("queue_directory", format!("{root}/queue")),
        ("data_directory", format!("{root}/data")),
        ("meta_directory", "/etc/postfix".to_string()),
        ("myhostname", "lab.localdomain".to_string()),
        ("mydomain", "localdomain".to_string()),
        ("inet_interfaces", "loopback-only".to_string()),
        ("inet_protocols", "ipv4".to_string()),
        ("mydestination", String::new()),
        ("mynetworks", "127.0.0.0/8".to_string()),
        ("relay_domains", domains),
        ("relay_transport", closed.clone()),
        ("default_transport", closed),
        ("smtp_dns_support_level", "disabled".to_string()),
        ("smtpd_peername_lookup", "no".to_string()),
        ("alias_maps", String::new()),
        ("alias_database", String::new()),
        ("biff", "no".to_string()),
        ("maillog_file", format!("{root}/maillog")),
        (
            "maillog_file_prefixes",
            format!("/var, /dev/stdout, {root}"),
        ),
        ("queue_run_delay", "3600s".to_string()),
        ("minimal_backoff_time", "3600s".to_string()),
        ("maximal_backoff_time", "4000s".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    if let Some(dir) = daemon_dir {
        lines.push(("daemon_directory".to_string(), dir.display().to_string()));
    }
    lines.extend(opts.main_cf.iter().cloned());
    lines
        .iter()
        .map(|(name, value)| format!("{name} = {value}\n"))
        .collect()
}

/// master.cf from the stock one: chroot off everywhere, smtpd only on
/// 127.0.0.1:`port`, pipe(8) services dropped, the flush service's command
/// name (in `daemon_directory`) and wakeup replaced if asked, plus the extra
/// lines.
fn master_cf(stock: &str, port: u16, flush_command: Option<&str>, opts: &LabOptions) -> String {
    let mut out = String::from("# Generated for a private test instance of Postfix.\n");
    let mut skipping = false;
    for line in stock.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // Continuation lines belong to the service above.
        if line.starts_with(char::is_whitespace) {
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        let mut fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        skipping = fields.len() < 8 || SKIPPED_COMMANDS.contains(&fields[7].as_str());
        if skipping {
            continue;
        }
        fields[4] = "n".to_string(); // chroot: the lab's paths are not in a jail
        match (fields[0].as_str(), fields[1].as_str()) {
            ("smtp", "inet") => fields[0] = format!("127.0.0.1:{port}"),
            ("flush", "unix") => {
                if let Some(wakeup) = &opts.flush_wakeup {
                    fields[5] = wakeup.clone();
                }
                if let Some(command) = flush_command {
                    fields.truncate(7);
                    fields.push(command.to_string());
                    fields.extend(opts.flush_args.iter().cloned());
                }
            }
            _ => {}
        }
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    for line in &opts.master_cf {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Builds `<root>/libexec`, a private `daemon_directory`: a copy of each
/// stock daemon, and under `program`'s file name a wrapper script.
/// Returns that name, for master.cf's command column.
fn private_daemon_dir(
    root: &Path,
    program: &Path,
    opts: &LabOptions,
    stderr_path: &Path,
) -> io::Result<String> {
    let name = program
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
        .ok_or_else(|| io::Error::other(format!("unusable flush command {}", program.display())))?
        .to_string();
    let stock = stock_daemon_dir();
    let libexec = root.join("libexec");
    fs::create_dir(&libexec)?;
    fs::set_permissions(&libexec, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(&stock)? {
        let entry = entry?;
        if entry.file_name().to_str() != Some(name.as_str()) {
            // Copies, not symbolic links: `postfix check` warns about each
            // link that leaves daemon_directory. They are small.
            fs::copy(entry.path(), libexec.join(entry.file_name()))?;
        }
    }
    write_flush_wrapper(&libexec.join(&name), program, opts, stderr_path)?;
    Ok(name)
}

/// The stock `daemon_directory`, as `postconf -d` reports it.
fn stock_daemon_dir() -> PathBuf {
    Command::new("/usr/sbin/postconf")
        .args(["-dh", "daemon_directory"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|dir| PathBuf::from(dir.trim()))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postfix/sbin"))
}

/// Writes the wrapper script at `path`: it execs `program` with master's
/// arguments and file descriptors intact, its environment set and its stderr
/// appended to `stderr_path` (master gives daemons /dev/null).
fn write_flush_wrapper(
    path: &Path,
    program: &Path,
    opts: &LabOptions,
    stderr_path: &Path,
) -> io::Result<()> {
    let mut script = String::from("#!/bin/sh\n");
    if !opts.flush_env.iter().any(|(name, _)| name == "RUST_LOG") {
        script.push_str("RUST_LOG=debug; export RUST_LOG\n");
    }
    for (name, value) in &opts.flush_env {
        script.push_str(&format!("{name}={}; export {name}\n", shell_quote(value)));
    }
    script.push_str(&format!(
        "exec {} \"$@\" 2>>{}\n",
        shell_quote(&program.display().to_string()),
        shell_quote(&stderr_path.display().to_string())
    ));
    fs::write(path, script)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    // The flush service runs as the postfix user: it must be able to append.
    fs::write(stderr_path, b"")?;
    fs::set_permissions(stderr_path, fs::Permissions::from_mode(0o666))?;
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Reads one SMTP reply (all its lines); `None` at end of file.
fn read_smtp_reply(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut line = String::new();
        if reader.by_ref().take(4096).read_line(&mut line)? == 0 {
            return Ok(if lines.is_empty() {
                None
            } else {
                Some(lines.join("\n"))
            });
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        // "250-..." continues a reply; "250 ..." (or a bare code) ends it.
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last || lines.len() >= 100 {
            return Ok(Some(lines.join("\n")));
        }
    }
}

/// The processes whose process group is `pgid` (read from /proc).
fn process_group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the ")" that ends the command name: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
            // A zombie is already dead; its parent reaps it.
            state != Some("Z") && pgrp == Some(pgid)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STOCK: &str = "\
# comment
smtp      inet  n       -       y       -       -       smtpd
flush     unix  n       -       y       1000?   0       flush
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}
postlog   unix-dgram n  -       n       -       1       postlogd
";

    #[test]
    fn master_cf_keeps_postfix_flush_by_default() {
        let cf = master_cf(STOCK, 2525, None, &LabOptions::default());
        let lines: Vec<&str> = cf.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "127.0.0.1:2525 inet n - n - - smtpd",
                "flush unix n - n 1000? 0 flush",
                "relay unix - - n - - smtp",
                "        -o syslog_name=postfix/$service_name",
                "postlog unix-dgram n - n - 1 postlogd",
            ]
        );
    }

    #[test]
    fn master_cf_replaces_the_flush_command() {
        let opts = LabOptions {
            flush_args: vec!["-v".to_string()],
            flush_wakeup: Some("5".to_string()),
            master_cf: vec!["extra unix - - n - - discard".to_string()],
            ..LabOptions::default()
        };
        let cf = master_cf(STOCK, 2525, Some("flushd"), &opts);
        assert!(cf.contains("\nflush unix n - n 5 0 flushd -v\n"), "{cf}");
        assert!(cf.ends_with("extra unix - - n - - discard\n"), "{cf}");
        assert!(!cf.contains("maildrop") && !cf.contains("vmail"), "{cf}");
    }

    #[test]
    fn main_cf_routes_mail_to_the_closed_port() {
        let opts = LabOptions {
            domains: vec!["a.test".to_string(), "b.test".to_string()],
            main_cf: vec![("fast_flush_domains".to_string(), "a.test".to_string())],
            ..LabOptions::default()
        };
        let cf = main_cf(
            Path::new("/tmp/lab"),
            Some(Path::new("/tmp/lab/libexec")),
            &opts,
        );
        assert!(cf.contains("relay_domains = a.test, b.test\n"), "{cf}");
        assert!(
            cf.contains("default_transport = smtp:[127.0.0.1]:9\n"),
            "{cf}"
        );
        assert!(cf.contains("queue_directory = /tmp/lab/queue\n"), "{cf}");
        assert!(cf.contains("daemon_directory = /tmp/lab/libexec\n"), "{cf}");
        assert!(cf.ends_with("fast_flush_domains = a.test\n"), "{cf}");
    }

    #[test]
    fn smtp_replies_join_continuation_lines() {
        let mut input = BufReader::new(&b"250-lab\r\n250-ETRN\r\n250 8BITMIME\r\n220 x\r\n"[..]);
        assert_eq!(
            read_smtp_reply(&mut input).unwrap().unwrap(),
            "250-lab\n250-ETRN\n250 8BITMIME"
        );
        assert_eq!(read_smtp_reply(&mut input).unwrap().unwrap(), "220 x");
        assert_eq!(read_smtp_reply(&mut input).unwrap(), None);
    }

    #[test]
    fn postfix_account_is_found_when_postfix_is_installed() {
        if postfix_available() {
            let (uid, gid) = postfix_ids().expect("postfix account");
            assert!(uid > 0 && gid > 0);
        }
    }

    #[test]
    fn process_groups_are_found() {
        let me = std::process::id() as i32;
        let pgid = rustix::process::getpgrp().as_raw_nonzero().get();
        assert!(process_group_members(pgid).contains(&me));
    }
}
