//! What the DomainMatcher is asked.

use crate::domains::Verdict;
use crate::ActorError;
use actix::Message;

/// Decide whether `site` is eligible for fast flush, and its logfile name.
///
/// The reply is the [`Verdict`] itself (the handler answers with
/// `MessageResult`), so `send(..).await` gives `Result<Verdict, MailboxError>`.
#[derive(Debug, Message)]
#[rtype(result = "Verdict")]
pub struct MatchSite {
    /// The destination as the client sent it.
    pub site: String,
}

impl MatchSite {
    /// Asks about `site`.
    pub fn new(site: impl Into<String>) -> MatchSite {
        MatchSite { site: site.into() }
    }
}

/// Decide about many sites at once (the adds a gateway collected in one
/// go); the verdicts come back in the same order.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Verdict>")]
pub struct MatchSites {
    /// The destinations as the clients sent them.
    pub sites: Vec<String>,
}

/// Re-read main.cf (with the `-o` overrides) and the files the list reads,
/// and swap the new list in whole. A broken new list is an error; the old
/// list keeps serving. The daemon sends this on SIGHUP; the matcher also
/// reloads on its own when a watched file changes.
#[derive(Debug, Default, Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Reload;
