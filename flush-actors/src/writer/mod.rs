//! The per-destination log writers and the registry that routes to them.

mod budget;
mod log_writer;
pub mod messages;
mod registry;

pub use budget::{FileSlot, OpenFileBudget};
pub use log_writer::{LogWriter, WRITER_MAILBOX};
pub use messages::{AppendBatch, AppendFor, CloseAll, DeliverFor, DeliverHow};
pub use registry::{WriterLimits, WriterRegistry};

use crate::stats::Tracked;
use crate::stats::{Counter, Gauge, Mailbox, Report};
use crate::trigger::{QueueTrigger, TriggerStats};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Default bound on logfiles kept open between requests (`--max-open-logs`).
pub const DEFAULT_MAX_OPEN_LOGS: usize = 1000;
/// Default bound on writers alive at once (`--max-writers`): about 1.4 KiB
/// each, so some 14 MiB at most.
pub const DEFAULT_MAX_WRITERS: usize = 10_000;

/// What every writer shares: where logs live, whom to hand deliveries to,
/// the open-file budget and the counters.
pub struct WriterShared {
    /// `$queue_directory/flush`.
    pub flush_dir: PathBuf,
    /// Takes the queue IDs of a delivery.
    pub trigger: Tracked<QueueTrigger, TriggerStats>,
    /// Bound on open logfiles.
    pub budget: Arc<OpenFileBudget>,
    /// Counters of all writers and the registry.
    pub stats: Arc<WriterStats>,
}

/// Counters of the writers (one section of `stats`).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Messages to the writers.
    pub mailbox: Mailbox,
    /// Messages to the registry that routes to them.
    pub registry: Mailbox,
    /// Writers running now.
    pub live_writers: Gauge,
    /// Writers started since start-up.
    pub writers_started: Counter,
    /// Writers retired early because `max_writers` were alive.
    pub writers_evicted: Counter,
    /// Queue IDs written to logs.
    pub appends: Counter,
    /// Queue IDs not written because the log already listed them.
    pub duplicates_skipped: Counter,
    /// `write` calls (each carries one batch of appends).
    pub write_batches: Counter,
    /// Logs delivered (send_site, refresh, purge).
    pub deliveries: Counter,
    /// Bytes appended to logs.
    pub bytes_written: Counter,
    /// Logfiles open now.
    pub open_files: Gauge,
    /// Times a log was found locked by someone else (a Postfix flush(8), a
    /// janitor): the work waited and tried again.
    pub locked_elsewhere: Counter,
}

impl Report for WriterStats {
    fn report(&self) -> Value {
        let mut m = self.mailbox.to_json();
        m.insert("live_writers".into(), self.live_writers.get().into());
        m.insert("writers_started".into(), self.writers_started.get().into());
        m.insert("writers_evicted".into(), self.writers_evicted.get().into());
        m.insert("appends".into(), self.appends.get().into());
        m.insert(
            "duplicates_skipped".into(),
            self.duplicates_skipped.get().into(),
        );
        m.insert("write_batches".into(), self.write_batches.get().into());
        m.insert("deliveries".into(), self.deliveries.get().into());
        m.insert("bytes_written".into(), self.bytes_written.get().into());
        m.insert("open_files".into(), self.open_files.get().into());
        m.insert(
            "locked_elsewhere".into(),
            self.locked_elsewhere.get().into(),
        );
        m.insert("registry".into(), Value::Object(self.registry.to_json()));
        Value::Object(m)
    }
}
