//! The client side of Postfix's flush protocol, for flush-bench and tests:
//! send a request as `flush_clnt.c` does, read the server's two lists.
//!
//! Mirrors `mail_command_client()` in `src/global/mail_command_client.c`:
//! read the announcement, send the request, read `status`.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::{
    encode_request, StringReader, ATTR_PROTOCOL, ATTR_STATUS, MAX_ATTRS, MAX_ATTR_NAME,
    MAX_ATTR_VALUE, NAME_TOO_LONG, VALUE_TOO_LONG,
};
use crate::{ProtoError, Request, Status};

/// One list from a flush server, as [`PostfixClientCodec`] decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostfixReply {
    /// The value of `protocol` in the first list. Postfix clients give up
    /// unless it is [`FLUSH_PROTOCOL`](super::FLUSH_PROTOCOL).
    Announcement(String),
    /// The `status` of the second list.
    Status(Status),
}

/// Reads whole attribute lists, within the limits of [`super`].
#[derive(Debug, Clone, Default)]
struct ListReader {
    reader: StringReader,
    /// A name whose value has not arrived yet.
    name: Option<BytesMut>,
    attrs: Vec<(BytesMut, BytesMut)>,
}

impl ListReader {
    /// The next complete list, or `None` until its terminator arrives.
    fn next(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Vec<(BytesMut, BytesMut)>>, ProtoError> {
        loop {
            match self.name.take() {
                None => {
                    let Some(name) = self.reader.next(src, MAX_ATTR_NAME, NAME_TOO_LONG)? else {
                        return Ok(None);
                    };
                    if name.is_empty() {
                        return Ok(Some(std::mem::take(&mut self.attrs)));
                    }
                    if self.attrs.len() >= MAX_ATTRS {
                        return Err(ProtoError::Attr("more than 16 attributes in a list"));
                    }
                    self.name = Some(name);
                }
                Some(name) => match self.reader.next(src, MAX_ATTR_VALUE, VALUE_TOO_LONG)? {
                    Some(value) => self.attrs.push((name, value)),
                    None => {
                        self.name = Some(name);
                        return Ok(None);
                    }
                },
            }
        }
    }

    /// Whether part of a list has been read.
    fn in_progress(&self) -> bool {
        self.name.is_some() || !self.attrs.is_empty()
    }
}

/// Which list comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Announcement,
    Status,
    Done,
}

/// Client side of one Postfix flush connection: encodes the request
/// ([`encode_request`]) and decodes the server's lists, first a
/// [`PostfixReply::Announcement`], then a [`PostfixReply::Status`]; after
/// that it yields nothing more (one request per connection, as in Postfix).
///
/// As with `attr_scan0()` in strict mode, the wanted attribute must come
/// first in its list; attributes after it are skipped. Lists are bounded by
/// the limits of [`super`].
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::attr::{PostfixClientCodec, PostfixReply, FLUSH_PROTOCOL};
/// use flush_proto::{Request, Status};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = PostfixClientCodec::new();
/// let mut input = BytesMut::from(&b"protocol\0queue_flush_protocol\0\0status\x004\0\0"[..]);
/// assert_eq!(
///     codec.decode(&mut input).unwrap(),
///     Some(PostfixReply::Announcement(FLUSH_PROTOCOL.to_string()))
/// );
/// let mut out = BytesMut::new();
/// codec.encode(&Request::parse_line("send_site relay.test").unwrap(), &mut out).unwrap();
/// assert_eq!(codec.decode(&mut input).unwrap(), Some(PostfixReply::Status(Status::Deny)));
/// ```
#[derive(Debug, Clone)]
pub struct PostfixClientCodec {
    expect: Expect,
    lists: ListReader,
}

impl PostfixClientCodec {
    /// A codec for a new connection.
    pub fn new() -> PostfixClientCodec {
        PostfixClientCodec {
            expect: Expect::Announcement,
            lists: ListReader::default(),
        }
    }
}

impl Default for PostfixClientCodec {
    fn default() -> PostfixClientCodec {
        PostfixClientCodec::new()
    }
}

/// The value of `wanted` if it is the first attribute of `attrs`.
fn first_value<'a>(
    attrs: &'a [(BytesMut, BytesMut)],
    wanted: &str,
    missing: &'static str,
) -> Result<&'a [u8], ProtoError> {
    match attrs.first() {
        Some((name, value)) if &name[..] == wanted.as_bytes() => Ok(value),
        _ => Err(ProtoError::Attr(missing)),
    }
}

/// Parses a status number as `attr_scan0()` reads an int: unsigned decimal.
fn parse_status(value: &[u8]) -> Result<Status, ProtoError> {
    let code = std::str::from_utf8(value)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u32>().ok())
        .ok_or(ProtoError::Attr("status is not a number"))?;
    Status::from_postfix_code(code).ok_or(ProtoError::Attr("unknown status number"))
}

impl Decoder for PostfixClientCodec {
    type Item = PostfixReply;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PostfixReply>, ProtoError> {
        if self.expect == Expect::Done {
            src.clear();
            return Ok(None);
        }
        let Some(attrs) = self.lists.next(src)? else {
            return Ok(None);
        };
        match self.expect {
            Expect::Announcement => {
                let value = first_value(&attrs, ATTR_PROTOCOL, "announcement without protocol")?;
                let protocol = String::from_utf8_lossy(value).into_owned();
                self.expect = Expect::Status;
                Ok(Some(PostfixReply::Announcement(protocol)))
            }
            Expect::Status | Expect::Done => {
                let value = first_value(&attrs, ATTR_STATUS, "reply without status")?;
                let status = parse_status(value)?;
                self.expect = Expect::Done;
                Ok(Some(PostfixReply::Status(status)))
            }
        }
    }

    /// # Errors
    /// [`ProtoError::Truncated`] if the server closed in the middle of a list.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<PostfixReply>, ProtoError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        if !src.is_empty() || self.lists.in_progress() {
            src.clear();
            return Err(ProtoError::Truncated);
        }
        Ok(None)
    }
}

impl Encoder<&Request> for PostfixClientCodec {
    type Error = ProtoError;

    /// # Errors
    /// [`ProtoError::Attr`] for `stats`, which Postfix does not have.
    fn encode(&mut self, request: &Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        encode_request(dst, request)
    }
}

impl Encoder<Request> for PostfixClientCodec {
    type Error = ProtoError;

    fn encode(&mut self, request: Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        encode_request(dst, &request)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::attr::{announcement, encode_attrs, encode_status, PostfixServerCodec};
    use crate::attr::{PostfixItem, FLUSH_PROTOCOL};
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Result<Vec<PostfixReply>, ProtoError> {
        let mut codec = PostfixClientCodec::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf)? {
            out.push(item);
        }
        while let Some(item) = codec.decode_eof(&mut buf)? {
            out.push(item);
        }
        Ok(out)
    }

    fn server_bytes(status: Status) -> BytesMut {
        let mut buf = BytesMut::from(&announcement()[..]);
        encode_status(&mut buf, status);
        buf
    }

    #[test]
    fn every_status_round_trips_split_anywhere() {
        for status in Status::ALL {
            let wire = server_bytes(status);
            let want = vec![
                PostfixReply::Announcement(FLUSH_PROTOCOL.to_string()),
                PostfixReply::Status(status),
            ];
            for cut in 0..=wire.len() {
                let mut codec = PostfixClientCodec::new();
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for part in [&wire[..cut], &wire[cut..]] {
                    buf.extend_from_slice(part);
                    while let Some(item) = codec.decode(&mut buf).unwrap() {
                        got.push(item);
                    }
                }
                assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
                assert_eq!(got, want, "{status} cut at {cut}");
            }
        }
    }

    #[test]
    fn extra_attributes_after_the_wanted_one_are_skipped() {
        let mut wire = BytesMut::new();
        encode_attrs(&mut wire, &[("protocol", "other"), ("x", "y")]);
        encode_attrs(&mut wire, &[("status", "0"), ("reason", "fine")]);
        assert_eq!(
            decode_all(&wire).unwrap(),
            vec![
                PostfixReply::Announcement("other".into()),
                PostfixReply::Status(Status::Ok)
            ]
        );
    }

    #[test]
    fn malformed_replies_are_errors() {
        for lists in [
            vec![vec![("status", "0")]],
            vec![vec![("protocol", FLUSH_PROTOCOL)], vec![]],
            vec![
                vec![("protocol", FLUSH_PROTOCOL)],
                vec![("x", "1"), ("status", "0")],
            ],
            vec![vec![("protocol", FLUSH_PROTOCOL)], vec![("status", "1")]],
            vec![vec![("protocol", FLUSH_PROTOCOL)], vec![("status", "-1")]],
            vec![vec![("protocol", FLUSH_PROTOCOL)], vec![("status", "")]],
            vec![
                vec![("protocol", FLUSH_PROTOCOL)],
                vec![("status", "99999999999")],
            ],
        ] {
            let mut wire = BytesMut::new();
            for list in &lists {
                encode_attrs(&mut wire, list);
            }
            assert!(
                matches!(decode_all(&wire), Err(ProtoError::Attr(_))),
                "{lists:?}"
            );
        }
        assert!(matches!(
            decode_all(b"protocol\0queue_flush_protocol\0\0status\x000\0"),
            Err(ProtoError::Truncated)
        ));
    }

    #[test]
    fn list_limits() {
        let mut wire = BytesMut::new();
        let attrs: Vec<(String, String)> = (0..MAX_ATTRS)
            .map(|i| (format!("a{i}"), "v".into()))
            .collect();
        let mut refs: Vec<(&str, &str)> = vec![("protocol", FLUSH_PROTOCOL)];
        refs.extend(
            attrs
                .iter()
                .take(MAX_ATTRS - 1)
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        encode_attrs(&mut wire, &refs);
        assert_eq!(
            decode_all(&wire).unwrap().len(),
            1,
            "16 attributes are fine"
        );
        refs.push(("one_more", "v"));
        wire.clear();
        encode_attrs(&mut wire, &refs);
        assert!(matches!(decode_all(&wire), Err(ProtoError::Attr(_))));
        let long = format!("protocol\0{}\0\0", "v".repeat(MAX_ATTR_VALUE + 1));
        assert!(matches!(
            decode_all(long.as_bytes()),
            Err(ProtoError::Attr(_))
        ));
    }

    #[test]
    fn client_and_server_agree() {
        let mut client = PostfixClientCodec::new();
        for line in [
            "add relay.test ABC",
            "send_site relay.test",
            "send_file ABC",
            "refresh",
            "purge",
        ] {
            let request = Request::parse_line(line).unwrap();
            let mut wire = BytesMut::new();
            client.encode(&request, &mut wire).unwrap();
            let item = PostfixServerCodec::new().decode(&mut wire).unwrap();
            assert_eq!(
                item,
                Some(PostfixItem::Request {
                    request,
                    warnings: vec![]
                })
            );
        }
        let mut wire = BytesMut::new();
        assert!(client
            .encode(Request::parse_line("stats").unwrap(), &mut wire)
            .is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&bytes);
        }
    }
}
