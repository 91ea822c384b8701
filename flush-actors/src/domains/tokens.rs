//! Splitting Postfix lists into items, and reading the files they name.
//!
//! Mirrors `mystrtokq_cw()` (`src/util/mystrtok.c`) with Postfix's
//! `CHARS_COMMA_SP` separators and `CHARS_BRACE` grouping, `balpar()`,
//! `extpar()` and `split_qnameval()` for `inline:{...}` tables, and
//! `readllines()` (via [`crate::config::main_cf`]) for `/file/name` items and
//! `texthash:` files.

use std::io::Read;
use std::path::Path;

/// Item separators of every Postfix list: comma and white space.
const SEPARATORS: &[u8] = b", \t\r\n";

/// The largest file a list or table may read (files far bigger than any
/// real domain list; a wrong path must not eat the memory).
pub const MAX_LIST_FILE_BYTES: u64 = 256 << 20;

/// One item of a list, or the end of the list.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// An item, braces kept: `inline:{ a=x, b=y }` is one item.
    Item(&'a str),
    /// An item starting with `#`: Postfix warns and ignores the rest.
    Comment(&'a str),
}

/// Items separated by commas and/or white space, `{...}` groups kept whole.
pub(crate) struct Tokens<'a> {
    rest: &'a str,
    comments: bool,
}

impl<'a> Tokens<'a> {
    /// A list tokenizer that stops at an item starting with `#`
    /// (`mystrtokq_cw()`).
    pub(crate) fn new(text: &'a str) -> Tokens<'a> {
        Tokens {
            rest: text,
            comments: true,
        }
    }

    /// A tokenizer for which `#` is ordinary text (`mystrtokq()`, as inside
    /// `inline:{...}`).
    pub(crate) fn plain(text: &'a str) -> Tokens<'a> {
        Tokens {
            rest: text,
            comments: false,
        }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let s = self
            .rest
            .trim_start_matches(|c: char| c.is_ascii() && SEPARATORS.contains(&(c as u8)));
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let mut level = 0usize;
        let mut end = s.len();
        for (i, b) in s.bytes().enumerate() {
            match b {
                b'{' => level += 1,
                b'}' if level > 0 => level -= 1,
                _ if level == 0 && SEPARATORS.contains(&b) => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let item = &s[..end];
        self.rest = &s[end..];
        if self.comments && item.starts_with('#') {
            // Like mystrtokq_cw(): the list ends here.
            self.rest = "";
            return Some(Token::Comment(item));
        }
        Some(Token::Item(item))
    }
}

/// `balpar()`: the length of the balanced `{...}` at the start of `s`, or
/// `None` when `s` does not start with `{` or never closes it.
pub(crate) fn balanced_braces(s: &str) -> Option<usize> {
    if !s.starts_with('{') {
        return None;
    }
    let mut level = 0usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'{' => level += 1,
            b'}' => {
                level -= 1;
                if level == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// `extpar()` with stripping: the text inside a `{...}` that makes up all of
/// `s`, white space trimmed.
pub(crate) fn strip_braces(s: &str) -> Result<&str, String> {
    match balanced_braces(s) {
        None => Err(format!("missing '}}' in {s:?}")),
        Some(len) if len != s.len() => Err(format!("syntax error after '}}' in {s:?}")),
        Some(len) => Ok(s[1..len - 1].trim_matches(is_space)),
    }
}

/// `split_qnameval()`: `key = value`, where the key may hold `"..."` quoted
/// white space or `=` and `\` escapes; the key is returned as written.
pub(crate) fn split_key_value(s: &str) -> Result<(&str, &str), &'static str> {
    let s = s.trim_start_matches(is_space);
    if s.is_empty() {
        return Err("no key found; expected format: key = value");
    }
    let end = key_end(s)?;
    let key = &s[..end];
    let rest = s[end..].trim_start_matches(is_space);
    let value = rest
        .strip_prefix('=')
        .ok_or("missing '=' after attribute name")?;
    Ok((key, value.trim_matches(is_space)))
}

/// The end of a key that stops at unquoted white space (or `=` when asked),
/// honouring `\` escapes and `"` quotes as Postfix's table parsers do.
fn key_end_at(s: &str, stop_at_equals: bool) -> Result<usize, &'static str> {
    let bytes = s.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                i += 1;
                if i >= bytes.len() {
                    break;
                }
            }
            b'"' => in_quotes = !in_quotes,
            b'=' if stop_at_equals && !in_quotes => break,
            b if !in_quotes && is_space(char::from(b)) => break,
            _ => {}
        }
        i += 1;
    }
    if in_quotes {
        return Err("unbalanced '\"'");
    }
    // A trailing backslash may point past the end.
    Ok(i.min(bytes.len()))
}

fn key_end(s: &str) -> Result<usize, &'static str> {
    key_end_at(s, true)
}

/// A `texthash:` line split into key and value, as `dict_thash_open()` does:
/// the key ends at the first unquoted white space; both must be non-empty.
pub(crate) fn split_text_table_line(line: &str) -> Result<(&str, &str), &'static str> {
    let end = key_end_at(line, false)?;
    let key = &line[..end];
    let value = line[end..].trim_matches(is_space);
    if key.is_empty() || value.is_empty() {
        return Err("expected format: key whitespace value");
    }
    Ok((key, value))
}

/// Reads a list or table file as Postfix's logical lines, at most
/// [`MAX_LIST_FILE_BYTES`]; bytes that are not UTF-8 become U+FFFD.
pub(crate) fn read_logical_lines(path: &Path) -> Result<Vec<(usize, String)>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("open file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_LIST_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("read file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_LIST_FILE_BYTES {
        return Err(format!(
            "file {} is larger than {MAX_LIST_FILE_BYTES} bytes",
            path.display()
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(crate::config::main_cf::logical_lines(&text))
}

fn is_space(c: char) -> bool {
    crate::config::main_cf::is_space(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn items(s: &str) -> Vec<Token<'_>> {
        Tokens::new(s).collect()
    }

    #[test]
    fn commas_and_white_space_separate() {
        assert_eq!(
            items(" a, b,,c\td\n e "),
            ["a", "b", "c", "d", "e"].map(Token::Item)
        );
        assert!(items(" ,, ").is_empty());
    }

    #[test]
    fn braces_group() {
        assert_eq!(
            items("x, inline:{ a=x, b=y }, !static:{ q r } z"),
            [
                Token::Item("x"),
                Token::Item("inline:{ a=x, b=y }"),
                Token::Item("!static:{ q r }"),
                Token::Item("z")
            ]
        );
        // An unclosed brace swallows the rest, as mystrtokq() does.
        assert_eq!(items("inline:{ a=x, b"), [Token::Item("inline:{ a=x, b")]);
    }

    #[test]
    fn a_comment_item_ends_the_list() {
        assert_eq!(items("a, #b, c"), [Token::Item("a"), Token::Comment("#b")]);
        assert_eq!(items("!#b"), [Token::Item("!#b")]);
        let plain: Vec<_> = Tokens::plain("a, #b, c").collect();
        assert_eq!(plain, ["a", "#b", "c"].map(Token::Item));
    }

    #[test]
    fn braces_and_key_values() {
        assert_eq!(balanced_braces("{a{b}c}d"), Some(7));
        assert_eq!(balanced_braces("{a"), None);
        assert_eq!(strip_braces("{ a = b }").unwrap(), "a = b");
        assert!(strip_braces("{a}b").is_err());
        assert_eq!(split_key_value(" a = x y ").unwrap(), ("a", "x y"));
        assert_eq!(split_key_value("a=").unwrap(), ("a", ""));
        assert_eq!(split_key_value("\"a b\"=c").unwrap(), ("\"a b\"", "c"));
        assert!(split_key_value("a").is_err());
        assert!(split_key_value("\"a=b").is_err());
        assert_eq!(
            split_text_table_line("key  value here").unwrap(),
            ("key", "value here")
        );
        assert!(split_text_table_line("lonely").is_err());
    }
}
