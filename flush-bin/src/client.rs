//! A small blocking client of the line protocol, for flushctl and tests.

use bytes::BytesMut;
use flush_proto::line::{parse_reply_line, ClientCodec};
use flush_proto::{ProtoError, Reply, Request};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use tokio_util::codec::Encoder;

/// Where `flushctl` connects when not told: `$FLUSHD_SOCKET`, else Postfix's
/// default queue directory.
pub fn default_address() -> String {
    std::env::var("FLUSHD_SOCKET")
        .unwrap_or_else(|_| "unix:/var/spool/postfix/public/flush.line".to_string())
}

/// Longest reply line read (the `stats` JSON is the longest).
const MAX_REPLY: usize = 16 * 1024 * 1024;

/// A connection to flushd.
pub struct LineClient {
    reader: BufReader<Box<dyn io::Read + Send>>,
    writer: Box<dyn io::Write + Send>,
}

impl LineClient {
    /// Connects to `unix:/path`, `/path` or `host:port`.
    ///
    /// # Errors
    /// The connection fails.
    pub fn connect(address: &str, timeout: Duration) -> io::Result<LineClient> {
        let path = address
            .strip_prefix("unix:")
            .or_else(|| address.starts_with('/').then_some(address));
        let (reader, writer): (Box<dyn io::Read + Send>, Box<dyn io::Write + Send>) = match path {
            Some(path) => {
                let stream = UnixStream::connect(path)?;
                stream.set_read_timeout(Some(timeout))?;
                (Box::new(stream.try_clone()?), Box::new(stream))
            }
            None => {
                let stream = TcpStream::connect(address)?;
                stream.set_read_timeout(Some(timeout))?;
                (Box::new(stream.try_clone()?), Box::new(stream))
            }
        };
        Ok(LineClient {
            reader: BufReader::new(reader),
            writer,
        })
    }

    /// Sends one request and reads its reply.
    ///
    /// # Errors
    /// The request holds a line break (e.g. a site given as `$'x\npurge'`,
    /// which would send a second request: nothing is sent), the connection
    /// fails or the reply is malformed.
    pub fn request(&mut self, request: &Request) -> Result<Reply, ProtoError> {
        let mut line = BytesMut::new();
        ClientCodec::new(MAX_REPLY).encode(request, &mut line)?;
        self.writer.write_all(&line)?;
        self.writer.flush()?;
        self.read_reply()
    }

    /// Reads one reply line.
    ///
    /// # Errors
    /// The connection fails or closes, or the reply is malformed.
    pub fn read_reply(&mut self) -> Result<Reply, ProtoError> {
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY as u64)
            .read_line(&mut line)?;
        if n == 0 {
            return Err(ProtoError::Truncated);
        }
        parse_reply_line(line.trim_end_matches(['\n', '\r']))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flush_proto::request::SendSite;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_request_with_a_line_break_is_refused_and_nothing_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flush.line");
        let listener = UnixListener::bind(&path).unwrap();
        let address = format!("unix:{}", path.display());
        let mut client = LineClient::connect(&address, Duration::from_secs(5)).unwrap();
        let smuggled = Request::SendSite(SendSite::new("x.test\npurge"));
        assert!(client.request(&smuggled).is_err());
        drop(client);
        let (mut server_side, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        server_side.read_to_end(&mut received).unwrap();
        assert!(received.is_empty(), "{received:?}");
    }
}
