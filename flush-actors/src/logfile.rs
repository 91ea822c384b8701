//! One destination's fast flush logfile, `$queue_directory/flush/SITEPATH`:
//! one queue ID per line, appended to until a delivery reads and truncates it.
//!
//! Mirrors `flush_add_path()`, `flush_send_path()` and the purge step of
//! `flush_refresh_service()` in Postfix's `src/flush/flush.c`. Every append,
//! delivery and removal holds an exclusive `flock` on the file, as flush(8)
//! does (`myflock()` with `INTERNAL_LOCK`, which is `flock` on Linux), so a
//! Postfix flush(8) may share the directory. Appends and deliveries take the
//! lock without waiting: a log locked elsewhere is a `WouldBlock` error, and
//! the LogWriter tries again later, so one log held by someone else never
//! stalls the thread that writes other logs. The other calls block briefly:
//! the LogWriter actor runs them on its own threads.
//!
//! Unlike flush(8), a [`LogFile`] stays open between appends and remembers
//! which IDs the log already holds, so it does not append an ID twice between
//! two deliveries. It notices when someone else changed the file (size, times
//! or inode differ from what it saw last) and re-reads it before trusting
//! that memory.

use crate::id_set::IdSet;
use flush_proto::{validate_queue_id, MAX_QUEUE_ID_LEN};
use foldhash::{HashSet, HashSetExt};
use rustix::fs::{FlockOperation, Mode, OFlags, Timespec, Timestamps, CWD, UTIME_NOW};
use smallvec::SmallVec;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many distinct IDs a log remembers, for appends and for deliveries
/// (flush(8)'s `FLUSH_DUP_FILTER_SIZE`). Past it, duplicates are let through.
pub const MAX_TRACKED_IDS: usize = 10_000;
/// How many IDs one delivery hands over at most. The rest of the log is still
/// truncated: those messages stay in `deferred/` for the queue manager's
/// regular retry, and are logged again if that fails.
pub const MAX_DELIVERY_IDS: usize = 1_000_000;
/// Bytes read per `pread` when scanning a log.
const READ_CHUNK: usize = 64 * 1024;
/// The first read of a log: enough for about 250 queue IDs.
const FIRST_READ_CHUNK: usize = 4 * 1024;
/// Attempts at opening a log that someone keeps removing under us.
const OPEN_ATTEMPTS: usize = 4;

/// What one [`LogFile::append`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendReport {
    /// IDs written to the log.
    pub written: usize,
    /// IDs left out because the log already holds them (or the batch did).
    pub skipped: usize,
    /// IDs left out because they are not valid queue IDs.
    pub invalid: usize,
    /// Bytes written.
    pub bytes: usize,
}

/// A log read for delivery, still locked: hand [`Delivery::ids`] to the queue
/// trigger, then [`LogFile::finish_delivery`] (truncate) or
/// [`LogFile::abort_delivery`] (keep the lines).
///
/// Dropping it without either unlocks the log and keeps its lines, so a
/// forgotten delivery never blocks the log or loses an ID.
#[derive(Debug)]
pub struct Delivery {
    /// The valid queue IDs of the log, in file order, de-duplicated up to
    /// [`MAX_TRACKED_IDS`].
    pub ids: Vec<String>,
    /// Lines read, valid or not: flush(8) truncates the log and wakes the
    /// queue manager only if this is not zero.
    pub lines_read: usize,
    lock: Arc<HeldLock>,
}

/// An exclusive `flock` released when dropped. Shares the log's descriptor,
/// so it outlives any borrow (and the log being closed) without a `dup`.
#[derive(Debug)]
struct HeldLock(Arc<File>);

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Err(e) = rustix::fs::flock(&self.0, FlockOperation::Unlock) {
            log::warn!("unlock fast flush logfile: {e}");
        }
    }
}

/// What the file looked like after our last write or scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Snapshot {
    fn of(meta: &std::fs::Metadata) -> Snapshot {
        Snapshot {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// An open logfile of one destination.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    /// Shared with the lock of a delivery in progress.
    file: Arc<File>,
    /// IDs the log holds since its last truncation, at most [`MAX_TRACKED_IDS`].
    seen: IdSet,
    /// The file as `seen` describes it; `None` means "re-read before use".
    snapshot: Option<Snapshot>,
    /// The lock of the delivery in progress, if any.
    delivery: Weak<HeldLock>,
    /// Whether `seen` is kept (see [`LogFile::without_memory`]).
    remember: bool,
}

impl LogFile {
    /// Opens (creating, mode 0600) the log of `site_path` in `flush_dir`,
    /// without following a symlink.
    ///
    /// # Errors
    /// `site_path` is not a valid logfile name; the name is a symlink or not
    /// a regular file or has other hard links; the open fails.
    pub fn open(flush_dir: &Path, site_path: &str) -> io::Result<LogFile> {
        let path = logfile_path(flush_dir, site_path)?;
        let file = open_or_create(&path)?;
        Ok(LogFile::with_file(path, file))
    }

    /// Opens the log of `site_path` if it exists (`Ok(None)` if not), as
    /// flush(8) does before a delivery: no log, nothing to deliver.
    ///
    /// # Errors
    /// As [`LogFile::open`].
    pub fn open_existing(flush_dir: &Path, site_path: &str) -> io::Result<Option<LogFile>> {
        let path = logfile_path(flush_dir, site_path)?;
        match open_existing_log(&path) {
            Ok(file) => Ok(Some(LogFile::with_file(path, file))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn with_file(path: PathBuf, file: File) -> LogFile {
        LogFile {
            path,
            file: Arc::new(file),
            seen: IdSet::new(),
            snapshot: None,
            delivery: Weak::new(),
            remember: true,
        }
    }

    /// Stops remembering the IDs the log holds: appends then skip only
    /// duplicates within one batch, as flush(8) skips none. For a log opened
    /// for one write and closed again, where re-reading the whole file to
    /// rebuild the memory would cost more than the duplicates it avoids
    /// (deliveries de-duplicate anyway).
    pub fn without_memory(mut self) -> LogFile {
        self.remember = false;
        self.seen = IdSet::new();
        self
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a [`Delivery`] of this log is still held.
    pub fn delivery_in_progress(&self) -> bool {
        self.delivery.strong_count() > 0
    }

    /// Appends the IDs the log does not hold yet, one per line, with one
    /// `write`, under the log's lock.
    ///
    /// If the log was removed meanwhile (a janitor purged it), the IDs go to
    /// a new log of the same name.
    ///
    /// # Errors
    /// A delivery of this log is in progress, or the log is locked elsewhere
    /// (both `WouldBlock`: append later); locking, reading or writing fails.
    /// After a failed write the log may end in part of a line, as with
    /// flush(8).
    pub fn append(&mut self, ids: &[&str]) -> io::Result<AppendReport> {
        if self.delivery_in_progress() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "a delivery holds the log",
            ));
        }
        if ids.is_empty() {
            return Ok(AppendReport::default());
        }
        let meta = self.lock_live()?;
        let result = self.append_locked(ids, &meta);
        let unlocked = rustix::fs::flock(&self.file, FlockOperation::Unlock);
        let report = result?;
        unlocked?;
        Ok(report)
    }

    fn append_locked(
        &mut self,
        ids: &[&str],
        meta: &std::fs::Metadata,
    ) -> io::Result<AppendReport> {
        if self.remember && self.snapshot.as_ref() != Some(&Snapshot::of(meta)) {
            self.resync(meta)?;
        }
        let mut report = AppendReport::default();
        // IDs of this batch that `seen` does not take (no memory, or full).
        let mut batch: HashSet<&str> = HashSet::new();
        // Lines of a usual batch fit on the stack; a bigger one is sized once.
        let mut buf: SmallVec<[u8; 256]> =
            SmallVec::with_capacity(ids.iter().map(|id| id.len() + 1).sum());
        for &id in ids {
            if validate_queue_id(id).is_err() {
                log::warn!(
                    "not appending bad queue ID {:.40} to {}",
                    id.escape_debug(),
                    self.path.display()
                );
                report.invalid += 1;
                continue;
            }
            // Remembering the ID is also how a repeat within the batch shows.
            let new = if self.remember && self.seen.len() < MAX_TRACKED_IDS {
                self.seen.insert(id)
            } else {
                !self.seen.contains(id) && batch.insert(id)
            };
            if new {
                buf.extend_from_slice(id.as_bytes());
                buf.push(b'\n');
                report.written += 1;
            } else {
                report.skipped += 1;
            }
        }
        if buf.is_empty() {
            return Ok(report);
        }
        // `seen` already lists the batch: until the write is known to have
        // landed, it must not be trusted.
        self.snapshot = None;
        (&*self.file).write_all(&buf)?;
        report.bytes = buf.len();
        if self.remember {
            self.snapshot = Some(Snapshot::of(&self.file.metadata()?));
        }
        Ok(report)
    }

    /// Rebuilds `seen` from the file, locked and as `meta` describes it (at
    /// most [`MAX_TRACKED_IDS`] IDs). Reading does not change what the
    /// snapshot compares, so `meta` is the new snapshot.
    fn resync(&mut self, meta: &std::fs::Metadata) -> io::Result<()> {
        self.seen.clear();
        let seen = &mut self.seen;
        scan_lines(&self.file, meta.len(), |line| {
            if let Line::Text(text) = line {
                if let Ok(id) = std::str::from_utf8(text) {
                    if validate_queue_id(id).is_ok() {
                        seen.insert(id);
                    }
                }
            }
            seen.len() < MAX_TRACKED_IDS
        })?;
        self.snapshot = Some(Snapshot::of(meta));
        Ok(())
    }

    /// Locks the log and reads its queue IDs for delivery. The lock is held
    /// until the returned [`Delivery`] is finished, aborted or dropped, so
    /// that nobody appends to a log that is about to be truncated.
    ///
    /// Lines that are not valid queue IDs are skipped with a warning;
    /// duplicates are skipped up to [`MAX_TRACKED_IDS`] distinct IDs.
    ///
    /// # Errors
    /// A delivery is already in progress, or the log is locked elsewhere
    /// (both `WouldBlock`: deliver later); locking or reading fails.
    pub fn take_for_delivery(&mut self) -> io::Result<Delivery> {
        if self.delivery_in_progress() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "a delivery holds the log",
            ));
        }
        let size = self.lock_live()?.len();
        // From here on, an early return drops `lock` and so unlocks.
        let lock = Arc::new(HeldLock(Arc::clone(&self.file)));
        let mut ids = Vec::new();
        let mut filter = IdSet::new();
        let mut lines_read = 0usize;
        let mut left_out = 0usize;
        let path = &self.path;
        scan_lines(&self.file, size, |line| {
            lines_read += 1;
            let id = match line {
                Line::Text(text) => std::str::from_utf8(text)
                    .ok()
                    .filter(|id| validate_queue_id(id).is_ok()),
                Line::TooLong(_) => None,
            };
            let Some(id) = id else {
                let shown = String::from_utf8_lossy(line.bytes());
                log::warn!(
                    "bad queue id \"{:.30}...\" in fast flush logfile {}",
                    shown.escape_debug(),
                    path.display()
                );
                return true;
            };
            // Past the filter's size, duplicates pass: graceful degradation.
            if filter.len() >= MAX_TRACKED_IDS || filter.insert(id) {
                if ids.len() < MAX_DELIVERY_IDS {
                    ids.push(id.to_owned());
                } else {
                    left_out += 1;
                }
            }
            true
        })?;
        if left_out > 0 {
            log::warn!(
                "{}: {left_out} queue IDs beyond the first {MAX_DELIVERY_IDS} left to the regular queue run",
                path.display()
            );
        }
        self.delivery = Arc::downgrade(&lock);
        Ok(Delivery {
            ids,
            lines_read,
            lock,
        })
    }

    /// Ends a delivery whose files were handed to the queue: truncates the
    /// log if any line was read, sets its access and modification times to
    /// now (so refresh works on `noatime` mounts too), then unlocks.
    ///
    /// # Errors
    /// `delivery` is not this log's; the truncation fails (the log keeps its
    /// lines and is unlocked).
    pub fn finish_delivery(&mut self, delivery: Delivery) -> io::Result<()> {
        self.check_owner(&delivery)?;
        // Whatever happens below, `seen` must be rebuilt from the file.
        self.snapshot = None;
        if delivery.lines_read > 0 {
            self.file.set_len(0)?;
        }
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        };
        let times = Timestamps {
            last_access: now,
            last_modification: now,
        };
        if let Err(e) = rustix::fs::futimens(&self.file, &times) {
            log::warn!("update {} time stamps: {e}", self.path.display());
        }
        // The next append rebuilds it, which reads nothing while the log
        // stays empty.
        self.seen.clear();
        drop(delivery);
        Ok(())
    }

    /// Ends a delivery whose files could not be handed over: unlocks and
    /// keeps every line for the next attempt.
    ///
    /// # Errors
    /// `delivery` is not this log's (it is unlocked all the same).
    pub fn abort_delivery(&mut self, delivery: Delivery) -> io::Result<()> {
        self.check_owner(&delivery)
    }

    fn check_owner(&self, delivery: &Delivery) -> io::Result<()> {
        if Weak::ptr_eq(&self.delivery, &Arc::downgrade(&delivery.lock)) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "delivery of another log",
            ))
        }
    }

    /// Takes the lock, without waiting, on a log that is still linked: if a
    /// janitor removed the file before we locked it, re-open the name
    /// (creating a new log) and lock that instead.
    fn lock_live(&mut self) -> io::Result<std::fs::Metadata> {
        for _ in 0..OPEN_ATTEMPTS {
            try_lock(&self.file)?;
            let meta = match self.file.metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
                    return Err(e);
                }
            };
            if meta.nlink() > 0 {
                return Ok(meta);
            }
            let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
            self.file = Arc::new(open_or_create(&self.path)?);
            self.snapshot = None;
            self.seen.clear();
        }
        Err(io::Error::other(format!(
            "{} keeps being removed",
            self.path.display()
        )))
    }
}

/// Removes the log of `site_path` if it is still empty and unchanged since
/// before `purge_before` (whole seconds, as flush(8) compares `time_t`).
/// Returns whether it was removed.
///
/// The file is opened without following symlinks and unlinked while locked,
/// so a [`LogFile::append`] waiting for the lock sees it gone and re-opens
/// the name. Anything but a regular file is left alone.
///
/// # Errors
/// `site_path` is not a valid logfile name; open, lock or unlink fail (a
/// missing file is `Ok(false)`).
pub fn remove_if_stale_empty(
    flush_dir: &Path,
    site_path: &str,
    purge_before: SystemTime,
) -> io::Result<bool> {
    let path = logfile_path(flush_dir, site_path)?;
    let file = match crate::safe_open::open_existing_regular(&path, OFlags::RDONLY) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    rustix::fs::flock(&file, FlockOperation::LockExclusive)?;
    let meta = file.metadata()?;
    if meta.nlink() == 0 || meta.size() != 0 || meta.mtime() >= unix_secs(purge_before) {
        return Ok(false);
    }
    // The name must still be this file: only then is unlinking it ours to do.
    match std::fs::symlink_metadata(&path) {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
        _ => return Ok(false),
    }
    std::fs::remove_file(&path)?;
    Ok(true)
}

/// Takes a log's exclusive lock if it is free; `WouldBlock` if someone else
/// holds it.
fn try_lock(file: &File) -> io::Result<()> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the log is locked elsewhere",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Whole seconds since the epoch (negative before it), as `time_t`.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let before = e.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            // -0.5 s is second -1, as time_t would floor it.
            if before.subsec_nanos() > 0 {
                -secs - 1
            } else {
                -secs
            }
        }
    }
}

fn logfile_path(flush_dir: &Path, site_path: &str) -> io::Result<PathBuf> {
    validate_queue_id(site_path).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad logfile name: {why}"),
        )
    })?;
    Ok(flush_dir.join(site_path))
}

/// Opens an existing log for reading and appending. Our reads do not
/// update its access time where the kernel lets us (`O_NOATIME`: we own the
/// log): refresh picks logs by access time, and "unread" must mean "not
/// delivered", as with flush(8), which never reads a log to add to it. A
/// finished delivery sets the times itself.
fn open_existing_log(path: &Path) -> io::Result<File> {
    let access = OFlags::RDWR | OFlags::APPEND;
    match crate::safe_open::open_existing_regular(path, access | OFlags::NOATIME) {
        // Not the log's owner: reads may then touch the access time.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            crate::safe_open::open_existing_regular(path, access)
        }
        opened => opened,
    }
}

/// Opens the log, creating it with mode 0600 if it does not exist. Most
/// opens find the log there, so that is tried first (one `openat`).
fn open_or_create(path: &Path) -> io::Result<File> {
    let create = OFlags::CREATE
        | OFlags::EXCL
        | OFlags::RDWR
        | OFlags::APPEND
        | OFlags::NOATIME
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY;
    for _ in 0..OPEN_ATTEMPTS {
        match open_existing_log(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            existing => return existing,
        }
        match rustix::fs::openat(CWD, path, create, Mode::from_raw_mode(0o600)) {
            Ok(fd) => {
                let file = File::from(fd);
                // The umask may have taken bits away; 0600 is what the log must be.
                rustix::fs::fchmod(&file, Mode::from_raw_mode(0o600))?;
                return Ok(file);
            }
            // Created by someone else in between: open theirs.
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(format!(
        "{} keeps being removed",
        path.display()
    )))
}

/// One line of a log, without its newline.
#[derive(Clone, Copy)]
enum Line<'a> {
    /// At most [`MAX_QUEUE_ID_LEN`] bytes.
    Text(&'a [u8]),
    /// Longer than any queue ID: its first [`MAX_QUEUE_ID_LEN`] bytes.
    TooLong(&'a [u8]),
}

impl Line<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Line::Text(b) | Line::TooLong(b) => b,
        }
    }
}

/// Calls `each` on every line of the first `size` bytes of `file` (a last
/// line without a newline counts too) until it returns false. `size` is the
/// file's size under our lock: everyone who appends takes the lock, so the
/// file ends there and no read is spent to find its end. Memory stays
/// bounded whatever the file holds: a chunk buffer and one line of at most
/// [`MAX_QUEUE_ID_LEN`] bytes.
fn scan_lines(file: &File, size: u64, mut each: impl FnMut(Line<'_>) -> bool) -> io::Result<()> {
    // Most logs are short: start small (a writer opening an empty log pays
    // for zeroing this buffer), and grow once a read fills it.
    let left = |offset: u64| usize::try_from(size - offset).unwrap_or(usize::MAX);
    let mut chunk = vec![0u8; left(0).min(FIRST_READ_CHUNK)];
    let mut line = PartialLine::default();
    let mut offset = 0u64;
    while offset < size {
        let want = chunk.len().min(left(offset));
        let n = match file.read_at(&mut chunk[..want], offset) {
            // Shorter than it was under the lock: someone ignored the lock.
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        offset += n as u64;
        if !line.feed(&chunk[..n], &mut each) {
            return Ok(());
        }
        if n == chunk.len() && chunk.len() < READ_CHUNK && offset < size {
            chunk = vec![0u8; left(offset).min(READ_CHUNK)];
        }
    }
    if !line.text.is_empty() || line.too_long {
        each(line.as_line());
    }
    Ok(())
}

/// The line being read across chunk boundaries, cut at [`MAX_QUEUE_ID_LEN`].
#[derive(Default)]
struct PartialLine {
    text: Vec<u8>,
    too_long: bool,
}

impl PartialLine {
    fn as_line(&self) -> Line<'_> {
        if self.too_long {
            Line::TooLong(&self.text)
        } else {
            Line::Text(&self.text)
        }
    }

    /// Passes every line that `bytes` completes to `each`; false once
    /// `each` said to stop.
    fn feed(&mut self, bytes: &[u8], each: &mut impl FnMut(Line<'_>) -> bool) -> bool {
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, complete) = match piece.split_last() {
                Some((b'\n', body)) => (body, true),
                _ => (piece, false),
            };
            let room = MAX_QUEUE_ID_LEN - self.text.len();
            if body.len() > room {
                self.too_long = true;
            }
            self.text.extend_from_slice(&body[..body.len().min(room)]);
            if complete {
                let keep_going = each(self.as_line());
                self.text.clear();
                self.too_long = false;
                if !keep_going {
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines_of(content: &[u8]) -> Vec<(bool, Vec<u8>)> {
        let tmp = tempfile::tempfile().unwrap();
        (&tmp).write_all(content).unwrap();
        let mut out = Vec::new();
        scan_lines(&tmp, content.len() as u64, |line| {
            out.push((matches!(line, Line::TooLong(_)), line.bytes().to_vec()));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn scans_lines_with_and_without_final_newline() {
        let got = lines_of(b"A\nBB\n\nC");
        let want: Vec<(bool, Vec<u8>)> = vec![
            (false, b"A".to_vec()),
            (false, b"BB".to_vec()),
            (false, b"".to_vec()),
            (false, b"C".to_vec()),
        ];
        assert_eq!(got, want);
        assert!(lines_of(b"").is_empty());
    }

    #[test]
    fn overlong_lines_are_cut_and_flagged() {
        let mut content = vec![b'X'; 300];
        content.extend_from_slice(b"\nOK\n");
        content.extend_from_slice(&[b'Y'; 256]);
        let got = lines_of(&content);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (true, vec![b'X'; MAX_QUEUE_ID_LEN]));
        assert_eq!(got[1], (false, b"OK".to_vec()));
        assert_eq!(got[2], (true, vec![b'Y'; MAX_QUEUE_ID_LEN]));
        // Exactly 255 bytes is still a line.
        let got = lines_of(&[b'Z'; 255]);
        assert_eq!(got, vec![(false, vec![b'Z'; 255])]);
    }

    #[test]
    fn lines_spanning_chunks_are_whole() {
        let mut content = Vec::new();
        let mut want = Vec::new();
        for i in 0..20_000 {
            let id = format!("ID{i:08}");
            content.extend_from_slice(id.as_bytes());
            content.push(b'\n');
            want.push((false, id.into_bytes()));
        }
        assert!(content.len() > 3 * READ_CHUNK);
        assert_eq!(lines_of(&content), want);
    }

    #[test]
    fn a_scan_reads_up_to_the_size_seen_under_the_lock() {
        let tmp = tempfile::tempfile().unwrap();
        (&tmp).write_all(b"A\nB\n").unwrap();
        let scan = |size| {
            let mut out = Vec::new();
            scan_lines(&tmp, size, |line| {
                out.push(line.bytes().to_vec());
                true
            })
            .unwrap();
            out
        };
        // Bytes past the size (written by someone who ignored the lock).
        assert_eq!(scan(2), vec![b"A".to_vec()]);
        // A file shorter than its size was: what is there.
        assert_eq!(scan(100), vec![b"A".to_vec(), b"B".to_vec()]);
        assert!(scan(0).is_empty());
    }

    #[test]
    fn unix_secs_floors() {
        use std::time::Duration;
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::new(5, 999_999_999)), 5);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(500)), -1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(2)), -2);
    }
}
