//! `Janitor`: refresh and purge of the logfiles, as flush(8)'s
//! `flush_refresh_service`, in the background.
//!
//! A request is answered at once; the scan of `flush/` and the removal of
//! stale empty logs run on a blocking thread; logs due for delivery go to
//! their writers (so they share the writer's lock and ordering), a bounded
//! number at a time. While a scan runs, further requests do not start a
//! second one: the strongest of them runs once the current scan is done.

use super::rules::{decide, JanitorAction};
use crate::domains::SitePath;
use crate::logfile::remove_if_stale_empty;
use crate::stats::{Counter, Gauge, Mailbox, Report, Tracked};
use crate::writer::{DeliverFor, DeliverHow, WriterRegistry, WriterStats};
use actix::prelude::*;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Deliveries the janitor keeps in flight at once.
pub const JANITOR_PARALLEL_DELIVERIES: usize = 64;

/// What to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sweep {
    /// Logs unread for `fast_flush_refresh_time` (request `refresh`, timer, master wakeup).
    Refresh,
    /// Every non-empty log (request `purge`).
    Purge,
}

/// Start a sweep in the background; answered at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StartSweep {
    /// Refresh or purge.
    pub sweep: Sweep,
    /// Why: "request", "timer", "wakeup" (for the log and the counters).
    pub cause: &'static str,
}

/// A sweep finished (internal).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct SweepDone {
    refreshed: u64,
    purged: u64,
    failed: u64,
    started: Instant,
}

/// Counters of the janitor (one section of `stats`).
#[derive(Debug, Default)]
pub struct JanitorStats {
    /// Messages to the janitor.
    pub mailbox: Mailbox,
    /// Sweeps completed.
    pub runs: Counter,
    /// 1 while a sweep runs.
    pub running: Gauge,
    /// Duration of the last sweep, in milliseconds.
    pub last_run_ms: Gauge,
    /// End of the last sweep, Unix seconds.
    pub last_run_unix: Gauge,
    /// Logs delivered by sweeps.
    pub logs_refreshed: Counter,
    /// Empty stale logs removed.
    pub logs_purged: Counter,
    /// master(8) wakeups received.
    pub wakeups: Counter,
    /// Requests that arrived while a sweep ran and did not start another.
    pub coalesced: Counter,
}

impl Report for JanitorStats {
    fn report(&self) -> Value {
        let mut m = self.mailbox.to_json();
        m.insert("runs".into(), self.runs.get().into());
        m.insert("running".into(), (self.running.get() > 0).into());
        m.insert("last_run_ms".into(), self.last_run_ms.get().into());
        m.insert("last_run_unix".into(), self.last_run_unix.get().into());
        m.insert("logs_refreshed".into(), self.logs_refreshed.get().into());
        m.insert("logs_purged".into(), self.logs_purged.get().into());
        m.insert("wakeups".into(), self.wakeups.get().into());
        m.insert("coalesced".into(), self.coalesced.get().into());
        Value::Object(m)
    }
}

/// Settings of the janitor.
#[derive(Debug, Clone)]
pub struct JanitorSettings {
    /// `$queue_directory/flush`.
    pub flush_dir: PathBuf,
    /// `fast_flush_refresh_time`.
    pub refresh_time: Duration,
    /// `fast_flush_purge_time`.
    pub purge_time: Duration,
    /// `flush_refresh_interval`: how often a refresh runs on its own (0: never).
    pub refresh_interval: Duration,
}

/// Owns the refresh/purge schedule and the scans of `flush/`.
pub struct Janitor {
    settings: JanitorSettings,
    registry: Tracked<WriterRegistry, WriterStats>,
    stats: Arc<JanitorStats>,
    running: bool,
    /// The strongest request that arrived while a sweep ran.
    queued: Option<Sweep>,
}

impl Janitor {
    /// A janitor that delivers through `registry`.
    pub fn new(
        settings: JanitorSettings,
        registry: Tracked<WriterRegistry, WriterStats>,
        stats: Arc<JanitorStats>,
    ) -> Janitor {
        Janitor {
            settings,
            registry,
            stats,
            running: false,
            queued: None,
        }
    }

    fn start(&mut self, sweep: Sweep, cause: &'static str, ctx: &mut Context<Self>) {
        if self.running {
            self.stats.coalesced.incr();
            self.queued = self.queued.max(Some(sweep));
            return;
        }
        self.running = true;
        self.stats.running.set(1);
        log::info!("janitor: {sweep:?} started ({cause})");
        let started = Instant::now();
        let settings = self.settings.clone();
        let max_age = match sweep {
            Sweep::Refresh => settings.refresh_time,
            Sweep::Purge => Duration::ZERO,
        };
        let registry = self.registry.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let scan = actix_rt::task::spawn_blocking(move || {
                scan_and_purge(&settings.flush_dir, max_age, settings.purge_time)
            })
            .await;
            let (due, purged) = match scan {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => {
                    log::warn!("janitor: scan flush/: {e}");
                    (Vec::new(), 0)
                }
                Err(e) => {
                    log::warn!("janitor: scan thread: {e}");
                    (Vec::new(), 0)
                }
            };
            let results: Vec<bool> = stream::iter(due)
                .map(|site| {
                    let registry = registry.clone();
                    async move {
                        match registry
                            .send(DeliverFor::new(site.clone(), DeliverHow::Refresh))
                            .await
                        {
                            Ok(Ok(_)) => true,
                            Ok(Err(e)) => {
                                log::warn!("janitor: deliver flush/{site}: {e}");
                                false
                            }
                            Err(e) => {
                                log::warn!("janitor: deliver flush/{site}: {e}");
                                false
                            }
                        }
                    }
                })
                .buffer_unordered(JANITOR_PARALLEL_DELIVERIES)
                .collect()
                .await;
            let refreshed = results.iter().filter(|ok| **ok).count() as u64;
            let failed = results.len() as u64 - refreshed;
            me.do_send(SweepDone {
                refreshed,
                purged,
                failed,
                started,
            });
        });
    }
}

/// Lists `flush/`, removes stale empty logs and returns the logs due for
/// delivery with the number removed. Blocking: runs on a worker thread.
fn scan_and_purge(
    flush_dir: &Path,
    max_age: Duration,
    purge_time: Duration,
) -> io::Result<(Vec<SitePath>, u64)> {
    let now = SystemTime::now();
    let mut due = Vec::new();
    let mut purged = 0;
    for entry in std::fs::read_dir(flush_dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(site) = SitePath::from_file_name(&name) else {
            continue;
        };
        let meta = match std::fs::metadata(entry.path()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                log::warn!("janitor: stat flush/{name}: {e}");
                continue;
            }
        };
        let atime = meta.accessed().unwrap_or(UNIX_EPOCH);
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        match decide(meta.len(), atime, mtime, now, max_age, purge_time) {
            JanitorAction::Skip => {}
            JanitorAction::Deliver => due.push(site),
            JanitorAction::Remove => {
                let purge_before = now.checked_sub(purge_time).unwrap_or(UNIX_EPOCH);
                match remove_if_stale_empty(flush_dir, &name, purge_before) {
                    Ok(true) => purged += 1,
                    Ok(false) => {}
                    Err(e) => log::warn!("janitor: remove flush/{name}: {e}"),
                }
            }
        }
    }
    Ok((due, purged))
}

impl Actor for Janitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = self.settings.refresh_interval;
        if !every.is_zero() {
            ctx.run_interval(every, |act, ctx| act.start(Sweep::Refresh, "timer", ctx));
        }
    }
}

impl Handler<StartSweep> for Janitor {
    type Result = ();

    fn handle(&mut self, msg: StartSweep, ctx: &mut Context<Self>) {
        self.stats.mailbox.handled();
        if msg.cause == "wakeup" {
            self.stats.wakeups.incr();
        }
        self.start(msg.sweep, msg.cause, ctx);
    }
}

impl Handler<SweepDone> for Janitor {
    type Result = ();

    fn handle(&mut self, msg: SweepDone, ctx: &mut Context<Self>) {
        let elapsed = msg.started.elapsed();
        self.running = false;
        self.stats.running.set(0);
        self.stats.runs.incr();
        self.stats.logs_refreshed.add(msg.refreshed);
        self.stats.logs_purged.add(msg.purged);
        if msg.failed > 0 {
            self.stats.mailbox.error();
        }
        self.stats.last_run_ms.set(elapsed.as_millis() as i64);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.stats.last_run_unix.set(now.as_secs() as i64);
        log::info!(
            "janitor: sweep done in {elapsed:?}: {} logs delivered, {} removed, {} failed",
            msg.refreshed,
            msg.purged,
            msg.failed
        );
        if let Some(next) = self.queued.take() {
            self.start(next, "queued", ctx);
        }
    }
}
