//! master(8) mode: flushd as the `flush` service of a running Postfix.
//!
//! Mirrors the child side of Postfix's `src/master/single_server.c` (options,
//! start-up and exit rules), `master_proto.h` (the inherited descriptors) and
//! `mail_server.h`. When master(8) starts a service it leaves the service's
//! listening socket on descriptor 6, a status pipe on 5 and flow-control pipes
//! on 3 and 4, sets `GENERATION` (and `MAIL_CONFIG`) in the environment, and
//! puts its own options before those of the master.cf line
//! (`-z -t unix -u ...`). This module recognises that situation
//! ([`detect`]), parses those options ([`DaemonOptions::parse`]), takes the
//! queue lock and drops privileges the way a Postfix daemon does, and decides
//! when to exit ([`MasterMode::supervise`]): when the status pipe reaches end
//! of file (master reloads or stops) or after `max_idle` with no connection.
//! master's wakeups (`W NUL`) arrive on the inherited socket like any client;
//! the gateway answers them and runs a refresh.
//!
//! # Availability: why flushd never writes to the status pipe
//!
//! A Postfix single-threaded daemon writes a `MASTER_STATUS` record
//! (pid, generation, avail) to descriptor 5: TAKEN when it accepts a
//! connection, AVAIL when done. master counts a freshly spawned child as
//! available (`master_spawn.c`), stops watching the listening socket while any
//! child is available, and only when a TAKEN update brings that count to zero
//! does it watch the socket again and spawn another child for the next
//! connection (`master_avail.c`). flushd serves every connection concurrently
//! from one process, so it is always available: by never reporting TAKEN it
//! stays master's one available child, master never spawns a second flushd,
//! and no connection waits for a process. master spawns a new flushd only
//! after this one has exited (idle, reload, crash), when the next connection
//! or wakeup arrives. The end-to-end tests check this with the real master.
//!
//! # What is not supported
//!
//! A chroot jail (`-c`, master.cf chroot column `y`), stand-alone stream mode
//! (`-S`), transports other than `unix` and more than one socket (`-s`) make
//! flushd refuse to start. `-m` (`max_use`) is accepted and ignored: one
//! process serves every connection, so there is nothing to retire. `-d`,
//! `-D`, `-l`, `-r`, `-V` and `-z` are accepted and ignored.

use anyhow::{bail, Context as _, Result};
use flush_actors::config::Config;
use flush_actors::gateway::GatewayStats;
use std::ffi::OsString;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue_lock::{self, QueueLock};

/// Descriptor of the status pipe shared with master(8) (`MASTER_STATUS_FD`).
pub const MASTER_STATUS_FD: i32 = 5;
/// Descriptor of the service's listening socket (`MASTER_LISTEN_FD`).
pub const MASTER_LISTEN_FD: i32 = 6;
/// Environment variable through which master passes the process generation.
pub const GENERATION_ENV: &str = "GENERATION";
/// Environment variable naming Postfix's configuration directory.
pub const MAIL_CONFIG_ENV: &str = "MAIL_CONFIG";
/// Postfix's default `mail_owner`.
pub const DEFAULT_MAIL_OWNER: &str = "postfix";
/// How long start-up waits for the queue lock held by a flushd that is still
/// shutting down (its grace period, and a margin).
pub const LOCK_WAIT: Duration = Duration::from_secs(15);

/// Postfix daemon options taking a value (`single_server.c`'s getopt string
/// is "cdDi:lm:n:o:r:s:St:uvVz").
const OPTS_WITH_VALUE: &[char] = &['i', 'm', 'n', 'o', 'r', 's', 't'];
/// Postfix daemon options without a value.
const OPTS_FLAGS: &[char] = &['c', 'd', 'D', 'l', 'S', 'u', 'v', 'V', 'z'];
/// Arguments accepted on the command line (master's and master.cf's).
const MAX_ARGS: usize = 1000;

/// The Postfix daemon options master(8) passed, and flushd's own long
/// options (`--name[=value]`) found among them, for clap.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    /// Parameter overrides in command-line order: `-o name=value`, and
    /// `-i` / `-m` as `max_idle` / `max_use`.
    pub overrides: Vec<String>,
    /// `-n`: the service name (master.cf's first column).
    pub service_name: Option<String>,
    /// `-t`: the transport (`unix` is the only one flushd serves).
    pub transport: Option<String>,
    /// `-v`, counted.
    pub verbose: u8,
    /// `-u`: run as `mail_owner` (master.cf unpriv column `y` or `-`).
    pub unprivileged: bool,
    /// `-c`: chroot into the queue directory (refused).
    pub chroot: bool,
    /// `-S`: serve one client on stdin/stdout (refused).
    pub stream: bool,
    /// `-s`: the number of listening sockets (1 unless given).
    pub socket_count: Option<String>,
    /// Options accepted without effect, for one debug line.
    pub ignored: Vec<String>,
    /// flushd's long options with their values, in order.
    pub flushd_args: Vec<OsString>,
}

/// A malformed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError(String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

impl DaemonOptions {
    /// Parses the arguments after the program name, as Postfix's getopt
    /// would ("+" mode: options end at `--` or the first non-option), except
    /// that `--name` and `--name=value` are flushd's own long options and go
    /// to [`DaemonOptions::flushd_args`]; `takes_value(name)` says whether a
    /// `--name` without `=` takes the next argument as its value.
    ///
    /// # Errors
    /// An unknown option, a missing value, a non-option argument (flush(8)
    /// takes none either), or too many arguments.
    pub fn parse<I>(args: I, takes_value: impl Fn(&str) -> bool) -> Result<Self, ArgError>
    where
        I: IntoIterator<Item = OsString>,
    {
        let args: Vec<OsString> = args.into_iter().take(MAX_ARGS + 1).collect();
        if args.len() > MAX_ARGS {
            return Err(ArgError(format!("more than {MAX_ARGS} arguments")));
        }
        let mut opts = DaemonOptions::default();
        let mut rest = args.into_iter();
        while let Some(arg) = rest.next() {
            let text = arg
                .to_str()
                .ok_or_else(|| ArgError(format!("argument {arg:?} is not UTF-8")))?
                .to_string();
            if text == "--" {
                if let Some(extra) = rest.next() {
                    return Err(ArgError(format!("unexpected argument {extra:?}")));
                }
                break;
            }
            if let Some(long) = text.strip_prefix("--") {
                opts.flushd_args.push(arg);
                if !long.contains('=') && takes_value(long) {
                    let value = rest
                        .next()
                        .ok_or_else(|| ArgError(format!("--{long} needs a value")))?;
                    opts.flushd_args.push(value);
                }
                continue;
            }
            let Some(cluster) = text.strip_prefix('-').filter(|c| !c.is_empty()) else {
                return Err(ArgError(format!("unexpected argument {text:?}")));
            };
            for (i, c) in cluster.char_indices() {
                if OPTS_FLAGS.contains(&c) {
                    opts.flag(c);
                    continue;
                }
                if !OPTS_WITH_VALUE.contains(&c) {
                    return Err(ArgError(format!("invalid option -{c}")));
                }
                // As getopt: the value is the rest of this argument or the next one.
                let attached = &cluster[i + c.len_utf8()..];
                let value = if attached.is_empty() {
                    rest.next()
                        .and_then(|v| v.into_string().ok())
                        .ok_or_else(|| ArgError(format!("option -{c} needs a UTF-8 value")))?
                } else {
                    attached.to_string()
                };
                opts.with_value(c, value);
                break;
            }
        }
        Ok(opts)
    }

    fn flag(&mut self, c: char) {
        match c {
            'c' => self.chroot = true,
            'S' => self.stream = true,
            'u' => self.unprivileged = true,
            'v' => self.verbose = self.verbose.saturating_add(1),
            _ => self.ignored.push(format!("-{c}")),
        }
    }

    fn with_value(&mut self, c: char, value: String) {
        match c {
            'o' => self.overrides.push(value),
            'i' => self.overrides.push(format!("max_idle={value}")),
            'm' => {
                // Kept so the value is validated like main.cf's; never used.
                self.overrides.push(format!("max_use={value}"));
                self.ignored.push(format!("-m {value}"));
            }
            'n' => self.service_name = Some(value),
            't' => self.transport = Some(value),
            's' => self.socket_count = Some(value),
            _ => self.ignored.push(format!("-{c} {value}")),
        }
    }

    /// Refuses what flushd cannot do under master(8).
    ///
    /// # Errors
    /// A chroot jail, stream mode, a transport other than `unix`, or more than
    /// one listening socket.
    pub fn check(&self) -> Result<(), ArgError> {
        if self.chroot {
            return Err(ArgError(
                "flushd does not run in a chroot jail: set the chroot column of its \
                 master.cf line to n"
                    .into(),
            ));
        }
        if self.stream {
            return Err(ArgError("stream mode (-S) is not supported".into()));
        }
        match self.transport.as_deref() {
            Some("unix") => {}
            Some(other) => {
                return Err(ArgError(format!(
                    "transport {other:?} is not supported: flushd serves a unix service"
                )))
            }
            None => return Err(ArgError("no transport type specified (-t)".into())),
        }
        match self.socket_count.as_deref() {
            None | Some("1") => Ok(()),
            Some(n) => Err(ArgError(format!(
                "-s {n}: flushd serves exactly one inherited socket"
            ))),
        }
    }
}

/// The descriptors master(8) passed: the service's listening socket and the
/// status pipe.
#[derive(Debug)]
pub struct Inherited {
    /// Descriptor 6.
    pub listener: UnixListener,
    /// Descriptor 5 (its far end is master's).
    pub status: UnixStream,
    /// `GENERATION`, as master wrote it (octal).
    pub generation: String,
}

/// Whether master(8) started this process, whatever kind of service it was
/// told to run: `GENERATION` is set and master's status socket is on
/// descriptor 5. Decides where start-up errors go (stderr is /dev/null
/// then), also for a service flushd refuses to be ([`detect`] fails) or
/// does not see as one (a `fifo` service has no socket on descriptor 6).
pub fn spawned_by_master() -> bool {
    std::env::var_os(GENERATION_ENV).is_some() && is_socket(MASTER_STATUS_FD)
}

/// Recognises a start by master(8): `GENERATION` is set and descriptors 5
/// and 6 are sockets, 6 a listening UNIX stream socket. Then takes them over
/// (once per process). `Ok(None)` means a normal start.
///
/// Call it first thing in `main`, before anything could open descriptors 5
/// or 6 itself. Linux only (it looks at /proc/self/fd).
///
/// # Errors
/// `GENERATION` is set and both descriptors are sockets, but 6 is not a
/// listening UNIX stream socket, or they were taken already.
pub fn detect() -> Result<Option<Inherited>> {
    let Some(generation) = std::env::var_os(GENERATION_ENV) else {
        return Ok(None);
    };
    let generation = generation.to_string_lossy().into_owned();
    if !is_socket(MASTER_STATUS_FD) || !is_socket(MASTER_LISTEN_FD) {
        // Not started by master (or not with a socket service): run normally.
        return Ok(None);
    }
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        bail!("master(8) descriptors taken twice");
    }
    let status = take_fd(MASTER_STATUS_FD);
    let listen = take_fd(MASTER_LISTEN_FD);
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let listening = sockopt::socket_acceptconn(&listen).unwrap_or(false)
        && sockopt::socket_type(&listen).ok() == Some(SocketType::STREAM)
        && sockopt::socket_domain(&listen).ok() == Some(AddressFamily::UNIX);
    if !listening {
        bail!(
            "descriptor {MASTER_LISTEN_FD} from master(8) is not a listening UNIX stream \
             socket: flushd serves a `unix` service only"
        );
    }
    Ok(Some(Inherited {
        listener: UnixListener::from(listen),
        status: UnixStream::from(status),
        generation,
    }))
}

/// Whether descriptor `fd` is open and a socket (from /proc, without touching it).
fn is_socket(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|target| target.to_string_lossy().starts_with("socket:"))
        .unwrap_or(false)
}

/// Takes ownership of an inherited descriptor.
#[allow(unsafe_code)]
fn take_fd(fd: i32) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is open (is_socket saw it in /proc/self/fd) and owned by
    // nothing else in this process: master(8) passed it across exec, and
    // `detect` (its only caller, guarded to run once) takes it before any
    // other code could open or wrap a descriptor with that number.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The configuration directory under master(8): `MAIL_CONFIG` (set by
/// `postfix -c DIR start` and passed on by master), else `default`.
pub fn config_dir(default: &Path) -> PathBuf {
    std::env::var_os(MAIL_CONFIG_ENV)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| default.to_path_buf(), PathBuf::from)
}

/// Takes the queue lock, waiting up to `wait` for a flushd that still holds
/// it (one finishing its shutdown after `postfix reload`): master(8) counts
/// this process as available from the start, so failing fast would leave
/// nobody serving; waiting for ever would hang every client.
///
/// # Errors
/// The lock is still held after `wait`, or cannot be taken at all.
pub fn lock_queue(queue: &Path, wait: Duration) -> Result<QueueLock> {
    let deadline = Instant::now() + wait;
    loop {
        match queue_lock::acquire(queue) {
            Ok(lock) => return Ok(lock),
            Err(e) if is_lock_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `queue_lock::acquire` failed because another flushd holds the lock.
fn is_lock_busy(e: &anyhow::Error) -> bool {
    e.to_string().starts_with("another flushd")
}

/// The user and group IDs of `user` in a passwd(5) text.
fn passwd_ids(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Number of threads of this process (from /proc/self/status).
fn thread_count() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Becomes `mail_owner` (user and primary group, no supplementary groups),
/// as a Postfix daemon does for `-u`. The account is looked up in
/// /etc/passwd, where the Postfix package creates it.
///
/// Must run while the process has one thread: Linux keeps credentials per
/// thread, and threads started afterwards inherit the new ones.
///
/// # Errors
/// The account is missing or is root, the process already has other
/// threads, or a set*id call fails.
pub fn drop_privileges(config: &Config) -> Result<()> {
    use rustix::process::{geteuid, getuid, Gid, Uid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    let owner = config
        .expanded("mail_owner")
        .ok()
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| DEFAULT_MAIL_OWNER.to_string());
    let passwd = std::fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    let (uid, gid) = passwd_ids(&passwd, &owner)
        .with_context(|| format!("mail_owner {owner:?}: no such account in /etc/passwd"))?;
    if uid == 0 {
        bail!("mail_owner {owner:?} must not be root");
    }
    if geteuid().as_raw() == uid && getuid().as_raw() == uid {
        return Ok(());
    }
    if thread_count() != Some(1) {
        bail!("cannot drop privileges: the process already runs other threads");
    }
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    set_thread_groups(&[gid]).context("setgroups")?;
    set_thread_res_gid(gid, gid, gid).context("setresgid")?;
    set_thread_res_uid(uid, uid, uid).context("setresuid")?;
    log::debug!("running as {owner} (uid {})", uid.as_raw());
    Ok(())
}

/// Why flushd leaves master(8)'s service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterExit {
    /// The status pipe reached end of file: master reloads or stops.
    MasterGone,
    /// No connection for `max_idle`.
    Idle(Duration),
}

impl fmt::Display for MasterExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterExit::MasterGone => f.write_str("master(8) closed the status pipe"),
            MasterExit::Idle(d) => write!(f, "idle for max_idle ({}s)", d.as_secs()),
        }
    }
}

/// Tracks how long the server has had no connection: a connection accepted
/// or one still open counts as activity.
#[derive(Debug)]
struct IdleClock {
    max_idle: Duration,
    last_total: u64,
    since: Instant,
}

impl IdleClock {
    fn new(max_idle: Duration, total: u64, now: Instant) -> IdleClock {
        IdleClock {
            max_idle,
            last_total: total,
            since: now,
        }
    }

    /// Records the gateway's counters at `now`; whether `max_idle` has passed
    /// without activity.
    fn expired(&mut self, open: i64, total: u64, now: Instant) -> bool {
        if open > 0 || total != self.last_total {
            self.last_total = total;
            self.since = now;
            return false;
        }
        now.duration_since(self.since) >= self.max_idle
    }
}

/// flushd running under master(8).
#[derive(Debug)]
pub struct MasterMode {
    /// The parsed options.
    pub options: DaemonOptions,
    listener: Option<UnixListener>,
    status: Option<UnixStream>,
    generation: String,
}

impl MasterMode {
    /// Pairs the inherited descriptors with the parsed options.
    pub fn new(inherited: Inherited, options: DaemonOptions) -> MasterMode {
        MasterMode {
            options,
            listener: Some(inherited.listener),
            status: Some(inherited.status),
            generation: inherited.generation,
        }
    }

    /// The inherited listening socket, for `ServerOptions::inherited_postfix`
    /// (`None` after the first call).
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }

    /// One line for the log: service, generation, options.
    pub fn describe(&self) -> String {
        format!(
            "service {} (generation {}, {}){}",
            self.options.service_name.as_deref().unwrap_or("flush"),
            self.generation,
            if self.options.unprivileged {
                "unprivileged"
            } else {
                "as root"
            },
            if self.options.ignored.is_empty() {
                String::new()
            } else {
                format!("; ignoring {}", self.options.ignored.join(" "))
            }
        )
    }

    /// Resolves when flushd should leave: the status pipe reaches end of file
    /// (read on a thread of its own: its descriptor is shared with master, so
    /// its blocking mode stays untouched) or `max_idle` passes with no
    /// connection open or accepted, as the gateway's counters show.
    pub async fn supervise(&mut self, max_idle: Duration, stats: Arc<GatewayStats>) -> MasterExit {
        let (tx, mut master_gone) = tokio::sync::oneshot::channel::<()>();
        if let Some(mut status) = self.status.take() {
            let spawned = std::thread::Builder::new()
                .name("master-status".into())
                .spawn(move || {
                    let mut buf = [0u8; 64];
                    loop {
                        match status.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => {} // master never writes here; ignore
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => {
                                log::warn!("status pipe: {e}");
                                break;
                            }
                        }
                    }
                    let _ = tx.send(());
                });
            if let Err(e) = spawned {
                log::warn!("cannot watch the status pipe: {e}");
            }
        }
        let tick = (max_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut clock = IdleClock::new(max_idle, stats.connections_total.get(), Instant::now());
        let mut ticks = tokio::time::interval(tick);
        let mut watched = true;
        loop {
            tokio::select! {
                gone = &mut master_gone, if watched => match gone {
                    Ok(()) => return MasterExit::MasterGone,
                    // No watcher (it could not start, or there is no status
                    // pipe): only the idle clock is left.
                    Err(_) => watched = false,
                },
                _ = ticks.tick() => {
                    let open = stats.connections_open.get();
                    let total = stats.connections_total.get();
                    if clock.expired(open, total, Instant::now()) {
                        return MasterExit::Idle(max_idle);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Without a status pipe watcher, flushd still leaves after max_idle
    /// (the finished watcher channel is not polled again: that panics).
    #[actix_rt::test]
    async fn without_a_status_watcher_supervision_still_ends_at_max_idle() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("flush")).unwrap();
        let (status, _master_end) = UnixStream::pair().unwrap();
        let inherited = Inherited {
            listener,
            status,
            generation: "1".into(),
        };
        let mut mode = MasterMode::new(inherited, parse(&[]).unwrap());
        mode.status = None;
        let stats = Arc::new(GatewayStats::new(1));
        let max_idle = Duration::from_millis(300);
        let exit = tokio::time::timeout(Duration::from_secs(10), mode.supervise(max_idle, stats))
            .await
            .unwrap();
        assert_eq!(exit, MasterExit::Idle(max_idle));
    }

    fn parse(args: &[&str]) -> Result<DaemonOptions, ArgError> {
        DaemonOptions::parse(args.iter().map(OsString::from), |name| {
            matches!(name, "listen" | "max-line")
        })
    }

    #[test]
    fn parses_what_master_passes() {
        // As master_ent.c builds it for `flush unix n - n 1000? 0 flushd`.
        let opts = parse(&["-z", "-t", "unix", "-u"]).unwrap();
        assert_eq!(opts.transport.as_deref(), Some("unix"));
        assert!(opts.unprivileged && !opts.chroot);
        assert_eq!(opts.ignored, ["-z"]);
        assert!(opts.check().is_ok());
    }

    #[test]
    fn overrides_keep_command_line_order() {
        let opts = parse(&[
            "-o",
            "max_idle=5s",
            "-i50",
            "-ofast_flush_domains=a.test",
            "-m",
            "10",
            "-n",
            "myflush",
            "-t",
            "unix",
        ])
        .unwrap();
        assert_eq!(
            opts.overrides,
            [
                "max_idle=5s",
                "max_idle=50",
                "fast_flush_domains=a.test",
                "max_use=10"
            ]
        );
        assert_eq!(opts.service_name.as_deref(), Some("myflush"));
        assert_eq!(opts.ignored, ["-m 10"]);
    }

    #[test]
    fn clustered_flags_and_attached_values() {
        let opts = parse(&["-vvut", "unix", "-dDlVz"]).unwrap();
        assert_eq!(opts.verbose, 2);
        assert!(opts.unprivileged);
        assert_eq!(opts.transport.as_deref(), Some("unix"));
        assert_eq!(opts.ignored, ["-d", "-D", "-l", "-V", "-z"]);
        // A value option ends the cluster: "-tunix" is -t with "unix".
        assert_eq!(
            parse(&["-tunix"]).unwrap().transport.as_deref(),
            Some("unix")
        );
    }

    #[test]
    fn long_options_go_to_clap_with_their_values() {
        let opts = parse(&[
            "-t",
            "unix",
            "--listen",
            "unix:/tmp/x",
            "--max-line=100",
            "--no-postfix-listen",
            "-v",
        ])
        .unwrap();
        let flushd: Vec<&str> = opts
            .flushd_args
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect();
        assert_eq!(
            flushd,
            [
                "--listen",
                "unix:/tmp/x",
                "--max-line=100",
                "--no-postfix-listen"
            ]
        );
        assert_eq!(opts.verbose, 1);
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert_eq!(parse(&["-x"]).unwrap_err().to_string(), "invalid option -x");
        assert!(parse(&["-o"]).unwrap_err().to_string().contains("needs"));
        assert!(parse(&["--listen"])
            .unwrap_err()
            .to_string()
            .contains("needs"));
        assert!(parse(&["stray"]).is_err());
        assert!(parse(&["-t", "unix", "--", "extra"]).is_err());
        assert!(parse(&["-t", "unix", "--"]).is_ok());
        assert!(parse(&["-"]).is_err());
        let many = vec!["-v"; MAX_ARGS + 1];
        assert!(parse(&many).is_err());
    }

    #[test]
    fn unsupported_modes_are_refused() {
        let check = |args: &[&str]| parse(args).unwrap().check();
        assert!(check(&["-t", "unix", "-c"])
            .unwrap_err()
            .to_string()
            .contains("chroot"));
        assert!(check(&["-t", "unix", "-S"]).is_err());
        assert!(check(&["-t", "inet"]).is_err());
        assert!(check(&["-u"]).is_err());
        assert!(check(&["-t", "unix", "-s", "2"]).is_err());
        assert!(check(&["-t", "unix", "-s", "1"]).is_ok());
    }

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postfix:x:104:110::/var/spool/postfix:/usr/sbin/nologin\n\
                      broken:x:zz:1::/:/bin/false\n";
        assert_eq!(passwd_ids(passwd, "postfix"), Some((104, 110)));
        assert_eq!(passwd_ids(passwd, "root"), Some((0, 0)));
        assert_eq!(passwd_ids(passwd, "broken"), None);
        assert_eq!(passwd_ids(passwd, "nobody"), None);
    }

    #[test]
    fn idle_clock_restarts_on_activity() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut clock = IdleClock::new(10 * s, 3, t0);
        assert!(!clock.expired(0, 3, t0 + 9 * s));
        assert!(clock.expired(0, 3, t0 + 10 * s));
        // A new connection restarts the clock, and so does one still open.
        assert!(!clock.expired(0, 4, t0 + 11 * s));
        assert!(!clock.expired(1, 4, t0 + 30 * s));
        assert!(!clock.expired(0, 4, t0 + 39 * s));
        assert!(clock.expired(0, 4, t0 + 40 * s));
    }

    #[test]
    fn not_master_without_generation() {
        // The test harness is not started by master(8).
        if std::env::var_os(GENERATION_ENV).is_none() {
            assert!(detect().unwrap().is_none());
        }
    }

    #[test]
    fn waits_for_the_queue_lock_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let held = queue_lock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file: a second open conflicts even
        // within one process, which is what `is_lock_busy` must recognise.
        let started = Instant::now();
        let err = lock_queue(dir.path(), Duration::from_millis(200)).unwrap_err();
        assert!(is_lock_busy(&err), "{err:#}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(held);
        assert!(lock_queue(dir.path(), Duration::from_millis(200)).is_ok());
    }

    #[test]
    fn mail_config_names_the_config_dir() {
        let default = Path::new("/etc/postfix");
        match std::env::var_os(MAIL_CONFIG_ENV) {
            None => assert_eq!(config_dir(default), default),
            Some(dir) => assert_eq!(config_dir(default), PathBuf::from(dir)),
        }
    }
}
