//! The queue directory as flush(8) sees it: where a queue file lives
//! ([`hash`], [`layout`]), how one is scheduled for delivery ([`deliver`]),
//! and how the queue manager is woken up ([`qmgr`]).
//!
//! Mirrors Postfix's `src/global/mail_queue.c`, `src/util/dir_forest.c`,
//! `flush_one_file()` in `src/flush/flush.c` and `src/global/mail_trigger.c`.
//! Plain functions; the [`crate::trigger`] actor runs them on worker threads.

pub mod deliver;
pub mod hash;
pub mod layout;
pub mod qmgr;

pub use deliver::{deliver_one, DeliverMode, DeliverOutcome, QueueDir};
pub use hash::hash_dirs;
pub use layout::QueueLayout;
pub use qmgr::{send_trigger, TRIGGER_FLUSH_DEAD, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT};
