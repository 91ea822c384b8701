//! Site names to logfile names: the IDNA step and the character mask.
//!
//! Mirrors `flush_site_to_path()` in Postfix's `src/flush/flush.c`, with the
//! IDNA step of `src/util/midna_domain.c` (UTS-46 non-transitional ToASCII,
//! then the `valid_hostname()` check of `src/util/valid_hostname.c`) and the
//! length rule of `mail_queue_id_ok()` (`src/global/mail_queue.c`).
//!
//! Where this differs from Postfix, on purpose:
//! - Address literals (`[10.0.0.1]`, `[ipv6:2001:db8::1]`) skip IDNA and are
//!   only lower-cased and masked; Postfix 3.7 sends them through IDNA, where
//!   they fail, so its flush(8) denies them.
//! - A site longer than [`MAX_SITE_PATH_LEN`] bytes is BAD (its file name would
//!   be invalid) before IDNA looks at it; Postfix's IDNA step would reject it
//!   first and answer DENY.
//! - The idna crate (not ICU) does the conversion; it also applies the Bidi and
//!   ContextJ rules that ICU leaves off by default, so a few exotic names that
//!   ICU converts are denied here.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use std::borrow::Cow;
use std::fmt;
use thiserror::Error;

/// The longest logfile name, as Postfix's `mail_queue_id_ok()` allows.
pub const MAX_SITE_PATH_LEN: usize = 255;

/// The longest DNS label after IDNA conversion (RFC 1035, Postfix's
/// `VALID_LABEL_LEN`).
pub const MAX_LABEL_LEN: usize = 63;

/// A logfile name under `flush/`: non-empty, at most [`MAX_SITE_PATH_LEN`]
/// bytes of lower-case ASCII letters, digits and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SitePath(String);

impl SitePath {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a file name found in `flush/` if it can be a log: the names
    /// flush(8) considers (`mail_queue_id_ok()`: letters, digits and `_`, at
    /// most [`MAX_SITE_PATH_LEN`] bytes), so that a refresh delivers what
    /// flush(8)'s would, although [`site_to_path`] itself makes only lower
    /// case. Anything else there (`.tmp` files and the like) is a stranger.
    pub fn from_file_name(name: &str) -> Option<SitePath> {
        let ok = name.len() <= MAX_SITE_PATH_LEN && flush_proto::validate_queue_id(name).is_ok();
        ok.then(|| SitePath(name.to_string()))
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for SitePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SitePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a site has no logfile name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SiteError {
    /// IDNA could not convert the site (flush(8) answers DENY).
    #[error("{0}")]
    Deny(String),
    /// The resulting file name would be invalid (flush(8) answers BAD).
    #[error("{0}")]
    Bad(String),
}

/// True for `[...]` address literals, which are matched and mapped as they are.
pub fn is_address_literal(site: &str) -> bool {
    site.len() >= 2 && site.starts_with('[') && site.ends_with(']')
}

/// The ASCII form of a site: an address literal lower-cased, anything else
/// through UTS-46 ToASCII (non-transitional, hyphen rules on, no STD3 deny
/// list, as Postfix's ICU call) and then Postfix's host-name checks.
///
/// # Errors
/// [`SiteError::Deny`] when the conversion or the host-name check fails.
pub fn to_ascii(site: &str) -> Result<Cow<'_, str>, SiteError> {
    if is_address_literal(site) {
        return Ok(lowercase_ascii(site));
    }
    let converted = Uts46::new()
        .to_ascii(
            site.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Check,
            DnsLength::Ignore,
        )
        .map_err(|_| SiteError::Deny(format!("cannot convert {:?} to ASCII", printable(site))))?;
    check_hostname(&converted)
        .map_err(|why| SiteError::Deny(format!("{:?}: {why}", printable(site))))?;
    Ok(converted)
}

/// Maps a site to its logfile name: IDNA to ASCII (address literals skip it),
/// lower case, every byte that is not an ASCII letter or digit becomes `_`.
///
/// # Errors
/// [`SiteError::Bad`] for an empty site or a name over
/// [`MAX_SITE_PATH_LEN`] bytes; [`SiteError::Deny`] when IDNA fails.
pub fn site_to_path(site: &str) -> Result<SitePath, SiteError> {
    if site.is_empty() {
        return Err(SiteError::Bad("empty site".into()));
    }
    if site.len() > MAX_SITE_PATH_LEN {
        return Err(SiteError::Bad(format!(
            "site longer than {MAX_SITE_PATH_LEN} bytes"
        )));
    }
    let ascii = to_ascii(site)?;
    let path: String = ascii
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b.to_ascii_lowercase())
            } else {
                '_'
            }
        })
        .collect();
    if path.is_empty() || path.len() > MAX_SITE_PATH_LEN {
        return Err(SiteError::Bad(format!(
            "file name for {:?} would be empty or longer than {MAX_SITE_PATH_LEN} bytes",
            printable(site)
        )));
    }
    Ok(SitePath(path))
}

/// Postfix's `valid_hostname()` on the converted name, without its total
/// length rule (that one is [`site_to_path`]'s BAD): labels are non-empty,
/// at most [`MAX_LABEL_LEN`] bytes of letters, digits, `-` and `_`, do not
/// start or end with `-`, and the name is not all digits.
fn check_hostname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty host name");
    }
    let mut non_numeric = false;
    for label in name.split('.') {
        if label.is_empty() {
            return Err("misplaced delimiter");
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("host name label too long");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("misplaced hyphen");
        }
        for b in label.bytes() {
            match b {
                b'0'..=b'9' => {}
                b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'-' => non_numeric = true,
                _ => return Err("invalid character"),
            }
        }
    }
    if non_numeric {
        Ok(())
    } else {
        Err("numeric host name")
    }
}

/// ASCII lower case, borrowing when there is nothing to change.
pub(crate) fn lowercase_ascii(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// A site cut short for error messages (clients control it).
fn printable(site: &str) -> String {
    site.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn path(site: &str) -> String {
        site_to_path(site).unwrap().into_string()
    }

    #[test]
    fn masks_and_lowercases() {
        assert_eq!(path("Relay.Test"), "relay_test");
        assert_eq!(path("foo-bar.example.COM"), "foo_bar_example_com");
        assert_eq!(path("under_score.example"), "under_score_example");
    }

    #[test]
    fn address_literals_skip_idna() {
        assert_eq!(path("[10.0.0.1]"), "_10_0_0_1_");
        assert_eq!(path("[ipv6:2001:db8::1]"), "_ipv6_2001_db8__1_");
        assert_eq!(path("[IPv6:2001:DB8::1]"), "_ipv6_2001_db8__1_");
    }

    #[test]
    fn utf8_domains_go_through_idna() {
        assert_eq!(path("bücher.example"), "xn__bcher_kva_example");
        assert_eq!(path("BÜCHER.example"), "xn__bcher_kva_example");
        assert_eq!(to_ascii("bücher.example").unwrap(), "xn--bcher-kva.example");
    }

    #[test]
    fn idna_failures_are_deny() {
        for site in [
            "-leading.example",
            "trailing-.example",
            "ab--cd.example",
            "a..b",
            "example.com.",
            "xn--zz.example",
            "1.2.3.4",
            "sp ace.example",
            "bad!char.example",
            "[unclosed.example",
        ] {
            match site_to_path(site) {
                Err(SiteError::Deny(_)) => {}
                other => panic!("{site}: expected Deny, got {other:?}"),
            }
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(matches!(site_to_path(&long_label), Err(SiteError::Deny(_))));
        assert!(site_to_path(&format!("{}.example", "a".repeat(63))).is_ok());
    }

    #[test]
    fn empty_or_long_is_bad() {
        assert!(matches!(site_to_path(""), Err(SiteError::Bad(_))));
        let long = format!("{}.example", "a".repeat(250));
        assert!(matches!(site_to_path(&long), Err(SiteError::Bad(_))));
        let long_literal = format!("[{}]", "1".repeat(254));
        assert!(matches!(
            site_to_path(&long_literal),
            Err(SiteError::Bad(_))
        ));
        let just_fits = format!("[{}]", "1".repeat(253));
        assert_eq!(path(&just_fits).len(), 255);
    }

    #[test]
    fn file_names_round_trip() {
        let p = site_to_path("Relay.Test").unwrap();
        assert_eq!(SitePath::from_file_name(p.as_str()), Some(p.clone()));
        assert_eq!(p.to_string(), "relay_test");
        // Not made by site_to_path, but flush(8)'s refresh would deliver it.
        assert!(SitePath::from_file_name("Relay_test").is_some());
        assert!(SitePath::from_file_name("_10_0_0_1_").is_some());
        assert!(SitePath::from_file_name("xn__bcher_kva_example").is_some());
        for stranger in ["", ".", "..", ".nfs123", ".tmp", "a.b", "tmp~", "a b"] {
            assert_eq!(SitePath::from_file_name(stranger), None, "{stranger:?}");
        }
        assert_eq!(SitePath::from_file_name(&"a".repeat(256)), None);
    }
}
