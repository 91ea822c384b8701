//! Waking the queue manager: one request byte written to
//! `$queue_directory/public/qmgr`, a FIFO or a UNIX-domain stream socket.
//!
//! Mirrors Postfix's `mail_trigger()` (`src/global/mail_trigger.c`) with
//! `fifo_trigger()` and `unix_trigger()` (`src/util/`). Blocking (bounded by
//! the timeout for sockets): call it from a worker thread.

use rustix::fs::{Mode, OFlags, CWD};
use rustix::net::{socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Asks the queue manager to forget its dead destinations and transports
/// (`QMGR_REQ_FLUSH_DEAD`): sent before a `send_site` moves files.
pub const TRIGGER_FLUSH_DEAD: &[u8] = b"F";
/// Asks the queue manager to scan `incoming/` (`QMGR_REQ_SCAN_INCOMING`).
pub const TRIGGER_SCAN_INCOMING: &[u8] = b"I";
/// How long a trigger may take on a socket (Postfix's `trigger_timeout`).
pub const TRIGGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `request` to the queue manager's trigger at `path`.
///
/// To a FIFO: the bytes alone, opened non-blocking (a full pipe counts as
/// delivered: the queue manager has wake-ups waiting already). To a UNIX
/// stream socket: the bytes and one NUL, then close; `timeout` bounds the
/// write.
///
/// # Errors
/// The path is missing or neither a FIFO nor a socket; nobody reads the FIFO
/// (`ENXIO`); the socket refuses the connection; a write fails.
pub fn send_trigger(path: &Path, request: &[u8], timeout: Duration) -> io::Result<()> {
    let kind = std::fs::metadata(path)?.file_type();
    if kind.is_fifo() {
        fifo_trigger(path, request)
    } else if kind.is_socket() {
        socket_trigger(path, request, timeout)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a socket or a fifo", path.display()),
        ))
    }
}

fn fifo_trigger(path: &Path, request: &[u8]) -> io::Result<()> {
    // Non-blocking: the open fails with ENXIO at once when no process reads.
    let flags =
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let mut fifo = File::from(rustix::fs::openat(CWD, path, flags, Mode::empty())?);
    match fifo.write_all(request) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}

fn socket_trigger(path: &Path, request: &[u8], timeout: Duration) -> io::Result<()> {
    // A non-blocking connect: a UNIX socket whose backlog is full fails at
    // once (EAGAIN) instead of hanging a thread on a stuck queue manager.
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    let mut stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(timeout))?;
    let mut message = Vec::with_capacity(request.len() + 1);
    message.extend_from_slice(request);
    message.push(0);
    stream.write_all(&message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    fn mkfifo(path: &Path) {
        rustix::fs::mkfifoat(CWD, path, Mode::from_raw_mode(0o600)).unwrap();
    }

    fn open_reader(path: &Path) -> File {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        File::from(rustix::fs::openat(CWD, path, flags, Mode::empty()).unwrap())
    }

    #[test]
    fn fifo_gets_the_bytes_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        mkfifo(&path);
        let mut reader = open_reader(&path);
        send_trigger(&path, TRIGGER_FLUSH_DEAD, TRIGGER_TIMEOUT).unwrap();
        send_trigger(&path, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT).unwrap();
        let mut buf = [0u8; 16];
        let n = reader.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"FI");
    }

    #[test]
    fn fifo_without_reader_is_enxio() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        mkfifo(&path);
        let err = send_trigger(&path, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NXIO.raw_os_error())
        );
    }

    #[test]
    fn socket_gets_the_bytes_and_a_nul() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            got
        });
        send_trigger(&path, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT).unwrap();
        assert_eq!(server.join().unwrap(), b"I\0");
    }

    #[test]
    fn stuck_socket_fails_fast() {
        // A listener that never accepts, with the smallest backlog.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        rustix::net::listen(&listener, 0).unwrap();
        let results: Vec<io::Result<()>> = (0..16)
            .map(|_| send_trigger(&path, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT))
            .collect();
        assert!(results.iter().any(|r| r
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)));
    }

    #[test]
    fn dead_socket_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        drop(UnixListener::bind(&path).unwrap());
        assert!(send_trigger(&path, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT).is_err());
    }

    #[test]
    fn missing_or_plain_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("qmgr");
        let err = send_trigger(&path, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::write(&path, b"").unwrap();
        let err = send_trigger(&path, TRIGGER_SCAN_INCOMING, TRIGGER_TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
