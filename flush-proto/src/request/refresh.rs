//! `refresh`: refresh logs unread for fast_flush_refresh_time, in the background.

use super::{expect_args, Verb};

/// The `refresh` request; it takes no arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refresh;

impl Refresh {
    /// Parses the (absent) arguments after the verb.
    ///
    /// # Errors
    /// Any argument at all.
    pub fn parse(args: &[&str]) -> Result<Refresh, String> {
        expect_args::<0>(Verb::Refresh, args)?;
        Ok(Refresh)
    }

    /// The request as a line, without the newline.
    pub fn to_line(&self) -> String {
        "refresh".to_string()
    }
}
