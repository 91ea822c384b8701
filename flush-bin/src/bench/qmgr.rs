//! A stand-in for the queue manager during benchmark runs: a FIFO at
//! `public/qmgr` whose bytes are read and thrown away.
//!
//! Both flush servers tell the queue manager about deliveries by writing to
//! `public/qmgr` (`src/global/mail_trigger.c`; `F` before moving a site's
//! files, `I` after). A real qmgr would then move the delivered files from
//! `incoming/` to `active/` while the benchmark checks that they arrived in
//! `incoming/`; with no reader at all, every trigger would fail. So each side
//! gets this FIFO: triggers succeed, files stay where the flush server put
//! them, and the bytes seen show the triggers were sent.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A FIFO at `public/qmgr` and the thread that drains it.
pub struct QmgrSink {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<u8>>>,
    waker: File,
    handle: Option<thread::JoinHandle<()>>,
}

/// The most trigger bytes remembered (the rest are only counted as read).
const MAX_SEEN: usize = 1 << 20;

impl QmgrSink {
    /// Creates `queue/public/qmgr` as a FIFO (replacing whatever is there),
    /// owned like `queue/deferred` with mode 0622 as Postfix makes it, and
    /// starts draining it.
    ///
    /// # Errors
    /// The FIFO cannot be made or opened, or the thread cannot start.
    pub fn start(queue: &Path) -> io::Result<QmgrSink> {
        let public = queue.join("public");
        fs::create_dir_all(&public)?;
        let path = public.join("qmgr");
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &path,
            rustix::fs::Mode::from_raw_mode(0o622),
        )?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o622))?;
        let owner = fs::metadata(queue.join("deferred")).or_else(|_| fs::metadata(queue))?;
        chown(&path, Some(owner.uid()), Some(owner.gid()))?;
        // Read and write: opening never blocks, and the FIFO never reports
        // end of file while we hold it.
        let mut reader = OpenOptions::new().read(true).write(true).open(&path)?;
        let waker = reader.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, sink) = (Arc::clone(&stop), Arc::clone(&seen));
        let handle = thread::Builder::new()
            .name("qmgr-sink".into())
            .spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if flag.load(Ordering::Relaxed) || n == 0 {
                        return;
                    }
                    if let Ok(mut seen) = sink.lock() {
                        let room = MAX_SEEN.saturating_sub(seen.len());
                        seen.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            })?;
        Ok(QmgrSink {
            stop,
            seen,
            waker,
            handle: Some(handle),
        })
    }

    /// The trigger bytes read so far.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Forgets the bytes read so far.
    pub fn clear(&self) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
        }
    }
}

impl Drop for QmgrSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the reader with one byte it will see after the flag.
        let _ = self.waker.write_all(b"\n");
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lab::wait_until;
    use std::time::Duration;

    #[test]
    fn drains_triggers_written_non_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = QmgrSink::start(tmp.path()).unwrap();
        let path = tmp.path().join("public/qmgr");
        // As a flush server writes a trigger: non-blocking open for writing,
        // which fails with ENXIO when nobody reads.
        for _ in 0..3 {
            let mut w = OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&path)
                .unwrap();
            w.write_all(b"FI").unwrap();
        }
        assert!(wait_until(Duration::from_secs(5), || sink.seen() == b"FIFIFI"));
        sink.clear();
        assert!(sink.seen().is_empty());
        drop(sink);
    }

    use std::os::unix::fs::OpenOptionsExt;
}
