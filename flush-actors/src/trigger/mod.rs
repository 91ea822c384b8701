//! The QueueTrigger actor: owns the `deferred/` and `incoming/` side of the
//! queue directory and the queue manager's trigger. It time-stamps and moves
//! the files a delivery names, and wakes the queue manager (`F` before a
//! `send_site`, one coalesced `I` after).
//!
//! Mirrors `flush_send_path()` and `flush_send_file_service()` of Postfix's
//! `src/flush/flush.c`; the file work itself is [`crate::queue::deliver`].
//!
//! # Why a `SyncArbiter`
//! Every message means blocking system calls (a `utimensat` and a `rename`
//! per file, thousands for a big site), which must never run on an arbiter
//! thread that serves sockets. A [`SyncArbiter`] of [`MOVER_THREADS`]
//! threads runs them on threads of their own and still answers through the
//! usual `Addr::send` future, so callers on async arbiters simply await the
//! reply: no hand-written job channel and reply plumbing. Its internal queue
//! is not capped by actix, so the bound comes from the callers: every sender
//! awaits its reply with `send().await` (never `do_send`); a LogWriter has
//! at most one delivery in flight, and `send_file`s are at most
//! `MAX_SEND_FILES_IN_FLIGHT` at once across all connections, so the queue
//! holds at most one message per live writer plus that many.
//!
//! # Stats
//! actix cannot tell how many messages wait. Senders call
//! `stats.mailbox.queued()` before each send (the `Tracked` address in
//! [`crate::stats`] does it) and the handlers call `mailbox.handled()`.

mod messages;
mod notifier;

pub use messages::{MoveReport, MoveToIncoming, SendOneFile};
pub use notifier::SCAN_COALESCE_WINDOW;

use crate::queue::{
    deliver_one, DeliverMode, DeliverOutcome, QueueDir, QueueLayout, TRIGGER_FLUSH_DEAD,
};
use crate::stats::{Counter, Mailbox, Report};
use crate::ActorError;
use actix::{Actor, Addr, Handler, SyncArbiter, SyncContext};
use notifier::{Qmgr, ScanRequests};
use serde_json::Value;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

/// Threads moving files. Two keep one big delivery from holding up a
/// `send_file`, without competing with the writers for the disk.
pub const MOVER_THREADS: usize = 2;

/// The trigger's counters, shared with the stats dump.
#[derive(Debug, Default)]
pub struct TriggerStats {
    /// Messages handled, waiting, and requests with failed files.
    pub mailbox: Mailbox,
    /// Files moved from `deferred/` to `incoming/`.
    pub files_moved: Counter,
    /// Files found already in `incoming/` (time-stamped only).
    pub files_already_incoming: Counter,
    /// IDs whose file was in neither queue.
    pub files_missing: Counter,
    /// `send_file` files left in place because they were not ready.
    pub files_not_ready: Counter,
    /// Files that could not be time-stamped, opened or moved.
    pub move_errors: Counter,
    /// Triggers (`F` and `I`) the queue manager received.
    pub triggers_sent: Counter,
    /// Triggers that found no queue manager listening.
    pub triggers_failed: Counter,
    /// `I` requests covered by another request's trigger.
    pub triggers_coalesced: Counter,
}

impl TriggerStats {
    fn record(&self, outcome: &DeliverOutcome) {
        match outcome {
            DeliverOutcome::Moved => self.files_moved.incr(),
            DeliverOutcome::AlreadyIncoming => self.files_already_incoming.incr(),
            DeliverOutcome::Missing => self.files_missing.incr(),
            DeliverOutcome::NotReady => self.files_not_ready.incr(),
            DeliverOutcome::Failed(_) => self.move_errors.incr(),
        }
    }
}

impl Report for TriggerStats {
    fn report(&self) -> Value {
        let mut m = self.mailbox.to_json();
        let counters = [
            ("files_moved", &self.files_moved),
            ("files_already_incoming", &self.files_already_incoming),
            ("files_missing", &self.files_missing),
            ("files_not_ready", &self.files_not_ready),
            ("move_errors", &self.move_errors),
            ("triggers_sent", &self.triggers_sent),
            ("triggers_failed", &self.triggers_failed),
            ("triggers_coalesced", &self.triggers_coalesced),
        ];
        for (name, counter) in counters {
            m.insert(name.into(), counter.get().into());
        }
        Value::Object(m)
    }
}

/// One mover thread of the queue trigger.
pub struct QueueTrigger {
    queue_dir: Arc<QueueDir>,
    stats: Arc<TriggerStats>,
    qmgr: Arc<Qmgr>,
    scans: ScanRequests,
}

impl Actor for QueueTrigger {
    type Context = SyncContext<Self>;
}

/// Starts the trigger: [`MOVER_THREADS`] mover threads and the notifier
/// thread that sends the coalesced `I`s. Call it inside a running actix
/// `System`. The threads end when the last address is dropped.
///
/// # Errors
/// The queue directory cannot be opened.
pub fn start(layout: QueueLayout, stats: Arc<TriggerStats>) -> io::Result<Addr<QueueTrigger>> {
    let qmgr = Arc::new(Qmgr::new(layout.qmgr_path(), Arc::clone(&stats)));
    let queue_dir = Arc::new(QueueDir::open(layout)?);
    let scans = notifier::start_notifier(Arc::clone(&qmgr));
    Ok(SyncArbiter::start(MOVER_THREADS, move || QueueTrigger {
        queue_dir: Arc::clone(&queue_dir),
        stats: Arc::clone(&stats),
        qmgr: Arc::clone(&qmgr),
        scans: scans.clone(),
    }))
}

impl QueueTrigger {
    /// Schedules each file, all with the same time stamp, and counts.
    fn deliver_all<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        mode: DeliverMode,
    ) -> MoveReport {
        let now = SystemTime::now();
        let mut report = MoveReport::default();
        for id in ids {
            let outcome = deliver_one(&self.queue_dir, id, now, mode);
            self.stats.record(&outcome);
            report.record(&outcome);
        }
        if report.failed > 0 {
            self.stats.mailbox.error();
        }
        report
    }
}

impl Handler<MoveToIncoming> for QueueTrigger {
    type Result = Result<MoveReport, ActorError>;

    fn handle(&mut self, msg: MoveToIncoming, _: &mut SyncContext<Self>) -> Self::Result {
        self.stats.mailbox.handled();
        if msg.unthrottle_first {
            // Before any move, so the queue manager does not skip them.
            self.qmgr.send(TRIGGER_FLUSH_DEAD);
        }
        let report = self.deliver_all(msg.ids.iter().map(String::as_str), DeliverMode::Site);
        if !msg.ids.is_empty() || msg.lines_read > 0 {
            self.scans.request();
        }
        log::debug!(
            "moved {} of {} queue files ({} already incoming, {} missing, {} failed)",
            report.moved,
            msg.ids.len(),
            report.already_incoming,
            report.missing,
            report.failed
        );
        Ok(report)
    }
}

impl Handler<SendOneFile> for QueueTrigger {
    type Result = Result<MoveReport, ActorError>;

    fn handle(&mut self, msg: SendOneFile, _: &mut SyncContext<Self>) -> Self::Result {
        self.stats.mailbox.handled();
        let report = self.deliver_all([msg.queue_id.as_str()], DeliverMode::File);
        if report.queued() > 0 {
            self.scans.request();
        }
        Ok(report)
    }
}
