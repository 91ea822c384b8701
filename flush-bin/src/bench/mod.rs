//! flush-bench: load generation and the side-by-side benchmark against
//! Postfix's flush(8) (issue 5).
//!
//! - [`names`]: the benchmark's sites and queue IDs, deterministic so that a
//!   run can be checked afterwards;
//! - [`mix`]: the request mix and which request is the i-th;
//! - [`latency`]: latency samples and their percentiles;
//! - [`memory`]: a server's RSS and PSS, read from /proc while a run goes on;
//! - [`transport`]: one request per connection as Postfix's clients send it
//!   (`src/global/mail_command_client.c`), and pipelined line connections;
//! - [`load`]: C concurrent clients sending N requests;
//! - [`adds`]: the check that an add run put every ID in its log;
//! - [`append_floor`]: the same appends in a plain loop, the file-system floor;
//! - [`server_floor`]: a plain threaded server that only appends, the floor
//!   of adds over the Postfix protocol;
//! - [`fixture`]: deferred queue files and logfiles to deliver, the check
//!   that they were delivered, and the utime + rename floor;
//! - [`qmgr`]: a FIFO at `public/qmgr` that is read and discarded;
//! - [`flushd`]: a flushd process on a private queue directory;
//! - [`compare`]: the side-by-side runner;
//! - [`table`]: medians, ratios and targets, as a Markdown table.

pub mod adds;
pub mod append_floor;
pub mod compare;
pub mod fixture;
pub mod flushd;
pub mod latency;
pub mod load;
pub mod memory;
pub mod mix;
pub mod names;
pub mod qmgr;
pub mod server_floor;
pub mod table;
pub mod transport;
