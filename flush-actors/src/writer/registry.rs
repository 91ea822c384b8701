//! `WriterRegistry`: routes each destination's messages to its one `LogWriter`.
//!
//! It starts writers on demand, spread over the writer arbiters by a hash of
//! the site (so one site's appends stay ordered on one thread), and retires
//! a writer that reported itself idle. A message that reaches a writer just as
//! it stops comes back as `MailboxError::Closed` without having been handled;
//! the registry then routes it again, to a new writer.

use super::log_writer::LogWriter;
use super::messages::{
    AppendFor, AppendRecord, CloseAll, CloseLog, DeliverFor, DeliverLog, Retire, WriterIdle,
};
use super::{OpenFileBudget, WriterShared, WriterStats};
use crate::domains::SitePath;
use crate::stats::Tracked;
use crate::trigger::{MoveReport, QueueTrigger, TriggerStats};
use crate::ActorError;
use actix::prelude::*;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Mailbox capacity of the registry.
pub const REGISTRY_MAILBOX: usize = 4096;

/// The map from site path to writer.
pub struct WriterRegistry {
    writers: HashMap<SitePath, Addr<LogWriter>>,
    arbiters: Vec<ArbiterHandle>,
    shared: Option<Arc<WriterShared>>,
    settings: Settings,
}

struct Settings {
    flush_dir: PathBuf,
    trigger: Tracked<QueueTrigger, TriggerStats>,
    budget: Arc<OpenFileBudget>,
    max_idle: Duration,
    stats: Arc<WriterStats>,
}

impl WriterRegistry {
    /// A registry whose writers run on `arbiters` (at least one).
    pub fn new(
        flush_dir: PathBuf,
        arbiters: Vec<ArbiterHandle>,
        trigger: Tracked<QueueTrigger, TriggerStats>,
        budget: Arc<OpenFileBudget>,
        max_idle: Duration,
        stats: Arc<WriterStats>,
    ) -> WriterRegistry {
        WriterRegistry {
            writers: HashMap::new(),
            arbiters,
            shared: None,
            settings: Settings {
                flush_dir,
                trigger,
                budget,
                max_idle,
                stats,
            },
        }
    }

    fn stats(&self) -> &WriterStats {
        &self.settings.stats
    }

    /// The writer of `site`, started if there is none.
    fn writer_for(&mut self, site: &SitePath) -> Option<Addr<LogWriter>> {
        if let Some(writer) = self.writers.get(site) {
            return Some(writer.clone());
        }
        let shared = Arc::clone(self.shared.as_ref()?);
        let mut hasher = DefaultHasher::new();
        site.hash(&mut hasher);
        let arbiter = self
            .arbiters
            .get(hasher.finish() as usize % self.arbiters.len().max(1))?;
        let owned = site.clone();
        let writer = LogWriter::start_in_arbiter(arbiter, move |_| LogWriter::new(owned, shared));
        self.stats().writers_started.incr();
        self.writers.insert(site.clone(), writer.clone());
        Some(writer)
    }
}

impl Actor for WriterRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
        let s = &self.settings;
        self.shared = Some(Arc::new(WriterShared {
            flush_dir: s.flush_dir.clone(),
            trigger: s.trigger.clone(),
            budget: Arc::clone(&s.budget),
            max_idle: s.max_idle,
            stats: Arc::clone(&s.stats),
            idle: ctx.address().recipient(),
        }));
    }
}

/// Sends `msg` to a writer: `Ok(None)` when the writer had already stopped
/// and the message was not handled, so it must be routed again.
async fn try_writer<M, T>(
    stats: &WriterStats,
    writer: Option<Addr<LogWriter>>,
    msg: M,
) -> Result<Option<T>, ActorError>
where
    M: Message<Result = Result<T, ActorError>> + Send + 'static,
    T: Send + 'static,
    LogWriter: Handler<M>,
{
    let Some(writer) = writer else {
        return Err(ActorError::Worker("no writer arbiter"));
    };
    stats.mailbox.queued();
    match writer.send(msg).await {
        Ok(result) => result.map(Some),
        Err(MailboxError::Closed) => {
            stats.mailbox.dropped();
            Ok(None)
        }
        Err(e) => {
            stats.mailbox.dropped();
            Err(e.into())
        }
    }
}

impl Handler<AppendFor> for WriterRegistry {
    type Result = ResponseFuture<Result<(), ActorError>>;

    fn handle(&mut self, msg: AppendFor, ctx: &mut Context<Self>) -> Self::Result {
        self.stats().registry.handled();
        let writer = self.writer_for(&msg.site);
        let stats = Arc::clone(&self.settings.stats);
        let registry = ctx.address();
        Box::pin(async move {
            let append = AppendRecord {
                queue_id: msg.queue_id.clone(),
            };
            match try_writer(&stats, writer, append).await? {
                Some(()) => Ok(()),
                None => reroute(&registry, &stats, msg.retry()?).await,
            }
        })
    }
}

impl Handler<DeliverFor> for WriterRegistry {
    type Result = ResponseFuture<Result<MoveReport, ActorError>>;

    fn handle(&mut self, msg: DeliverFor, ctx: &mut Context<Self>) -> Self::Result {
        self.stats().registry.handled();
        let writer = self.writer_for(&msg.site);
        let stats = Arc::clone(&self.settings.stats);
        let registry = ctx.address();
        Box::pin(async move {
            match try_writer(&stats, writer, DeliverLog { how: msg.how }).await? {
                Some(report) => Ok(report),
                None => reroute(&registry, &stats, msg.retry()?).await,
            }
        })
    }
}

/// Routes a message through the registry again (its writer had stopped).
async fn reroute<M, T>(
    registry: &Addr<WriterRegistry>,
    stats: &WriterStats,
    msg: M,
) -> Result<T, ActorError>
where
    M: Message<Result = Result<T, ActorError>> + Send + 'static,
    T: Send + 'static,
    WriterRegistry: Handler<M>,
{
    stats.registry.queued();
    match registry.send(msg).await {
        Ok(result) => result,
        Err(e) => {
            stats.registry.dropped();
            Err(e.into())
        }
    }
}

impl Handler<WriterIdle> for WriterRegistry {
    type Result = ();

    fn handle(&mut self, msg: WriterIdle, _: &mut Context<Self>) {
        // Only the writer that is still registered for the site is retired:
        // a newer one may have taken its place.
        if self.writers.get(&msg.site) == Some(&msg.writer) {
            self.writers.remove(&msg.site);
            msg.writer.do_send(Retire);
        }
    }
}

impl Handler<CloseAll> for WriterRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> Self::Result {
        let writers: Vec<Addr<LogWriter>> = self.writers.drain().map(|(_, w)| w).collect();
        Box::pin(async move {
            for writer in writers {
                let _ = writer.send(CloseLog).await;
            }
        })
    }
}
