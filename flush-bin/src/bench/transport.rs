//! The two ways flush-bench talks to a flush server, both blocking.
//!
//! - [`postfix_request`]: one request per connection, exactly as Postfix's
//!   clients do it (`src/global/mail_command_client.c` behind
//!   `flush_clnt.c`): connect, read the server's announcement, send the
//!   attribute list, read the status, close.
//! - [`LineConnection`]: a persistent line-protocol connection on which the
//!   caller queues many requests before reading their replies (pipelining).

use bytes::BytesMut;
use flush_proto::attr::{encode_request, PostfixClientCodec, PostfixReply, FLUSH_PROTOCOL};
use flush_proto::line::ClientCodec;
use flush_proto::{Reply, Request, Status};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;

/// Sends `request` on a new connection to the Postfix-protocol socket at
/// `path` and returns the status.
///
/// # Errors
/// Connection and I/O errors (each read and write waits at most `timeout`),
/// a server that closes early, announces another protocol or sends a
/// malformed list.
pub fn postfix_request(path: &Path, request: &Request, timeout: Duration) -> io::Result<Status> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut codec = PostfixClientCodec::new();
    let mut input = BytesMut::with_capacity(128);
    match read_list(&mut stream, &mut codec, &mut input)? {
        PostfixReply::Announcement(protocol) if protocol == FLUSH_PROTOCOL => {}
        other => {
            return Err(io::Error::other(format!(
                "unexpected announcement {other:?}"
            )))
        }
    }
    let mut out = BytesMut::with_capacity(96);
    encode_request(&mut out, request).map_err(io::Error::other)?;
    stream.write_all(&out)?;
    match read_list(&mut stream, &mut codec, &mut input)? {
        PostfixReply::Status(status) => Ok(status),
        other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
    }
}

/// Reads until `codec` yields one list.
fn read_list(
    stream: &mut UnixStream,
    codec: &mut PostfixClientCodec,
    input: &mut BytesMut,
) -> io::Result<PostfixReply> {
    let mut chunk = [0u8; 256];
    loop {
        if let Some(item) = codec.decode(input).map_err(io::Error::other)? {
            return Ok(item);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        input.extend_from_slice(&chunk[..n]);
    }
}

/// A UNIX-domain or TCP stream.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn connect(address: &str, timeout: Duration) -> io::Result<Stream> {
        let path = address
            .strip_prefix("unix:")
            .or_else(|| address.starts_with('/').then_some(address));
        let stream = match path {
            Some(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Stream::Unix(s)
            }
            None => {
                let s = TcpStream::connect(address)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                // Requests are written in batches already; do not delay them.
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        };
        Ok(stream)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.write_all(buf),
            Stream::Tcp(s) => s.write_all(buf),
        }
    }
}

/// A persistent line-protocol connection: [`queue`](Self::queue) requests,
/// [`send`](Self::send) them in one write, then
/// [`read_replies`](Self::read_replies) as they come.
pub struct LineConnection {
    stream: Stream,
    codec: ClientCodec,
    input: BytesMut,
    output: BytesMut,
    scratch: Box<[u8]>,
}

impl LineConnection {
    /// Connects to `unix:/path`, `/path` or `host:port`; reads and writes
    /// wait at most `timeout`.
    ///
    /// # Errors
    /// The connection fails.
    pub fn connect(address: &str, timeout: Duration) -> io::Result<LineConnection> {
        Ok(LineConnection {
            stream: Stream::connect(address, timeout)?,
            codec: ClientCodec::default(),
            input: BytesMut::with_capacity(READ_CHUNK),
            output: BytesMut::with_capacity(4096),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        })
    }

    /// Adds `request` to the next write.
    ///
    /// # Errors
    /// A request that cannot be a line (a site with a line break).
    pub fn queue(&mut self, request: &Request) -> io::Result<()> {
        self.codec
            .encode(request, &mut self.output)
            .map_err(io::Error::other)
    }

    /// Writes every queued request.
    ///
    /// # Errors
    /// The write fails or times out.
    pub fn send(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.output)?;
        self.output.clear();
        Ok(())
    }

    /// Waits for at least one reply and passes every complete reply that
    /// has arrived to `each`, in order; returns how many.
    ///
    /// # Errors
    /// The read fails or times out, the server closes, or a reply is malformed.
    pub fn read_replies(&mut self, mut each: impl FnMut(Reply)) -> io::Result<usize> {
        let mut count = 0;
        loop {
            while let Some(reply) = self
                .codec
                .decode(&mut self.input)
                .map_err(io::Error::other)?
            {
                each(reply);
                count += 1;
            }
            if count > 0 {
                return Ok(count);
            }
            let n = self.stream.read(&mut self.scratch)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.input.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// Sends one request and waits for its reply (no pipelining).
    ///
    /// # Errors
    /// As [`send`](Self::send) and [`read_replies`](Self::read_replies).
    pub fn request(&mut self, request: &Request) -> io::Result<Reply> {
        self.queue(request)?;
        self.send()?;
        let mut got = None;
        self.read_replies(|reply| {
            got.get_or_insert(reply);
        })?;
        got.ok_or_else(|| io::Error::other("no reply"))
    }
}
