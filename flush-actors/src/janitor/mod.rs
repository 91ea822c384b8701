//! The janitor: refresh and purge of the fast flush logs, as flush(8)'s
//! `flush_refresh_service()` (`src/flush/flush.c`) does them.
//!
//! [`rules`] holds the pure age decisions; [`Janitor`] is the actor that
//! applies them in the background.

mod actor;
pub mod rules;

pub use actor::{
    Janitor, JanitorSettings, JanitorStats, StartSweep, Sweep, JANITOR_PARALLEL_DELIVERIES,
};
