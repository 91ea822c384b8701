//! One flushd per queue directory, and the directories it needs.

use anyhow::{bail, Context as _, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `$queue_directory/flush` (mode 0700) if it is missing.
///
/// # Errors
/// It cannot be created.
pub fn ensure_flush_dir(queue: &Path) -> Result<()> {
    let flush = queue.join("flush");
    if !flush.is_dir() {
        DirBuilder::new()
            .mode(0o700)
            .create(&flush)
            .with_context(|| format!("create {}", flush.display()))?;
        log::info!("created {}", flush.display());
    }
    Ok(())
}

/// The held lock; released when dropped (and by the kernel when we exit).
#[derive(Debug)]
pub struct QueueLock {
    _file: File,
}

/// Takes `$queue_directory/pid/flushd.pid` with an exclusive `flock`, so that
/// two daemons never serve one queue directory, and writes our pid into it.
///
/// # Errors
/// Another flushd holds the lock, or the file cannot be created.
pub fn acquire(queue: &Path) -> Result<QueueLock> {
    let dir = queue.join("pid");
    if !dir.is_dir() {
        DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    let path = dir.join("flushd.pid");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(e) if std::io::Error::from(e).kind() == ErrorKind::WouldBlock => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another flushd (pid {}) serves {}",
                holder.trim(),
                queue.display()
            );
        }
        Err(e) => return Err(std::io::Error::from(e)).context(format!("lock {}", path.display())),
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(QueueLock { _file: file })
}

/// Raises the soft open-file limit to the hard limit: logfiles and
/// connections are bounded by flushd's own settings, not by a low default.
/// Returns the soft limit in force (`None`: unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let before = limit.current;
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            log::warn!("cannot raise the open-file limit: {e}");
            return before;
        }
    }
    limit.current
}

/// Descriptors kept for everything that is not a logfile or a connection:
/// listeners, the queue lock, the qmgr trigger, queue files being moved.
pub const SPARE_DESCRIPTORS: u64 = 64;

/// How many logfiles may stay open when `fd_limit` descriptors are allowed
/// and `max_connections` of them may be connections: `max_open_logs`, or
/// less if that would run out of descriptors (at least 1: a writer without
/// a slot still opens its log for each write).
pub fn open_logs_within(
    fd_limit: Option<u64>,
    max_open_logs: usize,
    max_connections: usize,
) -> usize {
    let Some(limit) = fd_limit else {
        return max_open_logs;
    };
    let for_logs = limit
        .saturating_sub(max_connections as u64)
        .saturating_sub(SPARE_DESCRIPTORS);
    max_open_logs
        .min(usize::try_from(for_logs).unwrap_or(usize::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_logs_leave_room_for_connections_and_spares() {
        assert_eq!(open_logs_within(None, 1000, 1024), 1000);
        assert_eq!(open_logs_within(Some(1_048_576), 1000, 1024), 1000);
        assert_eq!(open_logs_within(Some(2048), 1000, 1024), 960);
        assert_eq!(open_logs_within(Some(1024), 1000, 1024), 1);
        assert_eq!(open_logs_within(Some(20_000), 200_000, 1024), 18_912);
    }
}
