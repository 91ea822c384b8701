//! The janitor: refresh and purge of the fast flush logs, as flush(8)'s
//! `flush_refresh_service()` (`src/flush/flush.c`) does them.
//!
//! [`rules`] holds the pure age decisions.

pub mod rules;
