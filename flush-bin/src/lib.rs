//! Support code shared by the flushd binaries: the queue directory lock,
//! the demo set-up, and the line-protocol client.
#![deny(rust_2018_idioms)]

pub mod client;
pub mod demo;
pub mod queue_lock;
