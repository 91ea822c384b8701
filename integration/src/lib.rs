//! Test harness for flushd's end-to-end tests (in `tests/`).
//!
//! - [`daemon`]: build and run the real `flushd` binary on a temporary queue
//!   directory, and talk to it over the line protocol. It re-exports the two
//!   modules below, so tests need only `integration::daemon::...`.
//! - [`postfix_client`]: a client for Postfix's attr0 flush protocol.
//! - [`fixtures`]: hashed queue files, queue IDs, the qmgr FIFO, waiting.
//! - [`postfix_lab`]: a private, real Postfix instance in a temp dir whose
//!   `flush` service is Postfix's own flush(8) or flushd.
//!
//! flushd on its own queue directory:
//!
//! ```no_run
//! use std::time::Duration;
//! use integration::daemon::{make_deferred, short_queue_id, FifoReader, Flushd, FlushdOptions};
//!
//! let daemon = Flushd::start(FlushdOptions::default()); // relay.test is eligible
//! let mut qmgr = FifoReader::qmgr(daemon.queue_dir()); // before anything triggers it
//! let id = short_queue_id(1);
//! make_deferred(daemon.queue_dir(), &id);
//! let mut client = daemon.client();
//! assert_eq!(client.request(&format!("add relay.test {id}")), "OK");
//! assert_eq!(client.request("send_site relay.test"), "OK");
//! assert_eq!(qmgr.collect_until(Duration::from_secs(5), |b| b == b"FI"), b"FI");
//! ```
//!
//! flushd as the `flush` service of a real Postfix:
//!
//! ```no_run
//! use integration::daemon::flushd_binary;
//! use integration::postfix_lab::{require_postfix, LabOptions, PostfixLab};
//!
//! if require_postfix() {
//!     let opts = LabOptions { flush_command: Some(flushd_binary()), ..LabOptions::default() };
//!     let mut lab = PostfixLab::new(opts).expect("lab");
//!     lab.start().expect("start");
//!     let id = lab.send_mail("a@lab.test", "b@relay.test").expect("queued");
//!     // ... wait_until(.., || lab.flush_log("relay_test").contains(&id)), ETRN, ...
//!     eprintln!("{}", lab.flush_messages()); // flushd's log under master(8)
//! }
//! ```

pub mod daemon;
pub mod fixtures;
pub mod postfix_client;
pub mod postfix_lab;
