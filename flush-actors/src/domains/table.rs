//! `type:table` items of a domain list: the three table types flushd reads,
//! and Postfix's surrogate table for everything else.
//!
//! Mirrors `src/util/dict_inline.c`, `dict_thash.c`, `dict_static.c` and
//! `dict_surrogate.c` as `dict_open()` (`src/util/dict_open.c`) uses them for
//! `match_list`: a table that cannot be opened (bad syntax, unreadable file,
//! duplicate `texthash` key, unsupported type) becomes a surrogate whose
//! first lookup fails, so the list still loads and only requests that reach
//! it get FAIL.
//!
//! Only the keys matter for a domain list; values are checked for syntax and
//! dropped.

use super::tokens::{
    read_logical_lines, split_key_value, split_text_table_line, strip_braces, Token, Tokens,
};
use std::collections::HashSet;
use std::path::PathBuf;

/// An opened table, as far as domain matching cares.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Table {
    /// A fixed-string table (`inline:`, `texthash:`): its keys as written.
    Keys(Vec<String>),
    /// `static:`: every lookup finds something.
    Static,
    /// A table that could not be opened: every lookup fails, for this reason.
    Surrogate(String),
}

/// Opens `spec` (`type:name`, without any `!`). Files it reads, or tries to,
/// are added to `sources`.
pub(crate) fn open(spec: &str, sources: &mut Vec<PathBuf>) -> Table {
    let Some((kind, name)) = spec.split_once(':') else {
        return Table::Surrogate(format!("expecting \"type:name\" form instead of {spec:?}"));
    };
    if kind.is_empty() || name.is_empty() {
        return Table::Surrogate(format!("expecting \"type:name\" form instead of {spec:?}"));
    }
    match kind {
        "inline" => open_inline(name),
        "texthash" => {
            sources.push(PathBuf::from(name));
            open_texthash(name)
        }
        "static" => open_static(name),
        other => Table::Surrogate(format!("unsupported dictionary type: {other}")),
    }
}

/// `inline:{ key=value, { key = value }, ... }`.
fn open_inline(name: &str) -> Table {
    let need = || format!("need \"inline:{{name=value...}}\", not \"inline:{name}\"");
    let inner = match strip_braces(name) {
        Ok(inner) if !name[1..name.len() - 1].is_empty() => inner,
        _ => return Table::Surrogate(format!("bad syntax: {}", need())),
    };
    let mut keys = Vec::new();
    for token in Tokens::plain(inner) {
        let item = match token {
            Token::Item(s) | Token::Comment(s) => s,
        };
        let pair = if item.starts_with('{') {
            match strip_braces(item) {
                Ok(s) => s,
                Err(e) => return Table::Surrogate(format!("{e}: {}", need())),
            }
        } else {
            item
        };
        match split_key_value(pair) {
            Ok((key, _value)) => keys.push(key.to_string()),
            Err(e) => return Table::Surrogate(format!("{e}: {}", need())),
        }
    }
    if keys.is_empty() {
        return Table::Surrogate(format!("empty table: {}", need()));
    }
    Table::Keys(keys)
}

/// `texthash:/path`: a text file of `key value` lines.
fn open_texthash(path: &str) -> Table {
    let lines = match read_logical_lines(path.as_ref()) {
        Ok(lines) => lines,
        Err(e) => return Table::Surrogate(format!("open database {path}: {e}")),
    };
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    for (lineno, line) in lines {
        match split_text_table_line(&line) {
            Ok((key, _value)) => {
                if !seen.insert(key.to_string()) {
                    // dict_thash_open() without a DUP flag gives up on the table.
                    return Table::Surrogate(format!(
                        "{path}, line {lineno}: duplicate entry: {key:?}"
                    ));
                }
                keys.push(key.to_string());
            }
            Err(e) => log::warn!("{path}, line {lineno}: {e} -- ignoring this line"),
        }
    }
    Table::Keys(keys)
}

/// `static:value` or `static:{ value }`.
fn open_static(name: &str) -> Table {
    if name.starts_with('{') {
        if let Err(e) = strip_braces(name) {
            return Table::Surrogate(format!("bad static:name syntax: {e}"));
        }
    }
    Table::Static
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys(t: Table) -> Vec<String> {
        match t {
            Table::Keys(k) => k,
            other => panic!("expected keys, got {other:?}"),
        }
    }

    fn is_surrogate(t: &Table) -> bool {
        matches!(t, Table::Surrogate(_))
    }

    #[test]
    fn inline_tables() {
        let mut src = Vec::new();
        assert_eq!(
            keys(open(
                "inline:{ a.example=x, b.example=y, { c.example = v w } }",
                &mut src
            )),
            ["a.example", "b.example", "c.example"]
        );
        assert!(src.is_empty());
        for bad in [
            "inline:{ a.example = x }",
            "inline:{}",
            "inline:{ }",
            "inline:a=b",
            "inline:{a=b",
            "inline:{a=b}x",
            "inline:{a}",
        ] {
            assert!(is_surrogate(&open(bad, &mut src)), "{bad}");
        }
    }

    #[test]
    fn texthash_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(
            &path,
            "# c\na.example  OK\n\nb.example\tvalue\n  continued\nlonely\n",
        )
        .unwrap();
        let spec = format!("texthash:{}", path.display());
        let mut src = Vec::new();
        assert_eq!(keys(open(&spec, &mut src)), ["a.example", "b.example"]);
        assert_eq!(src, std::slice::from_ref(&path));

        std::fs::write(&path, "a.example x\na.example y\n").unwrap();
        assert!(is_surrogate(&open(&spec, &mut src)));

        let missing = format!("texthash:{}", dir.path().join("none").display());
        assert!(is_surrogate(&open(&missing, &mut src)));
        assert_eq!(src.len(), 3);
    }

    #[test]
    fn static_and_others() {
        let mut src = Vec::new();
        assert_eq!(open("static:anything", &mut src), Table::Static);
        assert_eq!(open("static:{ two words }", &mut src), Table::Static);
        assert!(is_surrogate(&open("static:{ open", &mut src)));
        assert!(is_surrogate(&open("hash:/etc/postfix/relay", &mut src)));
        assert!(is_surrogate(&open("regexp:/x", &mut src)));
        assert!(is_surrogate(&open("static:", &mut src)));
        assert!(is_surrogate(&open(":x", &mut src)));
        assert!(is_surrogate(&open("INLINE:{a=b}", &mut src)));
    }
}
