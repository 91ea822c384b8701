//! A stand-in for the queue manager during benchmark runs: an endpoint at
//! `public/qmgr` that takes triggers and throws them away.
//!
//! Both flush servers tell the queue manager about deliveries through
//! `public/qmgr` (`src/global/mail_trigger.c`; `F` before moving a site's
//! files, `I` after). A real qmgr would then move the delivered files from
//! `incoming/` to `active/` while the benchmark checks that they arrived in
//! `incoming/`; with nobody listening, every trigger would fail. So each side
//! gets this sink: triggers succeed, files stay where the flush server put
//! them, and the bytes seen show the triggers were sent.
//!
//! Two kinds, as master.cf may declare qmgr:
//! - [`QmgrKind::Unix`] (Debian's `qmgr unix ...`): a UNIX-domain socket;
//!   each trigger is a connection that sends its bytes and a NUL
//!   (`src/util/unix_trigger.c`), which the sink reads and then closes, as
//!   a trigger server does;
//! - [`QmgrKind::Fifo`] (Postfix's stock `qmgr fifo ...`): a FIFO, read
//!   and discarded (`src/util/fifo_trigger.c` writes the bytes alone).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What `public/qmgr` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QmgrKind {
    /// A UNIX-domain stream socket (Debian's master.cf).
    Unix,
    /// A FIFO (Postfix's stock master.cf).
    Fifo,
}

/// The most trigger bytes remembered (the rest are read and dropped).
const MAX_SEEN: usize = 1 << 20;
/// The longest a trigger connection may stay silent.
const TRIGGER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// How the draining thread is woken to stop.
enum Waker {
    /// Write a byte into the FIFO.
    Fifo(File),
    /// Shut the listening socket down, which wakes a blocked `accept`
    /// (Linux) even when its path is already gone.
    Unix(UnixListener),
}

/// An endpoint at `public/qmgr` and the thread that drains it.
pub struct QmgrSink {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<u8>>>,
    waker: Waker,
    handle: Option<thread::JoinHandle<()>>,
}

impl QmgrSink {
    /// Creates `queue/public/qmgr` of the given kind (replacing whatever is
    /// there), owned like `queue/deferred`, and starts draining it.
    ///
    /// # Errors
    /// The endpoint cannot be made or opened, or the thread cannot start.
    pub fn start(queue: &Path, kind: QmgrKind) -> io::Result<QmgrSink> {
        let public = queue.join("public");
        fs::create_dir_all(&public)?;
        let path = public.join("qmgr");
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let owner = fs::metadata(queue.join("deferred")).or_else(|_| fs::metadata(queue))?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, sink) = (Arc::clone(&stop), Arc::clone(&seen));
        let (waker, handle) = match kind {
            QmgrKind::Fifo => {
                rustix::fs::mkfifoat(
                    rustix::fs::CWD,
                    &path,
                    rustix::fs::Mode::from_raw_mode(0o622),
                )?;
                // The modes Postfix's master gives these endpoints.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o622))?;
                chown(&path, Some(owner.uid()), Some(owner.gid()))?;
                // Read and write: opening never blocks, and the FIFO never
                // reports end of file while we hold it.
                let reader = OpenOptions::new().read(true).write(true).open(&path)?;
                let waker = Waker::Fifo(reader.try_clone()?);
                let handle = thread::Builder::new()
                    .name("qmgr-fifo".into())
                    .spawn(move || drain_fifo(reader, &flag, &sink))?;
                (waker, handle)
            }
            QmgrKind::Unix => {
                let listener = UnixListener::bind(&path)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
                chown(&path, Some(owner.uid()), Some(owner.gid()))?;
                let waker = Waker::Unix(listener.try_clone()?);
                let handle = thread::Builder::new()
                    .name("qmgr-unix".into())
                    .spawn(move || serve_triggers(listener, &flag, &sink))?;
                (waker, handle)
            }
        };
        Ok(QmgrSink {
            stop,
            seen,
            waker,
            handle: Some(handle),
        })
    }

    /// The trigger bytes read so far (NULs that end socket triggers left out).
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

fn remember(sink: &Mutex<Vec<u8>>, bytes: &[u8]) {
    if let Ok(mut seen) = sink.lock() {
        let room = MAX_SEEN.saturating_sub(seen.len());
        seen.extend(bytes.iter().filter(|b| **b != 0).take(room));
    }
}

fn drain_fifo(mut reader: File, stop: &AtomicBool, sink: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf) {
        if stop.load(Ordering::Relaxed) || n == 0 {
            return;
        }
        remember(sink, &buf[..n]);
    }
}

/// Accepts trigger connections one at a time: reads up to the NUL (or end
/// of file, or a second of silence), then closes.
fn serve_triggers(listener: UnixListener, stop: &AtomicBool, sink: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 256];
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut stream) = stream else {
            continue;
        };
        if stream.set_read_timeout(Some(TRIGGER_READ_TIMEOUT)).is_err() {
            continue;
        }
        let mut total = 0;
        while let Ok(n) = stream.read(&mut buf) {
            remember(sink, &buf[..n]);
            total += n;
            if n == 0 || buf[..n].contains(&0) || total > 4096 {
                break;
            }
        }
    }
}

impl Drop for QmgrSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        match &mut self.waker {
            Waker::Fifo(file) => {
                let _ = file.write_all(b"\n");
            }
            Waker::Unix(listener) => {
                let _ = rustix::net::shutdown(&*listener, rustix::net::Shutdown::Both);
            }
        }
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
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::net::UnixStream;

    #[test]
    fn fifo_sink_drains_triggers_written_non_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = QmgrSink::start(tmp.path(), QmgrKind::Fifo).unwrap();
        let path = tmp.path().join("public/qmgr");
        assert!(fs::metadata(&path).unwrap().file_type().is_fifo());
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
    }

    #[test]
    fn socket_sink_reads_each_trigger_and_closes() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = QmgrSink::start(tmp.path(), QmgrKind::Unix).unwrap();
        let path = tmp.path().join("public/qmgr");
        assert!(fs::metadata(&path).unwrap().file_type().is_socket());
        for trigger in [&b"F\0"[..], b"I\0"] {
            // As unix_trigger(): write the bytes and a NUL, then wait for
            // the server to close.
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(trigger).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "closed by the sink");
        }
        assert!(wait_until(Duration::from_secs(5), || sink.seen() == b"FI"));
        // Stopping works even when the socket's directory is already gone
        // (a lab's temp dir removed first): this would hang otherwise.
        fs::remove_dir_all(tmp.path().join("public")).unwrap();
        drop(sink);
    }
}
