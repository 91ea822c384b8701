//! Test harness for flushd's end-to-end tests (in `tests/`).
//!
//! - [`daemon`]: build and run the real `flushd` binary on a temporary queue
//!   directory, and talk to it over the line protocol. It re-exports the two
//!   modules below, so tests need only `integration::daemon::...`.
//! - [`postfix_client`]: a client for Postfix's attr0 flush protocol.
//! - [`fixtures`]: hashed queue files, queue IDs, the qmgr FIFO, waiting.
//! - [`postfix_lab`]: a private, real Postfix instance in a temp dir whose
//!   `flush` service is Postfix's own flush(8) or flushd.

pub mod daemon;
pub mod fixtures;
pub mod postfix_client;
pub mod postfix_lab;
