//! `Services`: how one decoded request is carried out by the actors.
//!
//! Both protocols decode into the same [`Request`]; this is the one place
//! that turns a request into messages (matcher, then writer registry, queue
//! trigger or janitor) and their outcome into a [`Reply`].

use super::batch::AddBatcher;
use crate::domains::Verdict;
use crate::janitor::{Janitor, JanitorStats, StartSweep, Sweep};
use crate::matcher::{DomainMatcher, MatcherStats};
use crate::stats::{StatsCollector, Tracked};
use crate::trigger::{QueueTrigger, SendOneFile, TriggerStats};
use crate::writer::{WriterRegistry, WriterStats};
use crate::ActorError;
use actix::Addr;
use flush_proto::{Reply, Request, Status};
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// `send_file` requests carried out at once, across all connections. The
/// queue trigger's own queue has no bound, and a delivery's files wait in it
/// behind every `send_file` before them while the delivery holds its log's
/// lock: a client pipelining thousands must not put them all in front.
pub const MAX_SEND_FILES_IN_FLIGHT: usize = 64;

/// Addresses of the actors a request may need: what every gateway thread
/// builds its [`Services`] from.
#[derive(Clone)]
pub struct ServiceAddrs {
    /// Decides which sites are eligible.
    pub matcher: Tracked<DomainMatcher, MatcherStats>,
    /// Routes appends and deliveries to log writers.
    pub registry: Tracked<WriterRegistry, WriterStats>,
    /// Moves single queue files (send_file).
    pub trigger: Tracked<QueueTrigger, TriggerStats>,
    /// Runs refresh and purge.
    pub janitor: Tracked<Janitor, JanitorStats>,
    /// Builds the stats dump.
    pub stats: Addr<StatsCollector>,
    /// Places for `send_file` requests in flight ([`MAX_SEND_FILES_IN_FLIGHT`]),
    /// shared by every gateway thread.
    pub send_files: Arc<Semaphore>,
}

/// How one gateway thread reaches the actors.
#[derive(Clone)]
pub struct Services {
    /// Collects adds and send_sites so that they travel in batches; it owns
    /// the way to the matcher and the writers.
    pub adds: Rc<AddBatcher>,
    /// Moves single queue files (send_file).
    pub trigger: Tracked<QueueTrigger, TriggerStats>,
    /// Runs refresh and purge.
    pub janitor: Tracked<Janitor, JanitorStats>,
    /// Builds the stats dump.
    pub stats: Addr<StatsCollector>,
    /// Places for `send_file` requests in flight.
    pub send_files: Arc<Semaphore>,
}

impl Services {
    /// The services of one gateway thread, with its own batcher.
    pub fn new(addrs: ServiceAddrs) -> Services {
        Services {
            adds: AddBatcher::new(addrs.matcher, addrs.registry),
            trigger: addrs.trigger,
            janitor: addrs.janitor,
            stats: addrs.stats,
            send_files: addrs.send_files,
        }
    }

    /// Carries out one request and says how it went.
    pub async fn execute(&self, request: Request) -> Reply {
        let result = match request {
            Request::Add(add) => Ok(self.adds.add(add.site, add.queue_id).await),
            Request::SendSite(send) => Ok(self.adds.send_site(send.site).await),
            Request::SendFile(send) => self.send_file(send.queue_id).await,
            Request::Refresh(_) => self.sweep(Sweep::Refresh, "request").await,
            Request::Purge(_) => self.sweep(Sweep::Purge, "request").await,
            Request::Stats(_) => self.stats().await,
        };
        result.unwrap_or_else(|e| Reply::new(Status::Fail, e.to_string()))
    }

    /// master(8)'s wakeup: a refresh, as flush(8) does.
    pub async fn wakeup(&self) -> Reply {
        self.sweep(Sweep::Refresh, "wakeup")
            .await
            .unwrap_or_else(|e| Reply::new(Status::Fail, e.to_string()))
    }

    async fn send_file(&self, queue_id: String) -> Result<Reply, ActorError> {
        let _place = self
            .send_files
            .acquire()
            .await
            .map_err(|_| ActorError::Worker("send_file places closed"))?;
        let report = self.trigger.send(SendOneFile { queue_id }).await??;
        Ok(Reply::new(
            Status::Ok,
            format!("{} queued", report.moved + report.already_incoming),
        ))
    }

    async fn sweep(&self, sweep: Sweep, cause: &'static str) -> Result<Reply, ActorError> {
        self.janitor.send(StartSweep { sweep, cause }).await?;
        Ok(Reply::ok())
    }

    async fn stats(&self) -> Result<Reply, ActorError> {
        let json = self.stats.send(crate::stats::Dump).await?;
        Ok(Reply::new(Status::Ok, json))
    }
}

/// The reply to a site that is not eligible.
pub(super) fn refusal(verdict: Verdict) -> Reply {
    match verdict {
        Verdict::Eligible(_) => Reply::ok(),
        Verdict::Deny(why) => Reply::new(Status::Deny, why),
        Verdict::Fail(why) => Reply::new(Status::Fail, why),
        Verdict::Bad(why) => Reply::new(Status::Bad, why),
    }
}
