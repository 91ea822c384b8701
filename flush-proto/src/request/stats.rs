//! `stats`: one line of JSON with every actor's counters (line protocol only).

use super::{expect_args, Verb};

/// The `stats` request; it takes no arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats;

impl Stats {
    /// Parses the (absent) arguments after the verb.
    ///
    /// # Errors
    /// Any argument at all.
    pub fn parse(args: &[&str]) -> Result<Stats, String> {
        expect_args::<0>(Verb::Stats, args)?;
        Ok(Stats)
    }

    /// The request as a line, without the newline.
    pub fn to_line(&self) -> String {
        "stats".to_string()
    }
}
