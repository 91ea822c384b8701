//! The server floor of adds over the Postfix protocol: how fast a plain
//! server answers this client on this machine when it does only what a
//! correct `add` needs.
//!
//! Each connection is served start to end by one blocking thread: accept,
//! announce, read the request, append its queue ID to the site's log under
//! the log's lock, answer, close. No event loop, actors, batching, domain
//! matching or memory of IDs; logs stay open (up to a bound) as flushd's do.
//! With a thread per concurrent client nothing waits for anything else, so
//! what is left is the system calls and the client. It answers what the add
//! rows cannot: whether a target lies above what any server gets here, and
//! how far from that floor flushd runs.

use super::append_floor::{append_locked, open_log};
use bytes::BytesMut;
use flush_actors::domains::site_to_path;
use flush_proto::attr::{announcement, status_reply, PostfixItem, PostfixServerCodec};
use flush_proto::{Request, Status};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio_util::codec::Decoder;

/// Bytes read at a time; a request is well under this.
const READ_SIZE: usize = 512;

/// A running floor server; [`FloorServer::stop`] ends it.
pub struct FloorServer {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    failures: Arc<AtomicU64>,
}

impl FloorServer {
    /// Listens on the UNIX socket `socket` with `threads` threads, appending
    /// to the logs in `queue/flush` (which must exist); the first
    /// `keep_open` logs used stay open, any other is opened per append.
    ///
    /// # Errors
    /// The socket cannot be bound, or a thread cannot be started.
    pub fn start(
        socket: &Path,
        queue: &Path,
        threads: usize,
        keep_open: usize,
    ) -> io::Result<FloorServer> {
        let listener = UnixListener::bind(socket)?;
        let logs = Arc::new(Logs {
            dir: queue.join("flush"),
            open: Mutex::new(HashMap::new()),
            keep_open,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let mut server = FloorServer {
            socket: socket.to_path_buf(),
            stop: Arc::clone(&stop),
            threads: Vec::new(),
            failures: Arc::clone(&failures),
        };
        for n in 0..threads.max(1) {
            let listener = listener.try_clone()?;
            let (logs, stop, failures) =
                (Arc::clone(&logs), Arc::clone(&stop), Arc::clone(&failures));
            let thread = std::thread::Builder::new()
                .name(format!("floor-{n}"))
                .spawn(move || accept_until(&listener, &logs, &stop, &failures));
            match thread {
                Ok(thread) => server.threads.push(thread),
                Err(e) => {
                    server.end();
                    return Err(e);
                }
            }
        }
        Ok(server)
    }

    /// Stops accepting, waits for every thread, removes the socket, and
    /// returns how many connections failed or were answered other than OK.
    pub fn stop(mut self) -> u64 {
        self.end();
        self.failures.load(Ordering::Relaxed)
    }

    /// Ends every thread and removes the socket. Each thread sees the flag
    /// once its blocked `accept` returns: one connection per thread wakes
    /// them all.
    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for _ in &self.threads {
            let _ = UnixStream::connect(&self.socket);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The open logs, shared by every thread.
struct Logs {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<File>>>,
    keep_open: usize,
}

impl Logs {
    /// Appends `queue_id` to the log of `site`, as flushd names it.
    fn append(&self, site: &str, queue_id: &str) -> io::Result<()> {
        let name = site_to_path(site)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let file = self.file(name.as_str())?;
        let mut line = String::with_capacity(queue_id.len() + 1);
        line.push_str(queue_id);
        line.push('\n');
        append_locked(&file, &line)
    }

    /// The log named `name`: kept open, or opened (outside the map's lock,
    /// so that a slow creation holds up no other log) and kept if there is
    /// room.
    fn file(&self, name: &str) -> io::Result<Arc<File>> {
        if let Some(file) = self.lock()?.get(name) {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(open_log(&self.dir.join(name))?);
        let mut open = self.lock()?;
        if open.len() < self.keep_open {
            // Another thread may have opened it meanwhile: either is fine.
            open.entry(name.to_string())
                .or_insert_with(|| Arc::clone(&file));
        }
        Ok(file)
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, HashMap<String, Arc<File>>>> {
        self.open
            .lock()
            .map_err(|_| io::Error::other("a floor thread panicked"))
    }
}

fn accept_until(listener: &UnixListener, logs: &Logs, stop: &AtomicBool, failures: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Out of descriptors, say: count it and let the clients retry.
            Err(_) => {
                failures.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if !matches!(serve(stream, logs), Ok(Status::Ok)) {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves one connection; returns the status it answered.
fn serve(mut stream: UnixStream, logs: &Logs) -> io::Result<Status> {
    stream.write_all(&announcement())?;
    let status = match read_request(&mut stream)? {
        Some(PostfixItem::Request {
            request: Request::Add(add),
            ..
        }) => match logs.append(&add.site, &add.queue_id) {
            Ok(()) => Status::Ok,
            Err(_) => Status::Fail,
        },
        Some(_) => Status::Bad,
        None => return Err(io::ErrorKind::UnexpectedEof.into()),
    };
    stream.write_all(&status_reply(status))?;
    Ok(status)
}

/// Reads until one whole request (`None`: the client left first).
fn read_request(stream: &mut UnixStream) -> io::Result<Option<PostfixItem>> {
    let mut codec = PostfixServerCodec::new();
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut chunk = [0; READ_SIZE];
    loop {
        if let Some(item) = codec.decode(&mut buf).map_err(io::Error::other)? {
            return Ok(Some(item));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return codec.decode_eof(&mut buf).map_err(io::Error::other);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bench::adds::verify_adds;
    use crate::bench::load::{self, LoadOptions, Target};
    use crate::bench::mix::Mix;
    use flush_proto::request::Verb;
    use std::fs;
    use std::time::Duration;

    fn adds(socket: &Path, requests: u64, sites: u64) -> LoadOptions {
        LoadOptions {
            target: Target::Postfix(socket.to_path_buf()),
            mix: Mix::only(Verb::Add),
            concurrency: 4,
            window: 1,
            requests,
            sites,
            domain: "bench.test".into(),
            timeout: Duration::from_secs(30),
            server_pids: Vec::new(),
            pss: None,
        }
    }

    #[test]
    fn appends_what_an_add_run_sends_and_answers_ok() {
        for keep_open in [0, 3, 100] {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("flush")).unwrap();
            let socket = tmp.path().join("flush.sock");
            let server = FloorServer::start(&socket, tmp.path(), 3, keep_open).unwrap();
            let report = load::run(&adds(&socket, 200, 7)).unwrap();
            assert_eq!(server.stop(), 0);
            assert!(report.all_ok(200), "{report:?}");
            verify_adds(tmp.path(), 200, 7, "bench.test").unwrap();
            assert!(!socket.exists());
        }
    }

    #[test]
    fn what_it_cannot_append_is_not_answered_ok() {
        let tmp = tempfile::tempdir().unwrap();
        // No flush/ directory: every append fails.
        let socket = tmp.path().join("flush.sock");
        let server = FloorServer::start(&socket, tmp.path(), 2, 10).unwrap();
        let report = load::run(&adds(&socket, 5, 2)).unwrap();
        assert_eq!(server.stop(), 5);
        assert_eq!(report.statuses[Status::Fail.index()], 5);
    }
}
