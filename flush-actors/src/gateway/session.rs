//! `Session`: one connection of a protocol with many requests per connection
//! (flushd's line protocol; Postfix's one-request connections are served by
//! `one_request`).
//!
//! Requests are decoded as they arrive and carried out concurrently (so that
//! pipelined appends share a write), while replies leave strictly in request
//! order: each request's reply future joins a `FuturesOrdered`, and one pump
//! writes finished replies to the socket in turn. Both sides are bounded:
//! past `max_inflight` requests, or a full output buffer, the session stops
//! reading (`ctx.wait`) until the client has caught up.

use super::listener::{OpenConnection, SessionLimits};
use super::protocol::Protocol;
use actix::prelude::*;
use bytes::{Buf, BytesMut};
use flush_proto::ProtoError;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Requests one connection may have in flight before it stops reading.
pub const MAX_INFLIGHT: usize = 1024;

/// Output buffered for a slow reader before the session stops reading.
const OUT_HIGH_WATER: usize = 256 * 1024;

/// A socket's read half, boxed so one session type serves UNIX and TCP.
pub type ReadHalf = Box<dyn AsyncRead + Unpin>;
/// A socket's write half.
pub type WriteHalf = Box<dyn AsyncWrite + Unpin>;

/// One client connection.
pub struct Session<P: Protocol> {
    id: u64,
    protocol: P,
    stop: CancellationToken,
    writer: Pin<WriteHalf>,
    out: BytesMut,
    inflight: FuturesOrdered<LocalBoxFuture<'static, Option<bytes::Bytes>>>,
    pumping: bool,
    /// No more requests will be read (EOF, a broken stream, shutdown).
    closing: bool,
    requests: u64,
    read_handle: Option<SpawnHandle>,
    reader: Option<FramedRead<UntilStop, P::Codec>>,
    last_active: Instant,
    idle_timeout: Duration,
    _open: OpenConnection,
}

impl<P: Protocol> Session<P> {
    /// A session on an accepted connection; `permit` is its place under the
    /// connection limit, given back when the session ends.
    pub fn new(
        protocol: P,
        (reader, writer): (ReadHalf, WriteHalf),
        limits: &SessionLimits,
        permit: OwnedSemaphorePermit,
    ) -> Session<P> {
        let codec = protocol.codec();
        Session {
            id: limits.stats.next_session_id(),
            protocol,
            stop: limits.stop.clone(),
            writer: Box::into_pin(writer),
            out: BytesMut::new(),
            inflight: FuturesOrdered::new(),
            pumping: false,
            closing: false,
            requests: 0,
            read_handle: None,
            reader: Some(FramedRead::new(UntilStop::new(reader, &limits.stop), codec)),
            last_active: Instant::now(),
            idle_timeout: limits.idle_timeout,
            _open: OpenConnection::new(&limits.stats, permit),
        }
    }

    /// Writes finished replies in order. Ready when nothing is left to write
    /// (or the peer is gone); Pending while waiting on a reply or the socket.
    fn pump(&mut self, task: &mut std::task::Context<'_>) -> Poll<()> {
        loop {
            // Gather every reply that is ready, so that they leave in one write.
            let mut all_answered = false;
            while self.out.len() < OUT_HIGH_WATER {
                match self.inflight.poll_next_unpin(task) {
                    Poll::Ready(Some(Some(bytes))) => {
                        self.last_active = Instant::now();
                        self.out.extend_from_slice(&bytes);
                    }
                    Poll::Ready(Some(None)) => {}
                    Poll::Ready(None) => {
                        all_answered = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if self.out.is_empty() {
                return if all_answered {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            match self.writer.as_mut().poll_write(task, &self.out) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    log::debug!("session {}: peer gone while writing", self.id);
                    self.out.clear();
                    self.inflight = FuturesOrdered::new();
                    self.closing = true;
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(n)) => self.out.advance(n),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn start_pump(&mut self, ctx: &mut Context<Self>) {
        if !self.pumping {
            self.pumping = true;
            ctx.spawn(Pump { relieve_at: None });
        }
    }

    /// Stops reading: the current requests are answered, then the session ends.
    fn stop_reading(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        if let Some(handle) = self.read_handle.take() {
            ctx.cancel_future(handle);
        }
        self.finish_if_done(ctx);
    }

    fn finish_if_done(&mut self, ctx: &mut Context<Self>) {
        if self.closing && !self.pumping && self.inflight.is_empty() && self.out.is_empty() {
            ctx.stop();
        }
    }
}

/// Drives [`Session::pump`] as an actor future. With `relieve_at`, it is the
/// backpressure wait: done once fewer requests are in flight than that.
struct Pump {
    relieve_at: Option<usize>,
}

impl<P: Protocol> ActorFuture<Session<P>> for Pump {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Session<P>,
        ctx: &mut Context<Session<P>>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let drained = act.pump(task).is_ready();
        match self.relieve_at {
            Some(limit) => {
                if drained || (act.inflight.len() < limit && act.out.len() < OUT_HIGH_WATER) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            None if drained => {
                act.pumping = false;
                act.finish_if_done(ctx);
                Poll::Ready(())
            }
            None => Poll::Pending,
        }
    }
}

impl<P: Protocol> Actor for Session<P> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(reader) = self.reader.take() {
            self.read_handle = Some(ctx.add_stream(reader));
        }
        self.protocol.greeting(&mut self.out);
        if !self.out.is_empty() {
            self.start_pump(ctx);
        }
        let tick =
            (self.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        ctx.run_interval(tick, |act, ctx| {
            if act.inflight.is_empty() && act.last_active.elapsed() >= act.idle_timeout {
                log::info!(
                    "session {}: idle for {:?}, closing",
                    act.id,
                    act.idle_timeout
                );
                act.out.clear();
                act.closing = true;
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        log::debug!(
            "session {} ({}): closed after {} requests",
            self.id,
            P::NAME,
            self.requests
        );
    }
}

type Decoded<P> = Result<<<P as Protocol>::Codec as Decoder>::Item, ProtoError>;

impl<P: Protocol> StreamHandler<Decoded<P>> for Session<P> {
    fn handle(&mut self, item: Decoded<P>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.last_active = Instant::now();
        match item {
            Ok(item) => {
                self.requests += 1;
                let reply = self.protocol.respond(item, self.id);
                self.inflight.push_back(reply);
                self.start_pump(ctx);
                if self.inflight.len() >= MAX_INFLIGHT || self.out.len() >= OUT_HIGH_WATER {
                    ctx.wait(Pump {
                        relieve_at: Some(MAX_INFLIGHT / 2),
                    });
                }
            }
            // Shutdown: every request read before it has been handed over.
            Err(_) if self.stop.is_cancelled() => self.stop_reading(ctx),
            Err(e) => {
                log::info!("session {} ({}): {e}", self.id, P::NAME);
                self.protocol.stream_error(&e, &mut self.out);
                self.start_pump(ctx);
                self.stop_reading(ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.read_handle = None;
        self.closing = true;
        self.finish_if_done(ctx);
    }
}

/// A session's read half that fails once shutdown begins. The decoder in
/// front of it still hands over every request already in its buffer first,
/// so a session answers everything it has read and nothing half-read (end of
/// input instead would make the line codec take an unterminated last line
/// for a request).
pub struct UntilStop {
    inner: ReadHalf,
    stop: CancellationToken,
    /// Polled only before the session sleeps on the socket: registering
    /// with the shared token on every read would serialize the sessions.
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl UntilStop {
    fn new(inner: ReadHalf, stop: &CancellationToken) -> UntilStop {
        UntilStop {
            inner,
            stop: stop.clone(),
            stopped: Box::pin(stop.clone().cancelled_owned()),
        }
    }
}

impl AsyncRead for UntilStop {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stopping = || Poll::Ready(Err(io::Error::other("server stopping")));
        if self.stop.is_cancelled() {
            return stopping();
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending if self.stopped.as_mut().poll(cx).is_ready() => stopping(),
            other => other,
        }
    }
}
