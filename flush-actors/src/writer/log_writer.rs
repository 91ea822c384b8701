//! `LogWriter`: the one actor that writes a destination's logfile.
//!
//! Mirrors flush(8)'s `flush_add_path` and `flush_send_path`, with two
//! differences that make it fast without weakening what an OK means:
//! appends that arrive together are written with one `write` call (group
//! commit: the flush runs after the mailbox is drained), and the file stays
//! open between requests while the writer holds an open-file slot.
//!
//! Writers run on dedicated arbiters that serve no sockets, so the short
//! blocking calls of an append (`write`) never stall a client session; the
//! long part of a delivery (renaming thousands of queue files) runs on the
//! queue trigger's worker threads while this writer holds the log's lock and
//! keeps new appends waiting in memory, to be written after the truncation
//! so that none is lost. A log locked by someone else (a Postfix flush(8)
//! delivering it) is not waited for on the thread, which writes other logs
//! too: the writer keeps its work and tries again after a pause that doubles
//! up to [`LOCK_RETRY_MAX`], and answers it with an error once the log has
//! stayed locked for [`LOCK_WAIT_LIMIT`].

use super::budget::FileSlot;
use super::messages::{AppendRecords, AppendReply, CloseLog, DeliverHow, DeliverLog, Retire};
use super::WriterShared;
use crate::domains::SitePath;
use crate::logfile::{Delivery, LogFile};
use crate::trigger::{MoveReport, MoveToIncoming};
use crate::ActorError;
use actix::prelude::*;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Mailbox capacity of a writer as actix counts it. It holds nothing back
/// (see `hand_out_appends`); the requests in flight bound a writer's queue.
pub const WRITER_MAILBOX: usize = 4096;

/// Largest pending-append buffers a writer keeps between batches.
const KEPT_CAPACITY: usize = 16;

/// The first pause before trying a log that was locked elsewhere again.
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(1);
/// The longest pause between two tries.
const LOCK_RETRY_MAX: Duration = Duration::from_millis(100);
/// How long work waits for a log that stays locked elsewhere before it is
/// answered with an error (the queue IDs stay in `deferred/` regardless).
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(30);
/// The same limit once the writer is asked to close (shutdown): a flushd
/// that master(8) replaced must let go of the queue soon, and its
/// successor waits only so long for the queue lock.
const LOCK_WAIT_WHEN_CLOSING: Duration = Duration::from_secs(1);

/// Whether the work at hand got done or found the log locked elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Done,
    LockedElsewhere,
}

/// Waiting for a log locked elsewhere: since when, the next pause, and
/// whether a try is scheduled.
struct LockWait {
    since: Instant,
    pause: Duration,
    scheduled: bool,
}

type Responder<T> = oneshot::Sender<Result<T, ActorError>>;

/// The open logfile, and whether it may stay open after the current operation.
struct OpenLog {
    file: LogFile,
    slot: Option<FileSlot>,
}

/// Owns one destination's logfile.
pub struct LogWriter {
    site: SitePath,
    shared: Arc<WriterShared>,
    log: Option<OpenLog>,
    /// Queue IDs received but not yet written (as they came, a message's
    /// IDs each), and who waits for them.
    pending: Vec<Arc<[String]>>,
    waiting: Vec<AppendReply>,
    flush_scheduled: bool,
    /// A delivery holds the log's lock; appends wait in `pending`.
    delivering: bool,
    deliveries: VecDeque<(DeliverHow, Responder<MoveReport>)>,
    retiring: bool,
    /// Set while the log is locked by someone else.
    lock_wait: Option<LockWait>,
    /// Answered when the writer stops (shutdown waits on them).
    closers: Vec<oneshot::Sender<()>>,
}

impl LogWriter {
    /// A writer for `site`; it opens the log on first use.
    pub fn new(site: SitePath, shared: Arc<WriterShared>) -> LogWriter {
        LogWriter {
            site,
            shared,
            log: None,
            pending: Vec::new(),
            waiting: Vec::new(),
            flush_scheduled: false,
            delivering: false,
            deliveries: VecDeque::new(),
            retiring: false,
            lock_wait: None,
            closers: Vec::new(),
        }
    }

    fn busy(&self) -> bool {
        self.delivering || !self.waiting.is_empty() || !self.deliveries.is_empty()
    }

    /// The log, opened (and created if missing) unless it is open already.
    fn open_log(&mut self) -> io::Result<&mut OpenLog> {
        self.ensure_open(true)?
            .ok_or_else(|| io::Error::other("log vanished"))
    }

    /// Opens the log unless it is open already, keeping it open only with a
    /// free slot. Without `create` a missing log is `None`: a delivery has
    /// nothing to do, and creates nothing.
    fn ensure_open(&mut self, create: bool) -> io::Result<Option<&mut OpenLog>> {
        if self.log.is_none() {
            let (dir, site) = (&self.shared.flush_dir, self.site.as_ref());
            let file = if create {
                LogFile::open(dir, site)?
            } else {
                match LogFile::open_existing(dir, site)? {
                    Some(file) => file,
                    None => return Ok(None),
                }
            };
            let slot = self.shared.budget.try_acquire();
            // Without a slot the log is closed after this write: remembering
            // its IDs would mean re-reading it whole on every open.
            let file = if slot.is_some() {
                file
            } else {
                file.without_memory()
            };
            self.shared.stats.open_files.incr();
            self.log = Some(OpenLog { file, slot });
        }
        Ok(self.log.as_mut())
    }

    fn close_log(&mut self) {
        if self.log.take().is_some() {
            self.shared.stats.open_files.decr();
        }
    }

    /// Closes a log that was opened without a slot (flush(8)'s open-write-close).
    fn release_transient(&mut self) {
        if self.log.as_ref().is_some_and(|log| log.slot.is_none()) {
            self.close_log();
        }
    }

    /// Runs [`Self::work`] once the mailbox is drained, so that all appends
    /// that arrived together share one write. While a try at a log locked
    /// elsewhere is scheduled, that try takes them along.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        let retry_scheduled = self.lock_wait.as_ref().is_some_and(|w| w.scheduled);
        if !self.flush_scheduled && !retry_scheduled {
            self.flush_scheduled = true;
            ctx.spawn(fut::ready(()).map(|_, act: &mut Self, ctx| {
                act.flush_scheduled = false;
                act.work(ctx);
            }));
        }
    }

    /// Writes the pending appends and starts the queued deliveries; if the
    /// log is locked elsewhere, tries again later.
    fn work(&mut self, ctx: &mut Context<Self>) {
        let progress = match self.write_pending() {
            Progress::Done => self.pump_deliveries(ctx),
            locked => locked,
        };
        match progress {
            Progress::Done => self.lock_wait = None,
            Progress::LockedElsewhere => self.wait_for_lock(ctx),
        }
        self.after_work(ctx);
    }

    /// Schedules the next try at a log locked elsewhere, or gives up on the
    /// work waiting for it after [`LOCK_WAIT_LIMIT`] ([`LOCK_WAIT_WHEN_CLOSING`]
    /// once asked to close).
    fn wait_for_lock(&mut self, ctx: &mut Context<Self>) {
        if self.lock_wait.is_none() {
            self.shared.stats.locked_elsewhere.incr();
        }
        let limit = if self.closers.is_empty() {
            LOCK_WAIT_LIMIT
        } else {
            LOCK_WAIT_WHEN_CLOSING
        };
        let wait = self.lock_wait.get_or_insert_with(|| LockWait {
            since: Instant::now(),
            pause: LOCK_RETRY_FIRST,
            scheduled: false,
        });
        let waited = wait.since.elapsed();
        if waited >= limit {
            self.lock_wait = None;
            self.give_up_waiting(waited);
            return;
        }
        if wait.scheduled {
            return;
        }
        wait.scheduled = true;
        let pause = wait.pause;
        wait.pause = (pause * 2).min(LOCK_RETRY_MAX);
        ctx.run_later(pause, |act, ctx| {
            if let Some(wait) = act.lock_wait.as_mut() {
                wait.scheduled = false;
            }
            act.work(ctx);
        });
    }

    /// Answers the appends and deliveries that waited `waited` for the log
    /// with an error.
    fn give_up_waiting(&mut self, waited: Duration) {
        log::warn!(
            "flush/{} stayed locked by someone else for {waited:.1?}{}; answering the {} appends and {} deliveries waiting for it with an error",
            self.site,
            if self.closers.is_empty() { "" } else { " (closing)" },
            self.waiting.len(),
            self.deliveries.len()
        );
        self.shared.stats.mailbox.error();
        let error = || {
            ActorError::io(
                format!("lock flush/{}", self.site),
                io::Error::new(io::ErrorKind::WouldBlock, "the log stayed locked elsewhere"),
            )
        };
        self.pending.clear();
        for reply in self.waiting.drain(..) {
            reply.send(Err(error()));
        }
        for (_, tx) in self.deliveries.drain(..) {
            let _ = tx.send(Err(error()));
        }
        self.release_transient();
    }

    /// Writes every pending append with one `write`, then answers them;
    /// keeps them all if the log is locked elsewhere.
    fn write_pending(&mut self) -> Progress {
        if self.delivering || self.waiting.is_empty() {
            return Progress::Done;
        }
        let mut batch = std::mem::take(&mut self.pending);
        let mut waiting = std::mem::take(&mut self.waiting);
        // A writer usually has an ID or two per batch: no allocation for those.
        let ids: SmallVec<[&str; 4]> = batch
            .iter()
            .flat_map(|ids| ids.iter())
            .map(String::as_str)
            .collect();
        let stats = Arc::clone(&self.shared.stats);
        let result = self.open_log().and_then(|log| log.file.append(&ids));
        drop(ids);
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.pending = batch;
                self.waiting = waiting;
                self.release_transient();
                return Progress::LockedElsewhere;
            }
            Ok(report) => {
                stats.appends.add(report.written as u64);
                stats.duplicates_skipped.add(report.skipped as u64);
                stats.bytes_written.add(report.bytes as u64);
                stats.write_batches.incr();
                // Closed before the answers go: whoever they wake finds the
                // work, and the open-file count, settled.
                self.release_transient();
                for reply in waiting.drain(..) {
                    reply.send(Ok(()));
                }
            }
            Err(e) => {
                log::warn!("append to flush/{}: {e}", self.site);
                stats.mailbox.error();
                self.close_log();
                let error = ActorError::io(format!("append to flush/{}", self.site), e);
                for reply in waiting.drain(..) {
                    reply.send(Err(error.clone()));
                }
            }
        }
        // Keep the (now empty) buffers for the next batch unless a burst
        // made them big: most writers see a message or two per batch.
        batch.clear();
        if batch.capacity() <= KEPT_CAPACITY && waiting.capacity() <= KEPT_CAPACITY {
            self.pending = batch;
            self.waiting = waiting;
        }
        Progress::Done
    }

    /// Starts the next queued delivery unless one is running.
    fn pump_deliveries(&mut self, ctx: &mut Context<Self>) -> Progress {
        while !self.delivering {
            let Some((how, tx)) = self.deliveries.pop_front() else {
                return Progress::Done;
            };
            // Appends that arrived before this request belong in what it delivers.
            if self.write_pending() == Progress::LockedElsewhere {
                self.deliveries.push_front((how, tx));
                return Progress::LockedElsewhere;
            }
            match self.begin_delivery() {
                Ok(Some(delivery)) => self.run_delivery(how, delivery, tx, ctx),
                Ok(None) => {
                    let _ = tx.send(Ok(MoveReport::default()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.deliveries.push_front((how, tx));
                    self.release_transient();
                    return Progress::LockedElsewhere;
                }
                Err(e) => {
                    log::warn!("deliver flush/{}: {e}", self.site);
                    self.shared.stats.mailbox.error();
                    self.close_log();
                    let _ = tx.send(Err(ActorError::io(format!("read flush/{}", self.site), e)));
                }
            }
        }
        Progress::Done
    }

    /// Locks and reads the log; `None` when there is no log (nothing to deliver).
    fn begin_delivery(&mut self) -> io::Result<Option<Delivery>> {
        match self.ensure_open(false)? {
            Some(log) => log.file.take_for_delivery().map(Some),
            None => Ok(None),
        }
    }

    /// Hands the IDs to the queue trigger; truncates the log when they are moved.
    fn run_delivery(
        &mut self,
        how: DeliverHow,
        mut delivery: Delivery,
        tx: Responder<MoveReport>,
        ctx: &mut Context<Self>,
    ) {
        self.delivering = true;
        let started = Instant::now();
        let request = MoveToIncoming {
            ids: std::mem::take(&mut delivery.ids),
            unthrottle_first: how == DeliverHow::SendSite,
            lines_read: delivery.lines_read,
        };
        let moving = self.shared.trigger.send(request);
        ctx.spawn(moving.into_actor(self).map(move |result, act, ctx| {
            act.delivering = false;
            let result = result.map_err(ActorError::from).and_then(|r| r);
            let finished = match (&result, act.log.as_mut()) {
                // Files were moved: truncate, as flush(8) does once it read a line.
                (Ok(_), Some(log)) => log.file.finish_delivery(delivery),
                // Nothing was moved: keep every line for the next attempt.
                (Err(_), Some(log)) => log.file.abort_delivery(delivery),
                (_, None) => Ok(()),
            };
            let result = match (result, finished) {
                (Ok(report), Ok(())) => {
                    act.shared.stats.deliveries.incr();
                    // An ETRN is worth a line; a sweep's thousands are
                    // summed up by the janitor (flush(8) logs neither).
                    let level = match how {
                        DeliverHow::SendSite => log::Level::Info,
                        DeliverHow::Refresh => log::Level::Debug,
                    };
                    log::log!(
                        level,
                        "delivered flush/{}: {} queued for delivery, {} missing, in {:?}",
                        act.site,
                        report.moved + report.already_incoming,
                        report.missing,
                        started.elapsed()
                    );
                    Ok(report)
                }
                (Ok(_), Err(e)) => {
                    act.close_log();
                    Err(ActorError::io(format!("truncate flush/{}", act.site), e))
                }
                (Err(e), _) => Err(e),
            };
            if let Err(e) = &result {
                log::warn!("deliver flush/{}: {e}", act.site);
                act.shared.stats.mailbox.error();
            }
            act.release_transient();
            let _ = tx.send(result);
            act.work(ctx);
        }));
    }

    /// Stops a retiring writer once it has nothing left to do.
    fn after_work(&mut self, ctx: &mut Context<Self>) {
        if self.retiring && !self.busy() {
            ctx.stop();
        }
    }
}

impl Actor for LogWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(WRITER_MAILBOX);
        self.shared.stats.live_writers.incr();
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.write_pending();
        for reply in self.waiting.drain(..) {
            reply.send(Err(ActorError::Worker("log writer stopped")));
        }
        for (_, tx) in self.deliveries.drain(..) {
            let _ = tx.send(Err(ActorError::Worker("log writer stopped")));
        }
        self.close_log();
        self.shared.stats.live_writers.decr();
        for tx in self.closers.drain(..) {
            let _ = tx.send(());
        }
    }
}

impl Handler<AppendRecords> for LogWriter {
    type Result = ();

    fn handle(&mut self, msg: AppendRecords, ctx: &mut Context<Self>) {
        self.shared.stats.mailbox.handled();
        if msg.queue_ids.is_empty() {
            msg.reply.send(Ok(()));
            return;
        }
        self.pending.push(msg.queue_ids);
        self.waiting.push(msg.reply);
        self.schedule_flush(ctx);
    }
}

impl Handler<DeliverLog> for LogWriter {
    type Result = ResponseFuture<Result<MoveReport, ActorError>>;

    fn handle(&mut self, msg: DeliverLog, ctx: &mut Context<Self>) -> Self::Result {
        self.shared.stats.mailbox.handled();
        let (tx, rx) = oneshot::channel();
        self.deliveries.push_back((msg.how, tx));
        self.work(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(ActorError::Worker("log writer stopped")))
        })
    }
}

impl Handler<Retire> for LogWriter {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retiring = true;
        if !self.busy() {
            self.close_log();
        }
        self.after_work(ctx);
    }
}

impl Handler<CloseLog> for LogWriter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: CloseLog, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.closers.push(tx);
        self.retiring = true;
        self.work(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
