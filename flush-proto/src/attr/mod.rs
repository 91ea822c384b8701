//! Postfix attribute lists (PROTOCOL.md section 2), the framing that real
//! Postfix programs speak on `public/flush`.
//!
//! Mirrors Postfix's default attribute encoding, `util/attr_print0.c` and
//! `util/attr_scan0.c`: each attribute is `name NUL value NUL`, and a list
//! ends with one extra NUL (an empty name). The attribute and request names
//! are those of `global/mail_proto.h` and `global/flush_clnt.h`.
//!
//! - this module: limits, names and the encoders;
//! - [`server`]: [`PostfixServerCodec`], flush(8)'s side of a connection;
//! - [`client`]: [`PostfixClientCodec`], the side of `flush_clnt.c`.
//!
//! Postfix bounds its strings by `line_length_limit`; we use our own, much
//! smaller limits, because no flush request needs more.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{ProtoError, Request, Status};

pub mod client;
pub mod server;

pub use client::{PostfixClientCodec, PostfixReply};
pub use server::{PostfixItem, PostfixOut, PostfixServerCodec};

/// Longest attribute name accepted, in bytes (without its NUL).
pub const MAX_ATTR_NAME: usize = 64;
/// Longest attribute value accepted, in bytes (without its NUL).
pub const MAX_ATTR_VALUE: usize = 4096;
/// Most attributes accepted in one list.
pub const MAX_ATTRS: usize = 16;

/// Name of the attribute of the server's announcement.
pub const ATTR_PROTOCOL: &str = "protocol";
/// Name of the attribute that carries the request name.
pub const ATTR_REQUEST: &str = "request";
/// Name of the attribute that carries the destination.
pub const ATTR_SITE: &str = "site";
/// Name of the attribute that carries a queue ID.
pub const ATTR_QUEUE_ID: &str = "queue_id";
/// Name of the attribute of the server's reply.
pub const ATTR_STATUS: &str = "status";
/// The protocol the flush service announces; Postfix clients insist on it.
pub const FLUSH_PROTOCOL: &str = "queue_flush_protocol";

/// The announcement, pre-encoded.
const ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";

/// The name of a request on Postfix's wire (`flush_clnt.h`); `None` for
/// `stats`, which Postfix does not have.
///
/// ```
/// use flush_proto::{attr::postfix_request_name, Request};
/// let refresh = Request::parse_line("refresh").unwrap();
/// assert_eq!(postfix_request_name(&refresh), Some("rfrsh"));
/// ```
pub fn postfix_request_name(request: &Request) -> Option<&'static str> {
    match request {
        Request::Add(_) => Some("add"),
        Request::SendSite(_) => Some("send_site"),
        Request::SendFile(_) => Some("send_file"),
        Request::Refresh(_) => Some("rfrsh"),
        Request::Purge(_) => Some("purge"),
        Request::Stats(_) => None,
    }
}

/// Appends one attribute list: every `(name, value)` pair, then the
/// terminating NUL.
///
/// Like Postfix, which sends C strings, a name or value ends at its first
/// NUL: anything after it is not sent. An empty name would end the list
/// early; callers pass the constant names of this module.
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::attr::encode_attrs;
/// let mut buf = BytesMut::new();
/// encode_attrs(&mut buf, &[("request", "send_site"), ("site", "relay.test")]);
/// assert_eq!(&buf[..], b"request\0send_site\0site\0relay.test\0\0");
/// ```
pub fn encode_attrs(dst: &mut BytesMut, attrs: &[(&str, &str)]) {
    let size: usize = attrs.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    dst.reserve(size + 1);
    for (name, value) in attrs {
        put_c_string(dst, name);
        put_c_string(dst, value);
    }
    dst.put_u8(0);
}

/// Writes `text` up to its first NUL, then a NUL.
fn put_c_string(dst: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    dst.put_slice(&bytes[..end]);
    dst.put_u8(0);
}

/// The list the server sends as soon as a client connects:
/// `protocol` = `queue_flush_protocol`.
///
/// ```
/// assert_eq!(&flush_proto::attr::announcement()[..], b"protocol\0queue_flush_protocol\0\0");
/// ```
pub fn announcement() -> Bytes {
    Bytes::from_static(ANNOUNCEMENT)
}

/// Appends the server's reply: `status` = the Postfix number of `status`,
/// printed unsigned as Postfix does (FAIL, -1, is `4294967295`).
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::{attr::encode_status, Status};
/// let mut buf = BytesMut::new();
/// encode_status(&mut buf, Status::Fail);
/// assert_eq!(&buf[..], b"status\x004294967295\x00\x00");
/// ```
pub fn encode_status(dst: &mut BytesMut, status: Status) {
    dst.extend_from_slice(&status_reply(status));
}

/// The server's reply to one request, as [`encode_status`] writes it: a
/// static list per status, not an allocation per connection.
///
/// ```
/// use flush_proto::{attr::status_reply, Status};
/// assert_eq!(&status_reply(Status::Ok)[..], b"status\x000\x00\x00");
/// ```
pub fn status_reply(status: Status) -> Bytes {
    Bytes::from_static(match status {
        Status::Ok => b"status\x000\x00\x00",
        Status::Fail => b"status\x004294967295\x00\x00",
        Status::Bad => b"status\x003\x00\x00",
        Status::Deny => b"status\x004\x00\x00",
    })
}

/// Appends a client request as `flush_clnt.c` sends it: `request`, then
/// `site` and/or `queue_id` in that order, in one list.
///
/// # Errors
/// [`ProtoError::Attr`] for [`Request::Stats`], which has no Postfix form;
/// nothing is written then.
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::{attr::encode_request, Request};
/// let mut buf = BytesMut::new();
/// encode_request(&mut buf, &Request::parse_line("add relay.test 3F2A41C0B1").unwrap()).unwrap();
/// assert_eq!(&buf[..], b"request\0add\0site\0relay.test\0queue_id\03F2A41C0B1\0\0");
/// assert!(encode_request(&mut buf, &Request::parse_line("stats").unwrap()).is_err());
/// ```
pub fn encode_request(dst: &mut BytesMut, request: &Request) -> Result<(), ProtoError> {
    let name =
        postfix_request_name(request).ok_or(ProtoError::Attr("stats has no Postfix form"))?;
    match request {
        Request::Add(add) => encode_attrs(
            dst,
            &[
                (ATTR_REQUEST, name),
                (ATTR_SITE, &add.site),
                (ATTR_QUEUE_ID, &add.queue_id),
            ],
        ),
        Request::SendSite(send) => {
            encode_attrs(dst, &[(ATTR_REQUEST, name), (ATTR_SITE, &send.site)]);
        }
        Request::SendFile(send) => {
            encode_attrs(
                dst,
                &[(ATTR_REQUEST, name), (ATTR_QUEUE_ID, &send.queue_id)],
            );
        }
        Request::Refresh(_) | Request::Purge(_) | Request::Stats(_) => {
            encode_attrs(dst, &[(ATTR_REQUEST, name)]);
        }
    }
    Ok(())
}

/// Takes NUL-terminated strings off the front of a buffer, remembering how
/// far it has searched so that a string arriving byte by byte is scanned once.
#[derive(Debug, Clone, Default)]
struct StringReader {
    searched: usize,
}

impl StringReader {
    /// The next string (without its NUL), taken off the buffer, or `None`
    /// until its NUL arrives.
    ///
    /// # Errors
    /// As [`StringReader::next_len`].
    fn next(
        &mut self,
        src: &mut BytesMut,
        max: usize,
        too_long: &'static str,
    ) -> Result<Option<BytesMut>, ProtoError> {
        Ok(self.next_len(src, max, too_long)?.map(|len| {
            let mut string = src.split_to(len + 1);
            string.truncate(len);
            string
        }))
    }

    /// The length of the next string, which is `src[..len]` with its NUL at
    /// `src[len]`, or `None` until its NUL arrives. The string stays in
    /// `src`: read it in place, then [`skip_string`] it, which costs no
    /// allocation (splitting a `BytesMut` does, the first time).
    ///
    /// # Errors
    /// [`ProtoError::Attr`] with `too_long` once more than `max` bytes came
    /// without a NUL: we never buffer more than `max + 1` bytes of one string.
    fn next_len(
        &mut self,
        src: &[u8],
        max: usize,
        too_long: &'static str,
    ) -> Result<Option<usize>, ProtoError> {
        let window = src.len().min(max.saturating_add(1));
        let start = self.searched.min(window);
        match memchr::memchr(0, &src[start..window]) {
            Some(offset) => {
                self.searched = 0;
                Ok(Some(start + offset))
            }
            None if window > max => Err(ProtoError::Attr(too_long)),
            None => {
                self.searched = window;
                Ok(None)
            }
        }
    }
}

/// Drops a string of `len` bytes and its NUL off the front of `src`.
fn skip_string(src: &mut BytesMut, len: usize) {
    src.advance(len + 1);
}

const NAME_TOO_LONG: &str = "attribute name longer than 64 bytes";
const VALUE_TOO_LONG: &str = "attribute value longer than 4096 bytes";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_encodings_are_byte_exact() {
        let cases: [(Status, &[u8]); 4] = [
            (Status::Ok, b"status\x000\x00\x00"),
            (Status::Fail, b"status\x004294967295\x00\x00"),
            (Status::Bad, b"status\x003\x00\x00"),
            (Status::Deny, b"status\x004\x00\x00"),
        ];
        for (status, want) in cases {
            let mut buf = BytesMut::new();
            encode_status(&mut buf, status);
            assert_eq!(&buf[..], want, "{status}");
            assert_eq!(&status_reply(status)[..], want, "{status}");
        }
    }

    #[test]
    fn request_encodings_are_byte_exact() {
        let cases: [(&str, &[u8]); 5] = [
            (
                "add relay.test ABC",
                b"request\0add\0site\0relay.test\0queue_id\0ABC\0\0",
            ),
            (
                "send_site relay.test",
                b"request\0send_site\0site\0relay.test\0\0",
            ),
            ("send_file ABC", b"request\0send_file\0queue_id\0ABC\0\0"),
            ("refresh", b"request\0rfrsh\0\0"),
            ("purge", b"request\0purge\0\0"),
        ];
        for (line, want) in cases {
            let mut buf = BytesMut::new();
            encode_request(&mut buf, &Request::parse_line(line).unwrap()).unwrap();
            assert_eq!(&buf[..], want, "{line}");
        }
        let mut buf = BytesMut::new();
        assert!(matches!(
            encode_request(&mut buf, &Request::parse_line("stats").unwrap()),
            Err(ProtoError::Attr(_))
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn strings_end_at_their_first_nul() {
        let mut buf = BytesMut::new();
        encode_attrs(&mut buf, &[("site", "a\0b")]);
        encode_attrs(&mut buf, &[]);
        assert_eq!(&buf[..], b"site\0a\0\0\0");
    }

    #[test]
    fn announcement_matches_encode_attrs() {
        let mut buf = BytesMut::new();
        encode_attrs(&mut buf, &[(ATTR_PROTOCOL, FLUSH_PROTOCOL)]);
        assert_eq!(&buf[..], &announcement()[..]);
    }

    #[test]
    fn string_reader_limits_and_resumes() {
        let mut reader = StringReader::default();
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(reader.next(&mut buf, 4, "long").unwrap(), None);
        buf.extend_from_slice(b"d\0e");
        assert_eq!(
            &reader.next(&mut buf, 4, "long").unwrap().unwrap()[..],
            b"abcd"
        );
        assert_eq!(&buf[..], b"e");
        buf.extend_from_slice(b"fghi");
        assert!(matches!(
            reader.next(&mut buf, 4, "long"),
            Err(ProtoError::Attr("long"))
        ));
        let mut buf = BytesMut::from(&b"\0"[..]);
        assert_eq!(&reader.next(&mut buf, 0, "long").unwrap().unwrap()[..], b"");
    }

    #[test]
    fn a_string_read_in_place_stays_until_skipped() {
        let mut reader = StringReader::default();
        let mut buf = BytesMut::from(&b"site\0relay.test\0"[..]);
        assert_eq!(reader.next_len(&buf, 64, "long").unwrap(), Some(4));
        assert_eq!(&buf[..4], b"site");
        assert_eq!(buf.len(), 16, "nothing taken off yet");
        skip_string(&mut buf, 4);
        assert_eq!(reader.next_len(&buf, 64, "long").unwrap(), Some(10));
        skip_string(&mut buf, 10);
        assert!(buf.is_empty());
        assert_eq!(reader.next_len(&buf, 64, "long").unwrap(), None);
    }
}
