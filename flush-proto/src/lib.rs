//! Wire formats of flushd, and nothing else: no sockets, no actors, no file system.
//!
//! Two protocols carry the same requests of Postfix's fast flush service
//! (`src/flush/flush.c`, `src/global/flush_clnt.c`):
//! - [`mod@line`]: flushd's own persistent, pipelined line protocol;
//! - [`attr`]: Postfix's attribute lists (`attr_print0`/`attr_scan0`) as
//!   spoken on `public/flush` by smtpd, postqueue and the delivery agents.
//!
//! Both decode into the same [`Request`] and answer with the same [`Status`].
#![deny(rust_2018_idioms)]

pub mod attr;
mod error;
pub mod line;
mod queue_id;
mod reply;
pub mod request;
mod status;

pub use attr::{PostfixClientCodec, PostfixItem, PostfixOut, PostfixReply, PostfixServerCodec};
pub use error::ProtoError;
pub use line::{ClientCodec, LineCodec, DEFAULT_MAX_LINE};
pub use queue_id::{validate_queue_id, MAX_QUEUE_ID_LEN};
pub use reply::Reply;
pub use request::Request;
pub use status::Status;
