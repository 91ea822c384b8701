//! `send_site SITE`: deliver everything logged for SITE (ETRN, `postqueue -s`).

use super::{expect_args, Verb};

/// Deliver all mail logged for `site`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendSite {
    /// The destination as the client wrote it.
    pub site: String,
}

impl SendSite {
    /// Builds the request.
    pub fn new(site: impl Into<String>) -> SendSite {
        SendSite { site: site.into() }
    }

    /// Parses the arguments after the verb.
    ///
    /// # Errors
    /// Wrong argument count.
    pub fn parse(args: &[&str]) -> Result<SendSite, String> {
        let [site] = expect_args::<1>(Verb::SendSite, args)?;
        Ok(SendSite::new(site))
    }

    /// The request as a line, without the newline.
    pub fn to_line(&self) -> String {
        format!("send_site {}", self.site)
    }
}
