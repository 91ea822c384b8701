//! Counters and the stats dump.

mod collector;
pub mod counters;
mod tracked;

pub use collector::{Dump, StatsCollector};
pub use counters::{Counter, Gauge, Mailbox, Report};
pub use tracked::{MailboxOf, Tracked};
