//! The file-system floor of adds: one thread appending each queue ID to its
//! site's log with the fewest calls a locked append takes, and nothing else
//! (no sockets, parsing, actors or threads).
//!
//! It answers a question the add rows cannot: how much of a drop from few
//! sites to many is the file system's own. A log kept open costs `flock`,
//! `write`, `flock`; one that is not costs an `open` (creating it the first
//! time) and a `close` on top, and the lookup of its name. flushd keeps a
//! bounded number of logs open (`--max-open-logs`), so with many more sites
//! than that most of its adds pay the second price too.

use super::names;
use rustix::fs::{FlockOperation, Mode, OFlags, CWD};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Appends request `i`'s queue ID to the log of site `i mod sites` under
/// `queue/flush`, for `i` in `0..requests`, as [`Mix::request`] spreads adds
/// (so [`verify_adds`] checks the result). The logs of the first `keep_open`
/// sites stay open between appends; every other append opens its log
/// (creating it, mode 0600) and closes it again. Names and lines are built
/// before the clock starts. Returns the time the appends took.
///
/// [`Mix::request`]: super::mix::Mix::request
/// [`verify_adds`]: super::adds::verify_adds
///
/// # Errors
/// The first failing open, lock or write.
pub fn append_floor(
    queue: &Path,
    requests: u64,
    sites: u64,
    domain: &str,
    keep_open: usize,
) -> io::Result<Duration> {
    let sites = sites.max(1);
    let flush = queue.join("flush");
    let paths: Vec<PathBuf> = (0..sites.min(requests))
        .map(|k| flush.join(names::site_path(k, domain)))
        .collect();
    let lines: Vec<String> = (0..requests).map(|i| names::queue_id(i) + "\n").collect();
    let mut kept: Vec<Option<File>> = Vec::new();
    kept.resize_with(paths.len().min(keep_open), || None);
    let start = Instant::now();
    for (line, (k, path)) in lines.iter().zip(paths.iter().enumerate().cycle()) {
        match kept.get_mut(k) {
            Some(slot) => {
                let file = match slot {
                    Some(file) => file,
                    None => slot.insert(open_log(path)?),
                };
                append_locked(file, line)?;
            }
            None => append_locked(&open_log(path)?, line)?,
        }
    }
    Ok(start.elapsed())
}

/// Appends per second.
pub fn rate(requests: u64, took: Duration) -> f64 {
    requests as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Opens (creating) a log for appending, without following a symlink.
pub(super) fn open_log(path: &Path) -> io::Result<File> {
    let flags = OFlags::CREATE | OFlags::RDWR | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        CWD,
        path,
        flags,
        Mode::from_raw_mode(0o600),
    )?))
}

/// One line, written under the log's exclusive lock.
pub(super) fn append_locked(mut file: &File, line: &str) -> io::Result<()> {
    rustix::fs::flock(file, FlockOperation::LockExclusive)?;
    let written = file.write_all(line.as_bytes());
    rustix::fs::flock(file, FlockOperation::Unlock)?;
    written
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bench::adds::verify_adds;
    use std::fs;

    #[test]
    fn appends_what_an_add_run_would() {
        for keep_open in [0, 2, 10] {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("flush")).unwrap();
            append_floor(tmp.path(), 11, 4, "bench.test", keep_open).unwrap();
            verify_adds(tmp.path(), 11, 4, "bench.test").unwrap();
            // Nothing beyond the sites that were sent to.
            assert_eq!(fs::read_dir(tmp.path().join("flush")).unwrap().count(), 4);
        }
    }

    #[test]
    fn more_sites_than_requests_creates_only_the_logs_used() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("flush")).unwrap();
        append_floor(tmp.path(), 3, 100, "bench.test", 1).unwrap();
        verify_adds(tmp.path(), 3, 100, "bench.test").unwrap();
        assert_eq!(fs::read_dir(tmp.path().join("flush")).unwrap().count(), 3);
    }

    #[test]
    fn a_missing_flush_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = append_floor(tmp.path(), 1, 1, "bench.test", 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
