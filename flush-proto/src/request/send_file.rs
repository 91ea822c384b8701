//! `send_file QUEUEID`: deliver one deferred message (`postqueue -i`).

use super::{expect_args, Verb};
use crate::validate_queue_id;

/// Deliver the one message `queue_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFile {
    /// A queue ID that passed [`validate_queue_id`].
    pub queue_id: String,
}

impl SendFile {
    /// Builds the request; the queue ID is not validated here.
    pub fn new(queue_id: impl Into<String>) -> SendFile {
        SendFile {
            queue_id: queue_id.into(),
        }
    }

    /// Parses the arguments after the verb.
    ///
    /// # Errors
    /// Wrong argument count or an invalid queue ID.
    pub fn parse(args: &[&str]) -> Result<SendFile, String> {
        let [queue_id] = expect_args::<1>(Verb::SendFile, args)?;
        validate_queue_id(queue_id)?;
        Ok(SendFile::new(queue_id))
    }

    /// The request as a line, without the newline.
    pub fn to_line(&self) -> String {
        format!("send_file {}", self.queue_id)
    }
}
