//! `WriterRegistry`: routes each destination's messages to its one `LogWriter`.
//!
//! It starts writers on demand, spread over the writer arbiters by a hash of
//! the site (so one site's appends stay ordered on one thread), and retires
//! writers that nothing was routed to for `max_idle`: every message passes
//! through here, so one timer and one map replace a timer per writer. It
//! also keeps at most `max_writers` alive: past that, the least recently
//! used quarter retires early, so that a burst of new sites costs a bounded
//! amount of memory. A message that reaches a writer just as it stops comes
//! back as `MailboxError::Closed` without having been handled; the registry
//! then routes it again, to a new writer.

use super::log_writer::LogWriter;
use super::messages::{
    AppendBatch, AppendFor, AppendRecords, CloseAll, CloseLog, DeliverFor, DeliverLog, Retire,
};
use super::{OpenFileBudget, WriterShared, WriterStats};
use crate::domains::SitePath;
use crate::stats::Tracked;
use crate::trigger::{MoveReport, QueueTrigger, TriggerStats};
use crate::ActorError;
use actix::prelude::*;
use futures_util::future::join_all;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Mailbox capacity of the registry.
pub const REGISTRY_MAILBOX: usize = 4096;

/// The map from site path to writer.
pub struct WriterRegistry {
    writers: HashMap<SitePath, Route>,
    arbiters: Vec<ArbiterHandle>,
    shared: Option<Arc<WriterShared>>,
    settings: Settings,
}

/// A live writer and when a message was last routed to it.
struct Route {
    writer: Addr<LogWriter>,
    last_used: Instant,
}

struct Settings {
    flush_dir: PathBuf,
    trigger: Tracked<QueueTrigger, TriggerStats>,
    budget: Arc<OpenFileBudget>,
    max_idle: Duration,
    max_writers: usize,
    stats: Arc<WriterStats>,
}

/// Where writers live and how long: the registry's bounds.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// A writer nothing was routed to for this long retires.
    pub max_idle: Duration,
    /// Writers alive at once, at most.
    pub max_writers: usize,
}

impl WriterRegistry {
    /// A registry whose writers run on `arbiters` (at least one).
    pub fn new(
        flush_dir: PathBuf,
        arbiters: Vec<ArbiterHandle>,
        trigger: Tracked<QueueTrigger, TriggerStats>,
        budget: Arc<OpenFileBudget>,
        limits: WriterLimits,
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
                max_idle: limits.max_idle,
                max_writers: limits.max_writers.max(1),
                stats,
            },
        }
    }

    fn stats(&self) -> &WriterStats {
        &self.settings.stats
    }

    /// The writer of `site`, started if there is none. `began` is when the
    /// message being routed arrived: writers it already used are not retired
    /// to make room for the new one.
    fn writer_for(&mut self, site: &SitePath, began: Instant) -> Option<Addr<LogWriter>> {
        if let Some(route) = self.writers.get_mut(site) {
            route.last_used = Instant::now();
            return Some(route.writer.clone());
        }
        self.make_room(began);
        let shared = Arc::clone(self.shared.as_ref()?);
        let mut hasher = DefaultHasher::new();
        site.hash(&mut hasher);
        let arbiter = self
            .arbiters
            .get(hasher.finish() as usize % self.arbiters.len().max(1))?;
        let owned = site.clone();
        let writer = LogWriter::start_in_arbiter(arbiter, move |_| LogWriter::new(owned, shared));
        self.stats().writers_started.incr();
        let route = Route {
            writer: writer.clone(),
            last_used: Instant::now(),
        };
        self.writers.insert(site.clone(), route);
        Some(writer)
    }

    /// Retires the writers nothing was routed to for `max_idle`. A retired
    /// writer finishes what it has, closes its log and stops; later work for
    /// its site starts a new writer.
    fn retire_idle(&mut self) {
        let max_idle = self.settings.max_idle;
        self.retire_where(|route| route.last_used.elapsed() >= max_idle);
    }

    /// At `max_writers`, retires the least recently used quarter of the
    /// writers (at least one): one pass over the map per quarter of new
    /// sites keeps that cheap. Writers used since `began` stay, so one
    /// batch never retires its own writers (the bound may then be exceeded
    /// by the sites of one batch).
    fn make_room(&mut self, began: Instant) {
        if self.writers.len() < self.settings.max_writers {
            return;
        }
        let mut last_used: Vec<Instant> = self.writers.values().map(|r| r.last_used).collect();
        let nth = last_used.len() / 4;
        let (_, &mut cutoff, _) = last_used.select_nth_unstable(nth);
        let before = self.writers.len();
        self.retire_where(|route| route.last_used <= cutoff && route.last_used < began);
        let evicted = before - self.writers.len();
        if evicted > 0 {
            self.stats().writers_evicted.add(evicted as u64);
            log::debug!("writers: {evicted} least recently used retired early (max_writers)");
        }
    }

    fn retire_where(&mut self, retire: impl Fn(&Route) -> bool) {
        self.writers.retain(|_, route| {
            let go = retire(route);
            if go {
                route.writer.do_send(Retire);
            }
            !go
        });
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
            stats: Arc::clone(&s.stats),
        }));
        let period = (s.max_idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
        ctx.run_interval(period, |act, _| act.retire_idle());
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
        let batch = self.append_batch(AppendBatch::new(vec![(msg.site, msg.queue_id)]), ctx);
        Box::pin(async move {
            batch
                .await
                .pop()
                .unwrap_or(Err(ActorError::Worker("empty batch")))
        })
    }
}

impl Handler<AppendBatch> for WriterRegistry {
    type Result = ResponseFuture<Vec<Result<(), ActorError>>>;

    fn handle(&mut self, msg: AppendBatch, ctx: &mut Context<Self>) -> Self::Result {
        self.append_batch(msg, ctx)
    }
}

impl WriterRegistry {
    /// Groups a batch by site, sends each writer one message with its IDs, and
    /// answers every entry in order; a group whose writer stopped under it is
    /// routed again.
    fn append_batch(
        &mut self,
        msg: AppendBatch,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Vec<Result<(), ActorError>>> {
        self.stats().registry.handled();
        let began = Instant::now();
        let total = msg.entries.len();
        let mut index: HashMap<SitePath, usize> = HashMap::new();
        let mut groups: Vec<(SitePath, Vec<usize>, Vec<String>)> = Vec::new();
        for (position, (site, id)) in msg.entries.iter().cloned().enumerate() {
            let slot = *index.entry(site.clone()).or_insert_with(|| {
                groups.push((site, Vec::new(), Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(position);
            groups[slot].2.push(id);
        }
        let sends: Vec<_> = groups
            .into_iter()
            .map(|(site, positions, ids)| {
                let writer = self.writer_for(&site, began);
                (site, positions, ids, writer)
            })
            .collect();
        let stats = Arc::clone(&self.settings.stats);
        let registry = ctx.address();
        Box::pin(async move {
            let groups = sends.into_iter().map(|(site, positions, ids, writer)| {
                let (stats, registry, msg) = (Arc::clone(&stats), registry.clone(), &msg);
                async move {
                    let append = AppendRecords {
                        queue_ids: ids.clone(),
                    };
                    let outcome = match try_writer(&stats, writer, append).await {
                        Ok(Some(())) => vec![Ok(()); ids.len()],
                        Ok(None) => {
                            let entries = ids.into_iter().map(|id| (site.clone(), id)).collect();
                            match msg.clone().again(entries) {
                                Ok(again) => match reroute(&registry, &stats, again).await {
                                    Ok(results) => results,
                                    Err(e) => vec![Err(e); positions.len()],
                                },
                                Err(e) => vec![Err(e); positions.len()],
                            }
                        }
                        Err(e) => vec![Err(e); positions.len()],
                    };
                    (positions, outcome)
                }
            });
            let mut results: Vec<Result<(), ActorError>> =
                vec![Err(ActorError::Worker("no writer answered")); total];
            for (positions, outcome) in join_all(groups).await {
                for (position, result) in positions.into_iter().zip(outcome) {
                    results[position] = result;
                }
            }
            results
        })
    }
}

impl Handler<DeliverFor> for WriterRegistry {
    type Result = ResponseFuture<Result<MoveReport, ActorError>>;

    fn handle(&mut self, msg: DeliverFor, ctx: &mut Context<Self>) -> Self::Result {
        self.stats().registry.handled();
        let writer = self.writer_for(&msg.site, Instant::now());
        let stats = Arc::clone(&self.settings.stats);
        let registry = ctx.address();
        Box::pin(async move {
            match try_writer(&stats, writer, DeliverLog { how: msg.how }).await? {
                Some(report) => Ok(report),
                None => reroute(&registry, &stats, msg.retry()?).await?,
            }
        })
    }
}

/// Routes a message through the registry again (its writer had stopped).
async fn reroute<M>(
    registry: &Addr<WriterRegistry>,
    stats: &WriterStats,
    msg: M,
) -> Result<M::Result, ActorError>
where
    M: Message + Send + 'static,
    M::Result: Send,
    WriterRegistry: Handler<M>,
{
    stats.registry.queued();
    registry.send(msg).await.map_err(|e| {
        stats.registry.dropped();
        ActorError::from(e)
    })
}

impl Handler<CloseAll> for WriterRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> Self::Result {
        let writers: Vec<Addr<LogWriter>> = self.writers.drain().map(|(_, r)| r.writer).collect();
        Box::pin(async move {
            for writer in writers {
                let _ = writer.send(CloseLog).await;
            }
        })
    }
}
