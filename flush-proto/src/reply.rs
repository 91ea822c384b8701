//! A reply: a status plus an optional one-line detail.

use crate::Status;

/// What the server answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The outcome.
    pub status: Status,
    /// Human-readable detail (or the JSON of `stats`); never holds a newline.
    pub detail: String,
}

impl Reply {
    /// A reply with a detail; newlines in `detail` are replaced by spaces so
    /// that one reply is always one line.
    pub fn new(status: Status, detail: impl Into<String>) -> Reply {
        let mut detail = detail.into();
        if detail.contains(['\n', '\r']) {
            detail = detail.replace(['\n', '\r'], " ");
        }
        Reply { status, detail }
    }

    /// A plain `OK`.
    pub fn ok() -> Reply {
        Reply::new(Status::Ok, "")
    }
}
