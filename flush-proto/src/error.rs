//! The one error type of this crate.

use thiserror::Error;

/// Why bytes from a peer could not be decoded.
///
/// Framing errors that the server can answer and resynchronise from (an
/// over-long line, an unknown verb) are not errors of the stream: decoders
/// yield them as items. `ProtoError` is for what ends a connection.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The underlying socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A Postfix attribute list broke a limit or the format.
    #[error("malformed attribute list: {0}")]
    Attr(&'static str),
    /// The peer closed the connection in the middle of a request.
    #[error("connection closed in the middle of a request")]
    Truncated,
    /// A reply line from a server could not be parsed (client side).
    #[error("malformed reply: {0}")]
    Reply(String),
}
