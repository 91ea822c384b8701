//! Which destinations are eligible for fast flush, and their logfile names.
//!
//! Plain logic, no actors. [`list`] compiles `fast_flush_domains` exactly as
//! Postfix's `domain_list` reads it (`src/global/domain_list.c`,
//! `src/util/match_list.c`, `src/util/match_ops.c`), [`site`] maps a site to
//! its logfile name as flush(8) does (`src/flush/flush.c`), and
//! [`DomainList::verdict`] runs the whole decision in flush(8)'s order:
//! eligibility first (DENY, or FAIL on a table error), then the file name
//! (DENY when IDNA fails, BAD when the name would be invalid).

pub mod list;
pub mod site;
mod table;
mod tokens;

pub use list::{DomainList, MAX_INCLUDE_DEPTH, MAX_PATTERNS};
pub use site::{site_to_path, SiteError, SitePath};
pub use tokens::MAX_LIST_FILE_BYTES;

use crate::config::{Config, ConfigError, Params};
use list::{match_key, Outcome};
use std::path::PathBuf;
use thiserror::Error;
use tokens::{Token, Tokens};

/// The parameter flushd reads its list from.
pub const FAST_FLUSH_DOMAINS: &str = "fast_flush_domains";

/// The answer to "may flushd keep a logfile for this site?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Eligible, with the logfile name.
    Eligible(SitePath),
    /// Not eligible, or IDNA cannot convert the site (status DENY).
    Deny(String),
    /// A table or file of the list could not be used (status FAIL).
    Fail(String),
    /// The site has no valid file name (status BAD).
    Bad(String),
}

/// Why a domain list could not be built (the old list, if any, stays).
#[derive(Debug, Error)]
pub enum DomainError {
    /// main.cf or the expansion of the list failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A `!` with nothing after it (Postfix: fatal).
    #[error("{origin}: no pattern after '!'")]
    NoPattern {
        /// `fast_flush_domains`, or the file and line.
        origin: String,
    },
    /// `/file` items nest too deep, most likely a file that includes itself.
    #[error("{}: files included more than {MAX_INCLUDE_DEPTH} levels deep (a loop?)", path.display())]
    IncludeDepth {
        /// The file at which the limit was hit.
        path: PathBuf,
    },
    /// The list is beyond [`MAX_PATTERNS`].
    #[error("fast_flush_domains: more than {MAX_PATTERNS} patterns")]
    TooManyPatterns,
}

impl DomainList {
    /// Compiles `fast_flush_domains` of a configuration, `$`-expanded, with
    /// parent matching as `parent_domain_matches_subdomains` says.
    ///
    /// # Errors
    /// As [`DomainList::parse`], plus expansion errors.
    pub fn from_config(config: &Config) -> Result<DomainList, DomainError> {
        DomainList::from_params(&config.params)
    }

    /// As [`DomainList::from_config`], from raw parameters.
    ///
    /// # Errors
    /// As [`DomainList::from_config`].
    pub fn from_params(params: &Params) -> Result<DomainList, DomainError> {
        let list = params.expanded(FAST_FLUSH_DOMAINS)?;
        let parent = parent_matching(params, FAST_FLUSH_DOMAINS)?;
        DomainList::parse(&list, parent)
    }

    /// The whole decision for `site`, in flush(8)'s order: an empty site is
    /// BAD; then the list (DENY when not eligible, FAIL when a broken table
    /// is reached first); then the file name ([`site_to_path`]: DENY when
    /// IDNA fails, BAD when the name would be invalid).
    pub fn verdict(&self, site: &str) -> Verdict {
        if site.is_empty() {
            return Verdict::Bad("empty site".into());
        }
        let key = if site::is_address_literal(site) && !site.is_ascii() {
            std::borrow::Cow::Owned(site.to_lowercase())
        } else {
            match_key(site)
        };
        match self.lookup(&key) {
            Outcome::Fail(why) => Verdict::Fail(format!("{FAST_FLUSH_DOMAINS}: {why}")),
            Outcome::NoMatch | Outcome::Match { positive: false } => {
                Verdict::Deny("not eligible for fast flush (fast_flush_domains)".into())
            }
            Outcome::Match { positive: true } => match site_to_path(site) {
                Ok(path) => Verdict::Eligible(path),
                Err(SiteError::Deny(why)) => Verdict::Deny(why),
                Err(SiteError::Bad(why)) => Verdict::Bad(why),
            },
        }
    }
}

/// Whether `parameter` is in `parent_domain_matches_subdomains`, as
/// Postfix's `match_parent_style()` (`src/global/match_parent_style.c`)
/// decides: a list of names, `!` negation, first match wins,
/// case-insensitive. `/file` and `type:table` items are not read here (a
/// warning says so) and match nothing.
///
/// # Errors
/// Expansion errors; a `!` without a name.
pub fn parent_matching(params: &Params, parameter: &str) -> Result<bool, DomainError> {
    let list = params.expanded("parent_domain_matches_subdomains")?;
    for token in Tokens::new(&list) {
        let Token::Item(start) = token else {
            log::warn!("parent_domain_matches_subdomains: comment after other text is not allowed");
            break;
        };
        let bangs = start.bytes().take_while(|&b| b == b'!').count();
        let item = &start[bangs..];
        if item.is_empty() {
            return Err(DomainError::NoPattern {
                origin: "parent_domain_matches_subdomains".into(),
            });
        }
        if item.starts_with('/') || item.contains(':') {
            log::warn!("parent_domain_matches_subdomains: {item}: files and tables are not supported here; ignored");
            continue;
        }
        if item.eq_ignore_ascii_case(parameter) {
            return Ok(bangs % 2 == 0);
        }
    }
    Ok(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(text: &str) -> Params {
        Params::parse(text, "main.cf").unwrap()
    }

    fn path(v: Verdict) -> String {
        match v {
            Verdict::Eligible(p) => p.into_string(),
            other => panic!("expected Eligible, got {other:?}"),
        }
    }

    #[test]
    fn parent_style_from_the_parameter() {
        assert!(parent_matching(&Params::new(), FAST_FLUSH_DOMAINS).unwrap());
        assert!(!parent_matching(
            &params("parent_domain_matches_subdomains = relay_domains"),
            FAST_FLUSH_DOMAINS
        )
        .unwrap());
        assert!(parent_matching(
            &params("parent_domain_matches_subdomains = X, Fast_Flush_Domains"),
            FAST_FLUSH_DOMAINS
        )
        .unwrap());
        assert!(!parent_matching(
            &params("parent_domain_matches_subdomains = !fast_flush_domains, fast_flush_domains"),
            FAST_FLUSH_DOMAINS
        )
        .unwrap());
        assert!(parent_matching(
            &params("parent_domain_matches_subdomains = !!fast_flush_domains"),
            FAST_FLUSH_DOMAINS
        )
        .unwrap());
        assert!(parent_matching(
            &params("parent_domain_matches_subdomains = !"),
            FAST_FLUSH_DOMAINS
        )
        .is_err());
    }

    #[test]
    fn from_config_expands_and_picks_the_mode() {
        let p = params("relay_domains = relay.example, $extra\nextra = more.example\ncompatibility_level = 3.6\n");
        let list = DomainList::from_params(&p).unwrap();
        assert!(list.parent_matching());
        assert_eq!(list.pattern_count(), 2);
        assert_eq!(path(list.verdict("sub.more.example")), "sub_more_example");

        let p = params("compatibility_level = 3.6\n");
        let list = DomainList::from_params(&p).unwrap();
        assert_eq!(list.pattern_count(), 0);
        assert!(matches!(list.verdict("anything.example"), Verdict::Deny(_)));
    }

    #[test]
    fn verdict_order() {
        let list = DomainList::parse("static:all", true).unwrap();
        assert_eq!(path(list.verdict("Relay.Test")), "relay_test");
        assert_eq!(path(list.verdict("[10.0.0.1]")), "_10_0_0_1_");
        assert!(matches!(list.verdict(""), Verdict::Bad(_)));
        assert!(matches!(list.verdict("-bad.example"), Verdict::Deny(_)));
        assert!(matches!(list.verdict(&"a".repeat(300)), Verdict::Bad(_)));

        let list = DomainList::parse("example.com", true).unwrap();
        assert!(matches!(list.verdict(&"a".repeat(300)), Verdict::Deny(_)));
        let list = DomainList::parse("nosuch:table", true).unwrap();
        assert!(matches!(list.verdict("x.example"), Verdict::Fail(_)));
        // FAIL comes before the IDNA check, as in flush(8).
        assert!(matches!(list.verdict("-bad.example"), Verdict::Fail(_)));
    }
}
