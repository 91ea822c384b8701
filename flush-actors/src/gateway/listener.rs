//! Listening sockets: parse an address, bind it with UNIX-socket hygiene,
//! and accept connections until shutdown (errors are logged with backoff,
//! never fatal).

use super::one_request;
use super::protocol::Protocol;
use super::session::{ReadHalf, Session, WriteHalf};
use super::GatewayStats;
use actix::Actor;
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Where to listen: `unix:/path` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A UNIX-domain stream socket.
    Unix(PathBuf),
    /// A TCP socket, e.g. `127.0.0.1:7000`.
    Tcp(String),
}

impl ListenAddr {
    /// Parses `unix:/path`, a bare absolute path, or `host:port`.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(s)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(ListenAddr::Tcp(s.to_string()))
            }
            _ => Err(format!(
                "listen address {s:?}: expected unix:/path or host:port"
            )),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ListenAddr::Tcp(addr) => f.write_str(addr),
        }
    }
}

/// A bound listening socket, still a std one: each gateway thread accepts on
/// its own duplicate (see [`Bound::try_clone`]) and registers it with its own
/// runtime.
#[derive(Debug)]
pub enum Bound {
    /// A UNIX socket and its path (removed on shutdown).
    Unix(std::os::unix::net::UnixListener, PathBuf),
    /// A TCP socket.
    Tcp(std::net::TcpListener),
}

impl Bound {
    /// The UNIX socket path to remove at shutdown, if any (none for a
    /// socket inherited from master(8), bound with an empty path).
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Bound::Unix(_, path) if !path.as_os_str().is_empty() => Some(path),
            Bound::Unix(..) | Bound::Tcp(_) => None,
        }
    }

    /// Another descriptor for the same listening socket, so that a second
    /// thread can accept on it.
    ///
    /// # Errors
    /// Out of file descriptors.
    pub fn try_clone(&self) -> io::Result<Bound> {
        Ok(match self {
            Bound::Unix(listener, path) => Bound::Unix(listener.try_clone()?, path.clone()),
            Bound::Tcp(listener) => Bound::Tcp(listener.try_clone()?),
        })
    }
}

/// Binds `addr`. A stale UNIX socket (nobody answers on it) is replaced; one
/// that a live server answers on is an error, as is any other existing file.
/// UNIX sockets get mode 0666: access is governed by their directory, as for
/// Postfix's own `public/` sockets.
///
/// # Errors
/// The address is in use or cannot be bound.
pub async fn bind(addr: &ListenAddr) -> io::Result<Bound> {
    match addr {
        ListenAddr::Tcp(spec) => {
            let listener = TcpListener::bind(spec).await?.into_std()?;
            Ok(Bound::Tcp(listener))
        }
        ListenAddr::Unix(path) => {
            remove_stale_socket(path).await?;
            let listener = std::os::unix::net::UnixListener::bind(path)?;
            listener.set_nonblocking(true)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
            Ok(Bound::Unix(listener, path.clone()))
        }
    }
}

/// A UNIX socket file flushd bound, as it was then: removed at shutdown
/// only if the name still holds that file. Someone may have bound the name
/// since (master(8) after a reload that gave `flush` back to Postfix), and
/// theirs must stay. The file is known by device, inode and change time: a
/// file system may give a new file the inode number just freed.
#[derive(Debug)]
pub struct OwnSocket {
    path: PathBuf,
    identity: (u64, u64, i64, i64),
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

impl OwnSocket {
    /// Notes what `path` is now (`None` if it cannot be stat'ed).
    pub fn note(path: &Path) -> Option<OwnSocket> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(OwnSocket {
            path: path.to_path_buf(),
            identity: identity(&meta),
        })
    }

    /// Removes the socket file if the name still holds ours.
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if identity(&meta) == self.identity => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("remove {}: {e}", self.path.display());
                }
            }
            Ok(_) => log::info!(
                "{} is no longer our socket; leaving it",
                self.path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("stat {}: {e}", self.path.display()),
        }
    }
}

async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is held by a live server", path.display()),
        ));
    }
    log::info!("removing stale socket {}", path.display());
    std::fs::remove_file(path)
}

/// What every accept loop and session of one gateway share.
#[derive(Clone)]
pub struct SessionLimits {
    /// One permit per open connection (`flush_max_connections`).
    pub slots: Arc<Semaphore>,
    /// A session is closed after this long without traffic.
    pub idle_timeout: Duration,
    /// Cancelled at shutdown: stop accepting, finish every session.
    pub stop: CancellationToken,
    /// Connection counters.
    pub stats: Arc<GatewayStats>,
}

/// One open connection: counted in `connections_open` and holding its place
/// under the connection limit until dropped.
pub struct OpenConnection {
    stats: Arc<GatewayStats>,
    _permit: OwnedSemaphorePermit,
}

impl OpenConnection {
    /// Counts a connection that holds `permit`.
    pub fn new(stats: &Arc<GatewayStats>, permit: OwnedSemaphorePermit) -> OpenConnection {
        stats.connections_open.incr();
        OpenConnection {
            stats: Arc::clone(stats),
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.connections_open.decr();
    }
}

/// A listener registered with the current thread's runtime.
enum Accepting {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Accepting {
    fn new(bound: Bound) -> io::Result<Accepting> {
        Ok(match bound {
            Bound::Unix(listener, _) => Accepting::Unix(UnixListener::from_std(listener)?),
            Bound::Tcp(listener) => Accepting::Tcp(TcpListener::from_std(listener)?),
        })
    }

    async fn accept(&self) -> io::Result<(ReadHalf, WriteHalf)> {
        match self {
            Accepting::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                let (r, w) = stream.into_split();
                Ok((Box::new(r), Box::new(QuietClose::new(w))))
            }
            Accepting::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                Ok((Box::new(r), Box::new(w)))
            }
        }
    }
}

/// Accepts connections on `bound` for gateway thread `thread` until
/// `limits.stop` is cancelled, each served on the current thread (a
/// one-request task, or a session actor), at most as many at once (across
/// every thread) as `limits.slots` has permits.
pub async fn accept_loop<P: Protocol + Clone>(
    thread: usize,
    bound: Bound,
    protocol: P,
    limits: SessionLimits,
) {
    let listener = match Accepting::new(bound) {
        Ok(listener) => listener,
        Err(e) => {
            log::error!("listen ({}): {e}", P::NAME);
            return;
        }
    };
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = limits.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(halves) => {
                // The place under the connection limit is taken once there is
                // a connection, so that an idle accept loop holds none back
                // from the other listeners and threads. At the limit, each
                // loop keeps at most this one connection waiting.
                let permit = tokio::select! {
                    () = limits.stop.cancelled() => return,
                    permit = Arc::clone(&limits.slots).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                };
                backoff = Duration::from_millis(10);
                limits.stats.accepted_on(thread);
                if P::ONE_REQUEST {
                    let serve =
                        one_request::serve(protocol.clone(), halves, limits.clone(), permit);
                    actix_rt::spawn(serve);
                } else {
                    Session::new(protocol.clone(), halves, &limits, permit).start();
                }
            }
            Err(e) => {
                limits.stats.accept_errors.incr();
                log::warn!("accept ({}): {e}; retrying in {backoff:?}", P::NAME);
                actix_rt::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A UNIX socket's write half that does not `shutdown(2)` when dropped: the
/// session ends by closing the socket anyway, and Postfix's one request per
/// connection makes that one system call in a dozen.
struct QuietClose(Option<tokio::net::unix::OwnedWriteHalf>);

impl QuietClose {
    fn new(half: tokio::net::unix::OwnedWriteHalf) -> QuietClose {
        QuietClose(Some(half))
    }

    fn half(&mut self) -> io::Result<Pin<&mut tokio::net::unix::OwnedWriteHalf>> {
        match self.0.as_mut() {
            Some(half) => Ok(Pin::new(half)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Drop for QuietClose {
    fn drop(&mut self) {
        if let Some(half) = self.0.take() {
            half.forget();
        }
    }
}

impl AsyncWrite for QuietClose {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.half() {
            Ok(half) => half.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.half() {
            Ok(half) => half.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.half() {
            Ok(half) => half.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            ListenAddr::parse("unix:/tmp/x"),
            Ok(ListenAddr::Unix("/tmp/x".into()))
        );
        assert_eq!(
            ListenAddr::parse("/tmp/x"),
            Ok(ListenAddr::Unix("/tmp/x".into()))
        );
        assert_eq!(
            ListenAddr::parse("127.0.0.1:7000"),
            Ok(ListenAddr::Tcp("127.0.0.1:7000".into()))
        );
        assert!(ListenAddr::parse("[::1]:25").is_ok());
        assert!(ListenAddr::parse("nonsense").is_err());
        assert!(ListenAddr::parse("host:99999").is_err());
    }
}
