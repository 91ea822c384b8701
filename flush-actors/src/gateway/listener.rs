//! Listening sockets: parse an address, bind it with UNIX-socket hygiene,
//! and accept connections forever (errors are logged with backoff, never fatal).

use super::protocol::Protocol;
use super::session::{ReadHalf, Session, WriteHalf};
use super::{Gateway, GatewayStats};
use actix::{Actor, Addr};
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

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

/// A bound listening socket.
#[derive(Debug)]
pub enum Bound {
    /// A UNIX socket and its path (removed on shutdown).
    Unix(UnixListener, PathBuf),
    /// A TCP socket.
    Tcp(TcpListener),
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
        ListenAddr::Tcp(spec) => Ok(Bound::Tcp(TcpListener::bind(spec).await?)),
        ListenAddr::Unix(path) => {
            remove_stale_socket(path).await?;
            let listener = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
            Ok(Bound::Unix(listener, path.clone()))
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

/// Accepts connections on `bound` forever, one session each, at most as many
/// at once as `slots` has permits. Run it as a task; abort it to stop.
pub async fn accept_loop<P: Protocol + Clone>(
    bound: Bound,
    protocol: P,
    gateway: Addr<Gateway>,
    slots: Arc<Semaphore>,
    stats: Arc<GatewayStats>,
    idle_timeout: Duration,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let accepted: io::Result<(ReadHalf, WriteHalf)> = match &bound {
            Bound::Unix(listener, _) => listener.accept().await.map(|(stream, _)| {
                let (r, w) = stream.into_split();
                (Box::new(r) as ReadHalf, Box::new(w) as WriteHalf)
            }),
            Bound::Tcp(listener) => listener.accept().await.map(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                (Box::new(r) as ReadHalf, Box::new(w) as WriteHalf)
            }),
        };
        match accepted {
            Ok(halves) => {
                backoff = Duration::from_millis(10);
                let id = stats.next_session_id();
                Session::new(
                    id,
                    protocol.clone(),
                    gateway.clone(),
                    halves,
                    idle_timeout,
                    permit,
                )
                .start();
            }
            Err(e) => {
                stats.accept_errors.incr();
                log::warn!("accept ({}): {e}; retrying in {backoff:?}", P::NAME);
                drop(permit);
                actix_rt::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
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
