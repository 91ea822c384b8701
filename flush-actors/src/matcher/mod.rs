//! The DomainMatcher actor: owns the compiled `fast_flush_domains` and its
//! reloads, and answers eligibility questions.
//!
//! A thin shell over [`crate::domains::DomainList`] (Postfix's
//! `domain_list_match()` and flush(8)'s `flush_site_to_path()`). Matching is
//! pure CPU and takes time independent of the list size, so the actor runs
//! on an ordinary arbiter. Reloading reads files, possibly large ones: that
//! runs under `spawn_blocking`, and the new list replaces the old one in a
//! single assignment, so every request sees one whole list. A load started
//! later always wins over one started earlier (a generation number), so
//! overlapping reloads cannot install stale data.

pub mod messages;
pub mod watch;

pub use messages::{MatchSite, MatchSites, Reload};
pub use watch::Watched;

use crate::config::Config;
use crate::domains::{DomainError, DomainList, Verdict};
use crate::stats::{Counter, Gauge, Mailbox, Report};
use crate::ActorError;
use actix::prelude::*;
use foldhash::{HashMap, HashMapExt};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the matcher checks main.cf and the list's files for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Mailbox capacity: every `add` and `send_site` passes through here.
pub const MAILBOX_CAPACITY: usize = 1024;

/// Verdicts remembered between reloads; when full, the cache starts over.
pub const VERDICT_CACHE_SIZE: usize = 10_000;

/// At most one "table lookup problem" warning per this interval (Postfix logs
/// one per request; a broken table under load would flood the log).
const FAIL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The matcher's counters, shared with the stats dump.
///
/// Senders call `mailbox.queued()` before each message they send to the
/// matcher (or send through [`crate::stats::Tracked`], which does it); the
/// matcher calls `mailbox.handled()` as it takes each message.
#[derive(Debug, Default)]
pub struct MatcherStats {
    /// Handled / waiting / errors.
    pub mailbox: Mailbox,
    /// Sites looked up.
    pub lookups: Counter,
    /// DENY verdicts (not eligible, or IDNA failed).
    pub denied: Counter,
    /// FAIL verdicts (a broken table or file was reached).
    pub failed: Counter,
    /// BAD verdicts (no valid file name).
    pub bad: Counter,
    /// Patterns in the list now serving.
    pub patterns: Gauge,
    /// Successful reloads since start.
    pub reloads: Counter,
    /// Reloads that failed (the old list kept serving).
    pub reload_errors: Counter,
    /// When the list now serving was loaded (start or last reload), Unix seconds.
    pub last_reload_unix: Gauge,
}

impl Report for MatcherStats {
    fn report(&self) -> Value {
        let mut m = self.mailbox.to_json();
        m.insert("lookups".into(), self.lookups.get().into());
        m.insert("denied".into(), self.denied.get().into());
        m.insert("failed".into(), self.failed.get().into());
        m.insert("bad".into(), self.bad.get().into());
        m.insert("patterns".into(), self.patterns.get().into());
        m.insert("reloads".into(), self.reloads.get().into());
        m.insert("reload_errors".into(), self.reload_errors.get().into());
        m.insert(
            "last_reload_unix".into(),
            self.last_reload_unix.get().into(),
        );
        Value::Object(m)
    }
}

/// Owns the domain list now serving and what it takes to reload it.
pub struct DomainMatcher {
    list: Arc<DomainList>,
    /// Recent verdicts of the list now serving: a busy relay asks about the
    /// same few sites over and over, and a verdict costs IDNA plus a match.
    recent: HashMap<String, Verdict>,
    config_dir: PathBuf,
    overrides: Vec<(String, String)>,
    stats: Arc<MatcherStats>,
    watched: Watched,
    check_interval: Duration,
    checking: bool,
    /// The generation of the last load started, and of the one installed.
    started: u64,
    installed: u64,
    last_fail_log: Option<Instant>,
}

/// The result of one load, made off the arbiter.
struct Loaded {
    list: Result<DomainList, DomainError>,
    watched: Watched,
}

impl DomainMatcher {
    /// Compiles the list of `config` (reading any files it names) and
    /// remembers the configuration directory and `-o` overrides for reloads.
    ///
    /// # Errors
    /// The list cannot be compiled ([`DomainError`]).
    pub fn new(config: &Config, stats: Arc<MatcherStats>) -> Result<DomainMatcher, DomainError> {
        let started_at = SystemTime::now();
        let list = DomainList::from_config(config)?;
        let main_cf = config.main_cf_path();
        let watched = Watched::take(
            std::iter::once(main_cf).chain(list.sources().iter().cloned()),
            started_at,
        );
        log::info!(
            "fast_flush_domains: {} patterns, parent domain matching {}",
            list.pattern_count(),
            if list.parent_matching() { "on" } else { "off" }
        );
        stats.patterns.set(gauge_value(list.pattern_count()));
        stats.last_reload_unix.set(unix_now());
        Ok(DomainMatcher {
            list: Arc::new(list),
            recent: HashMap::new(),
            config_dir: config.config_directory.clone(),
            overrides: config.overrides.clone(),
            stats,
            watched,
            check_interval: RELOAD_CHECK_INTERVAL,
            checking: false,
            started: 0,
            installed: 0,
            last_fail_log: None,
        })
    }

    /// Checks for changed files every `interval` instead of
    /// [`RELOAD_CHECK_INTERVAL`] (tests use a short one).
    pub fn with_check_interval(mut self, interval: Duration) -> DomainMatcher {
        self.check_interval = interval;
        self
    }

    /// Starts a load off the arbiter; the future installs its result.
    fn reload(&mut self) -> impl ActorFuture<Self, Output = Result<(), ActorError>> {
        self.started += 1;
        let generation = self.started;
        let dir = self.config_dir.clone();
        let overrides = self.overrides.clone();
        let old_sources: Vec<PathBuf> = self.watched.paths().map(PathBuf::from).collect();
        async move {
            actix_rt::task::spawn_blocking(move || load(&dir, &overrides, old_sources)).await
        }
        .into_actor(self)
        .map(move |joined, act, _ctx| match joined {
            Ok(loaded) => act.install(generation, loaded),
            Err(_) => {
                act.stats.reload_errors.incr();
                Err(ActorError::Worker("reload task failed"))
            }
        })
    }

    /// Swaps in a loaded list, unless a later load was installed already.
    fn install(&mut self, generation: u64, loaded: Loaded) -> Result<(), ActorError> {
        if generation < self.installed {
            log::debug!("fast_flush_domains: an older reload finished late; ignored");
            return Ok(());
        }
        self.installed = generation;
        self.watched = loaded.watched;
        match loaded.list {
            Ok(list) => {
                log::info!(
                    "fast_flush_domains reloaded: {} patterns, parent domain matching {}",
                    list.pattern_count(),
                    if list.parent_matching() { "on" } else { "off" }
                );
                self.stats.patterns.set(gauge_value(list.pattern_count()));
                self.stats.reloads.incr();
                self.stats.last_reload_unix.set(unix_now());
                self.list = Arc::new(list);
                self.recent.clear();
                Ok(())
            }
            Err(e) => {
                log::error!("fast_flush_domains reload failed, the old list keeps serving: {e}");
                self.stats.reload_errors.incr();
                self.stats.mailbox.error();
                Err(ActorError::Config(e.to_string()))
            }
        }
    }

    /// The periodic check: stat the watched files off the arbiter, reload
    /// when one changed.
    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.checking {
            return;
        }
        self.checking = true;
        let watched = self.watched.clone();
        async move {
            actix_rt::task::spawn_blocking(move || watched.changed())
                .await
                .unwrap_or(false)
        }
        .into_actor(self)
        .map(|changed, act, ctx| {
            act.checking = false;
            if changed {
                log::info!("main.cf or a file of fast_flush_domains changed; reloading");
                let reload = act.reload().map(|_result, _act, _ctx| ());
                ctx.spawn(reload);
            }
        })
        .spawn(ctx);
    }

    fn count(&mut self, verdict: &Verdict) {
        self.stats.lookups.incr();
        match verdict {
            Verdict::Eligible(_) => {}
            Verdict::Deny(_) => self.stats.denied.incr(),
            Verdict::Bad(_) => self.stats.bad.incr(),
            Verdict::Fail(why) => {
                self.stats.failed.incr();
                let now = Instant::now();
                let quiet = matches!(self.last_fail_log,
                    Some(t) if now.duration_since(t) < FAIL_LOG_INTERVAL);
                if !quiet {
                    self.last_fail_log = Some(now);
                    log::warn!("{why}");
                }
            }
        }
    }
}

/// Reads main.cf and the list's files: the blocking part of a reload.
/// `old_sources` stay watched if the new list cannot be built.
fn load(
    dir: &std::path::Path,
    overrides: &[(String, String)],
    old_sources: Vec<PathBuf>,
) -> Loaded {
    let started_at = SystemTime::now();
    let list = Config::load(dir, overrides)
        .map_err(DomainError::from)
        .and_then(|config| DomainList::from_config(&config));
    let main_cf = dir.join(crate::config::main_cf::MAIN_CF);
    let paths: Vec<PathBuf> = match &list {
        Ok(list) => std::iter::once(main_cf)
            .chain(list.sources().iter().cloned())
            .collect(),
        Err(_) => old_sources,
    };
    Loaded {
        list,
        watched: Watched::take(paths, started_at),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Actor for DomainMatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(self.check_interval, |act, ctx| act.check(ctx));
    }
}

impl DomainMatcher {
    /// The verdict on `site`, from the cache of recent ones when it is there.
    fn verdict(&mut self, site: &str) -> Verdict {
        let verdict = match self.recent.get(site) {
            Some(verdict) => verdict.clone(),
            None => {
                let verdict = self.list.verdict(site);
                if self.recent.len() >= VERDICT_CACHE_SIZE {
                    self.recent.clear();
                }
                self.recent.insert(site.to_owned(), verdict.clone());
                verdict
            }
        };
        self.count(&verdict);
        verdict
    }
}

impl Handler<MatchSite> for DomainMatcher {
    type Result = MessageResult<MatchSite>;

    fn handle(&mut self, msg: MatchSite, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.mailbox.handled();
        MessageResult(self.verdict(&msg.site))
    }
}

impl Handler<MatchSites> for DomainMatcher {
    type Result = MessageResult<MatchSites>;

    fn handle(&mut self, msg: MatchSites, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.mailbox.handled();
        let verdicts = msg.sites.iter().map(|site| self.verdict(site)).collect();
        MessageResult(verdicts)
    }
}

impl Handler<Reload> for DomainMatcher {
    type Result = ResponseActFuture<Self, Result<(), ActorError>>;

    fn handle(&mut self, _msg: Reload, _ctx: &mut Context<Self>) -> Self::Result {
        self.stats.mailbox.handled();
        Box::pin(self.reload())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn report_has_every_counter() {
        let s = MatcherStats::default();
        s.mailbox.queued();
        s.mailbox.handled();
        s.lookups.add(3);
        s.denied.incr();
        s.failed.incr();
        s.patterns.set(7);
        s.reloads.incr();
        s.reload_errors.incr();
        s.last_reload_unix.set(1_700_000_000);
        let r = s.report();
        assert_eq!(r["handled"], 1);
        assert_eq!(r["mailbox"], 0);
        assert_eq!(r["errors"], 0);
        assert_eq!(r["lookups"], 3);
        assert_eq!(r["denied"], 1);
        assert_eq!(r["failed"], 1);
        assert_eq!(r["bad"], 0);
        assert_eq!(r["patterns"], 7);
        assert_eq!(r["reloads"], 1);
        assert_eq!(r["reload_errors"], 1);
        assert_eq!(r["last_reload_unix"], 1_700_000_000);
    }
}
