//! `add SITE QUEUEID`: a message for SITE was deferred; log its queue ID.

use super::{expect_args, Verb};
use crate::validate_queue_id;

/// Record that `queue_id` is deferred for `site`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// The destination as the client wrote it (not yet IDNA-converted).
    pub site: String,
    /// A queue ID that passed [`validate_queue_id`].
    pub queue_id: String,
}

impl Add {
    /// Builds the request; the queue ID is not validated here (see [`Add::parse`]).
    pub fn new(site: impl Into<String>, queue_id: impl Into<String>) -> Add {
        Add {
            site: site.into(),
            queue_id: queue_id.into(),
        }
    }

    /// Parses the arguments after the verb.
    ///
    /// # Errors
    /// Wrong argument count or an invalid queue ID.
    pub fn parse(args: &[&str]) -> Result<Add, String> {
        let [site, queue_id] = expect_args::<2>(Verb::Add, args)?;
        validate_queue_id(queue_id)?;
        Ok(Add::new(site, queue_id))
    }

    /// The request as a line, without the newline.
    pub fn to_line(&self) -> String {
        format!("add {} {}", self.site, self.queue_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_bad_queue_id() {
        assert!(Add::parse(&["relay.test", "../../etc/passwd"]).is_err());
        assert!(Add::parse(&["relay.test", "ABC"]).is_ok());
    }
}
