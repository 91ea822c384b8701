//! What the [`QueueTrigger`](super::QueueTrigger) is asked to do, and what it
//! answers.

use crate::queue::DeliverOutcome;
use crate::ActorError;
use actix::Message;

/// Schedule a destination's queue files for delivery (`send_site`, refresh,
/// purge): time-stamp each and move it from `deferred/` to `incoming/`.
///
/// Sent by a LogWriter with `send().await` while it holds its log's lock, so
/// at most one is in flight per writer.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<MoveReport, ActorError>")]
pub struct MoveToIncoming {
    /// The queue IDs read from the log, de-duplicated.
    pub ids: Vec<String>,
    /// Lines read from the log, valid or not: if any, the queue manager gets
    /// an `I` afterwards even when no ID survived (as flush(8) does).
    pub lines_read: usize,
    /// Send `F` (forget dead destinations) before moving anything:
    /// `send_site` does, refresh and purge do not.
    pub unthrottle_first: bool,
}

/// Schedule one queue file for delivery (`send_file`): time stamps, the
/// unthrottle bit on a ready file, the move, and an `I` if the file was found.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<MoveReport, ActorError>")]
pub struct SendOneFile {
    /// The queue ID, already validated by the caller (an invalid one is
    /// counted as failed and touches nothing).
    pub queue_id: String,
}

/// What happened to the files of one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MoveReport {
    /// Moved from `deferred/` to `incoming/`.
    pub moved: usize,
    /// Already in `incoming/`: time-stamped only.
    pub already_incoming: usize,
    /// In neither queue: skipped.
    pub missing: usize,
    /// Not ready (`send_file` only): left where it was.
    pub not_ready: usize,
    /// File-system errors (logged).
    pub failed: usize,
}

impl MoveReport {
    /// Counts one file's outcome.
    pub fn record(&mut self, outcome: &DeliverOutcome) {
        match outcome {
            DeliverOutcome::Moved => self.moved += 1,
            DeliverOutcome::AlreadyIncoming => self.already_incoming += 1,
            DeliverOutcome::Missing => self.missing += 1,
            DeliverOutcome::NotReady => self.not_ready += 1,
            DeliverOutcome::Failed(_) => self.failed += 1,
        }
    }

    /// Files now waiting in `incoming/` because of this request.
    pub fn queued(&self) -> usize {
        self.moved + self.already_incoming
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_each_outcome() {
        let mut r = MoveReport::default();
        for o in [
            DeliverOutcome::Moved,
            DeliverOutcome::Moved,
            DeliverOutcome::AlreadyIncoming,
            DeliverOutcome::Missing,
            DeliverOutcome::NotReady,
            DeliverOutcome::Failed("x".into()),
        ] {
            r.record(&o);
        }
        let want = MoveReport {
            moved: 2,
            already_incoming: 1,
            missing: 1,
            not_ready: 1,
            failed: 1,
        };
        assert_eq!(r, want);
        assert_eq!(r.queued(), 3);
    }
}
