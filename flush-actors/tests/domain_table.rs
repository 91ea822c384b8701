//! `fast_flush_domains` decisions, table-driven, then checked against
//! Postfix's own client-side decision where Postfix is installed.
//!
//! `postqueue -c DIR -s SITE` matches the site against the list on its own
//! side before it contacts any server: "Flush service is not configured for
//! destination" is DENY; any other outcome (usually "mail system is down",
//! as nothing listens) means eligible. Cases whose answer cannot be seen that
//! way (FAIL and BAD, sites postqueue refuses as syntax, our documented
//! differences) say why they are left out.
#![allow(clippy::unwrap_used)]

use flush_actors::domains::{DomainList, Verdict};
use std::path::Path;
use std::process::Command;

/// What flushd must answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Eligible, with this logfile name.
    E(&'static str),
    /// DENY.
    D,
    /// FAIL.
    F,
    /// BAD.
    B,
}
use Expect::{B, D, E, F};

/// How to ask Postfix about a case.
#[derive(Debug, Clone, Copy)]
enum Pf {
    /// Same list, same site.
    Same,
    /// Same list, this ASCII form of the site (postqueue takes ASCII only).
    Ascii(&'static str),
    /// Not comparable, for this reason (kept for the reader and for failures).
    #[allow(dead_code)]
    Skip(&'static str),
}
use Pf::{Ascii, Same, Skip};

const PARENT: bool = true;
const EXACT: bool = false;

const UTF8_PATTERN: Pf = Skip("non-ASCII pattern: Postfix compares UTF-8, flushd IDNA forms");
const SYNTAX: Pf = Skip("postqueue refuses this site's syntax before matching");
const LITERAL: Pf = Skip("address literal: Postfix 3.7's flush(8) denies it in its IDNA step");
const FOLDED_KEY: Pf = Skip("table keys are case-folded here, never matched by Postfix");

/// `{dir}` in a list is the test's directory of files.
#[rustfmt::skip]
const CASES: &[(&str, bool, &str, Expect, Pf)] = &[
    // Plain names, parent matching on (Postfix's default for this list).
    ("example.com", PARENT, "example.com", E("example_com"), Same),
    ("example.com", PARENT, "a.b.example.com", E("a_b_example_com"), Same),
    ("example.com", PARENT, "badexample.com", D, Same),
    ("example.com", PARENT, "EXAMPLE.Com", E("example_com"), Same),
    ("Example.COM", PARENT, "mail.example.com", E("mail_example_com"), Same),
    ("example.com", PARENT, "example.org", D, Same),
    // Leading dot with parent matching: the dot must be a second dot.
    (".example.com", PARENT, "a.example.com", D, Same),
    (".example.com", PARENT, "example.com", D, Same),
    // Parent matching off: only the leading-dot form reaches subdomains.
    ("example.com", EXACT, "example.com", E("example_com"), Same),
    ("example.com", EXACT, "a.example.com", D, Same),
    (".example.com", EXACT, "a.example.com", E("a_example_com"), Same),
    (".example.com", EXACT, "a.b.example.com", E("a_b_example_com"), Same),
    (".example.com", EXACT, "example.com", D, Same),
    ("example.com .example.com", EXACT, "a.example.com", E("a_example_com"), Same),
    // Separators, negation and order.
    ("a.example b.example,c.example\td.example", PARENT, "c.example", E("c_example"), Same),
    ("a.example,,  ,d.example", PARENT, "d.example", E("d_example"), Same),
    ("!a.example.com, example.com", PARENT, "a.example.com", D, Same),
    ("!a.example.com, example.com", PARENT, "b.example.com", E("b_example_com"), Same),
    ("example.com, !a.example.com", PARENT, "a.example.com", E("a_example_com"), Same),
    ("!!a.example.com", PARENT, "a.example.com", E("a_example_com"), Same),
    ("!!!a.example.com, example.com", PARENT, "a.example.com", D, Same),
    ("!example.com", PARENT, "example.com", D, Same),
    ("", PARENT, "example.com", D, Same),
    // A #comment item ends the list.
    ("example.com, #x, other.org", PARENT, "other.org", D, Same),
    ("example.com, #x, other.org", PARENT, "example.com", E("example_com"), Same),
    // /file items, first match wins inside them too.
    ("{dir}/list", PARENT, "two.one.example", D, Same),
    ("{dir}/list", PARENT, "x.one.example", E("x_one_example"), Same),
    ("{dir}/list", PARENT, "four.example", E("four_example"), Same),
    ("{dir}/list", PARENT, "five.example", D, Same),
    // A negated include negates every item in the file.
    ("!{dir}/neg, static:all", PARENT, "neg.example", D, Same),
    ("!{dir}/neg, static:all", PARENT, "sub.other.example", D, Same),
    ("!{dir}/neg, static:all", PARENT, "fine.example", E("fine_example"), Same),
    ("!{dir}/neg2, neg.example", PARENT, "keep.neg.example", E("keep_neg_example"), Same),
    ("!{dir}/neg2, neg.example", PARENT, "drop.neg.example", D, Same),
    ("{dir}/outer", PARENT, "nested.example", E("nested_example"), Same),
    ("{dir}/outer", PARENT, "two.one.example", D, Same),
    // inline: tables, with and without parent matching.
    ("inline:{ a.example=1, b.example=1 }", PARENT, "sub.a.example", E("sub_a_example"), Same),
    ("inline:{ a.example=1, b.example=1 }", EXACT, "sub.a.example", D, Same),
    ("inline:{ a.example=1, b.example=1 }", EXACT, "b.example", E("b_example"), Same),
    ("inline:{ .a.example=1 }", PARENT, "sub.a.example", D, Same),
    ("inline:{ .a.example=1 }", EXACT, "sub.a.example", E("sub_a_example"), Same),
    ("inline:{ example=1 }", PARENT, "deep.sub.example", E("deep_sub_example"), Same),
    ("inline:{ { quoted.example = two words } }", PARENT, "quoted.example", E("quoted_example"), Same),
    ("!inline:{ a.example=1 }, static:all", PARENT, "x.a.example", D, Same),
    ("inline:{ Upper.Example=1 }", PARENT, "upper.example", E("upper_example"), FOLDED_KEY),
    // texthash: tables.
    ("texthash:{dir}/th", PARENT, "x.th.example", E("x_th_example"), Same),
    ("texthash:{dir}/th", EXACT, "x.th.example", D, Same),
    ("texthash:{dir}/th", EXACT, "th.example", E("th_example"), Same),
    ("texthash:{dir}/th", EXACT, "x.dot.example", E("x_dot_example"), Same),
    ("texthash:{dir}/th", PARENT, "x.dot.example", D, Same),
    // static:
    ("static:anything", PARENT, "whatever.example", E("whatever_example"), Same),
    ("!static:x, a.example", PARENT, "a.example", D, Same),
    ("a.example, !static:x", PARENT, "a.example", E("a_example"), Same),
    ("a.example, !static:x", PARENT, "b.example", D, Same),
    // Unusable tables and files: FAIL when reached, the list still works.
    ("hash:{dir}/nothing", PARENT, "a.example", F, Skip("FAIL")),
    ("nosuchtype:x, a.example", PARENT, "a.example", F, Skip("FAIL")),
    ("a.example, nosuchtype:x", PARENT, "a.example", E("a_example"),
        Skip("Postfix clients treat an unusable table as fatal")),
    ("a.example, nosuchtype:x", PARENT, "b.example", F, Skip("FAIL")),
    ("{dir}/missing, a.example", PARENT, "a.example", F, Skip("FAIL")),
    ("a.example, {dir}/missing", PARENT, "a.example", E("a_example"),
        Skip("Postfix clients treat an unreadable file as fatal")),
    ("texthash:{dir}/dup", PARENT, "a.example", F, Skip("FAIL")),
    ("texthash:{dir}/missing", PARENT, "a.example", F, Skip("FAIL")),
    ("inline:{ a.example = 1 }", PARENT, "a.example", F, Skip("FAIL")),
    ("static:", PARENT, "a.example", F, Skip("FAIL")),
    // IDNA.
    ("xn--bcher-kva.example", PARENT, "BÜCHER.example", E("xn__bcher_kva_example"),
        Ascii("xn--bcher-kva.example")),
    ("xn--bcher-kva.example", PARENT, "www.bücher.example", E("www_xn__bcher_kva_example"),
        Ascii("www.xn--bcher-kva.example")),
    ("bücher.example", PARENT, "xn--bcher-kva.example", E("xn__bcher_kva_example"), UTF8_PATTERN),
    ("bücher.example", PARENT, "bücher.example", E("xn__bcher_kva_example"), UTF8_PATTERN),
    ("static:all", PARENT, "-bad.example", D, SYNTAX),
    ("example.com", PARENT, "ab--cd.example.com", D, Skip("IDNA hyphen rule: postqueue's syntax check allows it")),
    ("static:all", PARENT, "1.2.3.4", D, SYNTAX),
    ("example.com", PARENT, "example.com.", D, SYNTAX),
    // Address literals.
    ("[10.0.0.1]", PARENT, "[10.0.0.1]", E("_10_0_0_1_"), LITERAL),
    ("[10.0.0.1]", PARENT, "[10.0.0.2]", D, Same),
    ("static:all", PARENT, "[ipv6:2001:db8::1]", E("_ipv6_2001_db8__1_"), LITERAL),
    ("[IPv6:2001:DB8::1]", EXACT, "[ipv6:2001:db8::1]", E("_ipv6_2001_db8__1_"), LITERAL),
    // Sites without a valid file name.
    ("static:all", PARENT, "", B, Skip("BAD")),
    ("static:all", PARENT, "{long}", B, Skip("BAD")),
];

/// Writes the files the cases name into `dir`.
fn write_files(dir: &Path) {
    let d = dir.display();
    let files = [
        (
            "list",
            "!two.one.example\none.example\n# comment\n\nthree.example, four.example\n".to_string(),
        ),
        ("neg", "neg.example\nother.example\n".to_string()),
        ("neg2", "!keep.neg.example\ndrop.neg.example\n".to_string()),
        ("outer", format!("{d}/list\nnested.example\n")),
        (
            "th",
            "# text table\nth.example OK\n.dot.example OK\n".to_string(),
        ),
        ("dup", "a.example x\na.example y\n".to_string()),
    ];
    for (name, text) in files {
        write_cool(&dir.join(name), &text);
    }
}

/// Writes a file dated a minute ago: Postfix re-reads a file modified in the
/// last second until it "cools down" (300 ms at a time).
fn write_cool(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

fn list_text(list: &str, dir: &Path) -> String {
    list.replace("{dir}", &dir.display().to_string())
}

/// `{long}` stands for a site of 300 bytes.
fn site_text(site: &str) -> String {
    site.replace("{long}", &"a".repeat(300))
}

#[test]
fn table_verdicts() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let mut failures = Vec::new();
    for (n, &(list, parent, site, expect, _)) in CASES.iter().enumerate() {
        let text = list_text(list, dir.path());
        let compiled = DomainList::parse(&text, parent).unwrap();
        let got = compiled.verdict(&site_text(site));
        let ok = match (expect, &got) {
            (E(path), Verdict::Eligible(p)) => p.as_str() == path,
            (D, Verdict::Deny(_)) | (F, Verdict::Fail(_)) | (B, Verdict::Bad(_)) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!("case {n}: {list:?} parent={parent} site {site:?}: expected {expect:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Postfix's client-side answer.
enum Postfix {
    /// postqueue went on to contact the flush service (nothing listens).
    Eligible,
    /// "Flush service is not configured for destination".
    Deny,
    /// Anything else (a refused site syntax, a configuration error): stderr.
    Other(String),
}

fn postqueue_says(dir: &Path, list: &str, parent: bool, site: &str) -> Postfix {
    let main_cf = format!(
        "compatibility_level = 3.6\nqueue_directory = {}\nfast_flush_domains = {}\n\
         parent_domain_matches_subdomains = {}\n",
        dir.join("queue").display(),
        list,
        if parent {
            "fast_flush_domains"
        } else {
            "relay_domains"
        }
    );
    write_cool(&dir.join("main.cf"), &main_cf);
    let out = Command::new("/usr/sbin/postqueue")
        .arg("-c")
        .arg(dir)
        .arg("-s")
        .arg(site)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("Flush service is not configured for destination") {
        Postfix::Deny
    } else if stderr.contains("public/flush") {
        Postfix::Eligible
    } else {
        Postfix::Other(stderr)
    }
}

#[test]
fn table_matches_postfix() {
    let postqueue = Path::new("/usr/sbin/postqueue");
    if !postqueue.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but /usr/sbin/postqueue is missing: install Debian's postfix package"
        );
        eprintln!("skipping: /usr/sbin/postqueue is not installed");
        return;
    }
    let files = tempfile::tempdir().unwrap();
    write_files(files.path());
    let conf = tempfile::tempdir().unwrap();
    std::fs::create_dir(conf.path().join("queue")).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (n, &(list, parent, site, expect, pf)) in CASES.iter().enumerate() {
        let site = match pf {
            Same => site,
            Ascii(ascii) => ascii,
            Skip(_) => continue,
        };
        let ours = match expect {
            E(_) => true,
            D => false,
            F | B => panic!("case {n}: FAIL and BAD cases cannot be compared; mark them Skip"),
        };
        let text = list_text(list, files.path());
        let theirs = match postqueue_says(conf.path(), &text, parent, site) {
            Postfix::Eligible => true,
            Postfix::Deny => false,
            Postfix::Other(stderr) => {
                failures.push(format!(
                    "case {n}: site {site:?}: postqueue said {stderr:?}"
                ));
                continue;
            }
        };
        if theirs == ours {
            checked += 1;
        } else {
            failures.push(format!(
                "case {n}: {list:?} parent={parent} site {site:?}: flushd says {}, Postfix says {}",
                if ours { "eligible" } else { "DENY" },
                if theirs { "eligible" } else { "DENY" }
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(checked >= 40, "only {checked} cases compared with Postfix");
}
