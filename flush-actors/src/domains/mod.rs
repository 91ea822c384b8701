//! Which destinations are eligible for fast flush, and their logfile names.
//!
//! Plain logic, no actors: [`site`] maps a site to its logfile name as
//! flush(8) does.

pub mod site;

pub use site::{site_to_path, SiteError, SitePath};
