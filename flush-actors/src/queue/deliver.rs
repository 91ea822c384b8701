//! Scheduling one queue file for delivery: fresh time stamps, then a move
//! from `deferred/` to `incoming/` where the queue manager looks first.
//!
//! Mirrors Postfix's `flush_one_file()` (`src/flush/flush.c`) with
//! `mail_queue_rename()` (`src/global/mail_queue.c`) and the checks of
//! `safe_open()` (`src/util/safe_open.c`). Blocking file-system calls: run it
//! on a worker thread, never on an arbiter that serves sockets.

use super::layout::{QueueLayout, DEFERRED, INCOMING};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, CWD};
use std::fs::DirBuilder;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Owner read, write and execute: the queue file is complete ("ready").
pub const STAT_READY: u32 = 0o700;
/// Group read: asks the queue manager to unthrottle the message's
/// destinations when it reads the file.
pub const STAT_UNTHROTTLE: u32 = 0o040;

/// How a file is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverMode {
    /// One of a destination's files (`send_site`, refresh): time stamps and move.
    Site,
    /// One named file (`send_file`): also set the unthrottle bit, and leave
    /// a file that is not ready where it is.
    File,
}

/// What happened to one queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverOutcome {
    /// Time-stamped and moved from `deferred/` to `incoming/`.
    Moved,
    /// Already in `incoming/`: time-stamped only.
    AlreadyIncoming,
    /// In neither queue (delivered or removed meanwhile): skipped silently.
    Missing,
    /// `send_file` of a file whose owner bits are not rwx: left alone.
    NotReady,
    /// A file-system error (already logged as a warning).
    Failed(String),
}

/// The queue directory, opened once. Queue files are named relative to it
/// (`deferred/A/ABC123`), as flush(8) names them from its working directory:
/// each call then resolves three path components instead of the whole
/// absolute path (a little cheaper; in the disk's noise for one delivery).
#[derive(Debug)]
pub struct QueueDir {
    layout: QueueLayout,
    fd: OwnedFd,
}

impl QueueDir {
    /// Opens the queue directory of `layout`.
    ///
    /// # Errors
    /// The directory cannot be opened.
    pub fn open(layout: QueueLayout) -> io::Result<QueueDir> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(CWD, layout.root(), flags, Mode::empty())?;
        Ok(QueueDir { layout, fd })
    }
}

/// Schedules `queue_id` for delivery, exactly as flush(8) does: set its access
/// and modification times to `now` (whole seconds) in `deferred/`, or else in
/// `incoming/`; for [`DeliverMode::File`] set the unthrottle bit on a ready
/// file; then move it from `deferred/` to `incoming/`, creating missing hash
/// directories (mode 0700).
///
/// Never fails as a whole: errors are logged with `log::warn!` and reported
/// as [`DeliverOutcome::Failed`]; a file in neither queue is
/// [`DeliverOutcome::Missing`], without a warning. An invalid queue ID is
/// `Failed` and touches nothing.
pub fn deliver_one(
    queue_dir: &QueueDir,
    queue_id: &str,
    now: SystemTime,
    mode: DeliverMode,
) -> DeliverOutcome {
    if let Err(why) = flush_proto::validate_queue_id(queue_id) {
        let msg = format!("bad queue ID: {why}");
        log::warn!("deliver {:.40}: {msg}", queue_id.escape_debug());
        return DeliverOutcome::Failed(msg);
    }
    let times = whole_seconds(now);

    // Find the file by time-stamping it: deferred first, then incoming,
    // where another flush may just have moved it.
    let mut queue = DEFERRED;
    let mut failure = None;
    loop {
        let path = queue_dir.layout.relative_path(queue, queue_id);
        match rustix::fs::utimensat(&queue_dir.fd, &path, &times, AtFlags::empty()) {
            Ok(()) => break,
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => {
                let path = queue_dir.layout.path(queue, queue_id);
                let msg = format!("update {} time stamps: {e}", path.display());
                log::warn!("{msg}");
                failure = Some(msg);
            }
        }
        if queue == INCOMING {
            return failure.map_or(DeliverOutcome::Missing, DeliverOutcome::Failed);
        }
        queue = INCOMING;
    }

    if mode == DeliverMode::File {
        match unthrottle(queue_dir, &mut queue, queue_id) {
            Ok(true) => {}
            Ok(false) => return DeliverOutcome::NotReady,
            Err(outcome) => return outcome,
        }
    }

    if queue == INCOMING {
        return DeliverOutcome::AlreadyIncoming;
    }
    match rename_to_incoming(queue_dir, queue_id) {
        Ok(()) => DeliverOutcome::Moved,
        // Gone between the time stamp and the rename: whoever took it (another
        // flush, the queue manager) is now responsible for it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => DeliverOutcome::Missing,
        Err(e) => {
            let msg = format!("rename {queue_id} from {DEFERRED} to {INCOMING}: {e}");
            log::warn!("{msg}");
            DeliverOutcome::Failed(msg)
        }
    }
}

/// `now` truncated to whole seconds, as both access and modification time.
fn whole_seconds(now: SystemTime) -> Timestamps {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets the unthrottle bit on a ready file, opened without following
/// symlinks (fchmod on the open file, never chmod on a name). `queue` moves
/// to incoming if the file went there meanwhile.
///
/// `Ok(false)`: the file is not ready and must stay where it is.
fn unthrottle(
    queue_dir: &QueueDir,
    queue: &mut &'static str,
    queue_id: &str,
) -> Result<bool, DeliverOutcome> {
    let layout = &queue_dir.layout;
    let file = loop {
        let path = layout.relative_path(queue, queue_id);
        let opened = crate::safe_open::open_existing_regular_at(
            &queue_dir.fd,
            Path::new(&path),
            OFlags::RDWR,
        );
        match opened {
            Ok(file) => break file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && *queue == DEFERRED => {
                *queue = INCOMING;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(DeliverOutcome::Missing),
            Err(e) => {
                let msg = format!("open {}: {e}", layout.path(queue, queue_id).display());
                log::warn!("{msg}");
                return Err(DeliverOutcome::Failed(msg));
            }
        }
    };
    let mode = match file.metadata() {
        Ok(meta) => meta.mode() & 0o7777,
        Err(e) => {
            let msg = format!("fstat {}: {e}", layout.path(queue, queue_id).display());
            log::warn!("{msg}");
            return Err(DeliverOutcome::Failed(msg));
        }
    };
    if mode & STAT_READY != STAT_READY {
        return Ok(false);
    }
    if mode & STAT_UNTHROTTLE == 0 {
        let perms = std::fs::Permissions::from_mode(mode | STAT_UNTHROTTLE);
        if let Err(e) = file.set_permissions(perms) {
            // flush(8) warns and moves the file anyway.
            log::warn!("fchmod {}: {e}", layout.path(queue, queue_id).display());
        }
    }
    Ok(true)
}

/// Moves a queue file from deferred/ to incoming/; if that fails, creates the
/// missing directories of the target and tries once more.
fn rename_to_incoming(queue_dir: &QueueDir, queue_id: &str) -> io::Result<()> {
    let layout = &queue_dir.layout;
    let from = layout.relative_path(DEFERRED, queue_id);
    let to = layout.relative_path(INCOMING, queue_id);
    let rename = || rustix::fs::renameat(&queue_dir.fd, &from, &queue_dir.fd, &to);
    if rename().is_ok() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(layout.dir(INCOMING, queue_id))?;
    Ok(rename()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::time::Duration;

    struct Queue {
        _tmp: tempfile::TempDir,
        layout: QueueLayout,
        dir: QueueDir,
    }

    fn queue() -> Queue {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["deferred", "incoming"] {
            fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let layout = QueueLayout::new(tmp.path(), &["deferred".to_string()], 1);
        let dir = QueueDir::open(layout.clone()).unwrap();
        Queue {
            _tmp: tmp,
            layout,
            dir,
        }
    }

    fn put(q: &Queue, queue: &str, id: &str, mode: u32) {
        let path = q.layout.path(queue, id);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"queue file").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_700_000_123, 987_654_321)
    }

    #[test]
    fn site_mode_moves_and_stamps_whole_seconds() {
        let q = queue();
        put(&q, DEFERRED, "ABC123", 0o700);
        let out = deliver_one(&q.dir, "ABC123", now(), DeliverMode::Site);
        assert_eq!(out, DeliverOutcome::Moved);
        assert!(!q.layout.path(DEFERRED, "ABC123").exists());
        let meta = fs::metadata(q.layout.path(INCOMING, "ABC123")).unwrap();
        assert_eq!(meta.mtime(), 1_700_000_123);
        assert_eq!(meta.mtime_nsec(), 0);
        assert_eq!(meta.atime(), 1_700_000_123);
        assert_eq!(meta.atime_nsec(), 0);
        // Site mode leaves the mode alone.
        assert_eq!(meta.mode() & 0o7777, 0o700);
    }

    #[test]
    fn already_incoming_is_stamped_only() {
        let q = queue();
        put(&q, INCOMING, "ABC123", 0o700);
        let out = deliver_one(&q.dir, "ABC123", now(), DeliverMode::Site);
        assert_eq!(out, DeliverOutcome::AlreadyIncoming);
        let meta = fs::metadata(q.layout.path(INCOMING, "ABC123")).unwrap();
        assert_eq!(meta.mtime(), 1_700_000_123);
    }

    #[test]
    fn missing_is_silent() {
        let q = queue();
        let out = deliver_one(&q.dir, "ABC123", now(), DeliverMode::Site);
        assert_eq!(out, DeliverOutcome::Missing);
        let out = deliver_one(&q.dir, "ABC123", now(), DeliverMode::File);
        assert_eq!(out, DeliverOutcome::Missing);
    }

    #[test]
    fn missing_hash_directories_are_created() {
        let tmp = tempfile::tempdir().unwrap();
        let names = vec!["deferred".to_string(), "incoming".to_string()];
        let layout = QueueLayout::new(tmp.path(), &names, 2);
        let from = layout.path(DEFERRED, "ABC123");
        fs::create_dir_all(from.parent().unwrap()).unwrap();
        fs::write(&from, b"x").unwrap();
        let dir = QueueDir::open(layout.clone()).unwrap();
        let out = deliver_one(&dir, "ABC123", now(), DeliverMode::Site);
        assert_eq!(out, DeliverOutcome::Moved);
        let to = layout.path(INCOMING, "ABC123");
        assert!(to.ends_with("incoming/A/B/ABC123"), "{}", to.display());
        assert!(to.exists());
        assert_eq!(mode_of(to.parent().unwrap()) & 0o077, 0);
    }

    #[test]
    fn file_mode_sets_unthrottle_on_ready_files() {
        let q = queue();
        put(&q, DEFERRED, "ABC123", 0o700);
        let out = deliver_one(&q.dir, "ABC123", now(), DeliverMode::File);
        assert_eq!(out, DeliverOutcome::Moved);
        assert_eq!(mode_of(&q.layout.path(INCOMING, "ABC123")), 0o740);

        put(&q, INCOMING, "DEF456", 0o700);
        let out = deliver_one(&q.dir, "DEF456", now(), DeliverMode::File);
        assert_eq!(out, DeliverOutcome::AlreadyIncoming);
        assert_eq!(mode_of(&q.layout.path(INCOMING, "DEF456")), 0o740);
    }

    #[test]
    fn file_mode_leaves_unready_files_in_place() {
        let q = queue();
        put(&q, DEFERRED, "ABC123", 0o600);
        let out = deliver_one(&q.dir, "ABC123", now(), DeliverMode::File);
        assert_eq!(out, DeliverOutcome::NotReady);
        let path = q.layout.path(DEFERRED, "ABC123");
        assert_eq!(mode_of(&path), 0o600);
        // Time-stamped all the same, as flush(8) does before it looks.
        assert_eq!(fs::metadata(&path).unwrap().mtime(), 1_700_000_123);
    }

    #[test]
    fn file_mode_refuses_symlinks_and_hard_links() {
        let q = queue();
        put(&q, INCOMING, "TARGET", 0o700);
        let link = q.layout.path(DEFERRED, "ABC123");
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(q.layout.path(INCOMING, "TARGET"), &link).unwrap();
        let out = deliver_one(&q.dir, "ABC123", now(), DeliverMode::File);
        assert!(matches!(out, DeliverOutcome::Failed(_)), "{out:?}");
        assert_eq!(mode_of(&q.layout.path(INCOMING, "TARGET")), 0o700);

        let hard = q.layout.path(DEFERRED, "DEF456");
        fs::create_dir_all(hard.parent().unwrap()).unwrap();
        fs::hard_link(q.layout.path(INCOMING, "TARGET"), &hard).unwrap();
        let out = deliver_one(&q.dir, "DEF456", now(), DeliverMode::File);
        assert!(
            matches!(out, DeliverOutcome::Failed(ref m) if m.contains("hard links")),
            "{out:?}"
        );
        assert_eq!(mode_of(&q.layout.path(INCOMING, "TARGET")), 0o700);
    }

    #[test]
    fn bad_ids_touch_nothing() {
        let q = queue();
        for id in ["", "../x", "a/b", "a.b"] {
            let out = deliver_one(&q.dir, id, now(), DeliverMode::Site);
            assert!(matches!(out, DeliverOutcome::Failed(_)), "{id:?}: {out:?}");
        }
    }
}
