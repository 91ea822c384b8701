//! The one error type of the actor crate.

use std::io;
use thiserror::Error;

/// What can go wrong between actors, or in the file-system work they own.
#[derive(Debug, Error)]
pub enum ActorError {
    /// An actor's mailbox was closed or full: the server is shutting down or overloaded.
    #[error("actor unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
    /// A file-system operation failed; `what` names it for the log.
    #[error("{what}: {source}")]
    Io {
        /// The operation and path, e.g. `append flush/relay_test`.
        what: String,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A worker thread is gone (its channel closed).
    #[error("worker unavailable: {0}")]
    Worker(&'static str),
    /// A reload found a broken configuration; what was serving keeps serving.
    #[error("configuration: {0}")]
    Config(String),
}

impl ActorError {
    /// Wraps an I/O error with the operation that failed.
    pub fn io(what: impl Into<String>, source: io::Error) -> ActorError {
        ActorError::Io {
            what: what.into(),
            source,
        }
    }
}

/// One failure answers every request of a batch, so errors must be copyable;
/// an I/O error keeps its kind and message.
impl Clone for ActorError {
    fn clone(&self) -> ActorError {
        match self {
            ActorError::Mailbox(e) => ActorError::Mailbox(*e),
            ActorError::Io { what, source } => ActorError::Io {
                what: what.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            ActorError::Worker(why) => ActorError::Worker(why),
            ActorError::Config(why) => ActorError::Config(why.clone()),
        }
    }
}
