//! Where flushd's log goes.
//!
//! Run by hand or by systemd, flushd logs to stderr. Under master(8) stderr
//! is /dev/null, so flushd logs where every Postfix daemon does
//! (`maillog_client.c`): to postlogd(8) through
//! `$queue_directory/public/$postlog_service_name` when `maillog_file` is
//! set, else to syslog with facility `syslog_facility`. Records look like
//! Postfix's own (`msg_logger.c`, `msg_syslog.c`): tagged
//! `$syslog_name/<program>[pid]:`, with `warning:` or `error:` before the
//! text but for plain information. `RUST_LOG` (or master.cf's `-v`) sets the
//! level on every route.
//!
//! Formatting and the choice of route are plain functions; [`init`] installs
//! the one logger of the process and [`route_to`] moves it to a route once
//! the configuration says which.

use anyhow::{anyhow, Result};
use flush_actors::config::Config;
use jiff::ZonedDateTime;
use log::{Level, Log, Metadata, Record};
use std::io::{self, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Postfix cuts a record's text at this many bytes ("unlimited logging is a
/// liability", `msg_logger.c`).
pub const MAX_TEXT: usize = 2000;

/// Where syslog(3) delivers on Linux.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Postfix's `syslog_facility` names and their syslog(3) codes.
const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// A Postfix log route: how records reach the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// postlogd(8)'s datagram socket; records carry the host's first label.
    Postlog { socket: PathBuf, hostname: String },
    /// The syslog daemon's socket, with this facility code.
    Syslog { socket: PathBuf, facility: u8 },
}

impl Route {
    /// The route a Postfix daemon with this configuration logs on.
    ///
    /// # Errors
    /// A parameter does not expand, or `syslog_facility` names no facility.
    pub fn for_daemon(config: &Config) -> Result<Route> {
        let maillog_file = config.expanded("maillog_file")?;
        if maillog_file.trim().is_empty() {
            let name = config.expanded("syslog_facility")?;
            let facility = facility_code(name.trim())
                .ok_or_else(|| anyhow!("syslog_facility {name:?}: unknown facility"))?;
            return Ok(Route::Syslog {
                socket: PathBuf::from(SYSLOG_SOCKET),
                facility,
            });
        }
        let service = config.expanded("postlog_service_name")?;
        Ok(Route::Postlog {
            socket: config.queue_directory.join("public").join(service.trim()),
            hostname: config.expanded("myhostname")?,
        })
    }

    /// The route before the configuration is read, as Postfix's daemons
    /// choose it: postlogd if master exported `POSTLOG_SERVICE`, else syslog
    /// with facility `mail`.
    pub fn from_environment() -> Route {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match env("POSTLOG_SERVICE") {
            Some(socket) => Route::Postlog {
                socket: PathBuf::from(socket),
                hostname: env("POSTLOG_HOSTNAME").unwrap_or_else(|| "amnesiac".to_string()),
            },
            None => Route::Syslog {
                socket: PathBuf::from(SYSLOG_SOCKET),
                facility: 2,
            },
        }
    }

    fn socket(&self) -> &Path {
        match self {
            Route::Postlog { socket, .. } | Route::Syslog { socket, .. } => socket,
        }
    }

    /// One record as this route's reader expects it, text cut at
    /// [`MAX_TEXT`] bytes.
    pub fn record(&self, tag: &Tag, level: Level, now: &ZonedDateTime, text: &str) -> String {
        let text = cut(text, MAX_TEXT);
        let severity = severity(level);
        let (pid, name) = (tag.pid, &tag.name);
        match self {
            Route::Postlog { hostname, .. } => {
                let host = hostname.split('.').next().unwrap_or_default();
                let time = now.strftime("%b %d %H:%M:%S");
                format!("{time} {host} {name}[{pid}]: {severity}{text}")
            }
            Route::Syslog { facility, .. } => {
                let priority = u32::from(*facility) * 8 + syslog_severity(level);
                let time = now.strftime("%b %e %H:%M:%S");
                format!("<{priority}>{time} {name}[{pid}]: {severity}{text}")
            }
        }
    }
}

/// Who writes a record: `$syslog_name/<program>` and the process ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub pid: u32,
}

impl Tag {
    /// `syslog_name` and the program's file name, as `mail_task.c` joins them.
    pub fn new(syslog_name: &str, arg0: &str) -> Tag {
        Tag {
            name: format!("{}/{}", syslog_name.trim(), program_name(arg0)),
            pid: std::process::id(),
        }
    }
}

/// The file name of the program started as `arg0` (`flushd` if none).
pub fn program_name(arg0: &str) -> &str {
    arg0.rsplit('/').find(|p| !p.is_empty()).unwrap_or("flushd")
}

/// The syslog(3) code of a `syslog_facility` name.
pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|&(_, code)| code)
}

/// Postfix's severity prefix: none for information (debug is Postfix's
/// verbose logging, which is information too).
fn severity(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info | Level::Debug | Level::Trace => "",
    }
}

/// syslog(3) severities as `msg_syslog.c` maps Postfix's levels.
fn syslog_severity(level: Level) -> u32 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info | Level::Debug | Level::Trace => 6,
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The process's logger: env_logger's filter (and its stderr output until
/// [`route_to`] names a Postfix route).
struct FlushdLogger {
    stderr: env_logger::Logger,
    postfix: Mutex<Option<PostfixOutput>>,
}

/// A Postfix route with its tag and, once connected, its socket.
struct PostfixOutput {
    route: Route,
    tag: Tag,
    socket: Option<UnixDatagram>,
}

impl PostfixOutput {
    /// Logs `text` at `level` on the route, one record per line of it (a
    /// record is one line of the maillog), or on stderr with the reason the
    /// route failed.
    fn write(&mut self, level: Level, text: &str) {
        let now = ZonedDateTime::now();
        for part in text.lines().filter(|part| !part.trim().is_empty()) {
            let line = self.route.record(&self.tag, level, &now, part);
            if let Err(e) = self.send(&line) {
                let _ = writeln!(io::stderr(), "flushd: {e}: {line}");
            }
        }
    }

    /// Sends one record, connecting (again) if needed: postlogd or syslogd
    /// may have been restarted since the last one.
    fn send(&mut self, record: &str) -> io::Result<()> {
        if let Some(socket) = &self.socket {
            if socket.send(record.as_bytes()).is_ok() {
                return Ok(());
            }
            self.socket = None;
        }
        let path = self.route.socket();
        let socket = UnixDatagram::unbound()?;
        socket
            .connect(path)
            .and_then(|()| socket.send(record.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        self.socket = Some(socket);
        Ok(())
    }
}

static LOGGER: OnceLock<FlushdLogger> = OnceLock::new();

impl FlushdLogger {
    /// The Postfix route, if any (a panic while logging does not lose it).
    fn postfix(&self) -> MutexGuard<'_, Option<PostfixOutput>> {
        self.postfix.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Installs the logger: stderr, at `RUST_LOG`'s level or `default_level`.
pub fn init(default_level: &str) {
    let stderr =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
            .build();
    let max_level = stderr.filter();
    let logger = LOGGER.get_or_init(|| FlushdLogger {
        stderr,
        postfix: Mutex::new(None),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max_level);
    }
}

/// From now on, records go to `route` with `tag` (stderr only when the
/// route fails).
pub fn route_to(route: Route, tag: Tag) {
    if let Some(logger) = LOGGER.get() {
        let output = PostfixOutput {
            route,
            tag,
            socket: None,
        };
        *logger.postfix() = Some(output);
    }
}

/// Reports the error that ends the process: on the Postfix route if there
/// is one (whatever the level), else on stderr.
pub fn fatal(text: &str) {
    // The route writes its own severity (clap's errors carry one).
    let text = text.strip_prefix("error: ").unwrap_or(text);
    let mut postfix = LOGGER.get().map(FlushdLogger::postfix);
    match postfix.as_mut().and_then(|output| output.as_mut()) {
        Some(output) => output.write(Level::Error, text),
        None => {
            let _ = writeln!(io::stderr(), "flushd: {text}");
        }
    }
}

impl Log for FlushdLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.stderr.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.stderr.matches(record) {
            return;
        }
        let mut postfix = self.postfix();
        match postfix.as_mut() {
            Some(output) => output.write(record.level(), &record.args().to_string()),
            None => {
                drop(postfix);
                self.stderr.log(record);
            }
        }
    }

    fn flush(&self) {
        self.stderr.flush();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flush_actors::config::Config;

    fn at(time: &str) -> ZonedDateTime {
        time.parse().unwrap()
    }

    fn tag() -> Tag {
        Tag {
            name: "postfix/flush".to_string(),
            pid: 4242,
        }
    }

    fn config(main_cf: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.cf"), main_cf).unwrap();
        Config::load(dir.path(), &[]).unwrap()
    }

    #[test]
    fn postlog_records_look_like_msg_logger_s() {
        let route = Route::Postlog {
            socket: PathBuf::from("/q/public/postlog"),
            hostname: "mx1.example.net".to_string(),
        };
        let now = at("2026-11-09T08:07:06[UTC]");
        assert_eq!(
            route.record(&tag(), Level::Info, &now, "started"),
            "Nov 09 08:07:06 mx1 postfix/flush[4242]: started"
        );
        assert_eq!(
            route.record(&tag(), Level::Warn, &now, "bad request"),
            "Nov 09 08:07:06 mx1 postfix/flush[4242]: warning: bad request"
        );
        assert_eq!(
            route.record(&tag(), Level::Debug, &now, "verbose"),
            "Nov 09 08:07:06 mx1 postfix/flush[4242]: verbose"
        );
    }

    #[test]
    fn syslog_records_carry_facility_and_severity() {
        let route = Route::Syslog {
            socket: PathBuf::from(SYSLOG_SOCKET),
            facility: facility_code("mail").unwrap(),
        };
        let now = at("2026-11-09T08:07:06[UTC]");
        assert_eq!(
            route.record(&tag(), Level::Error, &now, "cannot write"),
            "<19>Nov  9 08:07:06 postfix/flush[4242]: error: cannot write"
        );
        assert_eq!(
            route.record(&tag(), Level::Info, &now, "ready"),
            "<22>Nov  9 08:07:06 postfix/flush[4242]: ready"
        );
        let local3 = Route::Syslog {
            socket: PathBuf::from(SYSLOG_SOCKET),
            facility: facility_code("LOCAL3").unwrap(),
        };
        assert!(local3
            .record(&tag(), Level::Warn, &now, "x")
            .starts_with("<156>"));
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let route = Route::from_environment();
        let now = at("2026-11-09T08:07:06[UTC]");
        let text = "é".repeat(MAX_TEXT);
        let record = route.record(&tag(), Level::Info, &now, &text);
        let logged = record.split_once("]: ").unwrap().1;
        assert_eq!(logged.len(), MAX_TEXT);
        assert!(logged.chars().all(|c| c == 'é'));
        assert_eq!(cut("abc", 2), "ab");
    }

    #[test]
    fn the_route_follows_maillog_file_as_postfix_does() {
        let syslog = config("syslog_facility = local1\n");
        assert_eq!(
            Route::for_daemon(&syslog).unwrap(),
            Route::Syslog {
                socket: PathBuf::from(SYSLOG_SOCKET),
                facility: 17
            }
        );
        let postlog = config(
            "queue_directory = /q\nmaillog_file = /var/log/postfix.log\n\
             myhostname = mx1.example.net\n",
        );
        assert_eq!(
            Route::for_daemon(&postlog).unwrap(),
            Route::Postlog {
                socket: PathBuf::from("/q/public/postlog"),
                hostname: "mx1.example.net".to_string()
            }
        );
        let renamed = config("maillog_file = /l\npostlog_service_name = mylog\n");
        assert!(matches!(
            Route::for_daemon(&renamed).unwrap(),
            Route::Postlog { socket, .. } if socket.ends_with("public/mylog")
        ));
        let err = Route::for_daemon(&config("syslog_facility = mial\n")).unwrap_err();
        assert!(err.to_string().contains("mial"), "{err}");
    }

    #[test]
    fn the_tag_is_syslog_name_and_the_program_s_file_name() {
        let tag = Tag::new("postfix-out", "/usr/libexec/postfix/flushd");
        assert_eq!(tag.name, "postfix-out/flushd");
        assert_eq!(tag.pid, std::process::id());
        assert_eq!(Tag::new("postfix", "flush").name, "postfix/flush");
        assert_eq!(program_name(""), "flushd");
        assert_eq!(program_name("/sbin/"), "sbin");
    }

    #[test]
    fn records_reach_a_datagram_reader_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postlog");
        let reader = UnixDatagram::bind(&path).unwrap();
        let mut output = PostfixOutput {
            route: Route::Postlog {
                socket: path.clone(),
                hostname: "lab".to_string(),
            },
            tag: tag(),
            socket: None,
        };
        output.send("one").unwrap();
        output.send("two").unwrap();
        let mut buf = [0u8; 64];
        let n = reader.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = reader.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        drop(reader);
        std::fs::remove_file(&path).unwrap();
        let err = output.send("three").unwrap_err();
        assert!(err.to_string().contains("postlog"), "{err}");
        // A reader that comes back is found again.
        let reader = UnixDatagram::bind(&path).unwrap();
        output.send("four").unwrap();
        let n = reader.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"four");
        // A text of several lines (a usage error, say) is a record per line.
        output.write(Level::Error, "five\n\n  \nsix\n");
        for expected in ["five", "six"] {
            let n = reader.recv(&mut buf).unwrap();
            let record = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(
                record.ends_with(&format!("]: error: {expected}")),
                "{record}"
            );
        }
        reader.set_nonblocking(true).unwrap();
        assert!(reader.recv(&mut buf).is_err(), "no record for blank lines");
    }
}
