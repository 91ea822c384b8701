//! `AddBatcher`: the adds that arrive together, carried out together.
//!
//! Every `add` needs a verdict from the matcher and an append by a writer.
//! Sent one by one, those hops cost more than the work. All sessions of the
//! gateway run on one thread, so the adds they decode in one turn of that
//! thread are collected here and sent as one `MatchSites` and one
//! `AppendBatch` when the turn ends (a local task that runs once the
//! sessions yield). Each request still gets its own reply, and only once its
//! ID is in the file.

use crate::domains::Verdict;
use crate::matcher::{DomainMatcher, MatchSites, MatcherStats};
use crate::stats::Tracked;
use crate::writer::{AppendBatch, WriterRegistry, WriterStats};
use flush_proto::{Reply, Status};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tokio::sync::oneshot;

/// Largest batch sent as one message; a longer burst is cut into several.
pub const MAX_BATCH: usize = 4096;

struct PendingAdd {
    site: String,
    queue_id: String,
    reply: oneshot::Sender<Reply>,
}

/// Collects adds for one turn of the gateway's thread.
pub struct AddBatcher {
    matcher: Tracked<DomainMatcher, MatcherStats>,
    registry: Tracked<WriterRegistry, WriterStats>,
    pending: RefCell<Vec<PendingAdd>>,
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
            pending: RefCell::new(Vec::new()),
            scheduled: Cell::new(false),
        })
    }

    /// Queues one add; the reply comes when its batch is done.
    pub async fn add(self: &Rc<Self>, site: String, queue_id: String) -> Reply {
        let (tx, rx) = oneshot::channel();
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(PendingAdd {
                site,
                queue_id,
                reply: tx,
            });
            pending.len() >= MAX_BATCH
        };
        if full {
            let batch = self.pending.take();
            actix_rt::spawn(Rc::clone(self).run(batch));
        } else if !self.scheduled.replace(true) {
            let me = Rc::clone(self);
            actix_rt::spawn(async move {
                me.scheduled.set(false);
                let batch = me.pending.take();
                me.run(batch).await;
            });
        }
        rx.await
            .unwrap_or_else(|_| Reply::new(Status::Fail, "server shutting down"))
    }

    /// Carries out one batch and answers each of its requests.
    async fn run(self: Rc<Self>, batch: Vec<PendingAdd>) {
        if batch.is_empty() {
            return;
        }
        let sites = batch.iter().map(|add| add.site.clone()).collect();
        let verdicts = match self.matcher.send(MatchSites { sites }).await {
            Ok(verdicts) if verdicts.len() == batch.len() => verdicts,
            Ok(_) => return fail_all(batch, "matcher answered a different batch"),
            Err(e) => return fail_all(batch, &format!("matcher unavailable: {e}")),
        };
        let mut entries = Vec::new();
        let mut waiting = Vec::new();
        for (add, verdict) in batch.into_iter().zip(verdicts) {
            match verdict {
                Verdict::Eligible(path) => {
                    entries.push((path, add.queue_id));
                    waiting.push(add.reply);
                }
                refused => {
                    let _ = add.reply.send(super::services::refusal(refused));
                }
            }
        }
        if entries.is_empty() {
            return;
        }
        match self.registry.send(AppendBatch::new(entries)).await {
            Ok(results) => {
                for (reply, result) in waiting.into_iter().zip(results) {
                    let _ = reply.send(match result {
                        Ok(()) => Reply::ok(),
                        Err(e) => Reply::new(Status::Fail, e.to_string()),
                    });
                }
            }
            Err(e) => {
                for reply in waiting {
                    let _ = reply.send(Reply::new(
                        Status::Fail,
                        format!("writers unavailable: {e}"),
                    ));
                }
            }
        }
    }
}

fn fail_all(batch: Vec<PendingAdd>, why: &str) {
    for add in batch {
        let _ = add.reply.send(Reply::new(Status::Fail, why));
    }
}
