//! The private Postfix lab, which lives in `flush_bin::lab` (flush-bench's
//! side-by-side runner uses it too); re-exported so tests keep their paths.

pub use flush_bin::lab::*;
