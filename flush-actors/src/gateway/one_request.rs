//! A connection that carries exactly one request, as every Postfix client's
//! does: greeting, request, reply, close.
//!
//! Such a connection has nothing to pipeline, order or throttle, so it is a
//! plain task rather than a [`Session`](super::session::Session) actor: no
//! mailbox, no reply queue, no interval timer, and no read past the request.
//! At flushd's rates the per-connection overhead is what a busy relay pays,
//! once per deferred message.

use super::listener::{OpenConnection, SessionLimits};
use super::protocol::Protocol;
use super::session::{ReadHalf, WriteHalf};
use bytes::BytesMut;
use flush_proto::ProtoError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::Decoder;

/// Bytes read at a time; a Postfix request is well under this.
const READ_SIZE: usize = 512;

/// What came in on the connection.
enum Incoming<Item> {
    /// A whole request.
    Item(Item),
    /// Bytes that cannot be a request.
    Broken(ProtoError),
    /// The client left, the server is stopping, or the client said nothing
    /// for the idle timeout: nothing to answer.
    Nothing(&'static str),
}

/// Serves one connection of a one-request protocol to its end. `permit` is
/// its place under the connection limit.
pub async fn serve<P: Protocol>(
    protocol: P,
    (mut reader, mut writer): (ReadHalf, WriteHalf),
    limits: SessionLimits,
    permit: OwnedSemaphorePermit,
) {
    let _open = OpenConnection::new(&limits.stats, permit);
    let id = limits.stats.next_session_id();
    let mut out = BytesMut::new();
    protocol.greeting(&mut out);
    let incoming = tokio::select! {
        () = limits.stop.cancelled() => Incoming::Nothing("server stopping"),
        read = actix_rt::time::timeout(
            limits.idle_timeout,
            greet_and_read(&protocol, &mut reader, &mut writer, &out),
        ) => read.unwrap_or(Incoming::Nothing("idle timeout")),
    };
    out.clear();
    match incoming {
        // Once read, a request is carried out and answered even while the
        // server stops, as a session answers what it has read.
        Incoming::Item(item) => match protocol.respond(item, id).await {
            Some(reply) => out.extend_from_slice(&reply),
            None => return,
        },
        Incoming::Broken(e) => {
            log::info!("session {id} ({}): {e}", P::NAME);
            protocol.stream_error(&e, &mut out);
        }
        Incoming::Nothing(why) => {
            log::debug!(
                "session {id} ({}): closed without a request: {why}",
                P::NAME
            );
            return;
        }
    }
    let written = actix_rt::time::timeout(limits.idle_timeout, writer.write_all(&out)).await;
    if !matches!(written, Ok(Ok(()))) {
        log::debug!("session {id} ({}): peer gone before the reply", P::NAME);
    }
}

/// Sends the greeting, then reads until one whole item (or end of input).
async fn greet_and_read<P: Protocol>(
    protocol: &P,
    reader: &mut ReadHalf,
    writer: &mut WriteHalf,
    greeting: &[u8],
) -> Incoming<<P::Codec as Decoder>::Item> {
    if writer.write_all(greeting).await.is_err() {
        return Incoming::Nothing("peer gone before the greeting");
    }
    let mut codec = protocol.codec();
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(item)) => return Incoming::Item(item),
            Ok(None) => {}
            Err(e) => return Incoming::Broken(e),
        }
        buf.reserve(READ_SIZE);
        match reader.read_buf(&mut buf).await {
            Ok(0) => {
                return match codec.decode_eof(&mut buf) {
                    Ok(Some(item)) => Incoming::Item(item),
                    Ok(None) => Incoming::Nothing("end of input"),
                    Err(e) => Incoming::Broken(e),
                }
            }
            Ok(_) => {}
            Err(_) => return Incoming::Nothing("read error"),
        }
    }
}
