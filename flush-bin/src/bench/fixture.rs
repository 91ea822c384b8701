//! Fixtures for delivery runs: deferred queue files and the logfiles that
//! list them, the check that a run delivered them, and the file-system floor.
//!
//! The layout is Postfix's (`src/global/mail_queue.c`): queue files in
//! `deferred/<first character of the ID>/` (`hash_queue_depth = 1`), logfiles
//! in `flush/<site path>`; a delivery (`flush_one_file()` in
//! `src/flush/flush.c`) sets a file's times and renames it to `incoming/`,
//! then truncates the log. Two kinds:
//! - [`FixtureKind::SendSite`]: one site (`s0.<domain>`) whose log lists all
//!   K queue IDs, for one `send_site`;
//! - [`FixtureKind::Purge`]: K sites with one ID each, for one `purge`.
//!
//! Files and directories belong to the owner of `deferred/` (the `postfix`
//! user in a Postfix instance, whose flush(8) must be able to set the times),
//! and logs an hour old: `purge` refreshes a non-empty log only if its
//! access time is before the current second.

use super::names;
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps, CWD, UTIME_NOW};
use std::collections::HashSet;
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::fs::{chown, DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The most queue files a fixture holds.
pub const MAX_FIXTURE: u64 = 1_000_000;
/// How old the fixture's logs are made: in the past, so that `purge` (which
/// refreshes logs last read before the current second) takes them, but younger
/// than `fast_flush_refresh_time` (12h), so that a periodic refresh leaves
/// them alone.
const LOG_AGE: Duration = Duration::from_secs(3600);
/// The 16 hash directories of `hash_queue_depth = 1` with short IDs.
const HASH_DIRS: &str = "0123456789ABCDEF";

/// What a fixture is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureKind {
    /// One site listing every queue ID.
    SendSite,
    /// One site per queue ID.
    Purge,
}

/// A fixture: what to build, and later what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// Its kind.
    pub kind: FixtureKind,
    /// Queue files in it.
    pub count: u64,
    /// Parent domain of its sites.
    pub domain: String,
}

/// What [`Fixture::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verification {
    /// Queue files now in `incoming/`.
    pub moved: u64,
    /// Queue files still in `deferred/`.
    pub deferred: u64,
    /// Queue files in neither.
    pub missing: u64,
    /// Logs that are empty.
    pub logs_empty: u64,
    /// Logs that still hold something.
    pub logs_non_empty: u64,
    /// Logs that are gone.
    pub logs_missing: u64,
}

impl Verification {
    /// Whether every file moved and every log was truncated (and kept).
    pub fn complete(&self) -> bool {
        self.deferred == 0
            && self.missing == 0
            && self.logs_non_empty == 0
            && self.logs_missing == 0
    }
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} moved to incoming, {} still deferred, {} missing; logs: {} empty, {} not empty, {} missing",
            self.moved,
            self.deferred,
            self.missing,
            self.logs_empty,
            self.logs_non_empty,
            self.logs_missing
        )
    }
}

impl Fixture {
    /// A fixture of `count` queue files under `domain`.
    ///
    /// # Errors
    /// `count` is 0 or above [`MAX_FIXTURE`].
    pub fn new(kind: FixtureKind, count: u64, domain: &str) -> Result<Fixture, String> {
        if !(1..=MAX_FIXTURE).contains(&count) {
            return Err(format!("fixture size must be 1..={MAX_FIXTURE}"));
        }
        Ok(Fixture {
            kind,
            count,
            domain: domain.to_string(),
        })
    }

    /// Its queue IDs, in log order.
    pub fn queue_ids(&self) -> impl Iterator<Item = String> {
        (0..self.count).map(names::queue_id)
    }

    /// Its logs: (site path, the IDs it lists).
    fn logs(&self) -> Vec<(String, Vec<String>)> {
        match self.kind {
            FixtureKind::SendSite => {
                vec![(
                    names::site_path(0, &self.domain),
                    self.queue_ids().collect(),
                )]
            }
            FixtureKind::Purge => (0..self.count)
                .map(|n| (names::site_path(n, &self.domain), vec![names::queue_id(n)]))
                .collect(),
        }
    }

    /// The site a `send_site` of this fixture names.
    pub fn send_site(&self) -> String {
        names::site(0, &self.domain)
    }

    /// Creates the queue files and logs under `queue` (which must exist),
    /// with the directories they need.
    ///
    /// # Errors
    /// File-system errors, or a queue file that already exists.
    pub fn build(&self, queue: &Path) -> io::Result<()> {
        let owner = Owner::of(queue)?;
        for dir in ["deferred", "incoming", "flush"] {
            owner.make_dir(&queue.join(dir))?;
        }
        for h in HASH_DIRS.chars() {
            owner.make_dir(&queue.join("deferred").join(h.to_string()))?;
        }
        for id in self.queue_ids() {
            let path = deferred_path(queue, &id);
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            // A complete queue file's mode (MAIL_QUEUE_STAT_READY).
            file.set_permissions(fs::Permissions::from_mode(0o700))?;
            owner.apply(&path)?;
        }
        let old = SystemTime::now() - LOG_AGE;
        let times = FileTimes::new().set_accessed(old).set_modified(old);
        for (site_path, ids) in self.logs() {
            let path = queue.join("flush").join(site_path);
            let mut text = String::with_capacity(ids.len() * 12);
            for id in ids {
                text.push_str(&id);
                text.push('\n');
            }
            fs::write(&path, text)?;
            let file = File::options().write(true).open(&path)?;
            file.set_permissions(fs::Permissions::from_mode(0o600))?;
            file.set_times(times)?;
            owner.apply(&path)?;
        }
        Ok(())
    }

    /// Checks that every queue file moved from `deferred/` to `incoming/`
    /// (at any hash depth) and every log is empty.
    pub fn verify(&self, queue: &Path) -> Verification {
        let incoming: HashSet<String> = queue_ids(queue, "incoming").into_iter().collect();
        let deferred: HashSet<String> = queue_ids(queue, "deferred").into_iter().collect();
        let mut v = Verification::default();
        for id in self.queue_ids() {
            if incoming.contains(&id) {
                v.moved += 1;
            } else if deferred.contains(&id) {
                v.deferred += 1;
            } else {
                v.missing += 1;
            }
        }
        for (site_path, _) in self.logs() {
            match fs::metadata(queue.join("flush").join(site_path)) {
                Ok(meta) if meta.len() == 0 => v.logs_empty += 1,
                Ok(_) => v.logs_non_empty += 1,
                Err(_) => v.logs_missing += 1,
            }
        }
        v
    }

    /// A watch that tells cheaply, again and again, whether the delivery is done.
    pub fn watch(&self, queue: &Path) -> DeliveryWatch {
        DeliveryWatch {
            dirs: HASH_DIRS
                .chars()
                .map(|h| queue.join("deferred").join(h.to_string()))
                .collect(),
            logs: self
                .logs()
                .into_iter()
                .map(|(site_path, _)| queue.join("flush").join(site_path))
                .collect(),
        }
    }

    /// The file-system floor of a delivery: for each queue file, in log
    /// order, set its times to now and rename it to `incoming/`, as
    /// `flush_one_file()` does, and nothing else; names relative to the
    /// queue directory, as flush(8) uses them. Returns the time taken.
    ///
    /// # Errors
    /// The first failing `utimensat` or `rename`.
    pub fn floor(&self, queue: &Path) -> io::Result<Duration> {
        let now = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_NOW,
            },
        };
        let paths: Vec<(PathBuf, PathBuf)> = self
            .queue_ids()
            .map(|id| {
                (
                    deferred_path(Path::new(""), &id),
                    Path::new("incoming").join(&id),
                )
            })
            .collect();
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::openat(CWD, queue, flags, Mode::empty())?;
        let start = Instant::now();
        for (from, to) in &paths {
            rustix::fs::utimensat(&dir, from, &now, AtFlags::empty())?;
            rustix::fs::renameat(&dir, from, &dir, to)?;
        }
        Ok(start.elapsed())
    }
}

/// Tells whether a delivery is done without rescanning what is known done:
/// hash directories are checked for any entry until each is empty, then the
/// logs' sizes until each is zero (nothing refills them during a run).
#[derive(Debug)]
pub struct DeliveryWatch {
    dirs: Vec<PathBuf>,
    logs: Vec<PathBuf>,
}

impl DeliveryWatch {
    /// Whether `deferred/` is empty and every log is empty now.
    pub fn done(&mut self) -> bool {
        self.dirs.retain(|dir| {
            fs::read_dir(dir)
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false)
        });
        if !self.dirs.is_empty() {
            return false;
        }
        self.logs
            .retain(|log| fs::metadata(log).map(|m| m.len() > 0).unwrap_or(false));
        self.logs.is_empty()
    }
}

/// `deferred/<h>/<id>`.
fn deferred_path(queue: &Path, id: &str) -> PathBuf {
    queue.join("deferred").join(names::hash_dir(id)).join(id)
}

/// Who owns a queue's files: the owner of its `deferred/` (else of the
/// queue directory itself).
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn of(queue: &Path) -> io::Result<Owner> {
        let meta = fs::metadata(queue.join("deferred")).or_else(|_| fs::metadata(queue))?;
        Ok(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    fn apply(&self, path: &Path) -> io::Result<()> {
        chown(path, Some(self.uid), Some(self.gid))
    }

    /// Creates `dir` (mode 0700) if missing.
    fn make_dir(&self, dir: &Path) -> io::Result<()> {
        if !dir.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(dir)?;
            self.apply(dir)?;
        }
        Ok(())
    }
}

/// Empties `deferred/`, `incoming/`, `active/` and `flush/` of `queue` by
/// removing and re-creating each that exists, with its owner and mode, so
/// that a reused queue starts every run with small directories (ext4
/// directories do not shrink when their files are removed). Only for a
/// queue whose flush server keeps nothing open there between requests.
///
/// # Errors
/// A directory that cannot be removed or re-created.
pub fn reset(queue: &Path) -> io::Result<()> {
    for name in ["deferred", "incoming", "active", "flush"] {
        let dir = queue.join(name);
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        fs::remove_dir_all(&dir)?;
        fs::DirBuilder::new()
            .mode(meta.mode() & 0o7777)
            .create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        chown(&dir, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

/// The queue IDs (file names) under `<queue>/<queue_name>/`, at any hash
/// depth, sorted. Empty if the directory does not exist.
pub fn queue_ids(queue: &Path, queue_name: &str) -> Vec<String> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && depth < 16 {
                walk(&entry.path(), depth + 1, out);
            } else if kind.is_file() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&queue.join(queue_name), 0, &mut out);
    out.sort();
    out
}

/// The lines of logfile `flush/<site_path>`; empty if it does not exist.
pub fn flush_log(queue: &Path, site_path: &str) -> Vec<String> {
    fs::read_to_string(queue.join("flush").join(site_path))
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn send_site_fixture_builds_verifies_and_floors() {
        let tmp = tempfile::tempdir().unwrap();
        let queue = tmp.path();
        let fixture = Fixture::new(FixtureKind::SendSite, 40, "bench.test").unwrap();
        fixture.build(queue).unwrap();
        // Before anything reads the log (a read may update its access time).
        let accessed = fs::metadata(queue.join("flush/s0_bench_test"))
            .unwrap()
            .accessed()
            .unwrap();
        let age = SystemTime::now().duration_since(accessed).unwrap();
        assert!(age > Duration::from_secs(600), "{age:?}");
        let log = flush_log(queue, "s0_bench_test");
        assert_eq!(log.len(), 40);
        assert_eq!(log[0], names::queue_id(0));
        let first = deferred_path(queue, &log[0]);
        assert!(first.is_file());
        assert_eq!(fs::metadata(&first).unwrap().mode() & 0o777, 0o700);

        let before = fixture.verify(queue);
        assert_eq!(
            (before.deferred, before.moved, before.logs_non_empty),
            (40, 0, 1)
        );
        assert!(!before.complete());
        assert!(!fixture.watch(queue).done());

        // The floor moves the files but leaves the log: still not complete.
        fixture.floor(queue).unwrap();
        let moved = fixture.verify(queue);
        assert_eq!(
            (moved.moved, moved.deferred, moved.logs_non_empty),
            (40, 0, 1)
        );
        assert!(!moved.complete());
        let mut watch = fixture.watch(queue);
        assert!(!watch.done());
        fs::write(queue.join("flush/s0_bench_test"), b"").unwrap();
        assert!(watch.done());
        assert!(fixture.verify(queue).complete());

        // A reset empties the directories and keeps their modes.
        fs::set_permissions(queue.join("flush"), fs::Permissions::from_mode(0o750)).unwrap();
        reset(queue).unwrap();
        assert!(queue_ids(queue, "incoming").is_empty());
        assert!(queue_ids(queue, "deferred").is_empty());
        assert_eq!(fs::read_dir(queue.join("flush")).unwrap().count(), 0);
        let mode = fs::metadata(queue.join("flush")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o750);
        // Building again over existing files is refused.
        fixture.build(queue).unwrap();
        assert!(fixture.build(queue).is_err());
    }

    #[test]
    fn purge_fixture_has_one_log_per_file() {
        let tmp = tempfile::tempdir().unwrap();
        let queue = tmp.path();
        let fixture = Fixture::new(FixtureKind::Purge, 20, "bench.test").unwrap();
        fixture.build(queue).unwrap();
        assert_eq!(flush_log(queue, "s19_bench_test"), [names::queue_id(19)]);
        assert_eq!(queue_ids(queue, "deferred").len(), 20);
        fs::remove_file(queue.join("flush/s3_bench_test")).unwrap();
        fixture.floor(queue).unwrap();
        for n in 0..20 {
            if n != 3 {
                fs::write(queue.join(format!("flush/s{n}_bench_test")), b"").unwrap();
            }
        }
        let v = fixture.verify(queue);
        assert_eq!((v.moved, v.logs_empty, v.logs_missing), (20, 19, 1));
        assert!(!v.complete(), "a removed log is not a truncated one");
    }

    #[test]
    fn fixture_sizes_are_bounded() {
        assert!(Fixture::new(FixtureKind::Purge, 0, "d").is_err());
        assert!(Fixture::new(FixtureKind::Purge, MAX_FIXTURE + 1, "d").is_err());
    }
}
