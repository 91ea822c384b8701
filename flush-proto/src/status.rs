//! The four outcomes of a flush request, as `flush_clnt.h` numbers them.

use std::fmt;

/// Outcome of a request; the same on both protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Request executed (`FLUSH_STAT_OK`, 0).
    Ok,
    /// Request failed: an I/O or lookup error (`FLUSH_STAT_FAIL`, -1).
    Fail,
    /// Invalid parameter (`FLUSH_STAT_BAD`, 3).
    Bad,
    /// Destination not eligible for fast flush (`FLUSH_STAT_DENY`, 4).
    Deny,
}

impl Status {
    /// Every status, for counters indexed by status.
    pub const ALL: [Status; 4] = [Status::Ok, Status::Fail, Status::Bad, Status::Deny];

    /// The number Postfix sends in its `status` attribute. Postfix prints the
    /// int as unsigned, so -1 goes out as 4294967295.
    pub fn postfix_code(self) -> u32 {
        match self {
            Status::Ok => 0,
            Status::Fail => u32::MAX,
            Status::Bad => 3,
            Status::Deny => 4,
        }
    }

    /// The inverse of [`Status::postfix_code`]; `None` for a number Postfix never sends.
    pub fn from_postfix_code(code: u32) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.postfix_code() == code)
    }

    /// The word that starts a line-protocol reply.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Fail => "FAIL",
            Status::Bad => "BAD",
            Status::Deny => "DENY",
        }
    }

    /// Index into `[T; 4]` tables of per-status counters.
    pub fn index(self) -> usize {
        match self {
            Status::Ok => 0,
            Status::Fail => 1,
            Status::Bad => 2,
            Status::Deny => 3,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_codes_round_trip() {
        assert_eq!(Status::Fail.postfix_code(), 4_294_967_295);
        for s in Status::ALL {
            assert_eq!(Status::from_postfix_code(s.postfix_code()), Some(s));
        }
        assert_eq!(Status::from_postfix_code(1), None);
    }
}
