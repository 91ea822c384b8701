//! Messages of the log writers and of their registry.

use crate::domains::SitePath;
use crate::trigger::MoveReport;
use crate::ActorError;
use actix::Message;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Why a log is being delivered; it decides whether qmgr is told to forget
/// dead destinations first (flush(8)'s `UNTHROTTLE_BEFORE` versus `REFRESH_ONLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverHow {
    /// ETRN / `send_site`: send `F` before moving the files.
    SendSite,
    /// The janitor's refresh or purge: no `F`.
    Refresh,
}

/// Append queue IDs to this writer's log; `reply` is answered once they are
/// in the file (or were already there since the last delivery). A writer
/// answers every append it took before it stops: a reply channel dropped
/// unanswered means the message was never handled.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AppendRecords {
    /// Validated queue IDs, shared: the registry keeps them to route again
    /// if the writer stops before it handles them.
    pub queue_ids: Arc<[String]>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<(), ActorError>>,
}

/// Deliver everything this writer's log lists, then truncate it.
#[derive(Debug, Message)]
#[rtype(result = "Result<MoveReport, ActorError>")]
pub struct DeliverLog {
    /// Send-site or refresh.
    pub how: DeliverHow,
}

/// Sent by the registry when nothing was routed to this writer for
/// `max_idle`; it is out of the map, so no new work reaches it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Write what is pending, finish a running delivery, close the log and stop:
/// the daemon is shutting down. Answered when the writer has stopped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseLog;

/// How often a message is routed again after its writer stopped under it.
const ROUTE_ATTEMPTS: u8 = 3;

/// Route one append to the writer of `site` (a batch of one).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct AppendFor {
    /// The logfile name (site path).
    pub site: SitePath,
    /// A validated queue ID.
    pub queue_id: String,
}

impl AppendFor {
    /// Append `queue_id` to the log of `site`.
    pub fn new(site: SitePath, queue_id: impl Into<String>) -> AppendFor {
        AppendFor {
            site,
            queue_id: queue_id.into(),
        }
    }
}

/// Route appends for many sites (what a gateway collected in one go): one
/// message per writer instead of one per ID. The results come back in the
/// order of `entries`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Result<(), ActorError>>")]
pub struct AppendBatch {
    /// (logfile name, validated queue ID) pairs.
    pub entries: Vec<(SitePath, String)>,
    attempt: u8,
}

impl AppendBatch {
    /// Append each queue ID to the log of its site.
    pub fn new(entries: Vec<(SitePath, String)>) -> AppendBatch {
        AppendBatch {
            entries,
            attempt: 0,
        }
    }

    /// The same batch's next routing attempt, for `entries` (a part of it).
    pub(super) fn again(self, entries: Vec<(SitePath, String)>) -> Result<AppendBatch, ActorError> {
        let attempt = self.attempt + 1;
        (attempt < ROUTE_ATTEMPTS)
            .then_some(AppendBatch { entries, attempt })
            .ok_or(ActorError::Worker("log writer kept stopping"))
    }
}

/// Route a delivery to the writer of `site`, starting one if needed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<MoveReport, ActorError>")]
pub struct DeliverFor {
    /// The logfile name (site path).
    pub site: SitePath,
    /// Send-site or refresh.
    pub how: DeliverHow,
    attempt: u8,
}

impl DeliverFor {
    /// Deliver the log of `site`.
    pub fn new(site: SitePath, how: DeliverHow) -> DeliverFor {
        DeliverFor {
            site,
            how,
            attempt: 0,
        }
    }

    pub(super) fn retry(mut self) -> Result<DeliverFor, ActorError> {
        self.attempt += 1;
        (self.attempt < ROUTE_ATTEMPTS)
            .then_some(self)
            .ok_or(ActorError::Worker("log writer kept stopping"))
    }
}

/// Close every writer's log (shutdown); answered when all are closed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseAll;
