//! `WriterRegistry`: routes each destination's messages to its one `LogWriter`.
//!
//! It starts writers on demand, spread over the writer arbiters by a hash of
//! the site (so one site's appends stay ordered on one thread), and retires
//! writers that nothing was routed to for `max_idle`: every message passes
//! through here, so one timer and one map replace a timer per writer. It
//! also keeps at most `max_writers` alive: past that, the least recently
//! used quarter retires early, so that a burst of new sites costs a bounded
//! amount of memory. A writer with a delivery in flight is never retired:
//! it holds its log's lock until the delivery ends, and a second writer of
//! that log would only find it locked and keep trying. A message that
//! reaches a writer just as it stops is dropped unhandled (a closed mailbox,
//! or an append's reply dropped unanswered); the registry then routes it
//! again, to a new writer.
//!
//! Work for the writers leaves here in one message per writer arbiter, not
//! one per writer: waking another thread is a system call, and a batch of
//! appends spans as many writers as it has sites. A future spawned on the
//! arbiter starts the writers that are new and hands each its part; the
//! writers' answers gather in one [`ShareAnswers`] and come back together
//! once the last is in.

use super::log_writer::{LogWriter, WRITER_MAILBOX};
use super::messages::{
    AppendBatch, AppendFor, AppendRecords, CloseAll, CloseLog, DeliverFor, DeliverLog, Retire,
    ShareAnswers, ShareOutcome,
};
use super::{OpenFileBudget, WriterShared, WriterStats};
use crate::domains::SitePath;
use crate::stats::Tracked;
use crate::trigger::{MoveReport, QueueTrigger, TriggerStats};
use crate::ActorError;
use actix::dev::channel::{channel, AddressReceiver};
use actix::prelude::*;
use foldhash::fast::FixedState;
use foldhash::{HashMap, HashMapExt};
use futures_util::future::join_all;
use smallvec::SmallVec;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Mailbox capacity of the registry.
pub const REGISTRY_MAILBOX: usize = 4096;

/// The map from site path to writer.
pub struct WriterRegistry {
    writers: HashMap<SitePath, Route>,
    arbiters: Vec<ArbiterHandle>,
    shared: Option<Arc<WriterShared>>,
    settings: Settings,
}

/// A writer's address, shared: cloning an `Addr` allocates (actix gives
/// every sender its own parking state), an `Arc` clone does not.
type WriterAddr = Arc<Addr<LogWriter>>;

/// A live writer, the arbiter it runs on, when a message was last routed
/// to it and how many deliveries routed to it are not answered yet.
struct Route {
    writer: WriterAddr,
    arbiter: usize,
    last_used: Instant,
    deliveries: usize,
}

/// Where a message goes: the writer, its arbiter, and the writer itself if
/// it is new and still has to be started there.
struct Routed {
    writer: WriterAddr,
    arbiter: usize,
    unstarted: Option<Unstarted>,
}

impl Routed {
    /// Starts the writer if it is new (on the current arbiter: call this
    /// there); its address.
    fn start(self) -> WriterAddr {
        if let Some(unstarted) = self.unstarted {
            unstarted.start();
        }
        self.writer
    }
}

/// A writer whose address exists but which does not run yet. It is started
/// on its arbiter by the first work sent there, so that starting it costs no
/// wake-up of that thread of its own; messages wait in its mailbox meanwhile.
struct Unstarted {
    mailbox: AddressReceiver<LogWriter>,
    writer: LogWriter,
}

impl Unstarted {
    /// Runs the writer on the current arbiter.
    fn start(self) {
        Context::with_receiver(self.mailbox).run(self.writer);
    }
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

    /// The writer of `site`, created if there is none (or it stopped on its
    /// own). `began` is when the message being routed arrived: writers it
    /// already used are not retired to make room for the new one.
    fn writer_for(&mut self, site: &SitePath, began: Instant) -> Option<Routed> {
        if let Some(route) = self.writers.get_mut(site) {
            if route.writer.connected() {
                route.last_used = Instant::now();
                return Some(Routed {
                    writer: Arc::clone(&route.writer),
                    arbiter: route.arbiter,
                    unstarted: None,
                });
            }
        }
        self.make_room(began);
        let shared = Arc::clone(self.shared.as_ref()?);
        if self.arbiters.is_empty() {
            return None;
        }
        // A fixed seed: all of one site's work goes to one thread, in order.
        let arbiter = FixedState::default().hash_one(site) as usize % self.arbiters.len();
        let (sender, mailbox) = channel(WRITER_MAILBOX);
        let writer = Arc::new(Addr::new(sender));
        self.stats().writers_started.incr();
        let route = Route {
            writer: Arc::clone(&writer),
            arbiter,
            last_used: Instant::now(),
            deliveries: 0,
        };
        self.writers.insert(site.clone(), route);
        Some(Routed {
            writer,
            arbiter,
            unstarted: Some(Unstarted {
                mailbox,
                writer: LogWriter::new(site.clone(), shared),
            }),
        })
    }

    /// Hands each group of appends to its writer from the writers' arbiter
    /// (see the module doc). An answer per group, in order; `Ok(None)` for a
    /// writer that had stopped.
    fn append_on_arbiter(
        &self,
        arbiter: usize,
        work: Vec<(Routed, Arc<[String]>)>,
    ) -> impl Future<Output = Vec<Result<Option<()>, ActorError>>> {
        let count = work.len();
        let stats = Arc::clone(&self.settings.stats);
        let (answers, all_answered) = ShareAnswers::new(count);
        let senders_stats = Arc::clone(&stats);
        self.on_arbiter(arbiter, async move {
            let work = work.into_iter().map(|(routed, ids)| (routed.start(), ids));
            hand_out_appends(work, &answers, &senders_stats);
        });
        gather_answers(all_answered, count, stats)
    }

    /// Sends a delivery to its writer from the writers' arbiter; `Ok(None)`
    /// if the writer had stopped.
    fn deliver_on_arbiter(
        &self,
        arbiter: usize,
        routed: Routed,
        msg: DeliverLog,
    ) -> impl Future<Output = Result<Option<MoveReport>, ActorError>> {
        let stats = Arc::clone(&self.settings.stats);
        let (tx, rx) = oneshot::channel();
        self.on_arbiter(arbiter, async move {
            let writer = routed.start();
            stats.mailbox.queued();
            let answer = match writer.send(msg).await {
                Ok(result) => result.map(Some),
                Err(MailboxError::Closed) => {
                    stats.mailbox.dropped();
                    Ok(None)
                }
                Err(e) => {
                    stats.mailbox.dropped();
                    Err(e.into())
                }
            };
            let _ = tx.send(answer);
        });
        async move { rx.await.unwrap_or_else(|_| Err(arbiter_stopped())) }
    }

    /// Runs `task` on writer arbiter `arbiter`; if that arbiter is gone, the
    /// task is dropped, and with it the channels its caller waits on.
    fn on_arbiter(&self, arbiter: usize, task: impl Future<Output = ()> + Send + 'static) {
        let spawned = self
            .arbiters
            .get(arbiter)
            .is_some_and(|handle| handle.spawn(task));
        if !spawned {
            log::warn!("writer arbiter {arbiter} is gone");
        }
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

    /// Takes the writers `retire` picks out of the map and tells them to
    /// retire, with one message per arbiter; never one with a delivery in
    /// flight (see the module doc).
    fn retire_where(&mut self, retire: impl Fn(&Route) -> bool) {
        let mut by_arbiter: Vec<Vec<WriterAddr>> = vec![Vec::new(); self.arbiters.len()];
        self.writers.retain(|_, route| {
            let go = route.deliveries == 0 && retire(route);
            if let Some(retiring) = by_arbiter.get_mut(route.arbiter).filter(|_| go) {
                retiring.push(Arc::clone(&route.writer));
            }
            !go
        });
        for (handle, writers) in self.arbiters.iter().zip(by_arbiter) {
            if !writers.is_empty() {
                handle.spawn(async move {
                    for writer in writers {
                        writer.do_send(Retire);
                    }
                });
            }
        }
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

fn arbiter_stopped() -> ActorError {
    ActorError::Worker("writer arbiter stopped")
}

/// Sends each writer its group of queue IDs, answered through `answers`
/// (the i-th group in slot i). Each group travels with its reply: an actix
/// request would add a reply channel, a boxed future and a spawned task per
/// message, and appends are the messages there are most of.
///
/// A full mailbox does not hold a group back: actix's `send` would queue it
/// past the capacity too, once polled. What bounds a writer's queue is the
/// requests in flight (connections times `MAX_INFLIGHT`), each waiting for
/// its reply.
fn hand_out_appends(
    work: impl Iterator<Item = (WriterAddr, Arc<[String]>)>,
    answers: &Arc<ShareAnswers>,
    stats: &WriterStats,
) {
    for (slot, (writer, queue_ids)) in work.enumerate() {
        stats.mailbox.queued();
        let msg = AppendRecords {
            queue_ids,
            reply: answers.reply(slot),
        };
        // A stopped writer drops it, and its reply with it: routed again.
        writer.do_send(msg);
    }
}

/// The answers of a share once all are in. A writer answers everything it
/// took before it stops, so a reply dropped unanswered (`None`) means the
/// work was not done: `Ok(None)`, to be routed again.
async fn gather_answers(
    all_answered: oneshot::Receiver<ShareOutcome>,
    count: usize,
    stats: Arc<WriterStats>,
) -> Vec<Result<Option<()>, ActorError>> {
    match all_answered.await {
        Ok(outcome) => outcome
            .into_iter()
            .map(|answer| match answer {
                Some(result) => result.map(Some),
                None => {
                    stats.mailbox.dropped();
                    Ok(None)
                }
            })
            .collect(),
        Err(_) => std::iter::repeat_with(|| Err(arbiter_stopped()))
            .take(count)
            .collect(),
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
    /// Groups a batch by site, sends each writer one message with its IDs
    /// (one message per arbiter), and answers every entry in order; a group
    /// whose writer stopped under it is routed again.
    fn append_batch(
        &mut self,
        mut msg: AppendBatch,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Vec<Result<(), ActorError>>> {
        self.stats().registry.handled();
        let began = Instant::now();
        let total = msg.entries.len();
        let groups = SiteGroup::of(std::mem::take(&mut msg.entries));
        let mut results: Vec<Result<(), ActorError>> =
            vec![Err(ActorError::Worker("no writer answered")); total];
        let mut by_arbiter: Vec<ArbiterShare> = (0..self.arbiters.len())
            .map(|_| ArbiterShare::with_capacity(groups.len()))
            .collect();
        for group in groups {
            let routed = self.writer_for(&group.site, began);
            match routed.and_then(|r| Some((by_arbiter.get_mut(r.arbiter)?, r))) {
                Some((share, routed)) => {
                    share.work.push((routed, Arc::clone(&group.ids)));
                    share.groups.push(group);
                }
                None => {
                    for position in group.positions {
                        results[position] = Err(ActorError::Worker("no writer arbiter"));
                    }
                }
            }
        }
        let sends: Vec<_> = by_arbiter
            .into_iter()
            .enumerate()
            .filter(|(_, share)| !share.groups.is_empty())
            .map(|(arbiter, share)| (share.groups, self.append_on_arbiter(arbiter, share.work)))
            .collect();
        let stats = Arc::clone(&self.settings.stats);
        let registry = ctx.address();
        Box::pin(async move {
            let answered = join_all(sends.into_iter().map(|(groups, send)| async move {
                groups.into_iter().zip(send.await).collect::<Vec<_>>()
            }))
            .await;
            let mut again = Vec::new();
            for (group, outcome) in answered.into_iter().flatten() {
                match outcome {
                    Ok(Some(())) => {
                        for position in group.positions {
                            results[position] = Ok(());
                        }
                    }
                    Ok(None) => again.push(group),
                    Err(e) => {
                        for position in group.positions {
                            results[position] = Err(e.clone());
                        }
                    }
                }
            }
            if !again.is_empty() {
                let positions: Vec<usize> =
                    again.iter().flat_map(|g| g.positions.clone()).collect();
                let outcome = match msg.again(SiteGroup::entries(&again)) {
                    Ok(retry) => reroute(&registry, &stats, retry)
                        .await
                        .unwrap_or_else(|e| vec![Err(e); positions.len()]),
                    Err(e) => vec![Err(e); positions.len()],
                };
                for (position, result) in positions.into_iter().zip(outcome) {
                    results[position] = result;
                }
            }
            results
        })
    }
}

/// The part of a batch for the writers of one arbiter: the site groups and,
/// in the same order, the message for each group's writer.
struct ArbiterShare {
    groups: Vec<SiteGroup>,
    work: Vec<(Routed, Arc<[String]>)>,
}

impl ArbiterShare {
    /// Room for `groups` groups: sized once, not grown (and copied) per push.
    fn with_capacity(groups: usize) -> ArbiterShare {
        ArbiterShare {
            groups: Vec::with_capacity(groups),
            work: Vec::with_capacity(groups),
        }
    }
}

/// Where a group's entries stand in their batch. Most groups hold one
/// entry: kept inline, not allocated.
type Positions = SmallVec<[usize; 2]>;

/// The entries of a batch that go to one site: where they stand in the batch
/// and their queue IDs.
struct SiteGroup {
    site: SitePath,
    positions: Positions,
    ids: Arc<[String]>,
}

impl SiteGroup {
    /// Groups a batch's entries by site, in the order sites first appear.
    ///
    /// Two passes, so that the index borrows the sites instead of cloning
    /// each one, and a one-entry group (the usual case with many sites)
    /// costs one allocation: its `Arc` of IDs.
    fn of(entries: Vec<(SitePath, String)>) -> Vec<SiteGroup> {
        // Each entry's group, numbered as its site first appears.
        let mut group_of = Vec::with_capacity(entries.len());
        {
            let mut index: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
            for (site, _) in &entries {
                let next = index.len();
                group_of.push(*index.entry(site.as_str()).or_insert(next));
            }
        }
        // A group's first entry brings its site and starts it.
        let mut parts: Vec<(SitePath, Positions, SmallVec<[String; 1]>)> = Vec::new();
        for (position, ((site, id), group)) in entries.into_iter().zip(group_of).enumerate() {
            if group == parts.len() {
                parts.push((site, Positions::new(), SmallVec::new()));
            }
            let (_, positions, ids) = &mut parts[group];
            positions.push(position);
            ids.push(id);
        }
        parts
            .into_iter()
            .map(|(site, positions, ids)| SiteGroup {
                site,
                positions,
                ids: match ids.into_inner() {
                    Ok(one) => Arc::new(one),
                    Err(more) => more.into_vec().into(),
                },
            })
            .collect()
    }

    /// The groups as batch entries again, group after group (a copy of the
    /// IDs: only a batch whose writers stopped under it comes this way).
    fn entries(groups: &[SiteGroup]) -> Vec<(SitePath, String)> {
        groups
            .iter()
            .flat_map(|g| g.ids.iter().map(|id| (g.site.clone(), id.clone())))
            .collect()
    }
}

impl WriterRegistry {
    /// Counts a delivery routed to `site`'s writer, which keeps it from
    /// retiring until [`Self::delivery_answered`].
    fn delivery_routed(&mut self, site: &SitePath) {
        if let Some(route) = self.writers.get_mut(site) {
            route.deliveries += 1;
        }
    }

    /// Uncounts a delivery `writer` answered (or dropped), if `writer` is
    /// still `site`'s.
    fn delivery_answered(&mut self, site: &SitePath, writer: &WriterAddr) {
        if let Some(route) = self.writers.get_mut(site) {
            if Arc::ptr_eq(&route.writer, writer) {
                route.deliveries = route.deliveries.saturating_sub(1);
                route.last_used = Instant::now();
            }
        }
    }
}

impl Handler<DeliverFor> for WriterRegistry {
    // A plain future, not one of the registry's own: an actor polls all of
    // its futures whenever any of them wakes, and a sweep keeps dozens of
    // deliveries waiting here at once.
    type Result = ResponseFuture<Result<MoveReport, ActorError>>;

    fn handle(&mut self, msg: DeliverFor, ctx: &mut Context<Self>) -> Self::Result {
        self.stats().registry.handled();
        let Some(routed) = self.writer_for(&msg.site, Instant::now()) else {
            return Box::pin(async { Err(ActorError::Worker("no writer arbiter")) });
        };
        let arbiter = routed.arbiter;
        let writer = Arc::clone(&routed.writer);
        self.delivery_routed(&msg.site);
        let send = self.deliver_on_arbiter(arbiter, routed, DeliverLog { how: msg.how });
        let stats = Arc::clone(&self.settings.stats);
        let registry = ctx.address();
        Box::pin(async move {
            let answer = send.await;
            registry.do_send(DeliveryAnswered {
                site: msg.site.clone(),
                writer,
            });
            match answer? {
                Some(report) => Ok(report),
                None => reroute(&registry, &stats, msg.retry()?).await?,
            }
        })
    }
}

/// A delivery routed to `writer` was answered (or dropped): the registry's
/// own note, so that the writer may retire again.
struct DeliveryAnswered {
    site: SitePath,
    writer: WriterAddr,
}

impl Message for DeliveryAnswered {
    type Result = ();
}

impl Handler<DeliveryAnswered> for WriterRegistry {
    type Result = ();

    fn handle(&mut self, msg: DeliveryAnswered, _: &mut Context<Self>) {
        self.delivery_answered(&msg.site, &msg.writer);
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
        let writers: Vec<WriterAddr> = self.writers.drain().map(|(_, r)| r.writer).collect();
        // All at once: a writer still waiting for a log locked elsewhere
        // holds up only itself.
        Box::pin(async move {
            join_all(writers.iter().map(|writer| writer.send(CloseLog))).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str) -> SitePath {
        SitePath::from_file_name(name).expect("a valid site path")
    }

    fn ids(ids: &[&str]) -> Arc<[String]> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    /// Hands `groups` to `writer` as one share and waits for the answers.
    fn share_for(
        writer: WriterAddr,
        groups: &[&[&str]],
        stats: &Arc<WriterStats>,
    ) -> impl Future<Output = Vec<Result<Option<()>, ActorError>>> {
        let (answers, all_answered) = ShareAnswers::new(groups.len());
        let work = groups.iter().map(|group| (Arc::clone(&writer), ids(group)));
        hand_out_appends(work, &answers, stats);
        gather_answers(all_answered, groups.len(), Arc::clone(stats))
    }

    #[actix::test]
    async fn appends_to_a_closed_mailbox_come_back_to_be_routed_again() {
        let stats = Arc::new(WriterStats::default());
        let (sender, mailbox) = channel::<LogWriter>(WRITER_MAILBOX);
        drop(mailbox);
        let outcome = share_for(Arc::new(Addr::new(sender)), &[&["A1"]], &stats).await;
        assert!(matches!(outcome[..], [Ok(None)]), "{outcome:?}");
        assert_eq!(stats.mailbox.error_count(), 1);
    }

    #[actix::test]
    async fn appends_dropped_unhandled_with_their_writer_come_back_too() {
        let stats = Arc::new(WriterStats::default());
        let (sender, mailbox) = channel::<LogWriter>(WRITER_MAILBOX);
        let writer = Arc::new(Addr::new(sender));
        let mut share = Box::pin(share_for(writer, &[&["A1", "A2"], &["A3"]], &stats));
        // Queued, waiting for answers; then the writer goes away unhandled.
        assert!(futures_util::poll!(&mut share).is_pending());
        drop(mailbox);
        let outcome = share.await;
        assert!(matches!(outcome[..], [Ok(None), Ok(None)]), "{outcome:?}");
        assert_eq!(stats.mailbox.error_count(), 2);
        assert_eq!(stats.mailbox.handled_count(), 0);
    }

    #[test]
    fn a_batch_groups_by_site_in_first_seen_order_and_comes_back_whole() {
        let entries = vec![
            (site("b_example"), "ID1".to_string()),
            (site("a_example"), "ID2".to_string()),
            (site("b_example"), "ID3".to_string()),
        ];
        let groups = SiteGroup::of(entries.clone());
        let shape: Vec<(&str, &[usize], &[String])> = groups
            .iter()
            .map(|g| (g.site.as_ref(), g.positions.as_slice(), &g.ids[..]))
            .collect();
        assert_eq!(
            shape,
            [
                (
                    "b_example",
                    &[0, 2][..],
                    &["ID1".to_string(), "ID3".to_string()][..]
                ),
                ("a_example", &[1][..], &["ID2".to_string()][..]),
            ]
        );
        let mut back = SiteGroup::entries(&groups);
        back.sort();
        let mut expected = entries;
        expected.sort();
        assert_eq!(back, expected);
    }
}
