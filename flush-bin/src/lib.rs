//! Support code shared by the flushd binaries: the queue directory lock,
//! where the log goes, the demo set-up, the line-protocol client, flush-bench's modules and the
//! private Postfix lab it measures against.
#![deny(rust_2018_idioms)]

pub mod bench;
pub mod client;
pub mod demo;
pub mod lab;
pub mod logging;
pub mod master;
pub mod queue_lock;
