//! `AddBatcher`: the adds (and send_sites) that arrive together, carried out
//! together.
//!
//! Every `add` needs a verdict from the matcher and an append by a writer.
//! Sent one by one, those hops cost more than the work. Each gateway thread
//! has its own batcher, and the connections it serves run on that thread, so
//! the requests they decode in one turn of the thread are collected here and
//! sent as one `MatchSites` and one `AppendBatch` when the turn ends (a local
//! task that runs once the connections yield). Each request still gets its
//! own reply, and an add only once its ID is in the file.
//!
//! `send_site` travels the same way, so that a client that pipelines
//! `add S X` then `send_site S` gets X delivered: a batch's deliveries start
//! only after its appends are written, and batches reach the actors in the
//! order they were formed.

use crate::domains::{SitePath, Verdict};
use crate::matcher::{DomainMatcher, MatchSites, MatcherStats};
use crate::stats::Tracked;
use crate::writer::{AppendBatch, DeliverFor, DeliverHow, WriterRegistry, WriterStats};
use flush_proto::{Reply, Status};
use futures_util::future::join_all;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tokio::sync::oneshot;

/// Largest batch sent as one message; a longer burst is cut into several.
pub const MAX_BATCH: usize = 4096;

/// What a queued request asks for.
enum Op {
    Add(String),
    SendSite,
}

/// Where a request's reply goes.
type Replier = oneshot::Sender<Reply>;

struct Pending {
    site: String,
    op: Op,
    reply: Replier,
}

/// Collects adds and send_sites for one turn of the gateway's thread.
pub struct AddBatcher {
    matcher: Tracked<DomainMatcher, MatcherStats>,
    registry: Tracked<WriterRegistry, WriterStats>,
    /// Batches that reached [`MAX_BATCH`] this turn, oldest first.
    full: RefCell<Vec<Vec<Pending>>>,
    /// The batch being collected.
    pending: RefCell<Vec<Pending>>,
    scheduled: Cell<bool>,
}

impl AddBatcher {
    /// A batcher that asks `matcher` and appends through `registry`.
    pub fn new(
        matcher: Tracked<DomainMatcher, MatcherStats>,
        registry: Tracked<WriterRegistry, WriterStats>,
    ) -> Rc<AddBatcher> {
        Rc::new(AddBatcher {
            matcher,
            registry,
            full: RefCell::new(Vec::new()),
            pending: RefCell::new(Vec::new()),
            scheduled: Cell::new(false),
        })
    }

    /// Queues one add; the reply comes when its batch is done.
    pub async fn add(self: &Rc<Self>, site: String, queue_id: String) -> Reply {
        self.queue(site, Op::Add(queue_id)).await
    }

    /// Queues one send_site; it runs after the appends of its batch.
    pub async fn send_site(self: &Rc<Self>, site: String) -> Reply {
        self.queue(site, Op::SendSite).await
    }

    async fn queue(self: &Rc<Self>, site: String, op: Op) -> Reply {
        let (reply, rx) = oneshot::channel();
        {
            let mut pending = self.pending.borrow_mut();
            pending.push(Pending { site, op, reply });
            if pending.len() >= MAX_BATCH {
                self.full.borrow_mut().push(std::mem::take(&mut *pending));
            }
        }
        if !self.scheduled.replace(true) {
            let me = Rc::clone(self);
            actix_rt::spawn(async move {
                me.scheduled.set(false);
                me.run_turn().await;
            });
        }
        rx.await
            .unwrap_or_else(|_| Reply::new(Status::Fail, "server shutting down"))
    }

    /// Carries out the turn's batches. Several (a burst longer than
    /// [`MAX_BATCH`]) run side by side, polled in the order they were
    /// formed, so that their messages reach the actors in that order.
    async fn run_turn(self: Rc<Self>) {
        let full = self.full.take();
        let last = self.pending.take();
        if full.is_empty() {
            self.run(last).await;
        } else {
            let batches = full.into_iter().chain(std::iter::once(last));
            join_all(batches.map(|b| Rc::clone(&self).run(b))).await;
        }
    }

    /// Carries out one batch and answers each of its requests.
    async fn run(self: Rc<Self>, batch: Vec<Pending>) {
        if batch.is_empty() {
            return;
        }
        let (sites, waiting): (Vec<String>, Vec<(Op, Replier)>) =
            batch.into_iter().map(|p| (p.site, (p.op, p.reply))).unzip();
        let verdicts = match self.matcher.send(MatchSites { sites }).await {
            Ok(verdicts) if verdicts.len() == waiting.len() => verdicts,
            Ok(_) => return fail_all(waiting, "matcher answered a different batch"),
            Err(e) => return fail_all(waiting, &format!("matcher unavailable: {e}")),
        };
        let mut entries = Vec::with_capacity(waiting.len());
        let mut appended = Vec::with_capacity(waiting.len());
        let mut deliveries: Vec<(SitePath, Replier)> = Vec::new();
        for ((op, reply), verdict) in waiting.into_iter().zip(verdicts) {
            match (verdict, op) {
                (Verdict::Eligible(path), Op::Add(queue_id)) => {
                    entries.push((path, queue_id));
                    appended.push(reply);
                }
                (Verdict::Eligible(path), Op::SendSite) => deliveries.push((path, reply)),
                (refused, _) => {
                    let _ = reply.send(super::services::refusal(refused));
                }
            }
        }
        if !entries.is_empty() {
            self.append(entries, appended).await;
        }
        let registry = &self.registry;
        join_all(deliveries.into_iter().map(|(path, reply)| async move {
            let report = registry
                .send(DeliverFor::new(path, DeliverHow::SendSite))
                .await;
            let _ = reply.send(match report {
                Ok(Ok(report)) => Reply::new(
                    Status::Ok,
                    format!("{} queued", report.moved + report.already_incoming),
                ),
                Ok(Err(e)) => Reply::new(Status::Fail, e.to_string()),
                Err(e) => Reply::new(Status::Fail, format!("writers unavailable: {e}")),
            });
        }))
        .await;
    }

    /// Appends a batch's eligible IDs and answers their requests.
    async fn append(&self, entries: Vec<(SitePath, String)>, replies: Vec<Replier>) {
        match self.registry.send(AppendBatch::new(entries)).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(match result {
                        Ok(()) => Reply::ok(),
                        Err(e) => Reply::new(Status::Fail, e.to_string()),
                    });
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Reply::new(
                        Status::Fail,
                        format!("writers unavailable: {e}"),
                    ));
                }
            }
        }
    }
}

fn fail_all(waiting: Vec<(Op, Replier)>, why: &str) {
    for (_, reply) in waiting {
        let _ = reply.send(Reply::new(Status::Fail, why));
    }
}
