//! `fast_flush_domains` compiled for lookups whose time does not grow with
//! the list.
//!
//! Mirrors `match_list_parse()`/`match_list_match()` (`src/util/match_list.c`)
//! with `match_hostname()` (`src/util/match_ops.c`) as `domain_list`
//! (`src/global/domain_list.c`) combines them. Postfix scans the patterns in
//! order and stops at the first that matches; a lookup of name N against
//! pattern P succeeds when:
//!
//! - plain P: N == P; or, with parent matching, P is what follows some `.`
//!   in N (so `example.com` matches `a.example.com`, and `.example.com`
//!   matches only names with `..example.com` in them); or, without parent
//!   matching, P starts with `.` and is a proper suffix of N (so
//!   `.example.com` matches `a.example.com` but not `example.com`);
//! - a fixed-string table P (`inline:`, `texthash:`): the table holds N, or
//!   one of the keys made by walking N's dots: with parent matching the
//!   parent domains without their dot (`b.example.com`, `example.com`,
//!   `com`), without it with the dot (`.b.example.com`, `.example.com`,
//!   `.com`);
//! - `static:`: always (for a non-empty N);
//! - an unusable table or file (surrogate): the lookup fails, and the
//!   request gets FAIL.
//!
//! Here every plain pattern and table key goes into a hash map from the
//! string to the earliest pattern that holds it, with that pattern's
//! polarity. A lookup tries each candidate key of N (one per dot, two
//! families: plain and table), and takes the earliest of those hits, the
//! first `static:` and the first surrogate: the same answer as Postfix's
//! scan, in time that depends on the number of labels of N only.
//!
//! Case: names and plain patterns are compared case-insensitively, as in
//! Postfix. Table keys are case-folded too, where Postfix leaves them as
//! written (and so an upper-case key in `inline:` or `texthash:` never
//! matches there). Non-ASCII patterns, keys and sites are converted with
//! IDNA before they are compared, where Postfix compares case-folded UTF-8;
//! Postfix's clients refuse non-ASCII sites on their side anyway.

use super::table::{self, Table};
use super::tokens::{read_logical_lines, Token, Tokens};
use super::DomainError;
use foldhash::HashMap;
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use std::borrow::Cow;
use std::path::PathBuf;

/// The most patterns a list may hold (table keys count one each).
pub const MAX_PATTERNS: usize = 10_000_000;

/// How deep `/file/name` items may include each other.
pub const MAX_INCLUDE_DEPTH: usize = 10;

/// The earliest pattern holding a key, and whether it is negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit {
    index: u32,
    positive: bool,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No pattern matches.
    NoMatch,
    /// The first matching pattern; `positive` is false for `!pattern`.
    Match {
        /// False for a negated pattern.
        positive: bool,
    },
    /// A surrogate table was reached before any match.
    Fail(String),
}

/// A compiled `fast_flush_domains`.
#[derive(Debug, Default)]
pub struct DomainList {
    parent: bool,
    plain: HashMap<Box<str>, Hit>,
    table_keys: HashMap<Box<str>, Hit>,
    catch_all: Option<Hit>,
    surrogate: Option<(u32, String)>,
    patterns: usize,
    sources: Vec<PathBuf>,
}

impl DomainList {
    /// Compiles a list (already `$`-expanded); `parent_matching` is whether
    /// `parent_domain_matches_subdomains` names `fast_flush_domains`.
    ///
    /// # Errors
    /// A `!` with nothing after it, files that include each other more than
    /// [`MAX_INCLUDE_DEPTH`] deep, more than [`MAX_PATTERNS`] patterns.
    /// Unreadable files and unusable tables are not errors: they become
    /// surrogates that FAIL the lookups reaching them.
    pub fn parse(list: &str, parent_matching: bool) -> Result<DomainList, DomainError> {
        let mut builder = Builder {
            list: DomainList {
                parent: parent_matching,
                ..DomainList::default()
            },
        };
        builder.add_text(list, true, 0, "fast_flush_domains")?;
        let mut list = builder.list;
        list.sources.sort();
        list.sources.dedup();
        Ok(list)
    }

    /// How many patterns were compiled (table keys, tables, files' items).
    pub fn pattern_count(&self) -> usize {
        self.patterns
    }

    /// Every file the list read or tried to read (`/file` items and
    /// `texthash:` tables), for reload checks.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// Whether parent-domain matching is on.
    pub fn parent_matching(&self) -> bool {
        self.parent
    }

    /// Postfix's first-match lookup of `name`, already through [`match_key`].
    pub(crate) fn lookup(&self, name: &str) -> Outcome {
        // Postfix does no lookup at all for an empty name.
        if name.is_empty() {
            return Outcome::NoMatch;
        }
        let mut best: Option<Hit> = None;
        let mut consider = |hit: Option<&Hit>| match (hit, best) {
            (Some(h), Some(b)) if b.index <= h.index => {}
            (Some(&h), _) => best = Some(h),
            (None, _) => {}
        };
        let bytes = name.as_bytes();
        if !self.plain.is_empty() {
            consider(self.plain.get(name));
            for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'.') {
                if self.parent {
                    consider(self.plain.get(&name[i + 1..]));
                } else if i > 0 {
                    consider(self.plain.get(&name[i..]));
                }
            }
        }
        if !self.table_keys.is_empty() {
            // The walk of match_hostname(): from each entry, the next dot
            // after its first byte; with parent matching, skip that dot.
            let mut entry = 0;
            while entry < bytes.len() {
                consider(self.table_keys.get(&name[entry..]));
                let Some(p) = bytes[entry + 1..].iter().position(|&b| b == b'.') else {
                    break;
                };
                let dot = entry + 1 + p;
                entry = if self.parent { dot + 1 } else { dot };
            }
        }
        consider(self.catch_all.as_ref());
        match (&self.surrogate, best) {
            (Some((_, why)), None) => Outcome::Fail(why.clone()),
            (Some((index, why)), Some(b)) if *index < b.index => Outcome::Fail(why.clone()),
            (_, Some(b)) => Outcome::Match {
                positive: b.positive,
            },
            (_, None) => Outcome::NoMatch,
        }
    }
}

/// The form names, patterns and keys are compared in: ASCII lower case;
/// non-ASCII text through UTS-46 ToASCII (lenient: the site's own IDNA check
/// comes later), or Unicode lower case when that fails; a leading `.` and
/// `[...]` address literals are kept as they are apart from case.
pub(crate) fn match_key(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return super::site::lowercase_ascii(s);
    }
    let (dot, rest) = match s.strip_prefix('.') {
        Some(rest) => (".", rest),
        None => ("", s),
    };
    if rest.starts_with('[') {
        return Cow::Owned(s.to_lowercase());
    }
    match Uts46::new().to_ascii(
        rest.as_bytes(),
        AsciiDenyList::EMPTY,
        Hyphens::Allow,
        DnsLength::Ignore,
    ) {
        Ok(ascii) => Cow::Owned(format!("{dot}{ascii}")),
        Err(_) => Cow::Owned(s.to_lowercase()),
    }
}

struct Builder {
    list: DomainList,
}

impl Builder {
    /// `match_list_parse()`: the items of `text`, each negated when
    /// `positive` is false (a `!/file` negates everything inside).
    fn add_text(
        &mut self,
        text: &str,
        positive: bool,
        depth: usize,
        origin: &str,
    ) -> Result<(), DomainError> {
        for token in Tokens::new(text) {
            let start = match token {
                Token::Item(s) => s,
                Token::Comment(s) => {
                    log::warn!(
                        "{origin}: comment after other text is not allowed: {s} (rest ignored)"
                    );
                    break;
                }
            };
            let bangs = start.bytes().take_while(|&b| b == b'!').count();
            let item = &start[bangs..];
            let positive = positive == (bangs % 2 == 0);
            if item.is_empty() {
                return Err(DomainError::NoPattern {
                    origin: origin.to_string(),
                });
            }
            if item.starts_with('/') {
                self.add_file(item, positive, depth)?;
            } else if !item.starts_with('[') && item.contains(':') {
                self.add_table(item, positive, origin)?;
            } else {
                let hit = self.next_hit(positive)?;
                self.list.plain.entry(match_key(item).into()).or_insert(hit);
            }
        }
        Ok(())
    }

    fn add_file(&mut self, path: &str, positive: bool, depth: usize) -> Result<(), DomainError> {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(DomainError::IncludeDepth {
                path: PathBuf::from(path),
            });
        }
        self.list.sources.push(PathBuf::from(path));
        match read_logical_lines(path.as_ref()) {
            Ok(lines) => {
                for (lineno, line) in lines {
                    self.add_text(
                        &line,
                        positive,
                        depth + 1,
                        &format!("{path}, line {lineno}"),
                    )?;
                }
                Ok(())
            }
            Err(why) => {
                log::warn!("fast_flush_domains: {why}; destinations that reach this item get FAIL");
                self.add_surrogate(format!("{path}: {why}"))
            }
        }
    }

    fn add_table(&mut self, spec: &str, positive: bool, origin: &str) -> Result<(), DomainError> {
        match table::open(spec, &mut self.list.sources) {
            Table::Keys(keys) => {
                let hit = self.next_hit(positive)?;
                if self.list.patterns.saturating_add(keys.len()) > MAX_PATTERNS {
                    return Err(DomainError::TooManyPatterns);
                }
                self.list.patterns += keys.len().saturating_sub(1);
                for key in keys {
                    self.list
                        .table_keys
                        .entry(match_key(&key).into())
                        .or_insert(hit);
                }
                Ok(())
            }
            Table::Static => {
                let hit = self.next_hit(positive)?;
                self.list.catch_all.get_or_insert(hit);
                Ok(())
            }
            Table::Surrogate(why) => {
                log::warn!("{origin}: {spec}: {why}; destinations that reach this table get FAIL");
                self.add_surrogate(format!("{spec}: table lookup problem: {why}"))
            }
        }
    }

    fn add_surrogate(&mut self, why: String) -> Result<(), DomainError> {
        let hit = self.next_hit(true)?;
        if self.list.surrogate.is_none() {
            self.list.surrogate = Some((hit.index, why));
        }
        Ok(())
    }

    /// The next pattern's position in the list.
    fn next_hit(&mut self, positive: bool) -> Result<Hit, DomainError> {
        if self.list.patterns >= MAX_PATTERNS {
            return Err(DomainError::TooManyPatterns);
        }
        let index = u32::try_from(self.list.patterns).map_err(|_| DomainError::TooManyPatterns)?;
        self.list.patterns += 1;
        Ok(Hit { index, positive })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn look(list: &str, parent: bool, name: &str) -> Outcome {
        DomainList::parse(list, parent)
            .unwrap()
            .lookup(&match_key(name))
    }

    const YES: Outcome = Outcome::Match { positive: true };
    const NEG: Outcome = Outcome::Match { positive: false };

    #[test]
    fn plain_patterns_in_parent_mode() {
        assert_eq!(look("example.com", true, "example.com"), YES);
        assert_eq!(look("example.com", true, "a.b.example.com"), YES);
        assert_eq!(
            look("example.com", true, "badexample.com"),
            Outcome::NoMatch
        );
        // The leading-dot surprise: the dot before the pattern must be a
        // second dot.
        assert_eq!(
            look(".example.com", true, "a.example.com"),
            Outcome::NoMatch
        );
        assert_eq!(look(".example.com", true, "a..example.com"), YES);
        assert_eq!(look(".example.com", true, ".example.com"), YES);
    }

    #[test]
    fn plain_patterns_without_parent_mode() {
        assert_eq!(look("example.com", false, "example.com"), YES);
        assert_eq!(
            look("example.com", false, "a.example.com"),
            Outcome::NoMatch
        );
        assert_eq!(look(".example.com", false, "a.example.com"), YES);
        assert_eq!(look(".example.com", false, "a.b.example.com"), YES);
        assert_eq!(look(".example.com", false, "example.com"), Outcome::NoMatch);
    }

    #[test]
    fn first_match_wins() {
        assert_eq!(look("!a.example, example", true, "a.example"), NEG);
        assert_eq!(look("example, !a.example", true, "a.example"), YES);
        assert_eq!(look("!!a.example", true, "a.example"), YES);
        assert_eq!(look("!!!a.example", true, "a.example"), NEG);
        // Same string twice: the earlier one counts.
        assert_eq!(look("!x.example, x.example", false, "x.example"), NEG);
    }

    #[test]
    fn table_walks() {
        let t = "inline:{ example.com=1 }";
        assert_eq!(look(t, true, "a.b.example.com"), YES);
        assert_eq!(look(t, false, "a.b.example.com"), Outcome::NoMatch);
        let t = "inline:{ .example.com=1 }";
        assert_eq!(look(t, true, "a.example.com"), Outcome::NoMatch);
        assert_eq!(look(t, false, "a.example.com"), YES);
        // The walk starts after the first byte: a leading-dot name does not
        // look up itself without its dot.
        let t = "inline:{ example.com=1 }";
        assert_eq!(look(t, true, ".example.com"), Outcome::NoMatch);
        // The top-level domain is looked up too.
        assert_eq!(look("inline:{ com=1 }", true, "a.example.com"), YES);
        assert_eq!(look("inline:{ .com=1 }", false, "a.example.com"), YES);
    }

    #[test]
    fn static_and_surrogates_by_position() {
        assert_eq!(look("static:x", true, "anything.example"), YES);
        assert_eq!(look("!a.example, static:x", true, "a.example"), NEG);
        assert_eq!(look("!static:x, a.example", true, "a.example"), NEG);
        assert!(matches!(
            look("foo:bar, a.example", true, "a.example"),
            Outcome::Fail(_)
        ));
        assert_eq!(look("a.example, foo:bar", true, "a.example"), YES);
        assert!(matches!(
            look("a.example, foo:bar", true, "b.example"),
            Outcome::Fail(_)
        ));
        assert_eq!(look("static:x", true, ""), Outcome::NoMatch);
        assert_eq!(look("foo:bar", true, ""), Outcome::NoMatch);
    }

    #[test]
    fn idna_on_both_sides() {
        assert_eq!(look("bücher.example", true, "xn--bcher-kva.example"), YES);
        assert_eq!(look("xn--bcher-kva.example", true, "BÜCHER.example"), YES);
        assert_eq!(look(".bücher.example", false, "www.bücher.example"), YES);
        assert_eq!(
            look("inline:{ Bücher.Example=1 }", true, "a.bücher.example"),
            YES
        );
    }

    #[test]
    fn case_is_ignored() {
        assert_eq!(look("Example.COM", true, "a.EXAMPLE.com"), YES);
        assert_eq!(look("inline:{ Example.COM=1 }", true, "example.com"), YES);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            DomainList::parse("a, !", true),
            Err(DomainError::NoPattern { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let loop_file = dir.path().join("loop");
        std::fs::write(&loop_file, format!("{}\n", loop_file.display())).unwrap();
        assert!(matches!(
            DomainList::parse(&loop_file.display().to_string(), true),
            Err(DomainError::IncludeDepth { .. })
        ));
    }

    #[test]
    fn counts_and_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("list");
        std::fs::write(&f, "a.example b.example\n# comment\nc.example\n").unwrap();
        let text = format!(
            "x.example, {}, inline:{{ k1=v, k2=v }}, texthash:{}",
            f.display(),
            dir.path().join("missing").display()
        );
        let list = DomainList::parse(&text, true).unwrap();
        assert_eq!(list.pattern_count(), 1 + 3 + 2 + 1);
        assert_eq!(list.sources().len(), 2);
        assert_eq!(list.lookup("c.example"), YES);
        assert!(matches!(list.lookup("zzz"), Outcome::Fail(_)));
    }
}
