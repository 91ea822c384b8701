//! The two protocols a [`Session`](super::session::Session) can speak.
//!
//! A protocol says how to decode a connection's bytes, what to send first,
//! and how one decoded item becomes the bytes of its reply; the session does
//! the rest (ordering, backpressure, timeouts) the same way for both.

use super::services::Services;
use super::GatewayStats;
use bytes::{Bytes, BytesMut};
use flush_proto::attr::{encode_status, status_reply, PostfixItem, PostfixServerCodec};
use flush_proto::line::{encode_reply, reply_line, LineCodec};
use flush_proto::request::Verb;
use flush_proto::{ProtoError, Reply, Request, Status};
use futures_util::future::LocalBoxFuture;
use std::rc::Rc;
use std::sync::Arc;
use tokio_util::codec::Decoder;

/// What a session needs to know about its protocol.
pub trait Protocol: Unpin + 'static {
    /// Decodes the connection's bytes into items.
    type Codec: Decoder<Error = ProtoError> + Unpin + 'static;
    /// For logs and stats: `line` or `postfix`.
    const NAME: &'static str;
    /// Postfix clients send one request per connection: such a connection
    /// is served by `gateway::one_request`, not a session.
    const ONE_REQUEST: bool;
    /// A fresh decoder for a new connection.
    fn codec(&self) -> Self::Codec;
    /// Bytes sent as soon as a client connects.
    fn greeting(&self, out: &mut BytesMut);
    /// The future of the reply to one item (`None`: no reply).
    fn respond(
        &self,
        item: <Self::Codec as Decoder>::Item,
        session: u64,
    ) -> LocalBoxFuture<'static, Option<Bytes>>;
    /// What to write, if anything, when the stream fails to decode.
    fn stream_error(&self, error: &ProtoError, out: &mut BytesMut);
}

/// Shared by every session of one listener.
#[derive(Clone)]
pub struct Shared {
    /// Carries out requests.
    pub services: Rc<Services>,
    /// Counts requests and connections.
    pub stats: Arc<GatewayStats>,
}

impl Shared {
    /// Runs a request and counts it under its verb and status.
    async fn run(self, request: Request) -> Reply {
        let verb = request.verb();
        let reply = self.services.execute(request).await;
        self.stats.count(Some(verb), reply.status);
        reply
    }
}

/// flushd's line protocol (PROTOCOL.md section 1).
#[derive(Clone)]
pub struct LineProtocol {
    /// Services and counters.
    pub shared: Shared,
    /// Longest request line.
    pub max_line: usize,
}

impl Protocol for LineProtocol {
    type Codec = LineCodec;
    const NAME: &'static str = "line";
    const ONE_REQUEST: bool = false;

    fn codec(&self) -> LineCodec {
        LineCodec::new(self.max_line)
    }

    fn greeting(&self, _: &mut BytesMut) {}

    fn respond(
        &self,
        item: Result<Request, String>,
        session: u64,
    ) -> LocalBoxFuture<'static, Option<Bytes>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let reply = match item {
                Ok(request) => {
                    log::debug!("session {session}: {}", safe_form(&request));
                    shared.run(request).await
                }
                Err(reason) => {
                    shared.stats.count(None, Status::Bad);
                    Reply::new(Status::Bad, reason)
                }
            };
            Some(reply_line(&reply))
        })
    }

    fn stream_error(&self, error: &ProtoError, out: &mut BytesMut) {
        encode_reply(&Reply::new(Status::Fail, error.to_string()), out);
    }
}

/// Postfix's flush protocol on `public/flush` (PROTOCOL.md section 2).
#[derive(Clone)]
pub struct PostfixProtocol {
    /// Services and counters.
    pub shared: Shared,
}

impl Protocol for PostfixProtocol {
    type Codec = PostfixServerCodec;
    const NAME: &'static str = "postfix";
    const ONE_REQUEST: bool = true;

    fn codec(&self) -> PostfixServerCodec {
        PostfixServerCodec::new()
    }

    fn greeting(&self, out: &mut BytesMut) {
        out.extend_from_slice(&flush_proto::attr::announcement());
    }

    fn respond(&self, item: PostfixItem, session: u64) -> LocalBoxFuture<'static, Option<Bytes>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let status = match item {
                PostfixItem::Request { request, warnings } => {
                    for warning in warnings {
                        log::warn!("session {session} (postfix): {warning}");
                    }
                    log::debug!("session {session} (postfix): {}", safe_form(&request));
                    shared.run(request).await.status
                }
                PostfixItem::Trigger(trigger) if trigger == "W" => {
                    log::debug!("session {session} (postfix): master wakeup");
                    let reply = shared.services.wakeup().await;
                    shared.stats.count(Some(Verb::Refresh), reply.status);
                    reply.status
                }
                PostfixItem::Trigger(trigger) => {
                    log::warn!("session {session} (postfix): unknown trigger {trigger:?}");
                    shared.stats.count(None, Status::Bad);
                    Status::Bad
                }
                PostfixItem::Bad(reason) => {
                    log::warn!("session {session} (postfix): bad request: {reason}");
                    shared.stats.count(None, Status::Bad);
                    Status::Bad
                }
                PostfixItem::Unknown(name) => {
                    log::warn!("session {session} (postfix): unknown request {name}");
                    shared.stats.count(None, Status::Bad);
                    Status::Bad
                }
            };
            Some(status_reply(status))
        })
    }

    fn stream_error(&self, _: &ProtoError, out: &mut BytesMut) {
        // flush(8) answers a request it could not read with status BAD.
        encode_status(out, Status::Bad);
    }
}

/// A request as it may appear in the log: the verb, the site and queue ID
/// shortened and stripped of control characters.
fn safe_form(request: &Request) -> String {
    use flush_proto::request::printable;
    match request {
        Request::Add(add) => format!(
            "add {} {}",
            printable(&add.site, 64),
            printable(&add.queue_id, 32)
        ),
        Request::SendSite(send) => format!("send_site {}", printable(&send.site, 64)),
        Request::SendFile(send) => format!("send_file {}", printable(&send.queue_id, 32)),
        other => other.verb().to_string(),
    }
}
