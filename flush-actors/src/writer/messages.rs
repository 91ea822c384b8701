//! Messages of the log writers and of their registry.

use crate::domains::SitePath;
use crate::trigger::MoveReport;
use crate::ActorError;
use actix::Message;
use std::sync::{Arc, Mutex, PoisonError};
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
/// answers every append it took before it stops: a reply dropped unanswered
/// means the message was never handled.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AppendRecords {
    /// Validated queue IDs, shared: the registry keeps them to route again
    /// if the writer stops before it handles them.
    pub queue_ids: Arc<[String]>,
    /// Where the outcome goes.
    pub reply: AppendReply,
}

/// What became of each append of one batch share: `None` for one dropped
/// unanswered (its writer stopped first).
pub type ShareOutcome = Vec<Option<Result<(), ActorError>>>;

/// The answers to the appends that one batch sends to one writer thread,
/// gathered in one place and sent back together once the last is in: one
/// channel per share instead of one per writer, and nothing to poll per
/// writer while they work.
#[derive(Debug)]
pub struct ShareAnswers {
    state: Mutex<ShareState>,
}

#[derive(Debug)]
struct ShareState {
    outcome: ShareOutcome,
    left: usize,
    done: Option<oneshot::Sender<ShareOutcome>>,
}

impl ShareAnswers {
    /// Room for `count` answers, and where all of them arrive together. If
    /// some reply is never made (the share was dropped before it was handed
    /// out), the receiver sees the channel closed.
    pub fn new(count: usize) -> (Arc<ShareAnswers>, oneshot::Receiver<ShareOutcome>) {
        let (done, all) = oneshot::channel();
        let state = ShareState {
            outcome: std::iter::repeat_with(|| None).take(count).collect(),
            left: count,
            done: Some(done),
        };
        let answers = ShareAnswers {
            state: Mutex::new(state),
        };
        (Arc::new(answers), all)
    }

    /// The reply of the append at `slot` (each slot's once).
    pub fn reply(self: &Arc<ShareAnswers>, slot: usize) -> AppendReply {
        AppendReply {
            answers: Arc::clone(self),
            slot,
            answered: false,
        }
    }

    fn fill(&self, slot: usize, result: Option<Result<(), ActorError>>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(place) = state.outcome.get_mut(slot) {
            *place = result;
        }
        state.left = state.left.saturating_sub(1);
        if state.left == 0 {
            let outcome = std::mem::take(&mut state.outcome);
            if let Some(done) = state.done.take() {
                let _ = done.send(outcome);
            }
        }
    }
}

/// The answer to one [`AppendRecords`]: [`AppendReply::send`] it, or drop it
/// to say the message was not handled.
#[derive(Debug)]
pub struct AppendReply {
    answers: Arc<ShareAnswers>,
    slot: usize,
    answered: bool,
}

impl AppendReply {
    /// Answers the append.
    pub fn send(mut self, result: Result<(), ActorError>) {
        self.answered = true;
        self.answers.fill(self.slot, Some(result));
    }
}

impl Drop for AppendReply {
    fn drop(&mut self) {
        if !self.answered {
            self.answers.fill(self.slot, None);
        }
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[actix::test]
    async fn share_answers_arrive_together_in_slot_order() {
        let (answers, all) = ShareAnswers::new(3);
        let replies: Vec<AppendReply> = (0..3).map(|slot| answers.reply(slot)).collect();
        drop(answers);
        let mut replies = replies.into_iter();
        let (first, second, third) = (replies.next(), replies.next(), replies.next());
        third.unwrap().send(Err(ActorError::Worker("full disk")));
        // Dropped unanswered: not handled.
        drop(second);
        first.unwrap().send(Ok(()));
        let outcome = all.await.unwrap();
        assert!(matches!(outcome[0], Some(Ok(()))));
        assert!(outcome[1].is_none());
        assert!(matches!(
            outcome[2],
            Some(Err(ActorError::Worker("full disk")))
        ));
    }

    #[actix::test]
    async fn a_share_whose_replies_were_never_made_closes_the_channel() {
        let (answers, all) = ShareAnswers::new(2);
        let made = answers.reply(0);
        drop(answers);
        made.send(Ok(()));
        assert!(all.await.is_err());
    }
}
