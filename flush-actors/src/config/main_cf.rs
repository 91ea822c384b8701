//! main.cf text to an ordered `name -> value` map.
//!
//! Mirrors Postfix's `dict_load_fp()` (`src/util/dict.c`) over
//! `readllines()` (`src/util/readlline.c`) and `split_nameval()`
//! (`src/util/split_nameval.c`): `#` comment lines and blank lines are
//! skipped, a line that starts with white space continues the logical line
//! before it (comment and blank lines in between do not end it), each logical
//! line is `name = value` with white space trimmed around both, and the last
//! definition of a name wins. Values are kept raw; [`super::expand`] does the
//! `$name` work.

use super::ConfigError;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest main.cf we read: far above any real one, small enough that a
/// wrong path (a log, a device) cannot eat the memory.
pub const MAX_MAIN_CF_BYTES: u64 = 64 << 20;

/// The file name inside the configuration directory.
pub const MAIN_CF: &str = "main.cf";

/// Parameters in the order they were first defined; a later definition
/// replaces the value in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Params {
    /// An empty map: every parameter at its built-in default.
    pub fn new() -> Params {
        Params::default()
    }

    /// Reads `config_dir/main.cf`. A missing file is an empty map, as a fresh
    /// machine without Postfix configuration runs on built-in defaults.
    ///
    /// # Errors
    /// The file exists but cannot be read, is larger than
    /// [`MAX_MAIN_CF_BYTES`], or has a line that is not `name = value`.
    pub fn load(config_dir: &Path) -> Result<Params, ConfigError> {
        let path = config_dir.join(MAIN_CF);
        match read_limited(&path)? {
            None => Ok(Params::new()),
            Some(text) => Params::parse(&text, &path.display().to_string()),
        }
    }

    /// Parses main.cf text; `origin` names it in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] for a logical line without a name or without `=`.
    pub fn parse(text: &str, origin: &str) -> Result<Params, ConfigError> {
        let mut params = Params::new();
        for (lineno, line) in logical_lines(text) {
            let (name, value) = split_name_value(&line).map_err(|reason| ConfigError::Syntax {
                origin: origin.to_string(),
                line: lineno,
                reason,
                text: shorten(&line),
            })?;
            if let Some(old) = params.get(name) {
                if old != value {
                    log::warn!("{origin}, line {lineno}: overriding earlier entry: {name}={old}");
                }
            }
            params.set(name, value);
        }
        Ok(params)
    }

    /// Defines or replaces a parameter (`-o name=value` overrides use this).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, value));
            }
        }
    }

    /// The raw (unexpanded) value, if main.cf or an override sets it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.entries[i].1.as_str())
    }

    /// True when main.cf or an override sets `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The parameters in definition order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many parameters are set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads a whole text file of at most [`MAX_MAIN_CF_BYTES`]; `None` when it
/// does not exist. Bytes that are not UTF-8 become U+FFFD (with a warning):
/// Postfix itself is byte-oriented and would accept them.
fn read_limited(path: &Path) -> Result<Option<String>, ConfigError> {
    let io_err = |source| ConfigError::Io {
        path: PathBuf::from(path),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MAIN_CF_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_MAIN_CF_BYTES {
        return Err(ConfigError::TooLarge {
            path: PathBuf::from(path),
            limit: MAX_MAIN_CF_BYTES,
        });
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            log::warn!("{}: bytes that are not UTF-8 replaced", path.display());
            Ok(Some(String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
    }
}

/// Postfix's logical lines, with the number of the line where each ends:
/// physical lines that start with white space are glued (newline dropped,
/// their leading white space kept) to the line before; comment lines (first
/// non-blank is `#`) and blank lines are dropped without ending a logical
/// line. A logical line that would start with white space is skipped with a
/// warning, as Postfix does.
pub(crate) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut end_line = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let trimmed = raw.trim_start_matches(is_space);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with(is_space) && !current.is_empty() {
            current.push_str(raw);
            end_line = i + 1;
            continue;
        }
        flush_line(&mut out, &mut current, end_line);
        current.push_str(raw);
        end_line = i + 1;
    }
    flush_line(&mut out, &mut current, end_line);
    out
}

fn flush_line(out: &mut Vec<(usize, String)>, current: &mut String, line: usize) {
    if current.is_empty() {
        return;
    }
    let text = std::mem::take(current);
    if text.starts_with(is_space) {
        log::warn!(
            "line {line}: logical line must not start with white space: {:?}",
            shorten(&text)
        );
    } else {
        out.push((line, text));
    }
}

/// `name = value` with white space trimmed around both (`split_nameval()`).
fn split_name_value(line: &str) -> Result<(&str, &str), &'static str> {
    let line = line.trim_start_matches(is_space);
    let name_end = line
        .find(|c: char| is_space(c) || c == '=')
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("missing attribute name");
    }
    let rest = line[name_end..].trim_start_matches(is_space);
    let value = rest
        .strip_prefix('=')
        .ok_or("missing '=' after attribute name")?;
    Ok((name, value.trim_matches(is_space)))
}

/// Postfix's `ISSPACE` set for these files: space, tab, CR, LF, VT, FF.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c')
}

/// A piece of input cut short (and made printable) for an error message.
fn shorten(s: &str) -> String {
    flush_proto::request::printable(s, 60)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Params {
        Params::parse(text, "main.cf").unwrap()
    }

    #[test]
    fn name_value_and_comments() {
        let p = parse("# a comment\n  # indented comment\n\nfoo = bar\nbaz=  qux quux  \r\n");
        assert_eq!(p.get("foo"), Some("bar"));
        assert_eq!(p.get("baz"), Some("qux quux"));
        assert_eq!(p.len(), 2);
        assert_eq!(p.get("nope"), None);
    }

    #[test]
    fn continuation_lines_join_with_their_white_space() {
        let p = parse("list = a,\n    b\n# comment inside\n\tc\nnext = 1\n");
        assert_eq!(p.get("list"), Some("a,    b\tc"));
        assert_eq!(p.get("next"), Some("1"));
    }

    #[test]
    fn blank_lines_do_not_end_a_logical_line() {
        // readllines() peeks past blank lines for a continuation.
        let p = parse("a = 1\n\n  2\nb = 3");
        assert_eq!(p.get("a"), Some("1  2"));
        assert_eq!(p.get("b"), Some("3"));
    }

    #[test]
    fn leading_continuation_is_skipped() {
        let p = parse("   orphan = 1\nx = 2\n");
        assert_eq!(p.get("orphan"), None);
        assert_eq!(p.get("x"), Some("2"));
    }

    #[test]
    fn last_definition_wins_in_first_position() {
        let p = parse("a = 1\nb = 2\na = 3\n");
        assert_eq!(p.get("a"), Some("3"));
        let order: Vec<_> = p.iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["a", "b"]);
    }

    #[test]
    fn empty_values_are_set() {
        let p = parse("relay_domains =\n");
        assert_eq!(p.get("relay_domains"), Some(""));
        assert!(p.contains("relay_domains"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Params::parse("a = 1\n\nthis line has no equals\n", "x/main.cf").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x/main.cf, line 3"), "{msg}");
        assert!(msg.contains("missing '='"), "{msg}");
        let err = Params::parse("= value\n", "m").unwrap_err();
        assert!(err.to_string().contains("missing attribute name"));
    }

    #[test]
    fn load_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Params::load(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join(MAIN_CF), "x = y\n").unwrap();
        assert_eq!(Params::load(dir.path()).unwrap().get("x"), Some("y"));
    }

    #[test]
    fn set_overrides() {
        let mut p = parse("a = 1\n");
        p.set("a", "2");
        p.set("b", "3");
        assert_eq!(p.get("a"), Some("2"));
        assert_eq!(p.get("b"), Some("3"));
    }
}
