//! flushd's configuration: Postfix's main.cf, typed and validated in full
//! before any actor starts.
//!
//! [`main_cf`] reads the file (as `src/util/dict.c` `dict_load_fp()`),
//! [`expand`] does `$name` expansion with Postfix's defaults (as
//! `src/global/mail_conf.c` and `src/util/mac_expand.c`), [`time`] parses
//! time values (as `src/global/conv_time.c`). [`Config`] holds the typed
//! parameters of flush(8) (`src/flush/flush.c`) plus flushd's own, and keeps
//! the raw [`Params`] so that the domain matcher can re-expand
//! `fast_flush_domains` and reload.

pub mod expand;
pub mod main_cf;
pub mod time;

pub use main_cf::Params;
pub use time::parse_time;

use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Where main.cf lives unless `-c DIR` says otherwise.
pub const DEFAULT_CONFIG_DIRECTORY: &str = "/etc/postfix";
/// Postfix's default `queue_directory`.
pub const DEFAULT_QUEUE_DIRECTORY: &str = "/var/spool/postfix";
/// `fast_flush_refresh_time` (12h): deliver a non-empty log not read for this long.
pub const DEFAULT_FAST_FLUSH_REFRESH_TIME: Duration = Duration::from_secs(12 * 3600);
/// `fast_flush_purge_time` (7d): remove an empty log unchanged for this long.
pub const DEFAULT_FAST_FLUSH_PURGE_TIME: Duration = Duration::from_secs(7 * 86_400);
/// `ipc_timeout` (3600s): idle connections are closed after this long.
pub const DEFAULT_IPC_TIMEOUT: Duration = Duration::from_secs(3600);
/// `max_idle` (100s): a log writer idle this long closes its file and stops.
pub const DEFAULT_MAX_IDLE: Duration = Duration::from_secs(100);
/// `daemon_timeout` (18000s): the longest a request may take.
pub const DEFAULT_DAEMON_TIMEOUT: Duration = Duration::from_secs(18_000);
/// `flush_refresh_interval` (flushd's own, 1000s): how often the janitor
/// runs on its own, as Postfix's master.cf wakes flush(8); 0: never.
pub const DEFAULT_FLUSH_REFRESH_INTERVAL: Duration = Duration::from_secs(1000);
/// `flush_max_connections` (flushd's own): client connections served at once.
pub const DEFAULT_FLUSH_MAX_CONNECTIONS: usize = 1024;
/// Postfix's default `hash_queue_names`.
pub const DEFAULT_HASH_QUEUE_NAMES: &[&str] = &["deferred", "defer"];
/// Postfix's default `hash_queue_depth`.
pub const DEFAULT_HASH_QUEUE_DEPTH: u32 = 1;
/// The deepest queue hashing accepted (Postfix has no limit; real ones use 1 or 2).
pub const MAX_HASH_QUEUE_DEPTH: u32 = 16;
/// The largest `flush_max_connections` accepted.
pub const MAX_FLUSH_MAX_CONNECTIONS: usize = 1_000_000;

/// A configuration problem; every message is one line that names the
/// parameter (or file and line) and the offending value.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// main.cf exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// main.cf is implausibly large.
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A main.cf line that is not `name = value`.
    #[error("{origin}, line {line}: {reason}: \"{text}\"")]
    Syntax {
        /// The file.
        origin: String,
        /// The line where the logical line ends.
        line: usize,
        /// What is wrong.
        reason: &'static str,
        /// The line, shortened.
        text: String,
    },
    /// A `-o` argument that is not `name=value`.
    #[error("bad override {arg:?}: expected name=value")]
    Override {
        /// The argument as given.
        arg: String,
    },
    /// `$name` expansion failed (syntax error, loop, runaway size).
    #[error("cannot expand {name}: {reason}")]
    Expand {
        /// The parameter being expanded.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A time value that is not a number with an optional unit.
    #[error("{name} = {value:?}: bad time value; expected a number with an optional unit s, m, h, d or w")]
    Time {
        /// The parameter.
        name: String,
        /// Its expanded value.
        value: String,
    },
    /// A value out of range or of the wrong shape.
    #[error("{name} = {value:?}: {reason}")]
    Invalid {
        /// The parameter.
        name: String,
        /// Its expanded value.
        value: String,
        /// What is wrong.
        reason: String,
    },
}

impl Params {
    /// The expanded value of `name` (main.cf value or default), empty when the
    /// parameter is neither set nor known.
    ///
    /// # Errors
    /// [`ConfigError::Expand`] on a syntax error, a loop or a runaway result.
    pub fn expanded(&self, name: &str) -> Result<String, ConfigError> {
        expand::expand_param(self, name)
            .map(Option::unwrap_or_default)
            .map_err(|reason| ConfigError::Expand {
                name: name.to_string(),
                reason,
            })
    }
}

/// The configuration flushd runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where main.cf was read (`-c DIR`).
    pub config_directory: PathBuf,
    /// The Postfix queue (not checked here: the daemon checks it exists).
    pub queue_directory: PathBuf,
    /// `fast_flush_refresh_time`.
    pub fast_flush_refresh_time: Duration,
    /// `fast_flush_purge_time`.
    pub fast_flush_purge_time: Duration,
    /// `ipc_timeout`.
    pub ipc_timeout: Duration,
    /// `max_idle`.
    pub max_idle: Duration,
    /// `daemon_timeout`.
    pub daemon_timeout: Duration,
    /// `flush_refresh_interval` (flushd's own).
    pub flush_refresh_interval: Duration,
    /// `flush_max_connections` (flushd's own).
    pub flush_max_connections: usize,
    /// `hash_queue_names`: the queues whose files are hashed into subdirectories.
    pub hash_queue_names: Vec<String>,
    /// `hash_queue_depth`: levels of hashing.
    pub hash_queue_depth: u32,
    /// The `-o` overrides [`Config::load`] applied, kept so a reload applies
    /// them again.
    pub overrides: Vec<(String, String)>,
    /// Every parameter as read (raw), overrides applied, for re-expansion.
    pub params: Params,
}

impl Config {
    /// Reads `config_dir/main.cf` (missing: built-in defaults), applies the
    /// `-o` overrides in order, and validates everything.
    ///
    /// # Errors
    /// Any [`ConfigError`]: unreadable main.cf, bad syntax, a bad value.
    pub fn load(config_dir: &Path, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut params = Params::load(config_dir)?;
        // As Postfix: the directory given wins over main.cf's own setting.
        params.set("config_directory", config_dir.display().to_string());
        for (name, value) in overrides {
            params.set(name.clone(), value.clone());
        }
        let mut config = Config::from_params(params)?;
        config.overrides = overrides.to_vec();
        Ok(config)
    }

    /// Types and validates parameters already read.
    ///
    /// # Errors
    /// Any [`ConfigError`] about a value.
    pub fn from_params(params: Params) -> Result<Config, ConfigError> {
        let time = |name: &str| {
            parse_time(name, &params.expanded(name)?, 's').and_then(|d| {
                if d.is_zero() {
                    Err(invalid(name, "0", "must be at least 1s"))
                } else {
                    Ok(d)
                }
            })
        };
        let queue_directory = params.expanded("queue_directory")?;
        if queue_directory.is_empty() {
            return Err(invalid("queue_directory", "", "must not be empty"));
        }
        let config_directory = params.expanded("config_directory")?;
        let flush_max_connections = int(
            &params,
            "flush_max_connections",
            1,
            MAX_FLUSH_MAX_CONNECTIONS as u64,
        )?;
        let hash_queue_depth = int(
            &params,
            "hash_queue_depth",
            1,
            u64::from(MAX_HASH_QUEUE_DEPTH),
        )?;
        let hash_queue_names = hash_queue_names(&params)?;

        let level_text = params.expanded("compatibility_level")?;
        let level = expand::compat_level(&level_text).ok_or_else(|| {
            invalid(
                "compatibility_level",
                &level_text,
                "malformed compatibility level syntax",
            )
        })?;
        // The domain list must at least expand; domains:: parses it.
        params.expanded("fast_flush_domains")?;
        params.expanded("parent_domain_matches_subdomains")?;
        if level < (2, 0, 0)
            && !params.contains("relay_domains")
            && !params.contains("fast_flush_domains")
        {
            log::info!(
                "using backwards-compatible default setting relay_domains=$mydestination \
                 for fast_flush_domains (compatibility_level = {level_text})"
            );
        }

        Ok(Config {
            config_directory: PathBuf::from(config_directory),
            queue_directory: PathBuf::from(queue_directory),
            fast_flush_refresh_time: time("fast_flush_refresh_time")?,
            fast_flush_purge_time: time("fast_flush_purge_time")?,
            ipc_timeout: time("ipc_timeout")?,
            max_idle: time("max_idle")?,
            daemon_timeout: time("daemon_timeout")?,
            // 0 turns flushd's own timer off (master's wakeups still refresh).
            flush_refresh_interval: parse_time(
                "flush_refresh_interval",
                &params.expanded("flush_refresh_interval")?,
                's',
            )?,
            flush_max_connections: usize::try_from(flush_max_connections)
                .map_err(|_| invalid("flush_max_connections", "", "too large"))?,
            hash_queue_names,
            hash_queue_depth: u32::try_from(hash_queue_depth)
                .map_err(|_| invalid("hash_queue_depth", "", "too large"))?,
            overrides: Vec::new(),
            params,
        })
    }

    /// The expanded value of any parameter (empty when unknown).
    ///
    /// # Errors
    /// [`ConfigError::Expand`].
    pub fn expanded(&self, name: &str) -> Result<String, ConfigError> {
        self.params.expanded(name)
    }

    /// The main.cf this configuration was read from.
    pub fn main_cf_path(&self) -> PathBuf {
        self.config_directory.join(main_cf::MAIN_CF)
    }
}

/// Splits a `-o name=value` argument (white space around `=` allowed, as
/// Postfix's `split_nameval()`).
///
/// # Errors
/// [`ConfigError::Override`] when there is no name or no `=`.
pub fn parse_override(s: &str) -> Result<(String, String), ConfigError> {
    let bad = || ConfigError::Override { arg: s.to_string() };
    let (name, value) = s.split_once('=').ok_or_else(bad)?;
    let name = name.trim_matches(main_cf::is_space);
    if name.is_empty() || name.contains(main_cf::is_space) {
        return Err(bad());
    }
    Ok((
        name.to_string(),
        value.trim_matches(main_cf::is_space).to_string(),
    ))
}

fn invalid(name: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A decimal integer parameter in `min..=max`.
fn int(params: &Params, name: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let value = params.expanded(name)?;
    let n: u64 = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value
            .parse()
            .map_err(|_| invalid(name, &value, "number too large"))?
    } else {
        return Err(invalid(name, &value, "expected a decimal number"));
    };
    if n < min || n > max {
        return Err(invalid(
            name,
            &value,
            &format!("must be between {min} and {max}"),
        ));
    }
    Ok(n)
}

/// `hash_queue_names`: queue names separated by commas and/or white space.
fn hash_queue_names(params: &Params) -> Result<Vec<String>, ConfigError> {
    let value = params.expanded("hash_queue_names")?;
    let mut names = Vec::new();
    for name in value
        .split(|c: char| c == ',' || main_cf::is_space(c))
        .filter(|s| !s.is_empty())
    {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid("hash_queue_names", &value, "not a queue name list"));
        }
        // flush(8) would hash its logs like queue files; flushd keeps every
        // log in flush/ itself, so the two would not share a file.
        if name.eq_ignore_ascii_case("flush") {
            return Err(invalid(
                "hash_queue_names",
                &value,
                "flushd does not support a hashed flush queue (remove flush from the list)",
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn from(text: &str) -> Result<Config, ConfigError> {
        Config::from_params(Params::parse(text, "main.cf").unwrap())
    }

    #[test]
    fn defaults_match_the_constants() {
        let c = from("").unwrap();
        assert_eq!(c.queue_directory, Path::new(DEFAULT_QUEUE_DIRECTORY));
        assert_eq!(c.config_directory, Path::new(DEFAULT_CONFIG_DIRECTORY));
        assert_eq!(c.fast_flush_refresh_time, DEFAULT_FAST_FLUSH_REFRESH_TIME);
        assert_eq!(c.fast_flush_purge_time, DEFAULT_FAST_FLUSH_PURGE_TIME);
        assert_eq!(c.ipc_timeout, DEFAULT_IPC_TIMEOUT);
        assert_eq!(c.max_idle, DEFAULT_MAX_IDLE);
        assert_eq!(c.daemon_timeout, DEFAULT_DAEMON_TIMEOUT);
        assert_eq!(c.flush_refresh_interval, DEFAULT_FLUSH_REFRESH_INTERVAL);
        assert_eq!(c.flush_max_connections, DEFAULT_FLUSH_MAX_CONNECTIONS);
        assert_eq!(c.hash_queue_names, DEFAULT_HASH_QUEUE_NAMES);
        assert_eq!(c.hash_queue_depth, DEFAULT_HASH_QUEUE_DEPTH);
    }

    #[test]
    fn values_are_expanded_and_typed() {
        let c = from(
            "base = /srv/mail\nqueue_directory = $base/spool\nfast_flush_purge_time = 2d\n\
             ipc_timeout = 60\nhash_queue_names = deferred,incoming  active\nhash_queue_depth = 2\n\
             flush_max_connections = 10\n",
        )
        .unwrap();
        assert_eq!(c.queue_directory, Path::new("/srv/mail/spool"));
        assert_eq!(c.fast_flush_purge_time, Duration::from_secs(2 * 86_400));
        assert_eq!(c.ipc_timeout, Duration::from_secs(60));
        assert_eq!(c.hash_queue_names, ["deferred", "incoming", "active"]);
        assert_eq!(c.hash_queue_depth, 2);
        assert_eq!(c.flush_max_connections, 10);
    }

    #[test]
    fn a_refresh_interval_of_0_turns_the_timer_off_and_other_times_refuse_0() {
        let c = from("flush_refresh_interval = 0").unwrap();
        assert!(c.flush_refresh_interval.is_zero());
        assert_eq!(
            from("flush_refresh_interval = 10m")
                .unwrap()
                .flush_refresh_interval,
            Duration::from_secs(600)
        );
        assert!(from("fast_flush_refresh_time = 0").is_err());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (text, param) in [
            ("fast_flush_refresh_time = 12x", "fast_flush_refresh_time"),
            ("max_idle = 0", "max_idle"),
            ("hash_queue_depth = 0", "hash_queue_depth"),
            ("hash_queue_depth = two", "hash_queue_depth"),
            ("flush_max_connections = 99999999", "flush_max_connections"),
            ("hash_queue_names = deferred, ../x", "hash_queue_names"),
            ("hash_queue_names = deferred, Flush", "hash_queue_names"),
            ("queue_directory =", "queue_directory"),
            ("compatibility_level = 3.x", "compatibility_level"),
            ("fast_flush_domains = ${oops", "fast_flush_domains"),
            ("a = $b\nb = $a\nipc_timeout = $a", "ipc_timeout"),
        ] {
            let msg = from(text).unwrap_err().to_string();
            assert!(msg.contains(param), "{text}: {msg}");
            assert!(!msg.contains('\n'), "{text}: {msg}");
        }
    }

    #[test]
    fn load_applies_directory_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.cf"),
            "config_directory = /elsewhere\nmax_idle = 5s\nqueue_directory = /q\n",
        )
        .unwrap();
        let overrides = vec![("max_idle".to_string(), "7s".to_string())];
        let c = Config::load(dir.path(), &overrides).unwrap();
        assert_eq!(c.config_directory, dir.path());
        assert_eq!(c.max_idle, Duration::from_secs(7));
        assert_eq!(c.queue_directory, Path::new("/q"));
        assert_eq!(c.overrides, overrides);
        assert_eq!(c.main_cf_path(), dir.path().join("main.cf"));
        // A missing directory or file means defaults.
        let c = Config::load(&dir.path().join("none"), &[]).unwrap();
        assert_eq!(c.queue_directory, Path::new(DEFAULT_QUEUE_DIRECTORY));
    }

    #[test]
    fn overrides_parse() {
        assert_eq!(
            parse_override("a=b").unwrap(),
            ("a".to_string(), "b".to_string())
        );
        assert_eq!(
            parse_override(" a = b c ").unwrap(),
            ("a".to_string(), "b c".to_string())
        );
        assert_eq!(parse_override("a=").unwrap().1, "");
        assert_eq!(parse_override("a=x=y").unwrap().1, "x=y");
        for bad in ["", "a", "=b", "a b=c"] {
            assert!(parse_override(bad).is_err(), "{bad:?}");
        }
    }
}
