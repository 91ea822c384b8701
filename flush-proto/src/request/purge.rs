//! `purge`: refresh every log now, in the background.

use super::{expect_args, Verb};

/// The `purge` request; it takes no arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purge;

impl Purge {
    /// Parses the (absent) arguments after the verb.
    ///
    /// # Errors
    /// Any argument at all.
    pub fn parse(args: &[&str]) -> Result<Purge, String> {
        expect_args::<0>(Verb::Purge, args)?;
        Ok(Purge)
    }

    /// The request as a line, without the newline.
    pub fn to_line(&self) -> String {
        "purge".to_string()
    }
}
