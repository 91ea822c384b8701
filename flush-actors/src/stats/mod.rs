//! Counters and the stats dump.

pub mod counters;

pub use counters::{Counter, Gauge, Mailbox, Report};
