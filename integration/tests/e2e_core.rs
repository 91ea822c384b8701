//! End-to-end tests of the core daemon (issue 2): each test starts the real
//! `flushd` binary on its own temporary queue directory, with queue files in
//! `deferred/` and, where triggers matter, a FIFO at `public/qmgr` read by the
//! test, and checks what a client sees on the sockets and what Postfix's
//! queue manager would see on disk. The expected on-disk behaviour is that of
//! Postfix's `src/flush/flush.c` (PROTOCOL.md section 3).
//!
//! A failing test prints the daemon's log (the harness's `Flushd` does it
//! when dropped during a panic).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration::daemon::{
    find_queue_file, flush_log, flushctl_binary, flushd_binary, hashed_path, long_queue_id,
    make_deferred, make_queue_dir, make_queue_file, postfix_request, queue_ids, short_queue_id,
    wait_until, FifoReader, Flushd, FlushdOptions, LineClient, Signal,
};
use serde_json::Value;

/// How long a test waits for background work (janitor sweeps, triggers).
const SETTLE: Duration = Duration::from_secs(10);

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Helpers

/// Seconds since the epoch, now.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sets the access and modification times of `path` (without reading it, so
/// that `relatime` does not move the access time again).
fn set_times(path: &Path, atime: SystemTime, mtime: SystemTime) {
    let file = fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.set_times(fs::FileTimes::new().set_accessed(atime).set_modified(mtime))
        .unwrap_or_else(|e| panic!("set times of {}: {e}", path.display()));
}

/// Sets both times of `path` to `age` ago.
fn age_file(path: &Path, age: Duration) {
    let then = SystemTime::now() - age;
    set_times(path, then, then);
}

/// Asserts that both times of `path` are within a few seconds of now, and
/// with `whole_seconds`, that they have no fraction (flush(8) stamps queue
/// files with `utime()` and whole seconds, but touches a log with
/// `utimes(NULL)`, the current time at full precision).
fn assert_fresh_times(path: &Path, whole_seconds: bool) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let now = now_secs();
    for (what, secs, nsec) in [
        ("mtime", meta.mtime(), meta.mtime_nsec()),
        ("atime", meta.atime(), meta.atime_nsec()),
    ] {
        assert!(
            (now - 10..=now + 1).contains(&secs),
            "{}: {what} {secs} is not fresh (now {now})",
            path.display()
        );
        if whole_seconds {
            assert_eq!(nsec, 0, "{}: {what} is not whole seconds", path.display());
        }
    }
}

/// Sends `line` and asserts that the reply is `OK`; returns the reply.
#[track_caller]
fn request_ok(client: &mut LineClient, line: &str) -> String {
    let reply = client.request(line);
    assert_ok(&reply, line);
    reply
}

/// Asserts that `reply` is `OK`, with or without a detail.
#[track_caller]
fn assert_ok(reply: &str, what: &str) {
    assert!(reply == "OK" || reply.starts_with("OK "), "{what}: {reply}");
}

/// Writes a logfile `flush/<site_path>` directly (as a previous flush(8) or
/// flushd would have left it), mode 0600.
fn write_log(queue: &Path, site_path: &str, ids: &[String]) -> PathBuf {
    let path = queue.join("flush").join(site_path);
    let body: String = ids.iter().map(|id| format!("{id}\n")).collect();
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn log_len(queue: &Path, site_path: &str) -> Option<u64> {
    fs::metadata(queue.join("flush").join(site_path))
        .ok()
        .map(|m| m.len())
}

/// `incoming/<id>` (incoming is not hashed by default).
fn incoming(queue: &Path, id: &str) -> PathBuf {
    queue.join("incoming").join(id)
}

fn stats_u64(stats: &Value, section: &str, key: &str) -> u64 {
    stats[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("stats {section}.{key} is not a number: {stats}"))
}

/// `gateway.requests.<verb>.<status>`.
fn request_count(stats: &Value, verb: &str, status: &str) -> u64 {
    stats["gateway"]["requests"][verb][status]
        .as_u64()
        .unwrap_or_else(|| panic!("stats gateway.requests.{verb}.{status} missing: {stats}"))
}

/// Waits until the janitor has completed more than `runs_before` sweeps and
/// none is running; panics after [`SETTLE`].
fn wait_janitor_idle(daemon: &Flushd, runs_before: u64) -> Value {
    let mut client = daemon.client();
    let mut last = Value::Null;
    let done = wait_until(SETTLE, || {
        last = client.stats();
        stats_u64(&last, "janitor", "runs") > runs_before
            && last["janitor"]["running"] == Value::Bool(false)
    });
    assert!(done, "janitor sweep did not finish: {last}");
    last
}

/// Runs a command to completion (panics if it takes longer than `timeout`).
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Asserts that `out` failed with status 1 and exactly one line on stderr
/// naming `needle`; returns that line.
fn assert_one_line_failure(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "status {}; stderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "want a one-line error, got:\n{stderr}");
    assert!(
        lines[0].contains(needle),
        "error does not name {needle}: {stderr}"
    );
    lines[0].to_string()
}

/// Waits for a daemon told to stop: exit status 0, both sockets removed.
fn assert_clean_exit(daemon: &mut Flushd) {
    let status = daemon
        .wait_exit(SETTLE)
        .expect("flushd still running 10 s after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(!daemon.line_socket().exists(), "line socket left behind");
    assert!(
        !daemon.postfix_socket().exists(),
        "postfix socket left behind"
    );
}

/// Runs flushctl against `daemon` with `args`.
fn flushctl(daemon: &Flushd, args: &[&str]) -> Output {
    let socket = format!("unix:{}", daemon.line_socket().display());
    run(
        Command::new(flushctl_binary())
            .arg("-s")
            .arg(socket)
            .args(args),
        Duration::from_secs(20),
    )
}

// ---------------------------------------------------------------------------
// 1, 2: add

#[test]
fn add_logs_the_id_in_a_private_logfile() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    let mut client = daemon.client();
    let (a, b) = (short_queue_id(1), long_queue_id(2));

    // The site is matched case-insensitively and mapped to its path.
    request_ok(&mut client, &format!("add Relay.Test {a}"));
    assert_eq!(flush_log(q, "relay_test"), vec![a.clone()]);
    request_ok(&mut client, &format!("ADD relay.test {b}"));
    // An ID already logged since the last delivery is not logged twice.
    request_ok(&mut client, &format!("add relay.test {a}"));
    assert_eq!(flush_log(q, "relay_test"), vec![a, b]);

    let path = q.join("flush/relay_test");
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "logfile mode");
    // Nothing else appeared in flush/.
    let names: Vec<String> = fs::read_dir(q.join("flush"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["relay_test".to_string()]);
}

#[test]
fn add_for_an_ineligible_site_is_denied_and_creates_nothing() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    let mut client = daemon.client();
    let id = short_queue_id(3);
    for site in ["other.test", "relay.test.example", "[10.0.0.1]"] {
        let reply = client.request(&format!("add {site} {id}"));
        assert!(reply.starts_with("DENY "), "add {site}: {reply}");
    }
    let reply = client.request("send_site other.test");
    assert!(reply.starts_with("DENY "), "send_site other.test: {reply}");
    let entries: Vec<_> = fs::read_dir(q.join("flush")).unwrap().collect();
    assert!(entries.is_empty(), "flush/ is not empty: {entries:?}");
    // The daemon still serves eligible sites on the same connection.
    request_ok(&mut client, &format!("add relay.test {id}"));
}

// ---------------------------------------------------------------------------
// 3, 4: send_site

#[test]
fn send_site_moves_the_logged_files_and_triggers_qmgr() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    let mut qmgr = FifoReader::qmgr(q);
    let mut client = daemon.client();

    let mut ids: Vec<String> = (10..15).map(short_queue_id).collect();
    ids.push(long_queue_id(77));
    ids.push(long_queue_id(123_456));
    for id in &ids {
        let path = make_deferred(q, id);
        age_file(&path, DAY);
        request_ok(&mut client, &format!("add relay.test {id}"));
    }
    // A deferred file not logged for the site stays where it is.
    let bystander = short_queue_id(99);
    make_deferred(q, &bystander);
    // A logged ID whose file is gone is skipped silently.
    let gone = short_queue_id(98);
    request_ok(&mut client, &format!("add relay.test {gone}"));

    request_ok(&mut client, "send_site relay.test");
    for id in &ids {
        let path = incoming(q, id);
        assert!(
            path.is_file(),
            "{id} not in incoming/ after send_site (it is in {:?})",
            find_queue_file(q, id)
        );
        assert!(
            !hashed_path(q, "deferred", id).exists(),
            "{id} still deferred"
        );
        assert_fresh_times(&path, true);
    }
    assert_eq!(queue_ids(q, "deferred"), vec![bystander]);
    assert_eq!(find_queue_file(q, &gone), None);
    assert_eq!(log_len(q, "relay_test"), Some(0), "log not truncated");

    let seen = qmgr.collect_until(SETTLE, |b| b.len() >= 2);
    thread::sleep(Duration::from_millis(300));
    qmgr.read_available();
    assert_eq!(
        String::from_utf8_lossy(qmgr.seen()),
        "FI",
        "qmgr triggers (first read: {:?})",
        String::from_utf8_lossy(&seen)
    );

    // The log keeps working after the truncation.
    let next = short_queue_id(16);
    request_ok(&mut client, &format!("add relay.test {next}"));
    assert_eq!(flush_log(q, "relay_test"), vec![next]);
}

#[test]
fn adds_racing_send_site_are_never_lost() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 250;
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir().to_path_buf();
    let ids: Vec<String> = (0..THREADS * PER_THREAD)
        .map(|n| short_queue_id(1000 + n))
        .collect();
    for id in &ids {
        make_deferred(&q, id);
    }

    let adding = Arc::new(AtomicBool::new(true));
    let sender = {
        let adding = Arc::clone(&adding);
        let mut client = daemon.client();
        thread::spawn(move || {
            let mut sends = 0u32;
            while adding.load(Ordering::SeqCst) {
                let reply = client.request("send_site relay.test");
                assert_ok(&reply, "send_site during adds");
                sends += 1;
            }
            sends
        })
    };
    let adders: Vec<_> = ids
        .chunks(PER_THREAD as usize)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let mut client = daemon.client();
            thread::spawn(move || {
                for id in chunk {
                    let reply = client.request(&format!("add relay.test {id}"));
                    assert_ok(&reply, &format!("add {id}"));
                }
            })
        })
        .collect();
    for adder in adders {
        adder.join().expect("adder thread");
    }
    adding.store(false, Ordering::SeqCst);
    let sends = sender.join().expect("send_site thread");
    assert!(sends >= 2, "only {sends} send_site requests raced the adds");

    // Each ID is either still logged (and its file still deferred) or was
    // delivered (its file in incoming/ and no longer logged): never neither.
    let logged: HashSet<String> = flush_log(&q, "relay_test").into_iter().collect();
    let mut lost = Vec::new();
    let mut inconsistent = Vec::new();
    for id in &ids {
        let in_incoming = incoming(&q, id).is_file();
        let in_deferred = hashed_path(&q, "deferred", id).is_file();
        match (logged.contains(id), in_incoming, in_deferred) {
            (true, false, true) | (false, true, false) => {}
            (false, false, _) => lost.push(id.clone()),
            state => inconsistent.push(format!("{id}: (logged, incoming, deferred) = {state:?}")),
        }
    }
    assert!(lost.is_empty(), "{} IDs lost: {lost:?}", lost.len());
    assert!(inconsistent.is_empty(), "{inconsistent:#?}");
    let delivered = ids.len() - logged.len();
    eprintln!(
        "{sends} send_site requests delivered {delivered} of {} IDs",
        ids.len()
    );

    // A last send_site delivers the rest.
    request_ok(&mut daemon.client(), "send_site relay.test");
    assert_eq!(queue_ids(&q, "deferred"), Vec::<String>::new());
    assert_eq!(queue_ids(&q, "incoming").len(), ids.len());
    assert_eq!(log_len(&q, "relay_test"), Some(0));
}

// ---------------------------------------------------------------------------
// 5: send_file

#[test]
fn send_file_moves_one_ready_file_and_unthrottles_it() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    let mut qmgr = FifoReader::qmgr(q);
    let mut client = daemon.client();

    let present = long_queue_id(4242);
    let other = short_queue_id(21);
    let not_ready = short_queue_id(22);
    for id in [&present, &other] {
        let path = make_deferred(q, id);
        age_file(&path, DAY);
    }
    let not_ready_path = hashed_path(q, "deferred", &not_ready);
    make_queue_file(&not_ready_path, 0o600);

    // A missing ID: OK, nothing moves, no trigger.
    request_ok(&mut client, &format!("send_file {}", short_queue_id(20)));
    assert_eq!(queue_ids(q, "incoming"), Vec::<String>::new());
    let mut deferred = vec![present.clone(), other.clone(), not_ready.clone()];
    deferred.sort();
    assert_eq!(queue_ids(q, "deferred"), deferred);

    // A file still being written (owner bits not rwx) is left alone.
    request_ok(&mut client, &format!("send_file {not_ready}"));
    assert!(not_ready_path.is_file(), "not-ready file moved");
    let mode = fs::metadata(&not_ready_path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "not-ready file mode changed");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        String::from_utf8_lossy(&qmgr.read_available()),
        "",
        "triggers without a delivery"
    );

    // A ready file moves to incoming/ with the group-read bit and fresh times.
    request_ok(&mut client, &format!("send_file {present}"));
    let moved = incoming(q, &present);
    assert!(
        moved.is_file(),
        "{present} is in {:?}",
        find_queue_file(q, &present)
    );
    let mode = fs::metadata(&moved).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o740, "mode of the delivered file: {mode:o}");
    assert_fresh_times(&moved, true);
    // The other deferred file stays.
    assert_eq!(find_queue_file(q, &other), Some("deferred"));
    let seen = qmgr.collect_until(SETTLE, |b| !b.is_empty());
    thread::sleep(Duration::from_millis(300));
    qmgr.read_available();
    assert_eq!(
        String::from_utf8_lossy(qmgr.seen()),
        "I",
        "triggers after send_file (first read {:?})",
        String::from_utf8_lossy(&seen)
    );

    // A file already in incoming/ stays there.
    request_ok(&mut client, &format!("send_file {present}"));
    assert!(moved.is_file());
}

// ---------------------------------------------------------------------------
// 6: purge and refresh

#[test]
fn purge_removes_old_empty_logs_and_delivers_every_non_empty_one() {
    let daemon = Flushd::start(FlushdOptions::default().domains("relay.test old.test"));
    let q = daemon.queue_dir();
    let mut qmgr = FifoReader::qmgr(q);
    let mut client = daemon.client();

    // A log made through the daemon, read 8 days ago.
    let old_ids: Vec<String> = (30..33).map(short_queue_id).collect();
    for id in &old_ids {
        make_deferred(q, id);
        request_ok(&mut client, &format!("add old.test {id}"));
    }
    age_file(&q.join("flush/old_test"), 8 * DAY);
    // A log left by an earlier server, read a minute ago, for a site that is
    // no longer eligible: flush(8) delivers it all the same.
    let recent_ids: Vec<String> = (40..42).map(short_queue_id).collect();
    for id in &recent_ids {
        make_deferred(q, id);
    }
    let recent = write_log(q, "legacy_test", &recent_ids);
    age_file(&recent, Duration::from_secs(60));
    // Empty logs: an old one goes, a recent one stays.
    let old_empty = write_log(q, "gone_test", &[]);
    age_file(&old_empty, 8 * DAY);
    let new_empty = write_log(q, "young_test", &[]);
    age_file(&new_empty, 6 * DAY);

    let runs = stats_u64(&client.stats(), "janitor", "runs");
    request_ok(&mut client, "purge");
    let stats = wait_janitor_idle(&daemon, runs);

    for id in old_ids.iter().chain(&recent_ids) {
        assert!(
            incoming(q, id).is_file(),
            "{id} not delivered by purge (in {:?})",
            find_queue_file(q, id)
        );
    }
    assert_eq!(log_len(q, "old_test"), Some(0));
    assert_eq!(log_len(q, "legacy_test"), Some(0));
    assert!(!old_empty.exists(), "old empty log not removed");
    assert!(new_empty.exists(), "recent empty log removed");
    assert_eq!(stats_u64(&stats, "janitor", "logs_purged"), 1, "{stats}");
    assert_eq!(stats_u64(&stats, "janitor", "logs_refreshed"), 2, "{stats}");
    // flush(8) touches a log it read for delivery.
    assert_fresh_times(&q.join("flush/old_test"), false);

    // Refresh and purge deliveries ask qmgr to scan incoming/, but never
    // send the F of send_site.
    qmgr.collect_until(SETTLE, |b| b.contains(&b'I'));
    thread::sleep(Duration::from_millis(300));
    qmgr.read_available();
    let seen = String::from_utf8_lossy(qmgr.seen()).into_owned();
    assert!(
        seen.contains('I') && !seen.contains('F'),
        "qmgr triggers: {seen:?}"
    );
}

#[test]
fn refresh_delivers_only_logs_unread_for_the_refresh_time() {
    let daemon = Flushd::start(
        FlushdOptions::default()
            .domains("stale.test fresh.test")
            .set("fast_flush_refresh_time", "1h"),
    );
    let q = daemon.queue_dir();
    let mut client = daemon.client();

    let stale_ids: Vec<String> = (50..53).map(short_queue_id).collect();
    let fresh_ids: Vec<String> = (60..63).map(short_queue_id).collect();
    for (site, ids) in [("stale.test", &stale_ids), ("fresh.test", &fresh_ids)] {
        for id in ids {
            make_deferred(q, id);
            request_ok(&mut client, &format!("add {site} {id}"));
        }
    }
    // Read two hours ago (appended to since: only the access time counts).
    let two_hours_ago = SystemTime::now() - 2 * HOUR;
    set_times(
        &q.join("flush/stale_test"),
        two_hours_ago,
        SystemTime::now(),
    );
    // Read 50 minutes ago: younger than the refresh time.
    let fifty_minutes_ago = SystemTime::now() - Duration::from_secs(50 * 60);
    set_times(
        &q.join("flush/fresh_test"),
        fifty_minutes_ago,
        fifty_minutes_ago,
    );
    let old_empty = write_log(q, "gone_test", &[]);
    age_file(&old_empty, 8 * DAY);

    let runs = stats_u64(&client.stats(), "janitor", "runs");
    let started = Instant::now();
    request_ok(&mut client, "refresh");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refresh reply took {:?}",
        started.elapsed()
    );
    let stats = wait_janitor_idle(&daemon, runs);

    for id in &stale_ids {
        assert!(incoming(q, id).is_file(), "{id} not delivered by refresh");
    }
    assert_eq!(log_len(q, "stale_test"), Some(0));
    for id in &fresh_ids {
        assert_eq!(find_queue_file(q, id), Some("deferred"), "{id} delivered");
    }
    assert_eq!(flush_log(q, "fresh_test"), fresh_ids);
    assert!(
        !old_empty.exists(),
        "refresh did not remove the old empty log"
    );
    assert_eq!(stats_u64(&stats, "janitor", "logs_refreshed"), 1, "{stats}");
    assert_eq!(stats_u64(&stats, "janitor", "logs_purged"), 1, "{stats}");

    // `rfrsh`, Postfix's name on the wire, is the same request.
    let runs = stats_u64(&stats, "janitor", "runs");
    request_ok(&mut client, "rfrsh");
    wait_janitor_idle(&daemon, runs);
    assert_eq!(flush_log(q, "fresh_test"), fresh_ids);
}

// ---------------------------------------------------------------------------
// 7, 8: pipelining and garbage

#[test]
fn ten_thousand_pipelined_adds_are_answered_in_order_and_logged() {
    const ADDS: u32 = 10_000;
    const SITES: [&str; 4] = ["relay.test", "a.test", "b.test", "c.test"];
    let daemon = Flushd::start(FlushdOptions::default().domains("relay.test a.test b.test c.test"));
    let q = daemon.queue_dir();
    let mut client = daemon.client();

    // Every 997th request is a DENY, so that the order of replies shows.
    let mut requests = String::new();
    let mut expect = Vec::new();
    let mut per_site: Vec<Vec<String>> = vec![Vec::new(); SITES.len()];
    for n in 0..ADDS {
        if n % 997 == 500 {
            requests.push_str(&format!("add other.test {}\n", short_queue_id(n)));
            expect.push(false);
        }
        let id = short_queue_id(n);
        let site = n as usize % SITES.len();
        requests.push_str(&format!("add {} {id}\n", SITES[site]));
        per_site[site].push(id);
        expect.push(true);
    }
    let started = Instant::now();
    client.send_raw(requests.as_bytes());
    for (i, ok) in expect.iter().enumerate() {
        let reply = client.read_reply();
        if *ok {
            assert_ok(&reply, &format!("reply {i}"));
        } else {
            assert!(reply.starts_with("DENY "), "reply {i}: {reply}");
        }
    }
    eprintln!(
        "{} pipelined requests answered in {:?}",
        expect.len(),
        started.elapsed()
    );

    for (site, ids) in per_site.iter_mut().enumerate() {
        let path = SITES[site].replace('.', "_");
        let mut logged = flush_log(q, &path);
        assert_eq!(logged.len(), ids.len(), "lines in flush/{path}");
        logged.sort();
        ids.sort();
        assert!(
            logged == *ids,
            "flush/{path} does not hold exactly the IDs sent"
        );
    }
    let stats = client.stats();
    assert_eq!(request_count(&stats, "add", "OK"), u64::from(ADDS));
    assert_eq!(stats_u64(&stats, "writers", "appends"), u64::from(ADDS));
}

#[test]
fn garbage_gets_bad_replies_and_the_daemon_keeps_serving() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    let mut bad_client = daemon.client();
    let mut other = daemon.client();

    let long_line = format!("add relay.test {}\n", "A".repeat(10_000 - 15));
    assert_eq!(long_line.len(), 10_001);
    let garbage: Vec<(&[u8], &str)> = vec![
        (b"bogus relay.test\n", "unknown"),
        (b"\n", ""),
        (b" \t \r\n", ""),
        (b"add relay.test ABCDEF EXTRA\n", ""),
        (b"send_site\n", ""),
        (b"stats now\n", ""),
        (b"add relay.test ../x\n", ""),
        (b"send_file ../../etc/passwd\n", ""),
        (b"add relay.test \xff\xfeAB\n", "UTF-8"),
        (long_line.as_bytes(), "line too long"),
    ];
    let mut all = Vec::new();
    for (bytes, _) in &garbage {
        all.extend_from_slice(bytes);
    }
    let good = short_queue_id(7);
    all.extend_from_slice(format!("add relay.test {good}\n").as_bytes());
    bad_client.send_raw(&all);

    // Another client is served meanwhile.
    let other_id = short_queue_id(8);
    request_ok(&mut other, &format!("add relay.test {other_id}"));

    for (i, (bytes, reason)) in garbage.iter().enumerate() {
        let reply = bad_client.read_reply();
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
        assert!(
            reply.starts_with("BAD ") && reply.len() > 4,
            "request {i} {shown:?}: {reply}"
        );
        assert!(reply.contains(reason), "request {i} {shown:?}: {reply}");
        assert!(
            reply.len() < 300,
            "request {i}: reply of {} bytes",
            reply.len()
        );
    }
    assert_ok(&bad_client.read_reply(), "the request after the garbage");
    assert_ok(
        &bad_client.request("send_file ABCDEF"),
        "connection still usable",
    );
    let mut logged = flush_log(q, "relay_test");
    logged.sort();
    let mut want = vec![good, other_id];
    want.sort();
    assert_eq!(logged, want);

    // A client that disconnects mid-line harms nobody.
    let mut rude = daemon.client();
    rude.send_raw(b"add relay.test ABC");
    rude.close_write().unwrap();
    drop(rude);
    request_ok(&mut other, "send_file ABCDEF");
    request_ok(&mut daemon.client(), "send_file ABCDEF");
    let stats = other.stats();
    assert!(request_count(&stats, "invalid", "BAD") >= 5, "{stats}");
}

// ---------------------------------------------------------------------------
// 9: process life

#[test]
fn sigterm_exits_zero_and_removes_the_sockets() {
    let mut daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir().to_path_buf();
    let id = short_queue_id(5);
    let mut client = daemon.client();
    request_ok(&mut client, &format!("add relay.test {id}"));
    assert!(daemon.line_socket().exists());
    assert!(daemon.postfix_socket().exists());

    // A client with many pipelined requests in flight when SIGTERM comes:
    // whatever it is answered must be true (every ID answered OK is logged),
    // and its connection ends cleanly.
    let mut busy = daemon.client();
    let ids: Vec<String> = (100..2100).map(short_queue_id).collect();
    let batch: String = ids
        .iter()
        .map(|i| format!("add relay.test {i}\n"))
        .collect();
    busy.send_raw(batch.as_bytes());
    assert_ok(&busy.read_reply(), "first pipelined add");
    daemon.send_signal(Signal::TERM).unwrap();
    let mut answered = 1;
    loop {
        match busy.try_read_reply() {
            Ok(Some(reply)) => {
                assert_ok(&reply, &format!("add {} during shutdown", ids[answered]));
                answered += 1;
            }
            Ok(None) => break,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("after {answered} replies during shutdown: {e}"),
        }
    }

    assert_clean_exit(&mut daemon);
    let logged = flush_log(&q, "relay_test");
    assert_eq!(logged.first(), Some(&id));
    let logged: HashSet<String> = logged.into_iter().collect();
    let unlogged: Vec<&String> = ids[..answered]
        .iter()
        .filter(|i| !logged.contains(*i))
        .collect();
    assert!(
        unlogged.is_empty(),
        "{} of {answered} IDs answered OK are not logged: {unlogged:?}",
        unlogged.len()
    );
    eprintln!(
        "{answered} of {} pipelined adds answered before exit",
        ids.len()
    );
    drop(client);

    // The queue lock went with the process: a new daemon can serve the queue
    // and finds the log as it was.
    let again = Flushd::start(FlushdOptions::default().queue_dir(&q));
    let id2 = short_queue_id(6);
    request_ok(&mut again.client(), &format!("add relay.test {id2}"));
    let after = flush_log(&q, "relay_test");
    assert_eq!(after.len(), logged.len() + 1, "log changed across restart");
    assert_eq!(after.last(), Some(&id2));
}

#[test]
fn a_second_daemon_on_the_same_queue_fails_to_start() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    // Same configuration and the same socket paths as the running daemon.
    let out = run(
        Command::new(flushd_binary())
            .arg("-c")
            .arg(daemon.config_dir())
            .arg("--listen")
            .arg(format!("unix:{}", daemon.line_socket().display()))
            .arg("--postfix-listen")
            .arg(daemon.postfix_socket())
            .env_remove("RUST_LOG"),
        Duration::from_secs(20),
    );
    let line = assert_one_line_failure(&out, &q.display().to_string());
    assert!(
        line.contains(&daemon.pid().to_string()),
        "error does not name the running daemon: {line}"
    );
    // The running daemon keeps its sockets and serves on.
    let id = short_queue_id(9);
    request_ok(&mut daemon.client(), &format!("add relay.test {id}"));
    assert!(daemon.postfix_socket().exists());
    assert_eq!(flush_log(q, "relay_test"), vec![id]);
}

/// A config directory whose main.cf points at a new queue directory under
/// it and sets `fast_flush_domains`; returns it and the queue directory.
fn config_dir(fast_flush_domains: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let queue = tmp.path().join("queue");
    make_queue_dir(&queue).unwrap();
    fs::write(
        tmp.path().join("main.cf"),
        format!(
            "queue_directory = {}\nfast_flush_domains = {fast_flush_domains}\n",
            queue.display()
        ),
    )
    .unwrap();
    (tmp, queue)
}

/// Runs flushd on `config` with `args` to its end (it is expected to stop).
fn run_flushd(config: &Path, args: &[&str]) -> Output {
    run(
        Command::new(flushd_binary())
            .arg("-c")
            .arg(config)
            .args(args)
            .env_remove("RUST_LOG"),
        Duration::from_secs(20),
    )
}

/// Nothing was served: neither socket exists.
fn assert_no_sockets(queue: &Path) {
    assert!(!queue.join("public/flush.line").exists());
    assert!(!queue.join("public/flush").exists());
}

#[test]
fn an_unknown_time_unit_is_a_one_line_error() {
    let (tmp, queue) = config_dir("relay.test");
    let out = run_flushd(tmp.path(), &["-o", "fast_flush_refresh_time=3x"]);
    assert_one_line_failure(&out, "fast_flush_refresh_time");
    assert_no_sockets(&queue);

    // The same error from main.cf.
    let mut cf = fs::OpenOptions::new()
        .append(true)
        .open(tmp.path().join("main.cf"))
        .unwrap();
    writeln!(cf, "fast_flush_purge_time = 7 days").unwrap();
    let out = run_flushd(tmp.path(), &[]);
    assert_one_line_failure(&out, "fast_flush_purge_time");
}

/// A domain list that does not compile stops flushd before it binds a
/// socket (none is left behind), and says so once.
#[test]
fn a_bad_domain_list_stops_flushd_before_it_binds() {
    let (tmp, queue) = config_dir("relay.test, !");
    let out = run_flushd(tmp.path(), &[]);
    let line = assert_one_line_failure(&out, "fast_flush_domains");
    assert_eq!(line.matches("fast_flush_domains").count(), 1, "{line}");
    assert_no_sockets(&queue);
}

// ---------------------------------------------------------------------------
// 10: stats

#[test]
fn stats_has_every_section_and_counts_requests() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    let mut client = daemon.client();

    let reply = client.request("stats");
    assert!(!reply.contains('\n'));
    let before = client.stats();
    assert!(before.is_object(), "{before}");
    for section in ["gateway", "matcher", "writers", "trigger", "janitor"] {
        for key in ["handled", "mailbox", "mailbox_peak", "errors"] {
            assert!(
                before[section][key].is_u64(),
                "stats {section}.{key} missing: {before}"
            );
        }
    }
    let specific: [(&str, &[&str]); 5] = [
        (
            "gateway",
            &["connections_open", "connections_total", "requests"],
        ),
        ("matcher", &["lookups", "denied", "patterns", "reloads"]),
        (
            "writers",
            &[
                "live_writers",
                "appends",
                "duplicates_skipped",
                "deliveries",
                "bytes_written",
                "open_files",
            ],
        ),
        (
            "trigger",
            &[
                "files_moved",
                "files_missing",
                "triggers_sent",
                "triggers_failed",
            ],
        ),
        (
            "janitor",
            &[
                "runs",
                "running",
                "last_run_ms",
                "logs_refreshed",
                "logs_purged",
            ],
        ),
    ];
    for (section, keys) in specific {
        for key in keys {
            assert!(
                !before[section][*key].is_null(),
                "stats {section}.{key} missing: {before}"
            );
        }
    }
    for verb in ["add", "send_site", "send_file", "refresh", "purge", "stats"] {
        for status in ["OK", "BAD", "DENY", "FAIL"] {
            request_count(&before, verb, status);
        }
    }
    assert_eq!(before["pid"].as_u64(), Some(u64::from(daemon.pid())));
    assert!(before["uptime_s"].is_u64(), "{before}");
    assert!(before["version"].is_string(), "{before}");
    assert_eq!(
        before["queue_directory"].as_str().map(Path::new),
        Some(q),
        "{before}"
    );
    assert_eq!(stats_u64(&before, "matcher", "patterns"), 1);
    assert!(stats_u64(&before, "gateway", "connections_open") >= 1);

    // Requests move the counters.
    let mut qmgr = FifoReader::qmgr(q);
    let ids: Vec<String> = (0..3).map(short_queue_id).collect();
    for id in &ids {
        make_deferred(q, id);
        request_ok(&mut client, &format!("add relay.test {id}"));
    }
    request_ok(&mut client, &format!("add relay.test {}", ids[0]));
    assert!(client.request("add other.test ABCDEF").starts_with("DENY "));
    assert!(client.request("add relay.test ../x").starts_with("BAD "));
    request_ok(&mut client, "send_site relay.test");
    request_ok(&mut client, "send_file ABCDEF");
    qmgr.collect_until(SETTLE, |b| b == b"FI");
    let mut second = daemon.client();
    let after = second.stats();

    let diff = |section: &str, key: &str| {
        stats_u64(&after, section, key) - stats_u64(&before, section, key)
    };
    let req_diff = |verb: &str, status: &str| {
        request_count(&after, verb, status) - request_count(&before, verb, status)
    };
    assert_eq!(req_diff("add", "OK"), 4, "{after}");
    assert_eq!(req_diff("add", "DENY"), 1, "{after}");
    assert_eq!(req_diff("send_site", "OK"), 1, "{after}");
    assert_eq!(req_diff("send_file", "OK"), 1, "{after}");
    assert!(req_diff("stats", "OK") >= 1, "{after}");
    assert_eq!(diff("writers", "appends"), 3, "{after}");
    assert_eq!(diff("writers", "duplicates_skipped"), 1, "{after}");
    assert_eq!(diff("writers", "deliveries"), 1, "{after}");
    assert!(diff("writers", "bytes_written") >= 3 * 7, "{after}");
    assert_eq!(stats_u64(&after, "writers", "live_writers"), 1, "{after}");
    assert!(diff("matcher", "lookups") >= 5, "{after}");
    assert!(diff("matcher", "denied") >= 1, "{after}");
    assert_eq!(diff("trigger", "files_moved"), 3, "{after}");
    assert!(diff("trigger", "files_missing") >= 1, "{after}");
    assert!(diff("trigger", "triggers_sent") >= 2, "{after}");
    assert_eq!(diff("trigger", "triggers_failed"), 0, "{after}");
    assert!(diff("gateway", "handled") >= 8, "{after}");
    assert!(diff("gateway", "connections_total") >= 1, "{after}");
    assert!(
        stats_u64(&after, "gateway", "connections_open") >= 2,
        "{after}"
    );
}

// ---------------------------------------------------------------------------
// 11: flushctl

#[test]
fn flushctl_exit_codes_and_pretty_stats() {
    let daemon = Flushd::start(FlushdOptions::default().domains("relay.test evil.test"));
    let q = daemon.queue_dir();
    let id = short_queue_id(11);
    make_deferred(q, &id);

    let ok = flushctl(&daemon, &["add", "relay.test", &id]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert_eq!(flush_log(q, "relay_test"), vec![id.clone()]);
    let ok = flushctl(&daemon, &["send-site", "relay.test"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(incoming(q, &id).is_file());
    for args in [&["send-file", "ABCDEF"][..], &["refresh"], &["purge"]] {
        let ok = flushctl(&daemon, args);
        assert_eq!(ok.status.code(), Some(0), "{args:?}: {ok:?}");
    }

    let expect_failure = |args: &[&str], code: i32, needle: &str| {
        let out = flushctl(&daemon, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(
            stderr.contains(needle) && !stderr.trim().is_empty(),
            "{args:?}: stderr {stderr:?} lacks {needle:?}"
        );
    };
    expect_failure(&["add", "relay.test", "../x"], 64, "BAD");
    expect_failure(&["add", "other.test", &id], 77, "DENY");
    // A symbolic link where the log should be: flushd refuses to follow it,
    // and the request fails.
    let target = daemon.temp_dir().join("not-a-log");
    fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, q.join("flush/evil_test")).unwrap();
    expect_failure(&["add", "evil.test", &id], 75, "FAIL");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");

    let missing = daemon.temp_dir().join("no-such.socket");
    let out = run(
        Command::new(flushctl_binary())
            .arg("-s")
            .arg(format!("unix:{}", missing.display()))
            .args(["add", "relay.test", &id]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    assert!(!out.stderr.is_empty(), "no reason on stderr");

    let out = flushctl(&daemon, &["stats"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines().count() > 10,
        "stats not pretty-printed:\n{text}"
    );
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["pid"].as_u64(), Some(u64::from(daemon.pid())));
    assert!(json["gateway"]["handled"].is_u64(), "{json}");
}

// ---------------------------------------------------------------------------
// 12: max_idle

#[test]
fn idle_writers_are_retired_after_max_idle() {
    let daemon = Flushd::start(
        FlushdOptions::default()
            .domains("a.test b.test c.test")
            .set("max_idle", "1s"),
    );
    let q = daemon.queue_dir();
    let mut client = daemon.client();
    for (n, site) in ["a.test", "b.test", "c.test"].into_iter().enumerate() {
        let id = short_queue_id(n as u32);
        request_ok(&mut client, &format!("add {site} {id}"));
    }
    let started = Instant::now();
    let stats = client.stats();
    assert_eq!(stats_u64(&stats, "writers", "live_writers"), 3, "{stats}");

    let mut last = Value::Null;
    let retired = wait_until(SETTLE, || {
        last = client.stats();
        stats_u64(&last, "writers", "live_writers") == 0
    });
    assert!(retired, "writers not retired: {last}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "writers retired after only {:?}",
        started.elapsed()
    );
    assert_eq!(stats_u64(&last, "writers", "open_files"), 0, "{last}");

    // A retired site's log is reopened and appended to, not replaced.
    let id = short_queue_id(3);
    request_ok(&mut client, &format!("add a.test {id}"));
    assert_eq!(flush_log(q, "a_test"), vec![short_queue_id(0), id]);
}

/// A client that pipelines `add` then `send_site` for the same site, in one
/// write, gets the added message delivered by that send_site.
#[test]
fn a_pipelined_add_is_delivered_by_the_send_site_behind_it() {
    let daemon = Flushd::start(FlushdOptions::default());
    let q = daemon.queue_dir();
    let mut client = daemon.client();
    let ids: Vec<String> = (200..205).map(short_queue_id).collect();
    let mut burst = String::new();
    for id in &ids {
        make_deferred(q, id);
        burst.push_str(&format!("add relay.test {id}\n"));
    }
    burst.push_str("send_site relay.test\n");
    client.send_raw(burst.as_bytes());
    for id in &ids {
        assert_ok(&client.read_reply(), &format!("add {id}"));
    }
    let reply = client.read_reply();
    assert_eq!(reply, "OK 5 queued", "send_site reply");
    for id in &ids {
        assert!(
            incoming(q, id).is_file(),
            "{id} not delivered by the send_site behind its add"
        );
    }
    assert_eq!(log_len(q, "relay_test"), Some(0), "log not truncated");
}

#[test]
fn several_gateway_threads_serve_both_protocols_and_stop_cleanly() {
    const CLIENTS: u32 = 6;
    const ADDS: u32 = 300;
    let mut daemon = Flushd::start(FlushdOptions::default().arg("--gateway-threads").arg("3"));
    let q = daemon.queue_dir().to_path_buf();
    let line = daemon.line_socket().to_path_buf();
    let postfix = daemon.postfix_socket().to_path_buf();

    // Line clients and Postfix-protocol clients at once, each with its own IDs.
    let workers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (line, postfix) = (line.clone(), postfix.clone());
            thread::spawn(move || {
                let ids: Vec<String> = (0..ADDS).map(|n| short_queue_id(c * ADDS + n)).collect();
                if c % 2 == 0 {
                    let mut client = LineClient::connect(&line).unwrap();
                    for id in &ids {
                        assert_ok(&client.request(&format!("add relay.test {id}")), id);
                    }
                } else {
                    for id in &ids {
                        let add = [("request", "add"), ("site", "relay.test"), ("queue_id", id)];
                        let exchange = postfix_request(&postfix, &add).unwrap();
                        assert_eq!(exchange.status, 0, "postfix add {id}");
                    }
                }
                ids
            })
        })
        .collect();
    let mut sent: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();

    let mut logged = flush_log(&q, "relay_test");
    assert_eq!(logged.len(), sent.len(), "IDs in flush/relay_test");
    logged.sort();
    sent.sort();
    assert!(
        logged == sent,
        "flush/relay_test does not hold exactly the IDs sent"
    );
    let stats = daemon.client().stats();
    let half = u64::from(CLIENTS / 2 * ADDS);
    let total = stats_u64(&stats, "gateway", "connections_total");
    assert!(total > half);
    assert_eq!(request_count(&stats, "add", "OK"), 2 * half);
    // Every thread served: with 900 connections racing for the shared
    // listeners, a thread that never accepts is one that does not listen.
    let by_thread: Vec<u64> = stats["gateway"]["accepted_by_thread"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(by_thread.len(), 3, "{stats}");
    assert!(by_thread.iter().all(|&n| n > 0), "{by_thread:?}");
    assert_eq!(by_thread.iter().sum::<u64>(), total, "{stats}");

    // One more session left open: shutdown still finishes it and exits.
    let mut idle = daemon.client();
    request_ok(&mut idle, "add relay.test ABCDEF0123");
    daemon.send_signal(Signal::TERM).unwrap();
    assert_clean_exit(&mut daemon);
}

#[test]
fn silent_clients_are_closed_after_ipc_timeout_and_at_shutdown() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    const GREETING: &[u8] = b"protocol\0queue_flush_protocol\0\0";
    let mut daemon = Flushd::start(FlushdOptions::default().set("ipc_timeout", "3s"));
    let connect = |path: &Path| {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(SETTLE)).unwrap();
        stream
    };
    let read_all = |mut stream: UnixStream| {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).unwrap();
        got
    };

    // A Postfix client that reads the greeting and says nothing, and a line
    // client that says nothing: both are closed without a reply.
    let opened = Instant::now();
    let postfix = connect(daemon.postfix_socket());
    let line = connect(daemon.line_socket());
    let greeting = read_all(postfix);
    let waited = opened.elapsed();
    assert_eq!(greeting, GREETING, "postfix bytes");
    let timed_out = Duration::from_millis(2500)..Duration::from_secs(8);
    assert!(
        timed_out.contains(&waited),
        "postfix closed after {waited:?}"
    );
    let nothing = read_all(line);
    let waited = opened.elapsed();
    assert!(nothing.is_empty(), "line bytes: {nothing:?}");
    assert!(timed_out.contains(&waited), "line closed after {waited:?}");

    // Half a Postfix request when SIGTERM comes: the connection is closed
    // unanswered at once, not after the idle timeout.
    let mut half = connect(daemon.postfix_socket());
    half.write_all(b"request\0add\0site\0rel").unwrap();
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    daemon.send_signal(Signal::TERM).unwrap();
    let bytes = read_all(half);
    assert_eq!(bytes, GREETING, "bytes to a half request");
    assert_clean_exit(&mut daemon);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "exit took {:?}",
        started.elapsed()
    );
}

/// At shutdown flushd removes its sockets only if the names still hold
/// them: one bound there since (by master(8) after a reload that gave
/// `flush` back to Postfix, say) stays.
#[test]
fn a_socket_someone_else_bound_since_is_left_at_shutdown() {
    let mut daemon = Flushd::start(FlushdOptions::default());
    let path = daemon.postfix_socket().to_path_buf();
    fs::remove_file(&path).unwrap();
    // Later than flushd's, as master's would be (time stamps may be coarse).
    thread::sleep(Duration::from_millis(20));
    let _theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
    daemon.send_signal(Signal::TERM).unwrap();
    let status = daemon.wait_exit(SETTLE).expect("flushd still running");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(path.exists(), "someone else's socket was removed");
    assert!(!daemon.line_socket().exists(), "line socket left behind");
}

/// With room for one connection, every listener still serves: an idle
/// accept loop must not hold the one place (flushd listens on a line and
/// a Postfix-protocol socket).
#[test]
fn one_connection_allowed_still_serves_both_listeners() {
    let daemon = Flushd::start(FlushdOptions::default().set("flush_max_connections", "1"));
    let postfix = daemon.postfix_socket().to_path_buf();
    let postfix_add = |n| {
        let id = short_queue_id(n);
        let add = [
            ("request", "add"),
            ("site", "relay.test"),
            ("queue_id", &id),
        ];
        let exchange = postfix_request(&postfix, &add).unwrap();
        assert_eq!(exchange.status, 0, "postfix add {id}");
    };
    let line_add = |n| {
        let id = short_queue_id(n);
        assert_ok(
            &daemon.client().request(&format!("add relay.test {id}")),
            &id,
        );
    };
    // Twice in a row on each: the place must not be parked on the other.
    postfix_add(0);
    postfix_add(1);
    line_add(2);
    line_add(3);
    postfix_add(4);
    postfix_add(5);
    assert_eq!(flush_log(daemon.queue_dir(), "relay_test").len(), 6);
}

/// Clients pipelining thousands of send_files put at most
/// MAX_SEND_FILES_IN_FLIGHT (64) of them in the queue trigger's queue, where
/// a delivery would wait behind them holding its log's lock.
#[test]
fn pipelined_send_files_reach_the_queue_trigger_a_few_at_a_time() {
    const CLIENTS: u32 = 4;
    const SEND_FILES: u32 = 1000;
    let daemon = Flushd::start(FlushdOptions::default());
    let mut clients: Vec<LineClient> = (0..CLIENTS).map(|_| daemon.client()).collect();
    for (c, client) in (0..).zip(&mut clients) {
        let requests: String = (0..SEND_FILES)
            .map(|n| format!("send_file {}\n", short_queue_id(c * SEND_FILES + n)))
            .collect();
        client.send_raw(requests.as_bytes());
    }
    for client in &mut clients {
        for n in 0..SEND_FILES {
            let reply = client.read_reply();
            // No such queue files: nothing queued, but answered.
            assert!(reply.starts_with("OK 0 queued"), "send_file {n}: {reply}");
        }
    }
    let stats = daemon.client().stats();
    let peak = stats_u64(&stats, "trigger", "mailbox_peak");
    assert!(peak > 0, "{stats}");
    assert!(peak <= 64, "trigger mailbox peak {peak}: {stats}");
}

#[test]
fn a_low_open_file_limit_keeps_fewer_logs_open_and_fails_no_add() {
    const SITES: u32 = 1500;
    // 900 descriptors, 100 of them for connections, 64 spare: 736 logs.
    let daemon = Flushd::start(
        FlushdOptions::default()
            .open_file_limit(900)
            .set("flush_max_connections", "100"),
    );
    let q = daemon.queue_dir();
    let mut client = daemon.client();
    let mut requests = String::new();
    for round in 0..2 {
        for site in 0..SITES {
            let id = short_queue_id(round * SITES + site);
            requests.push_str(&format!("add s{site}.relay.test {id}\n"));
        }
    }
    client.send_raw(requests.as_bytes());
    for n in 0..2 * SITES {
        assert_ok(&client.read_reply(), &format!("add {n}"));
    }
    for site in [0, SITES / 2, SITES - 1] {
        let logged = flush_log(q, &format!("s{site}_relay_test"));
        assert_eq!(
            logged,
            [short_queue_id(site), short_queue_id(SITES + site)],
            "flush/s{site}_relay_test"
        );
    }
    let stats = client.stats();
    assert!(stats_u64(&stats, "writers", "open_files") <= 736);
    assert!(
        daemon.log().contains("keeping at most 736 logfiles open"),
        "no warning in the log:\n{}",
        daemon.log()
    );
}
