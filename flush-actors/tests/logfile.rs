//! The logfile of one destination on a real directory: appends, duplicate
//! skipping, other writers (simulated with plain std::fs, as a Postfix
//! flush(8) would touch the file), janitor removal, deliveries and locking.
#![allow(clippy::unwrap_used)]

use flush_actors::logfile::{remove_if_stale_empty, LogFile, MAX_TRACKED_IDS};
use rustix::fs::FlockOperation;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const SITE: &str = "relay_test";

fn flush_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(SITE)
}

fn content(dir: &Path) -> String {
    fs::read_to_string(log_path(dir)).unwrap()
}

fn set_times(path: &Path, t: SystemTime) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.set_times(FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

/// Tries to take the lock the way another flush process would, without waiting.
fn lock_is_free(path: &Path) -> bool {
    let f = File::open(path).unwrap();
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => true,
        Err(rustix::io::Errno::WOULDBLOCK) => false,
        Err(e) => panic!("flock: {e}"),
    }
}

#[test]
fn append_writes_lines() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    let report = log.append(&["A1", "B2"]).unwrap();
    assert_eq!((report.written, report.skipped, report.bytes), (2, 0, 6));
    assert_eq!(content(dir.path()), "A1\nB2\n");
    log.append(&["C3"]).unwrap();
    assert_eq!(content(dir.path()), "A1\nB2\nC3\n");
    assert_eq!(log.path(), log_path(dir.path()));
}

#[test]
fn logfile_is_0600_and_refuses_bad_names() {
    let dir = flush_dir();
    LogFile::open(dir.path(), SITE).unwrap();
    let mode = fs::metadata(log_path(dir.path())).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    for bad in ["", "../x", "a/b", "a.b"] {
        let err = LogFile::open(dir.path(), bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
}

/// Runs in a child process (it changes the process-wide umask).
#[test]
#[ignore = "run by logfile_mode_is_fixed_under_any_umask in a child process"]
fn umask_child() {
    if std::env::var_os("FLUSHD_UMASK_CHILD").is_none() {
        return;
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o277));
    let dir = PathBuf::from(std::env::var_os("FLUSHD_UMASK_CHILD").unwrap());
    LogFile::open(&dir, SITE).unwrap();
}

#[test]
fn logfile_mode_is_fixed_under_any_umask() {
    let dir = flush_dir();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "umask_child", "--test-threads=1"])
        .env("FLUSHD_UMASK_CHILD", dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mode = fs::metadata(log_path(dir.path())).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o600);
}

#[test]
fn symlinks_and_other_files_are_refused() {
    let dir = flush_dir();
    let target = dir.path().join("target");
    fs::write(&target, b"precious\n").unwrap();
    symlink(&target, log_path(dir.path())).unwrap();
    assert!(LogFile::open(dir.path(), SITE).is_err());
    assert!(LogFile::open_existing(dir.path(), SITE).is_err());
    assert_eq!(fs::read(&target).unwrap(), b"precious\n");

    // A dangling symlink is not followed to create its target either.
    fs::remove_file(log_path(dir.path())).unwrap();
    let nowhere = dir.path().join("nowhere");
    symlink(&nowhere, log_path(dir.path())).unwrap();
    assert!(LogFile::open(dir.path(), SITE).is_err());
    assert!(!nowhere.exists());

    // A directory, and a file with a second hard link.
    fs::remove_file(log_path(dir.path())).unwrap();
    fs::create_dir(log_path(dir.path())).unwrap();
    assert!(LogFile::open(dir.path(), SITE).is_err());
    fs::remove_dir(log_path(dir.path())).unwrap();
    fs::hard_link(&target, log_path(dir.path())).unwrap();
    assert!(LogFile::open(dir.path(), SITE).is_err());
    assert_eq!(fs::read(&target).unwrap(), b"precious\n");
}

#[test]
fn open_existing_does_not_create() {
    let dir = flush_dir();
    assert!(LogFile::open_existing(dir.path(), SITE).unwrap().is_none());
    assert!(!log_path(dir.path()).exists());
    fs::write(log_path(dir.path()), b"A1\n").unwrap();
    let mut log = LogFile::open_existing(dir.path(), SITE).unwrap().unwrap();
    let d = log.take_for_delivery().unwrap();
    assert_eq!(d.ids, ["A1"]);
    log.finish_delivery(d).unwrap();
}

#[test]
fn duplicates_are_skipped() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&["A1"]).unwrap();
    let report = log.append(&["A1", "B2", "B2", "C3", "A1"]).unwrap();
    assert_eq!((report.written, report.skipped), (2, 3));
    assert_eq!(content(dir.path()), "A1\nB2\nC3\n");
}

#[test]
fn existing_lines_count_as_present_after_reopen() {
    let dir = flush_dir();
    fs::write(log_path(dir.path()), b"A1\nB2\n").unwrap();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    let report = log.append(&["B2", "C3"]).unwrap();
    assert_eq!((report.written, report.skipped), (1, 1));
    assert_eq!(content(dir.path()), "A1\nB2\nC3\n");
}

#[test]
fn invalid_ids_are_not_written() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    let report = log.append(&["A1", "bad\nline", "", "B2"]).unwrap();
    assert_eq!((report.written, report.invalid), (2, 2));
    assert_eq!(content(dir.path()), "A1\nB2\n");
}

#[test]
fn external_truncation_is_noticed() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&["A1", "B2"]).unwrap();
    // Another flush delivered the log and truncated it.
    OpenOptions::new()
        .write(true)
        .open(log_path(dir.path()))
        .unwrap()
        .set_len(0)
        .unwrap();
    let report = log.append(&["A1"]).unwrap();
    assert_eq!((report.written, report.skipped), (1, 0));
    assert_eq!(content(dir.path()), "A1\n");
}

#[test]
fn external_appends_are_noticed() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&["A1"]).unwrap();
    // Postfix's flush(8) appends an ID on its own.
    let mut other = OpenOptions::new()
        .append(true)
        .open(log_path(dir.path()))
        .unwrap();
    other.write_all(b"X9\n").unwrap();
    let report = log.append(&["X9", "Y8", "A1"]).unwrap();
    assert_eq!((report.written, report.skipped), (1, 2));
    assert_eq!(content(dir.path()), "A1\nX9\nY8\n");
}

#[test]
fn append_after_janitor_removal_lands_in_a_new_file() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&["A1"]).unwrap();
    let d = log.take_for_delivery().unwrap();
    log.finish_delivery(d).unwrap();
    set_times(&log_path(dir.path()), ago(8 * 86400));
    assert!(remove_if_stale_empty(dir.path(), SITE, ago(7 * 86400)).unwrap());
    assert!(!log_path(dir.path()).exists());

    log.append(&["B2"]).unwrap();
    assert_eq!(content(dir.path()), "B2\n");

    // Removed by hand while idle: same thing.
    fs::remove_file(log_path(dir.path())).unwrap();
    log.append(&["B2", "C3"]).unwrap();
    assert_eq!(content(dir.path()), "B2\nC3\n");
}

#[test]
fn janitor_removes_only_old_empty_logs() {
    let dir = flush_dir();
    let purge_before = ago(7 * 86400);
    assert!(!remove_if_stale_empty(dir.path(), SITE, purge_before).unwrap());

    fs::write(log_path(dir.path()), b"A1\n").unwrap();
    set_times(&log_path(dir.path()), ago(30 * 86400));
    assert!(!remove_if_stale_empty(dir.path(), SITE, purge_before).unwrap());

    fs::write(log_path(dir.path()), b"").unwrap();
    assert!(!remove_if_stale_empty(dir.path(), SITE, purge_before).unwrap());

    // Exactly at the limit (same second) is not older: kept.
    set_times(&log_path(dir.path()), purge_before);
    assert!(!remove_if_stale_empty(dir.path(), SITE, purge_before).unwrap());

    set_times(&log_path(dir.path()), purge_before - Duration::from_secs(1));
    assert!(remove_if_stale_empty(dir.path(), SITE, purge_before).unwrap());
    assert!(!log_path(dir.path()).exists());

    // Never through a symlink.
    let target = dir.path().join("target");
    fs::write(&target, b"").unwrap();
    set_times(&target, ago(30 * 86400));
    symlink(&target, log_path(dir.path())).unwrap();
    assert!(remove_if_stale_empty(dir.path(), SITE, purge_before).is_err());
    assert!(target.exists());
}

#[test]
fn many_ids_in_one_append() {
    let dir = flush_dir();
    let ids: Vec<String> = (0..5000).map(|i| format!("Q{i:06X}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    let report = log.append(&refs).unwrap();
    assert_eq!(report.written, 5000);
    assert_eq!(report.bytes, 5000 * 8);
    let want: String = ids.iter().map(|id| format!("{id}\n")).collect();
    assert_eq!(content(dir.path()), want);
}

#[test]
fn duplicate_memory_is_bounded() {
    let dir = flush_dir();
    let ids: Vec<String> = (0..MAX_TRACKED_IDS + 5)
        .map(|i| format!("Q{i:06X}"))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&refs).unwrap();
    // The first IDs are remembered; the last ones no longer fit.
    let first = log.append(&[refs[0]]).unwrap();
    assert_eq!(first.skipped, 1);
    let last = log.append(&[refs[MAX_TRACKED_IDS + 4]]).unwrap();
    assert_eq!(last.written, 1);
    // With the memory full, a repeat within one batch is still caught.
    let twice = log.append(&["R1", "R1"]).unwrap();
    assert_eq!((twice.written, twice.skipped), (1, 1));
}

#[test]
fn delivery_reads_in_order_without_duplicates_and_truncates() {
    let dir = flush_dir();
    fs::write(log_path(dir.path()), b"B2\nA1\nB2\nbad.id\n\nC3\nA1\nD4").unwrap();
    set_times(&log_path(dir.path()), ago(3600));
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    let d = log.take_for_delivery().unwrap();
    assert_eq!(d.ids, ["B2", "A1", "C3", "D4"]);
    assert_eq!(d.lines_read, 8);
    log.finish_delivery(d).unwrap();
    let meta = fs::metadata(log_path(dir.path())).unwrap();
    assert_eq!(meta.len(), 0);
    // Times set to now, so that refresh sees a freshly read log.
    let now = SystemTime::now();
    let atime = meta.accessed().unwrap();
    let mtime = meta.modified().unwrap();
    assert!(now.duration_since(atime).unwrap() < Duration::from_secs(60));
    assert!(now.duration_since(mtime).unwrap() < Duration::from_secs(60));
    // After the truncation, the same IDs are new again.
    let report = log.append(&["A1"]).unwrap();
    assert_eq!(report.written, 1);
}

#[test]
fn delivery_of_an_empty_log_reads_no_lines() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    let d = log.take_for_delivery().unwrap();
    assert!(d.ids.is_empty());
    assert_eq!(d.lines_read, 0);
    log.finish_delivery(d).unwrap();
}

#[test]
fn delivery_dedup_is_bounded() {
    let dir = flush_dir();
    let mut text = String::new();
    for i in 0..MAX_TRACKED_IDS {
        text.push_str(&format!("Q{i:06X}\n"));
    }
    text.push_str("Q000000\nQ000000\n");
    fs::write(log_path(dir.path()), text).unwrap();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    let d = log.take_for_delivery().unwrap();
    // The filter is full: duplicates pass, as with flush(8).
    assert_eq!(d.ids.len(), MAX_TRACKED_IDS + 2);
    assert_eq!(d.lines_read, MAX_TRACKED_IDS + 2);
    log.finish_delivery(d).unwrap();
}

#[test]
fn delivery_holds_the_lock_until_finished() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&["A1"]).unwrap();
    assert!(lock_is_free(&log_path(dir.path())));
    let d = log.take_for_delivery().unwrap();
    assert!(!lock_is_free(&log_path(dir.path())));
    assert!(log.delivery_in_progress());
    // No append into a log that is about to be truncated.
    let err = log.append(&["B2"]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    log.finish_delivery(d).unwrap();
    assert!(lock_is_free(&log_path(dir.path())));
    assert!(!log.delivery_in_progress());
}

#[test]
fn aborted_or_dropped_delivery_keeps_lines_and_unlocks() {
    let dir = flush_dir();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&["A1"]).unwrap();
    let d = log.take_for_delivery().unwrap();
    log.abort_delivery(d).unwrap();
    assert!(lock_is_free(&log_path(dir.path())));
    assert_eq!(content(dir.path()), "A1\n");

    let d = log.take_for_delivery().unwrap();
    drop(d);
    assert!(lock_is_free(&log_path(dir.path())));
    log.append(&["B2"]).unwrap();
    assert_eq!(content(dir.path()), "A1\nB2\n");
}

#[test]
fn a_delivery_of_another_log_is_refused() {
    let dir = flush_dir();
    let mut one = LogFile::open(dir.path(), SITE).unwrap();
    let mut two = LogFile::open(dir.path(), "other_site").unwrap();
    one.append(&["A1"]).unwrap();
    let d = one.take_for_delivery().unwrap();
    let err = two.finish_delivery(d).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // The refused delivery was dropped: the log is unlocked and whole.
    assert!(lock_is_free(&log_path(dir.path())));
    assert_eq!(content(dir.path()), "A1\n");
}

#[test]
fn appending_to_a_log_locked_elsewhere_does_not_wait_and_loses_nothing() {
    let dir = flush_dir();
    let mut deliverer = LogFile::open(dir.path(), SITE).unwrap();
    deliverer.append(&["OLD1"]).unwrap();
    let d = deliverer.take_for_delivery().unwrap();

    // Another process appends while the delivery holds the lock: it is told
    // at once, writes nothing, and can try again once the lock is free.
    let mut other = LogFile::open(dir.path(), SITE).unwrap();
    let started = Instant::now();
    let err = other.append(&["NEW1"]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(other
        .take_for_delivery()
        .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock));
    assert_eq!(content(dir.path()), "OLD1\n");

    assert_eq!(d.ids, ["OLD1"]);
    deliverer.finish_delivery(d).unwrap();
    assert_eq!(other.append(&["NEW1"]).unwrap().written, 1);
    assert_eq!(content(dir.path()), "NEW1\n");
}

#[test]
fn a_log_without_memory_skips_only_duplicates_within_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogFile::open(dir.path(), "nomem_test")
        .unwrap()
        .without_memory();
    let first = log.append(&["A1", "A1", "B2"]).unwrap();
    assert_eq!((first.written, first.skipped), (2, 1));
    let second = log.append(&["A1"]).unwrap();
    assert_eq!((second.written, second.skipped), (1, 0));
    let body = std::fs::read_to_string(dir.path().join("nomem_test")).unwrap();
    assert_eq!(body, "A1\nB2\nA1\n");
}

/// Refresh picks logs by access time: "unread" must mean "not delivered",
/// as with flush(8), which never reads a log to add to it. A writer that
/// re-reads a log to learn its IDs, or a delivery that moves nothing, must
/// leave the access time alone.
#[test]
fn reading_a_log_to_append_or_for_an_aborted_delivery_keeps_its_access_time() {
    let dir = flush_dir();
    let path = log_path(dir.path());
    fs::write(&path, "A1\nA2\n").unwrap();
    let old_access = ago(2 * 86400);
    let set_old = || {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        // Modified after the last access: a plain read would update it.
        f.set_times(
            FileTimes::new()
                .set_accessed(old_access)
                .set_modified(ago(86400)),
        )
        .unwrap();
    };
    let access = || fs::metadata(&path).unwrap().atime();
    let want = old_access
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    set_old();
    let mut log = LogFile::open(dir.path(), SITE).unwrap();
    log.append(&["B1"]).unwrap();
    assert_eq!(
        access(),
        want,
        "re-reading to append touched the access time"
    );
    assert_eq!(content(dir.path()), "A1\nA2\nB1\n");

    set_old();
    let mut log = LogFile::open_existing(dir.path(), SITE).unwrap().unwrap();
    let delivery = log.take_for_delivery().unwrap();
    assert_eq!(delivery.ids, ["A1", "A2", "B1"]);
    log.abort_delivery(delivery).unwrap();
    assert_eq!(
        access(),
        want,
        "an aborted delivery touched the access time"
    );
}
