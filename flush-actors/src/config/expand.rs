//! `$name` expansion of parameter values, with Postfix's built-in defaults.
//!
//! Mirrors `mac_parse()` (`src/util/mac_parse.c`) and `mac_expand()`
//! (`src/util/mac_expand.c`) as `mail_conf_eval()` (`src/global/mail_conf.c`)
//! uses them, recursively:
//!
//! - `$name`, `${name}`, `$(name)`: the value, itself expanded; empty when the
//!   parameter is neither set nor has a default here.
//! - `$$`: one literal `$`.
//! - `${name?text}`, `${name?{text}}`: `text` when the value is non-empty.
//! - `${name:text}`, `${name:{text}}`: `text` when the value is empty or unset.
//! - `${name?{text1}:{text2}}`: one or the other.
//! - `${{text1} OP {text2} ? {yes} : {no}}` with OP one of `==`, `!=`, `<`,
//!   `<=`, `>=`, `>` (numeric when both sides are all digits), or the same with
//!   the `level` suffix (`<level`) that compares compatibility levels, as the
//!   default of `relay_domains` does.
//!
//! The "is it empty" test of `?` and `:` looks at the raw main.cf value, or at
//! the expanded default when main.cf is silent (Postfix stores defaults
//! expanded). Nesting deeper than [`MAX_DEPTH`] (a loop such as `a = $b`,
//! `b = $a`) is an error, as is a result over [`MAX_EXPANSION_BYTES`].

use super::Params;
use std::cmp::Ordering;
use std::sync::OnceLock;

/// How deep `$name` references may nest (Postfix: 100).
pub const MAX_DEPTH: usize = 100;

/// The longest expansion result; beyond it something is exploding.
pub const MAX_EXPANSION_BYTES: usize = 64 << 20;

/// Postfix's `DEF_MYDOMAIN`, used when the host name has no domain part.
pub const DEFAULT_MYDOMAIN: &str = "localdomain";

/// Postfix's built-in default of `parent_domain_matches_subdomains`.
pub const DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS: &str = "debug_peer_list,fast_flush_domains,\
    mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps";

/// Postfix's default of `relay_domains`: `$mydestination` below
/// compatibility level 2, empty from 2 on.
pub const DEFAULT_RELAY_DOMAINS: &str =
    "${{$compatibility_level} <level {2} ? {$mydestination} : {}}";

/// Raw defaults of the parameters flushd reads or that those refer to.
/// `myhostname` and `mydomain` are computed (see [`lookup_default`]).
const DEFAULTS: &[(&str, &str)] = &[
    ("config_directory", "/etc/postfix"),
    ("queue_directory", "/var/spool/postfix"),
    ("compatibility_level", "0"),
    (
        "mydestination",
        "$myhostname, localhost.$mydomain, localhost",
    ),
    ("myorigin", "$myhostname"),
    ("relay_domains", DEFAULT_RELAY_DOMAINS),
    ("fast_flush_domains", "$relay_domains"),
    ("fast_flush_refresh_time", "12h"),
    ("fast_flush_purge_time", "7d"),
    (
        "parent_domain_matches_subdomains",
        DEFAULT_PARENT_DOMAIN_MATCHES_SUBDOMAINS,
    ),
    ("hash_queue_names", "deferred, defer"),
    ("hash_queue_depth", "1"),
    ("ipc_timeout", "3600s"),
    ("max_idle", "100s"),
    ("max_use", "100"),
    ("daemon_timeout", "18000s"),
    ("syslog_facility", "mail"),
    ("syslog_name", "postfix"),
    ("maillog_file", ""),
    ("postlog_service_name", "postlog"),
    ("mail_name", "Postfix"),
    ("flush_refresh_interval", "1000s"),
    ("flush_max_connections", "1024"),
];

/// The expanded value of parameter `name`: its main.cf value or its default;
/// `None` when neither exists.
///
/// # Errors
/// A syntax error, a loop, or an over-long result; the message says where.
pub fn expand_param(params: &Params, name: &str) -> Result<Option<String>, String> {
    let ex = Expander { params };
    let mut out = String::new();
    match ex.raw_value(name, 0)? {
        None => Ok(None),
        Some(raw) => {
            ex.parse(&raw, 0, &mut out)?;
            Ok(Some(out))
        }
    }
}

/// Expands `text` as if it were a parameter value.
///
/// # Errors
/// As [`expand_param`].
pub fn expand_text(params: &Params, text: &str) -> Result<String, String> {
    let mut out = String::new();
    Expander { params }.parse(text, 0, &mut out)?;
    Ok(out)
}

/// The machine's host name, as Postfix's `get_hostname()` finds it (uname).
pub fn machine_hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

/// A compatibility level as `(major, minor, patch)`, Postfix's
/// `compat_level_from_string()` syntax: `N`, `N.N` or `N.N.N`.
pub fn compat_level(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = [0u64; 3];
    for (n, field) in s.split('.').enumerate() {
        if n == 3 || field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[n] = field.parse().ok()?;
    }
    Some((parts[0], parts[1], parts[2]))
}

/// The raw default of a parameter, computed for `myhostname` and `mydomain`
/// as Postfix's `check_myhostname()` and `check_mydomainname()` do.
fn lookup_default(params: &Params, name: &str, depth: usize) -> Result<Option<String>, String> {
    let ex = Expander { params };
    match name {
        "myhostname" => {
            let host = machine_hostname();
            if host.contains('.') {
                return Ok(Some(host.to_string()));
            }
            // Only main.cf's mydomain: its default depends on myhostname.
            let domain = match params.get("mydomain") {
                Some(raw) => {
                    let mut out = String::new();
                    ex.parse(raw, depth + 1, &mut out)?;
                    out
                }
                None => DEFAULT_MYDOMAIN.to_string(),
            };
            Ok(Some(format!("{host}.{domain}")))
        }
        "mydomain" => {
            let mut host = String::new();
            ex.expand_name("myhostname", depth + 1, &mut host)?;
            Ok(Some(match host.split_once('.') {
                Some((_, domain)) if !domain.is_empty() => domain.to_string(),
                _ => DEFAULT_MYDOMAIN.to_string(),
            }))
        }
        _ => Ok(DEFAULTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_string())),
    }
}

/// Relational operators of `${{a} OP {b} ...}`.
#[derive(Clone, Copy)]
enum Relop {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
}

impl Relop {
    fn parse(s: &str) -> Option<Relop> {
        Some(match s {
            "==" => Relop::Eq,
            "!=" => Relop::Ne,
            "<" => Relop::Lt,
            "<=" => Relop::Le,
            ">=" => Relop::Ge,
            ">" => Relop::Gt,
            _ => return None,
        })
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Relop::Eq => ord == Ordering::Equal,
            Relop::Ne => ord != Ordering::Equal,
            Relop::Lt => ord == Ordering::Less,
            Relop::Le => ord != Ordering::Greater,
            Relop::Ge => ord != Ordering::Less,
            Relop::Gt => ord == Ordering::Greater,
        }
    }
}

/// White space inside `${...}` (Postfix's `CHARS_SPACE`).
fn skip_ws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t', '\r', '\n'])
}

/// If `s` (after white space) starts with `{`, splits off the balanced
/// `{payload}` and the white space after it: `Some((payload, rest))`.
fn curly(s: &str) -> Result<Option<(&str, &str)>, String> {
    let s = skip_ws(s);
    if !s.starts_with('{') {
        return Ok(None);
    }
    let mut level = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => level += 1,
            '}' => {
                level -= 1;
                if level == 0 {
                    return Ok(Some((&s[1..i], skip_ws(&s[i + 1..]))));
                }
            }
            _ => {}
        }
    }
    Err(format!("unbalanced {{}} in attribute expression: {s:?}"))
}

struct Expander<'a> {
    params: &'a Params,
}

impl Expander<'_> {
    /// main.cf's raw value, else the raw default.
    fn raw_value(&self, name: &str, depth: usize) -> Result<Option<String>, String> {
        match self.params.get(name) {
            Some(v) => Ok(Some(v.to_string())),
            None => lookup_default(self.params, name, depth),
        }
    }

    /// Whether `name` counts as non-empty for `?` and `:`.
    fn test(&self, name: &str, depth: usize) -> Result<bool, String> {
        if let Some(v) = self.params.get(name) {
            return Ok(!v.is_empty());
        }
        let mut out = String::new();
        self.expand_name(name, depth + 1, &mut out)?;
        Ok(!out.is_empty())
    }

    /// Appends the expanded value of `name` (nothing when undefined).
    fn expand_name(&self, name: &str, depth: usize, out: &mut String) -> Result<(), String> {
        if let Some(raw) = self.raw_value(name, depth)? {
            self.parse(&raw, depth + 1, out)?;
        }
        Ok(())
    }

    /// `mac_parse()`: literal text and `$` references, appended to `out`.
    fn parse(&self, text: &str, depth: usize, out: &mut String) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "unreasonable macro call nesting: {:?}",
                shorten(text)
            ));
        }
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            push_checked(out, &rest[..pos])?;
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                push_checked(out, "$")?;
                rest = tail;
                continue;
            }
            let (expr, tail) = match after.chars().next() {
                Some(open @ ('{' | '(')) => {
                    let close = if open == '{' { '}' } else { ')' };
                    let mut level = 1usize;
                    let mut end = None;
                    for (i, c) in after.char_indices().skip(1) {
                        if c == open {
                            level += 1;
                        } else if c == close {
                            level -= 1;
                            if level == 0 {
                                end = Some(i);
                                break;
                            }
                        }
                    }
                    let end = end
                        .ok_or_else(|| format!("truncated macro reference: {:?}", shorten(text)))?;
                    (&after[1..end], &after[end + 1..])
                }
                _ => {
                    let len = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..len], &after[len..])
                }
            };
            if expr.is_empty() {
                return Err(format!("empty macro name: {:?}", shorten(text)));
            }
            self.expression(expr, depth, out)?;
            rest = tail;
        }
        push_checked(out, rest)
    }

    /// `mac_expand_callback()` for one `$...` reference.
    fn expression(&self, expr: &str, depth: usize, out: &mut String) -> Result<(), String> {
        // `value` is Some(non-empty?) for the ?/: test, and for plain use the
        // text to append (relational results) or a name to expand.
        enum Looked<'n> {
            Name(&'n str),
            Bool(bool),
        }
        let (looked, op, rest) = if let Some((left, after)) = curly(expr)? {
            let (truth, after) = self.relational(left, after, depth)?;
            match after.chars().next() {
                None => (Looked::Bool(truth), None, ""),
                Some(c @ ('?' | ':')) => (Looked::Bool(truth), Some(c), &after[1..]),
                Some(_) => return Err(format!("\"?\" or \":\" expected at: {:?}", shorten(after))),
            }
        } else {
            let start = skip_ws(expr);
            let name_len = start
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(start.len());
            let name = &start[..name_len];
            let after = skip_ws(&start[name_len..]);
            match after.chars().next() {
                None => (Looked::Name(name), None, ""),
                Some(c @ ('?' | ':')) => (Looked::Name(name), Some(c), &after[1..]),
                Some('{') => return Err(format!("unknown function {name:?}")),
                Some(_) => {
                    return Err(format!(
                        "attribute name syntax error at: {:?}",
                        shorten(&start[name_len..])
                    ))
                }
            }
        };
        if op.is_some() && matches!(looked, Looked::Name(n) if n.is_empty()) {
            return Err(format!("empty macro name: {:?}", shorten(expr)));
        }
        let Some(op) = op else {
            return match looked {
                Looked::Name(name) => self.expand_name(name, depth, out),
                Looked::Bool(true) => push_checked(out, "true"),
                Looked::Bool(false) => Ok(()),
            };
        };
        let non_empty = match looked {
            Looked::Name(name) => self.test(name, depth)?,
            Looked::Bool(b) => b,
        };
        let mut rest = rest;
        if op == '?' {
            let (if_true, after) = match curly(rest)? {
                Some(pair) => pair,
                None => (rest, ""),
            };
            if non_empty {
                self.parse(if_true, depth + 1, out)?;
            }
            if after.is_empty() {
                return Ok(());
            }
            rest = after
                .strip_prefix(':')
                .ok_or_else(|| format!("\":\" expected at: {:?}", shorten(after)))?;
        }
        let (if_false, after) = match curly(rest)? {
            Some(pair) => pair,
            None => (rest, ""),
        };
        if !non_empty {
            self.parse(if_false, depth + 1, out)?;
        }
        if !after.is_empty() {
            return Err(format!("unexpected input at: {:?}", shorten(after)));
        }
        Ok(())
    }

    /// `{left} OP {right}`: the truth value and the text after `{right}`.
    fn relational<'e>(
        &self,
        left: &str,
        after: &'e str,
        depth: usize,
    ) -> Result<(bool, &'e str), String> {
        let op_len = after
            .find(|c: char| !"<>!=?+-*/~&|%".contains(c))
            .unwrap_or(after.len());
        let op = Relop::parse(&after[..op_len])
            .ok_or_else(|| format!("relational operator expected at: {:?}", shorten(after)))?;
        let after = &after[op_len..];
        let suffix_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        let level = match &after[..suffix_len] {
            "" => false,
            "level" => true,
            other => return Err(format!("bad operator suffix {other:?}")),
        };
        let (right, after) = curly(&after[suffix_len..])?
            .ok_or_else(|| format!("{{expression}} expected at: {:?}", shorten(after)))?;
        let mut lval = String::new();
        let mut rval = String::new();
        self.parse(left, depth + 1, &mut lval)?;
        self.parse(right, depth + 1, &mut rval)?;
        let ord = if level {
            let l = compat_level(&lval)
                .ok_or_else(|| format!("malformed compatibility level syntax: {lval:?}"))?;
            let r = compat_level(&rval)
                .ok_or_else(|| format!("malformed compatibility level syntax: {rval:?}"))?;
            l.cmp(&r)
        } else if all_digits(&lval) && all_digits(&rval) {
            let parse = |s: &str| {
                s.parse::<i64>()
                    .map_err(|_| format!("bad conversion: {s:?}"))
            };
            parse(&lval)?.cmp(&parse(&rval)?)
        } else {
            lval.as_bytes().cmp(rval.as_bytes())
        };
        Ok((op.holds(ord), after))
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn push_checked(out: &mut String, s: &str) -> Result<(), String> {
    if out.len() + s.len() > MAX_EXPANSION_BYTES {
        return Err(format!("expansion longer than {MAX_EXPANSION_BYTES} bytes"));
    }
    out.push_str(s);
    Ok(())
}

/// A piece of input cut short (and made printable) for an error message.
fn shorten(s: &str) -> String {
    flush_proto::request::printable(s, 40)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(text: &str) -> Params {
        Params::parse(text, "main.cf").unwrap()
    }

    fn ex(p: &Params, text: &str) -> String {
        expand_text(p, text).unwrap()
    }

    #[test]
    fn plain_references() {
        let p = params("a = x\nb = [$a] [${a}] [$(a)]\nc = $b-$nosuch-\n");
        assert_eq!(ex(&p, "$b"), "[x] [x] [x]");
        assert_eq!(ex(&p, "$c"), "[x] [x] [x]--");
        assert_eq!(ex(&p, "$a.example"), "x.example");
        assert_eq!(ex(&p, "cost $$5, $$a"), "cost $5, $a");
    }

    #[test]
    fn dollar_dollar_in_a_referenced_value() {
        let p = params("a = x$$y\nb = $a\n");
        assert_eq!(expand_param(&p, "b").unwrap().unwrap(), "x$y");
    }

    #[test]
    fn conditionals() {
        let p = params("set = yes\nempty =\nref = $empty\n");
        assert_eq!(ex(&p, "${set?on}"), "on");
        assert_eq!(ex(&p, "${empty?on}"), "");
        assert_eq!(ex(&p, "${nosuch?on}"), "");
        assert_eq!(ex(&p, "${set:off}"), "");
        assert_eq!(ex(&p, "${empty:off}"), "off");
        assert_eq!(ex(&p, "${nosuch:off}"), "off");
        assert_eq!(ex(&p, "${set?{$set}:{no}}"), "yes");
        assert_eq!(ex(&p, "${empty?{yes} : {no}}"), "no");
        assert_eq!(ex(&p, "${empty?{yes}:no}"), "no");
        // The test looks at the raw value, which is non-empty here.
        assert_eq!(ex(&p, "${ref?raw-not-empty}"), "raw-not-empty");
        // Text after ? is taken as it is, ':' included (Postfix 2.11 compatible).
        assert_eq!(ex(&p, "${set?a:b}"), "a:b");
        // A space before the text is kept.
        assert_eq!(ex(&p, "${set? a}"), " a");
    }

    #[test]
    fn relational_expressions() {
        let p = params("n = 10\n");
        assert_eq!(ex(&p, "${{$n} > {9} ? {big} : {small}}"), "big");
        assert_eq!(ex(&p, "${{$n} == {10}?{eq}}"), "eq");
        assert_eq!(ex(&p, "${{abc} < {abd}}"), "true");
        assert_eq!(ex(&p, "${{b} <= {a}}"), "");
        assert_eq!(ex(&p, "${{3.6} <level {3.10} ? {older}}"), "older");
        assert_eq!(ex(&p, "${{2} >=level {2.0.0} ? {same}}"), "same");
        assert!(expand_text(&p, "${{a} <level {2}}").is_err());
        assert!(expand_text(&p, "${{a} <foo {2}}").is_err());
        assert!(expand_text(&p, "${{a} ~ {2}}").is_err());
    }

    #[test]
    fn relay_domains_default_follows_compatibility_level() {
        let old = params("mydestination = here.example\n");
        assert_eq!(
            expand_param(&old, "relay_domains").unwrap().unwrap(),
            "here.example"
        );
        let new = params("compatibility_level = 3.6\nmydestination = here.example\n");
        assert_eq!(expand_param(&new, "relay_domains").unwrap().unwrap(), "");
        assert_eq!(
            expand_param(&new, "fast_flush_domains").unwrap().unwrap(),
            ""
        );
        let two = params("compatibility_level = 2\nmydestination = here.example\n");
        assert_eq!(expand_param(&two, "relay_domains").unwrap().unwrap(), "");
    }

    #[test]
    fn host_defaults() {
        let p = params("myhostname = mx.example.net\n");
        assert_eq!(
            expand_param(&p, "mydomain").unwrap().unwrap(),
            "example.net"
        );
        assert_eq!(
            expand_param(&p, "mydestination").unwrap().unwrap(),
            "mx.example.net, localhost.example.net, localhost"
        );
        let p = params("myhostname = bare\n");
        assert_eq!(
            expand_param(&p, "mydomain").unwrap().unwrap(),
            "localdomain"
        );
        let p = params("mydomain = corp.example\n");
        let host = expand_param(&p, "myhostname").unwrap().unwrap();
        let machine = machine_hostname();
        if machine.contains('.') {
            assert_eq!(host, machine);
        } else {
            assert_eq!(host, format!("{machine}.corp.example"));
        }
    }

    #[test]
    fn undefined_and_defaults() {
        let p = Params::new();
        assert_eq!(expand_param(&p, "no_such_param").unwrap(), None);
        assert_eq!(
            expand_param(&p, "hash_queue_names").unwrap().unwrap(),
            "deferred, defer"
        );
        assert_eq!(
            expand_param(&p, "queue_directory").unwrap().unwrap(),
            "/var/spool/postfix"
        );
    }

    #[test]
    fn loops_and_syntax_errors() {
        let p = params("a = $b\nb = x $a\nself = $self\n");
        assert!(expand_param(&p, "a").unwrap_err().contains("nesting"));
        assert!(expand_param(&p, "self").unwrap_err().contains("nesting"));
        assert!(expand_text(&p, "${unclosed").is_err());
        assert!(expand_text(&p, "trailing $").is_err());
        assert!(expand_text(&p, "${}").is_err());
        assert!(expand_text(&p, "${a b}").is_err());
        assert!(expand_text(&p, "${fn{x}}").is_err());
        assert!(expand_text(&p, "${x?{a}junk}").is_err());
    }

    #[test]
    fn explosions_are_bounded() {
        let mut text = format!("a0 = {}\n", "x".repeat(4096));
        for i in 1..40 {
            text.push_str(&format!("a{i} = $a{0}$a{0}\n", i - 1));
        }
        let p = params(&text);
        assert!(expand_param(&p, "a39").unwrap_err().contains("longer"));
    }

    #[test]
    fn compat_levels() {
        assert_eq!(compat_level("0"), Some((0, 0, 0)));
        assert_eq!(compat_level("3.6"), Some((3, 6, 0)));
        assert_eq!(compat_level("3.10.1"), Some((3, 10, 1)));
        assert!(compat_level("3.10") > compat_level("3.6"));
        assert_eq!(compat_level(""), None);
        assert_eq!(compat_level("3."), None);
        assert_eq!(compat_level("a"), None);
        assert_eq!(compat_level("1.2.3.4"), None);
    }
}
