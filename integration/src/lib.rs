//! Test harness for flushd's end-to-end tests (in `tests/`).
//!
//! - [`daemon`]: build and run the real `flushd` binary on a temporary queue
//!   directory, with clients for its line protocol and for Postfix's attr0
//!   protocol, and queue fixtures (hashed deferred files, the qmgr FIFO).
//! - [`postfix_lab`]: a private, real Postfix instance in a temp dir whose
//!   `flush` service is Postfix's own flush(8) or flushd.

pub mod daemon;
pub mod postfix_lab;
