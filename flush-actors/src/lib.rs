//! The flushd server: actors that own the state of a Postfix fast flush
//! service, and the plain logic they are thin shells over.
//!
//! Pure logic (no actors, no sockets) lives in [`config`], [`domains`],
//! [`queue`], [`logfile`] and [`janitor::rules`]; the actors are
//! [`gateway`], [`matcher`], [`writer`], [`trigger`], [`janitor`] and
//! [`stats`], wired together by [`server`].
#![deny(rust_2018_idioms)]

pub mod config;
pub mod domains;
mod error;
pub mod gateway;
pub mod id_set;
pub mod janitor;
pub mod logfile;
pub mod matcher;
pub mod queue;
mod safe_open;
pub mod server;
pub mod stats;
pub mod trigger;
pub mod writer;

pub use error::ActorError;
