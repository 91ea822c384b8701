//! Side by side with Postfix 3.7's own flush(8) (issue 3): one sequence of
//! Postfix-protocol requests, good and bad, goes to flush(8) and to flushd,
//! each on its own copy of one queue fixture. Every reply must be the same
//! bytes, and after every request (or, for the background work of `rfrsh`,
//! `purge` and the wakeup, soon after) the `flush/`, `deferred/` and
//! `incoming/` trees must match: the same names and modes, the same set of
//! queue IDs in each logfile (flushd may write an ID once where flush(8)
//! repeats it), queue file times within a tolerance.
//!
//! flush(8) runs in its stand-alone mode (`flush -S`, `single_server.c`):
//! one process per request, the client connection on its stdin and stdout,
//! and no master(8) or queue manager that would move the files on. Both
//! sides' `public/qmgr` is a FIFO read by the test.
//!
//! The one deliberate difference, address-literal sites, is tested on its
//! own at the end.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use integration::daemon::{
    encode_attrs, long_queue_id, make_deferred, make_queue_dir, make_queue_file, postfix_raw,
    short_queue_id, wait_until, FifoReader, Flushd, FlushdOptions, PROTOCOL_ANNOUNCEMENT,
};
use integration::postfix_lab::require_postfix;

/// Postfix's own flush server.
const POSTFIX_FLUSH: &str = "/usr/lib/postfix/sbin/flush";
/// The eligible domains (subdomains match too: parent_domain_matches_subdomains).
const DOMAINS: &str = "relay.test, other.test";
/// An address-literal site.
const LITERAL: &str = "[192.0.2.1]";
/// Queue file times may differ by this much between the two sides.
const TIME_TOLERANCE: Duration = Duration::from_secs(5);
/// How long flushd may take to finish background work flush(8) did in line.
const SETTLE: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// main.cf lines both sides share (`fast_flush_domains` is `domains`).
fn shared_main_cf(domains: &str) -> Vec<(&'static str, String)> {
    vec![
        ("compatibility_level", "3.6".to_string()),
        ("meta_directory", "/etc/postfix".to_string()),
        ("relay_domains", domains.to_string()),
    ]
}

/// Postfix's flush(8) on its own queue directory, one process per request.
struct PostfixFlush {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    queue: PathBuf,
}

impl PostfixFlush {
    fn new(domains: &str) -> PostfixFlush {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("etc");
        let queue = tmp.path().join("queue");
        fs::create_dir(&config).unwrap();
        make_queue_dir(&queue).unwrap();
        let mut main_cf = format!("queue_directory = {}\n", queue.display());
        main_cf.push_str(&format!("fast_flush_domains = {domains}\n"));
        for (name, value) in shared_main_cf(domains) {
            main_cf.push_str(&format!("{name} = {value}\n"));
        }
        fs::write(config.join("main.cf"), main_cf).unwrap();
        PostfixFlush {
            _tmp: tmp,
            config,
            queue,
        }
    }

    /// Runs one `flush -S` on `payload`: returns what it wrote after the
    /// announcement (its reply, or nothing), once it has exited, i.e. after
    /// any refresh it runs after replying.
    fn exchange(&self, payload: &[u8]) -> Vec<u8> {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let stdin = theirs.try_clone().unwrap();
        let mut child = Command::new(POSTFIX_FLUSH)
            .arg("-S")
            .env("MAIL_CONFIG", &self.config)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(stdin)))
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        ours.write_all(payload).unwrap();
        let mut out = Vec::new();
        ours.read_to_end(&mut out).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "flush -S exited with {status}");
        out.strip_prefix(PROTOCOL_ANNOUNCEMENT)
            .unwrap_or_else(|| panic!("no announcement: {:?}", String::from_utf8_lossy(&out)))
            .to_vec()
    }
}

/// One file or directory of a tree: its kind and mode, and for queue files
/// the modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    dir: bool,
    mode: u32,
    mtime: Option<SystemTime>,
}

/// What a queue directory looks like, as far as the comparison goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// deferred/ and incoming/: relative path -> entry.
    queue: BTreeMap<String, Entry>,
    /// flush/: logfile name -> (mode, set of queue IDs).
    logs: BTreeMap<String, (u32, BTreeSet<String>)>,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let meta = entry.metadata().unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.insert(
            rel,
            Entry {
                dir: meta.is_dir(),
                mode: meta.permissions().mode() & 0o7777,
                mtime: (!meta.is_dir()).then(|| meta.modified().unwrap()),
            },
        );
        if meta.is_dir() {
            walk(root, &entry.path(), out);
        }
    }
}

/// Reads a logfile without moving its access time, which decides what a
/// refresh delivers (reading it would make it look recently delivered).
fn read_noatime(path: &Path) -> String {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NOATIME, Mode::empty()).unwrap();
    let mut text = String::new();
    fs::File::from(fd).read_to_string(&mut text).unwrap();
    text
}

fn snapshot(queue: &Path) -> Snapshot {
    let mut tree = BTreeMap::new();
    for sub in ["deferred", "incoming"] {
        walk(queue, &queue.join(sub), &mut tree);
    }
    let mut logs = BTreeMap::new();
    for entry in fs::read_dir(queue.join("flush")).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        let ids = read_noatime(&entry.path())
            .lines()
            .map(str::to_string)
            .collect();
        logs.insert(
            entry.file_name().to_string_lossy().into_owned(),
            (meta.permissions().mode() & 0o7777, ids),
        );
    }
    Snapshot { queue: tree, logs }
}

/// Why two snapshots differ (`None`: they match, times within the tolerance).
fn difference(postfix: &Snapshot, flushd: &Snapshot) -> Option<String> {
    if postfix.logs != flushd.logs {
        return Some(format!(
            "flush/ differs:\n  flush(8): {:?}\n  flushd:   {:?}",
            postfix.logs, flushd.logs
        ));
    }
    let shape = |s: &Snapshot| -> Vec<(String, bool, u32)> {
        s.queue
            .iter()
            .map(|(path, e)| (path.clone(), e.dir, e.mode))
            .collect()
    };
    if shape(postfix) != shape(flushd) {
        return Some(format!(
            "queue trees differ:\n  flush(8): {:?}\n  flushd:   {:?}",
            shape(postfix),
            shape(flushd)
        ));
    }
    for (path, p) in &postfix.queue {
        let (Some(pt), Some(ft)) = (p.mtime, flushd.queue[path].mtime) else {
            continue;
        };
        let gap = pt
            .duration_since(ft)
            .or_else(|_| ft.duration_since(pt))
            .unwrap();
        if gap > TIME_TOLERANCE {
            return Some(format!("{path}: modification times {gap:?} apart"));
        }
    }
    None
}

/// Sets both times of a file (opened for writing, so that reading it does
/// not move the access time).
fn age(path: &Path, by: Duration) {
    let when = SystemTime::now() - by;
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_times(fs::FileTimes::new().set_accessed(when).set_modified(when))
        .unwrap();
}

/// The queue fixture, built identically on both sides.
fn build_fixture(queue: &Path, ids: &Ids) {
    for id in [&ids.a, &ids.b, &ids.c, &ids.long, &ids.other] {
        make_deferred(queue, id);
    }
    // Already in incoming/ (a send_site only updates its times).
    make_queue_file(&queue.join("incoming").join(&ids.incoming), 0o700);
}

/// The queue IDs of the sequence.
struct Ids {
    a: String,
    b: String,
    c: String,
    long: String,
    other: String,
    incoming: String,
    missing: String,
    sub_missing: String,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            a: short_queue_id(1),
            b: short_queue_id(2),
            c: short_queue_id(3),
            long: long_queue_id(4),
            other: short_queue_id(5),
            incoming: short_queue_id(6),
            missing: short_queue_id(7),
            sub_missing: short_queue_id(8),
        }
    }
}

/// A request: a name for messages and its bytes after the announcement.
struct Step {
    name: String,
    payload: Vec<u8>,
    /// flushd answers before doing the work (rfrsh, purge, wakeup).
    background: bool,
}

fn step(name: &str, attrs: &[(&str, &str)]) -> Step {
    Step {
        name: name.to_string(),
        payload: encode_attrs(attrs),
        background: false,
    }
}

fn add(site: &str, id: &str) -> Step {
    step(
        &format!("add {site} {id}"),
        &[("request", "add"), ("site", site), ("queue_id", id)],
    )
}

fn sequence(ids: &Ids) -> Vec<Step> {
    let mut steps = vec![
        add("relay.test", &ids.a),
        add("relay.test", &ids.b),
        add("Relay.TEST", &ids.a), // same logfile, repeated ID
        add("relay.test", &ids.c),
        add("relay.test", &ids.long),
        add("relay.test", &ids.incoming),
        add("relay.test", &ids.missing),
        add("other.test", &ids.other),
        add("sub.relay.test", &ids.sub_missing), // parent domain match
        add("not.eligible", &ids.a),             // DENY
        add("relay.test", "no/such"),            // BAD queue ID
        add("relay.test", ""),                   // BAD: empty queue ID
        add("relay.test", &"A".repeat(300)),     // BAD: too long
        step(
            "add without queue_id",
            &[("request", "add"), ("site", "relay.test")],
        ),
        step(
            "add with misordered attributes",
            &[
                ("request", "add"),
                ("queue_id", &ids.a),
                ("site", "relay.test"),
            ],
        ),
        step(
            "add with an extra trailing attribute",
            &[
                ("request", "add"),
                ("site", "other.test"),
                ("queue_id", &ids.b),
                ("extra", "x"),
            ],
        ),
        step("request without its name", &[("site", "relay.test")]),
        step(
            "send_file",
            &[("request", "send_file"), ("queue_id", &ids.b)],
        ),
        step(
            "send_file of a missing file",
            &[("request", "send_file"), ("queue_id", &ids.missing)],
        ),
        step(
            "send_file with a bad queue ID",
            &[("request", "send_file"), ("queue_id", "../x")],
        ),
        step(
            "send_site",
            &[("request", "send_site"), ("site", "relay.test")],
        ),
        step(
            "send_site not eligible",
            &[("request", "send_site"), ("site", "not.eligible")],
        ),
        step("send_site without site", &[("request", "send_site")]),
        step(
            "send_site of a site with no log",
            &[("request", "send_site"), ("site", "fresh.other.test")],
        ),
    ];
    for (name, payload) in [
        ("rfrsh", encode_attrs(&[("request", "rfrsh")])),
        ("wakeup", b"W\0".to_vec()),
        ("purge", encode_attrs(&[("request", "purge")])),
    ] {
        steps.push(Step {
            name: name.to_string(),
            payload,
            background: true,
        });
    }
    steps
}

#[test]
fn flushd_answers_and_changes_the_queue_as_postfix_flush_does() {
    if !require_postfix() || !Path::new(POSTFIX_FLUSH).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{POSTFIX_FLUSH} missing in CI"
        );
        return;
    }
    let ids = Ids::new();
    let postfix = PostfixFlush::new(DOMAINS);
    let flushd_root = tempfile::tempdir().unwrap();
    let flushd_queue = flushd_root.path().join("queue");
    make_queue_dir(&flushd_queue).unwrap();
    let mut qmgrs = [
        FifoReader::qmgr(&postfix.queue),
        FifoReader::qmgr(&flushd_queue),
    ];
    for queue in [&postfix.queue, &flushd_queue] {
        build_fixture(queue, &ids);
    }
    let mut opts = FlushdOptions::default()
        .queue_dir(&flushd_queue)
        .domains(DOMAINS);
    for (name, value) in shared_main_cf(DOMAINS) {
        opts = opts.main_cf(name, &value);
    }
    let flushd = Flushd::start(opts);
    assert_eq!(
        difference(&snapshot(&postfix.queue), &snapshot(&flushd_queue)),
        None
    );

    let mut replies = BTreeSet::new();
    for step in sequence(&ids) {
        if step.name == "rfrsh" {
            // Something for the refresh: other.test's log unread for longer
            // than fast_flush_refresh_time (12h), and an empty log older than
            // fast_flush_purge_time (7d), which the refresh removes.
            for queue in [&postfix.queue, &flushd_queue] {
                age(&queue.join("flush/other_test"), 13 * HOUR);
                fs::write(queue.join("flush/stale_test"), b"").unwrap();
                fs::set_permissions(
                    queue.join("flush/stale_test"),
                    fs::Permissions::from_mode(0o600),
                )
                .unwrap();
                age(&queue.join("flush/stale_test"), 8 * DAY);
            }
        }
        if step.name == "purge" {
            // Purge delivers every non-empty log not read in this very
            // second; aged, sub.relay.test's cannot fall on either side of
            // a second boundary between the two runs.
            for queue in [&postfix.queue, &flushd_queue] {
                age(&queue.join("flush/sub_relay_test"), HOUR);
            }
        }
        let expected = postfix.exchange(&step.payload);
        let got = postfix_raw(flushd.postfix_socket(), &step.payload)
            .unwrap_or_else(|e| panic!("{}: flushd: {e}", step.name));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{}: replies differ",
            step.name
        );
        replies.insert(expected);
        let settle = if step.background {
            SETTLE
        } else {
            Duration::ZERO
        };
        let mut why = None;
        let same = wait_until(settle, || {
            why = difference(&snapshot(&postfix.queue), &snapshot(&flushd_queue));
            why.is_none()
        });
        assert!(same, "after {}: {}", step.name, why.unwrap_or_default());
    }

    // Every status but FAIL came up, and nothing else.
    let status = |n: &str| format!("status\0{n}\0\0").into_bytes();
    assert_eq!(
        replies,
        BTreeSet::from([status("0"), status("3"), status("4")])
    );

    // The sequence did real work on both sides: send_file set the unthrottle
    // bit and moved the file, send_site moved the relay.test files and left
    // the missing ones out, the refresh delivered other.test and removed the
    // stale log, purge delivered what was left.
    let end = snapshot(&flushd_queue);
    assert_eq!(end.queue[&format!("incoming/{}", ids.b)].mode, 0o740);
    for id in [&ids.a, &ids.c, &ids.long, &ids.other, &ids.incoming] {
        assert!(
            end.queue.contains_key(&format!("incoming/{id}")),
            "{id}: {end:?}"
        );
    }
    assert!(!end.logs.contains_key("stale_test"), "{end:?}");
    assert!(end.logs.values().all(|(_, ids)| ids.is_empty()), "{end:?}");
    // Both told their queue manager the same kinds of things.
    for qmgr in &mut qmgrs {
        qmgr.read_available();
    }
    let kinds = |seen: &[u8]| seen.iter().copied().collect::<BTreeSet<u8>>();
    assert_eq!(kinds(qmgrs[0].seen()), kinds(qmgrs[1].seen()));
    assert!(kinds(qmgrs[1].seen()).contains(&b'I'));
}

#[test]
fn address_literals_postfix_denies_and_flushd_accepts() {
    if !require_postfix() || !Path::new(POSTFIX_FLUSH).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{POSTFIX_FLUSH} missing in CI"
        );
        return;
    }
    // The documented difference: Postfix 3.7's IDNA step rejects a site
    // like [192.0.2.1] (flush(8) answers DENY), although its ETRN code
    // accepts it; flushd logs it under _192_0_2_1_.
    let id = short_queue_id(42);
    let literal = [
        ("request", "add"),
        ("site", LITERAL),
        ("queue_id", id.as_str()),
    ];
    let postfix = PostfixFlush::new(LITERAL);
    assert_eq!(
        postfix.exchange(&encode_attrs(&literal)),
        b"status\x004\x00\x00"
    );
    assert!(fs::read_dir(postfix.queue.join("flush"))
        .unwrap()
        .next()
        .is_none());

    let mut opts = FlushdOptions::default().domains(LITERAL);
    for (name, value) in shared_main_cf(LITERAL) {
        opts = opts.main_cf(name, &value);
    }
    let flushd = Flushd::start(opts);
    let reply = postfix_raw(flushd.postfix_socket(), &encode_attrs(&literal)).unwrap();
    assert_eq!(reply, b"status\x000\x00\x00");
    assert_eq!(
        fs::read_to_string(flushd.queue_dir().join("flush/_192_0_2_1_")).unwrap(),
        format!("{id}\n")
    );
}
