//! The requests of the fast flush service, one module each, shared by the
//! daemon and its clients.
//!
//! Each request type knows how to parse its line-protocol arguments and how to
//! encode itself as a line, so `flushctl` and `flushd` cannot disagree.

mod add;
mod purge;
mod refresh;
mod send_file;
mod send_site;
mod stats;

pub use add::Add;
pub use purge::Purge;
pub use refresh::Refresh;
pub use send_file::SendFile;
pub use send_site::SendSite;
pub use stats::Stats;

use std::fmt;

/// One request, decoded from either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `add SITE QUEUEID`: log a deferred queue ID for a site.
    Add(Add),
    /// `send_site SITE`: deliver everything logged for a site.
    SendSite(SendSite),
    /// `send_file QUEUEID`: deliver one deferred message.
    SendFile(SendFile),
    /// `refresh` (`rfrsh` on Postfix's wire): refresh old logs in the background.
    Refresh(Refresh),
    /// `purge`: refresh every log now, in the background.
    Purge(Purge),
    /// `stats`: the actors' counters as JSON (line protocol only).
    Stats(Stats),
}

/// The verbs, for per-verb counters and safe logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Add,
    SendSite,
    SendFile,
    Refresh,
    Purge,
    Stats,
}

impl Verb {
    /// Every verb, in a fixed order for counter tables.
    pub const ALL: [Verb; 6] = [
        Verb::Add,
        Verb::SendSite,
        Verb::SendFile,
        Verb::Refresh,
        Verb::Purge,
        Verb::Stats,
    ];

    /// The line-protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::SendSite => "send_site",
            Verb::SendFile => "send_file",
            Verb::Refresh => "refresh",
            Verb::Purge => "purge",
            Verb::Stats => "stats",
        }
    }

    /// Index into `[T; 6]` counter tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Looks a verb up by its line-protocol name, case-insensitively;
    /// `rfrsh` (Postfix's wire name) is a synonym of `refresh`.
    pub fn from_name(name: &str) -> Option<Verb> {
        if name.eq_ignore_ascii_case("rfrsh") {
            return Some(Verb::Refresh);
        }
        Verb::ALL
            .into_iter()
            .find(|verb| name.eq_ignore_ascii_case(verb.as_str()))
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Request {
    /// The request's verb.
    pub fn verb(&self) -> Verb {
        match self {
            Request::Add(_) => Verb::Add,
            Request::SendSite(_) => Verb::SendSite,
            Request::SendFile(_) => Verb::SendFile,
            Request::Refresh(_) => Verb::Refresh,
            Request::Purge(_) => Verb::Purge,
            Request::Stats(_) => Verb::Stats,
        }
    }

    /// Parses one line-protocol request (without its line ending).
    ///
    /// # Errors
    /// A short reason for a `BAD` reply: empty line, unknown verb, wrong
    /// argument count, invalid queue ID.
    ///
    /// ```
    /// use flush_proto::Request;
    /// let req = Request::parse_line("ADD relay.test 3F2A41C0B1").unwrap();
    /// assert_eq!(req.to_line(), "add relay.test 3F2A41C0B1");
    /// assert!(Request::parse_line("add relay.test").is_err());
    /// ```
    pub fn parse_line(line: &str) -> Result<Request, String> {
        let mut words = words(line);
        let Some(verb_word) = words.next() else {
            return Err("empty request".to_string());
        };
        let Some(verb) = Verb::from_name(verb_word) else {
            return Err(format!("unknown request {}", printable(verb_word, 32)));
        };
        // No verb takes more than MAX_ARGS arguments: those fit on the stack,
        // and only a request with too many collects them all (for its error).
        let mut args = [""; MAX_ARGS];
        let mut count = 0;
        while let Some(word) = words.next() {
            match args.get_mut(count) {
                Some(slot) => *slot = word,
                None => {
                    let all: Vec<&str> = args.into_iter().chain([word]).chain(words).collect();
                    return Request::parse_args(verb, &all);
                }
            }
            count += 1;
        }
        Request::parse_args(verb, &args[..count])
    }

    fn parse_args(verb: Verb, args: &[&str]) -> Result<Request, String> {
        match verb {
            Verb::Add => Add::parse(args).map(Request::Add),
            Verb::SendSite => SendSite::parse(args).map(Request::SendSite),
            Verb::SendFile => SendFile::parse(args).map(Request::SendFile),
            Verb::Refresh => Refresh::parse(args).map(Request::Refresh),
            Verb::Purge => Purge::parse(args).map(Request::Purge),
            Verb::Stats => Stats::parse(args).map(Request::Stats),
        }
    }

    /// Encodes the request as one line-protocol line, without the newline.
    pub fn to_line(&self) -> String {
        match self {
            Request::Add(r) => r.to_line(),
            Request::SendSite(r) => r.to_line(),
            Request::SendFile(r) => r.to_line(),
            Request::Refresh(r) => r.to_line(),
            Request::Purge(r) => r.to_line(),
            Request::Stats(r) => r.to_line(),
        }
    }
}

/// The most arguments any verb takes.
const MAX_ARGS: usize = 2;

/// What separates the words of a line-protocol request.
fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// The words of a request line: runs of anything but blanks. Found byte by
/// byte (blanks are ASCII, so every cut is a character boundary), which is
/// cheaper than splitting by characters on a path every request takes.
fn words(line: &str) -> impl Iterator<Item = &str> {
    let bytes = line.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + bytes.get(at..)?.iter().position(|&b| !is_blank(b))?;
        let len = bytes[start..]
            .iter()
            .position(|&b| is_blank(b))
            .unwrap_or(bytes.len() - start);
        at = start + len;
        line.get(start..at)
    })
}

/// Checks that a verb got exactly `N` arguments.
fn expect_args<'a, const N: usize>(verb: Verb, args: &[&'a str]) -> Result<[&'a str; N], String> {
    <[&str; N]>::try_from(args).map_err(|_| {
        format!(
            "{verb} takes {N} argument{}, got {}",
            if N == 1 { "" } else { "s" },
            args.len()
        )
    })
}

/// A client-supplied word made safe to echo in a reply or a log line:
/// at most `max` characters, control characters shown as `?`.
pub fn printable(word: &str, max: usize) -> String {
    let mut out: String = word
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if word.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_at_spaces_and_tabs_only() {
        let split = |line| words(line).collect::<Vec<_>>();
        assert_eq!(split("add  a.example\tID1 "), ["add", "a.example", "ID1"]);
        assert_eq!(split(" \t "), Vec::<&str>::new());
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split("é\u{a0}x y"), ["é\u{a0}x", "y"]);
    }

    proptest::proptest! {
        /// The byte-wise split finds what a split by characters finds.
        #[test]
        fn words_match_a_split_by_characters(line in "[ \ta-zé\u{a0}.]{0,40}") {
            let expected: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            proptest::prop_assert_eq!(words(&line).collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn verbs_are_case_insensitive_and_rfrsh_is_refresh() {
        assert_eq!(Verb::from_name("SEND_SITE"), Some(Verb::SendSite));
        assert_eq!(Verb::from_name("rfrsh"), Some(Verb::Refresh));
        assert_eq!(Verb::from_name("flush"), None);
    }

    #[test]
    fn every_verb_rejects_wrong_argument_counts() {
        for bad in [
            "add",
            "add a",
            "add a b c",
            "send_site",
            "send_site a b",
            "send_file",
            "send_file A B",
            "refresh x",
            "purge x",
            "stats x",
        ] {
            assert!(Request::parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn too_many_arguments_are_all_counted() {
        let err = Request::parse_line("add a B c d\te").expect_err("five arguments");
        assert_eq!(err, "add takes 2 arguments, got 5");
        let err = Request::parse_line("send_site a b").expect_err("two arguments");
        assert_eq!(err, "send_site takes 1 argument, got 2");
    }

    #[test]
    fn separators_are_runs_of_spaces_and_tabs() {
        let req = Request::parse_line("  add\t\trelay.test   ABC  ").expect("parses");
        assert_eq!(req, Request::Add(Add::new("relay.test", "ABC")));
    }

    #[test]
    fn lines_round_trip() {
        for line in [
            "add relay.test ABC",
            "send_site relay.test",
            "send_file ABC",
            "refresh",
            "purge",
            "stats",
        ] {
            let req = Request::parse_line(line).expect("parses");
            assert_eq!(req.to_line(), line);
        }
    }

    #[test]
    fn printable_truncates_and_masks() {
        assert_eq!(printable("ab\u{7}c", 10), "ab?c");
        assert_eq!(printable("abcdef", 3), "abc...");
    }
}
