//! `LogWriter`: the one actor that writes a destination's logfile.
//!
//! Mirrors flush(8)'s `flush_add_path` and `flush_send_path`, with two
//! differences that make it fast without weakening what an OK means:
//! appends that arrive together are written with one `write` call (group
//! commit: the flush runs after the mailbox is drained), and the file stays
//! open between requests while the writer holds an open-file slot.
//!
//! Writers run on dedicated arbiters that serve no sockets, so the short
//! blocking calls of an append (`flock`, `write`) never stall a client
//! session; the long part of a delivery (renaming thousands of queue files)
//! runs on the queue trigger's worker threads while this writer holds the
//! log's lock and keeps new appends waiting in memory, to be written after
//! the truncation so that none is lost.

use super::budget::FileSlot;
use super::messages::{AppendRecords, CloseLog, DeliverHow, DeliverLog, Retire};
use super::WriterShared;
use crate::domains::SitePath;
use crate::logfile::{Delivery, LogFile};
use crate::trigger::{MoveReport, MoveToIncoming};
use crate::ActorError;
use actix::prelude::*;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Mailbox capacity of a writer: large enough for a burst of pipelined adds to
/// be written as one batch.
pub const WRITER_MAILBOX: usize = 4096;

/// Largest pending-append buffers a writer keeps between batches.
const KEPT_CAPACITY: usize = 16;

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
    waiting: Vec<Responder<()>>,
    flush_scheduled: bool,
    /// A delivery holds the log's lock; appends wait in `pending`.
    delivering: bool,
    deliveries: VecDeque<(DeliverHow, Responder<MoveReport>)>,
    retiring: bool,
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
            closers: Vec::new(),
        }
    }

    fn busy(&self) -> bool {
        self.delivering || !self.waiting.is_empty() || !self.deliveries.is_empty()
    }

    /// Opens the log if it is not open, keeping it open only with a free slot.
    fn open_log(&mut self) -> io::Result<&mut OpenLog> {
        if self.log.is_none() {
            let file = LogFile::open(&self.shared.flush_dir, self.site.as_ref())?;
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
        match self.log.as_mut() {
            Some(log) => Ok(log),
            None => Err(io::Error::other("log vanished")),
        }
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

    /// Runs [`Self::write_pending`] once the mailbox is drained, so that all
    /// appends that arrived together share one write.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.spawn(fut::ready(()).map(|_, act: &mut Self, ctx| {
                act.flush_scheduled = false;
                act.write_pending();
                act.after_work(ctx);
            }));
        }
    }

    /// Writes every pending append with one `write`, then answers them.
    fn write_pending(&mut self) {
        if self.delivering || self.waiting.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.pending);
        let mut waiting = std::mem::take(&mut self.waiting);
        let mut ids: Vec<&str> = Vec::with_capacity(batch.iter().map(|ids| ids.len()).sum());
        ids.extend(batch.iter().flat_map(|ids| ids.iter()).map(String::as_str));
        let stats = Arc::clone(&self.shared.stats);
        let result = self.open_log().and_then(|log| log.file.append(&ids));
        drop(ids);
        match result {
            Ok(report) => {
                stats.appends.add(report.written as u64);
                stats.duplicates_skipped.add(report.skipped as u64);
                stats.bytes_written.add(report.bytes as u64);
                stats.write_batches.incr();
                for tx in waiting.drain(..) {
                    let _ = tx.send(Ok(()));
                }
                self.release_transient();
            }
            Err(e) => {
                log::warn!("append to flush/{}: {e}", self.site);
                stats.mailbox.error();
                self.close_log();
                let error = ActorError::io(format!("append to flush/{}", self.site), e);
                for tx in waiting.drain(..) {
                    let _ = tx.send(Err(error.clone()));
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
    }

    /// Starts the next queued delivery unless one is running.
    fn pump_deliveries(&mut self, ctx: &mut Context<Self>) {
        while !self.delivering {
            let Some((how, tx)) = self.deliveries.pop_front() else {
                return;
            };
            // Appends that arrived before this request belong in what it delivers.
            self.write_pending();
            match self.begin_delivery() {
                Ok(Some(delivery)) => self.run_delivery(how, delivery, tx, ctx),
                Ok(None) => {
                    let _ = tx.send(Ok(MoveReport::default()));
                }
                Err(e) => {
                    log::warn!("deliver flush/{}: {e}", self.site);
                    self.shared.stats.mailbox.error();
                    self.close_log();
                    let _ = tx.send(Err(ActorError::io(format!("read flush/{}", self.site), e)));
                }
            }
        }
    }

    /// Locks and reads the log; `None` when there is no log (nothing to deliver).
    fn begin_delivery(&mut self) -> io::Result<Option<Delivery>> {
        if self.log.is_none() {
            let path = self.shared.flush_dir.join(self.site.as_ref());
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                _ => {}
            }
        }
        let log = self.open_log()?;
        log.file.take_for_delivery().map(Some)
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
                    log::info!(
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
            let _ = tx.send(result);
            act.release_transient();
            act.write_pending();
            act.pump_deliveries(ctx);
            act.after_work(ctx);
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
        for tx in self.waiting.drain(..) {
            let _ = tx.send(Err(ActorError::Worker("log writer stopped")));
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
            let _ = msg.reply.send(Ok(()));
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
        self.pump_deliveries(ctx);
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
        self.write_pending();
        self.retiring = true;
        self.after_work(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
