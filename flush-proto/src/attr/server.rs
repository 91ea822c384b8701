//! The server side of Postfix's flush protocol: what flush(8) reads from a
//! client, and what it writes back.
//!
//! Mirrors `flush_request_receive()` and `flush_service()` in
//! `src/flush/flush.c`, and the way `util/attr_scan0.c` behaves under the
//! flags they pass: the `request` attribute is read with
//! `ATTR_FLAG_MORE | ATTR_FLAG_STRICT`, the rest of the list with
//! `ATTR_FLAG_STRICT`.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::{
    announcement, encode_status, skip_string, StringReader, ATTR_QUEUE_ID, ATTR_REQUEST, ATTR_SITE,
    MAX_ATTR_NAME, MAX_ATTR_VALUE, NAME_TOO_LONG, VALUE_TOO_LONG,
};
use crate::request::{printable, Add, Purge, Refresh, SendFile, SendSite};
use crate::{validate_queue_id, ProtoError, Request, Status};

/// What one Postfix connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostfixItem {
    /// master(8)'s wakeup or another short trigger (at most 2 bytes, e.g.
    /// `"W\0"`): the bytes before the NUL. flush(8) treats `W` like `rfrsh`
    /// (it answers status OK and refreshes) and closes on anything else.
    Trigger(String),
    /// A request, with warnings to log (e.g. an extra trailing attribute,
    /// which flush(8) accepts).
    Request {
        /// The decoded request.
        request: Request,
        /// Log-safe notes about what was tolerated.
        warnings: Vec<String>,
    },
    /// A request that flush(8) answers with status 3 (BAD): a missing or
    /// misordered attribute, an invalid queue ID, the peer gone mid-request;
    /// the reason is for the log.
    Bad(String),
    /// A request name flush(8) does not know (it closes without a reply;
    /// flushd answers BAD). Shown in a log-safe form.
    Unknown(String),
}

/// What the server writes on a Postfix connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostfixOut {
    /// `protocol` = `queue_flush_protocol`, sent as soon as a client connects.
    Announcement,
    /// `status` = N, the answer to the request.
    Status(Status),
}

impl From<Status> for PostfixOut {
    fn from(status: Status) -> PostfixOut {
        PostfixOut::Status(status)
    }
}

/// The requests that carry attributes after `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WithArgs {
    Add,
    SendSite,
    SendFile,
}

impl WithArgs {
    /// The attributes flush(8) asks for, in the order it asks for them.
    fn wanted(self) -> &'static [&'static str] {
        match self {
            WithArgs::Add => &[ATTR_SITE, ATTR_QUEUE_ID],
            WithArgs::SendSite => &[ATTR_SITE],
            WithArgs::SendFile => &[ATTR_QUEUE_ID],
        }
    }
}

/// Where the decoder is in the one request of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The first string: the name `request`, or a trigger.
    First,
    /// The value of `request`.
    RequestValue,
    /// The name of the next wanted attribute, or the list terminator.
    Name(WithArgs),
    /// The value of the attribute just named.
    Value(WithArgs),
    /// One item was yielded; everything else is ignored.
    Done,
}

/// Decodes the one request of a Postfix flush connection; encodes the
/// announcement and the status reply.
///
/// Postfix clients send one request per connection and flush(8) reads just
/// one, so after yielding one [`PostfixItem`] this decoder yields nothing
/// more: later bytes are dropped unread. Use a new codec per connection.
///
/// Like flush(8), it decides on the first NUL-terminated string: the
/// attribute name `request` starts an attribute list, a string of at most
/// one byte (master's `W`) is a trigger, anything else is BAD. flush(8)
/// tells the two apart by the size of the first read (at most 2 bytes is a
/// trigger); deciding on the first string gives the same answer for what
/// Postfix programs send, without depending on how the bytes were split.
///
/// Within the list it follows `attr_scan0()` as flush(8) calls it:
/// attributes must come in the order asked (`site` then `queue_id` for
/// `add`; `site` for `send_site`; `queue_id` for `send_file`; nothing for
/// `rfrsh` and `purge`, which are answered without waiting for the rest of
/// the list); another name where one is wanted, or the end of the list, is
/// BAD. Where flush(8) wants the list terminator, another attribute name
/// makes `attr_scan0()` warn and stop, still reporting success, so the
/// request is carried out: we yield it at once with a warning. The site is
/// passed through as sent (it must be UTF-8), the queue ID must pass
/// [`validate_queue_id`].
///
/// A name longer than [`MAX_ATTR_NAME`] or a value
/// longer than [`MAX_ATTR_VALUE`] bytes is a
/// [`ProtoError::Attr`], which ends the connection; at most four
/// attributes are read, so the list length needs no other bound.
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::attr::{PostfixItem, PostfixServerCodec};
/// use flush_proto::Request;
/// use tokio_util::codec::Decoder;
///
/// let mut codec = PostfixServerCodec::new();
/// let mut buf = BytesMut::from(&b"request\0send_site\0site\0relay.test\0"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap(), None); // waits for the terminator
/// buf.extend_from_slice(b"\0");
/// assert_eq!(
///     codec.decode(&mut buf).unwrap(),
///     Some(PostfixItem::Request {
///         request: Request::parse_line("send_site relay.test").unwrap(),
///         warnings: vec![],
///     })
/// );
///
/// let mut trigger = BytesMut::from(&b"W\0"[..]);
/// let item = PostfixServerCodec::new().decode(&mut trigger).unwrap();
/// assert_eq!(item, Some(PostfixItem::Trigger("W".into())));
/// ```
#[derive(Debug, Clone)]
pub struct PostfixServerCodec {
    stage: Stage,
    reader: StringReader,
    /// Values of the wanted attributes received so far (at most two).
    values: Vec<Vec<u8>>,
}

impl PostfixServerCodec {
    /// A codec for a new connection.
    pub fn new() -> PostfixServerCodec {
        PostfixServerCodec {
            stage: Stage::First,
            reader: StringReader::default(),
            values: Vec::new(),
        }
    }

    /// Ends decoding with `item`.
    fn finish(&mut self, item: PostfixItem) -> Result<Option<PostfixItem>, ProtoError> {
        self.stage = Stage::Done;
        self.values.clear();
        Ok(Some(item))
    }

    /// Builds the request from the collected values, as flush(8) does once
    /// `attr_scan()` has returned.
    fn build(&mut self, kind: WithArgs, warnings: Vec<String>) -> PostfixItem {
        let values = std::mem::take(&mut self.values);
        match request_from(kind, values) {
            Ok(request) => PostfixItem::Request { request, warnings },
            Err(reason) => PostfixItem::Bad(reason),
        }
    }
}

/// The request of `kind` from the values of its wanted attributes, in order.
fn request_from(kind: WithArgs, values: Vec<Vec<u8>>) -> Result<Request, String> {
    let mut values = values.into_iter();
    // The stages only get here with every wanted value present.
    let mut value = || {
        values
            .next()
            .ok_or_else(|| "internal error: wrong attribute count".to_string())
    };
    Ok(match kind {
        WithArgs::Add => {
            let site = site_string(value()?)?;
            Request::Add(Add::new(site, queue_id(value()?)?))
        }
        WithArgs::SendSite => Request::SendSite(SendSite::new(site_string(value()?)?)),
        WithArgs::SendFile => Request::SendFile(SendFile::new(queue_id(value()?)?)),
    })
}

impl Default for PostfixServerCodec {
    fn default() -> PostfixServerCodec {
        PostfixServerCodec::new()
    }
}

/// A received name, quoted and safe to log.
fn shown(bytes: &[u8]) -> String {
    format!("\"{}\"", printable(&String::from_utf8_lossy(bytes), 64))
}

fn site_string(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| "site is not UTF-8".to_string())
}

fn queue_id(bytes: Vec<u8>) -> Result<String, String> {
    let id = String::from_utf8(bytes).map_err(|_| "queue ID is not UTF-8".to_string())?;
    validate_queue_id(&id).map_err(|why| format!("{why}: {}", shown(id.as_bytes())))?;
    Ok(id)
}

impl Decoder for PostfixServerCodec {
    type Item = PostfixItem;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PostfixItem>, ProtoError> {
        loop {
            match self.stage {
                Stage::Done => {
                    src.clear();
                    return Ok(None);
                }
                Stage::First => {
                    let Some(len) = self.reader.next_len(src, MAX_ATTR_NAME, NAME_TOO_LONG)? else {
                        return Ok(None);
                    };
                    let first = &src[..len];
                    if first == ATTR_REQUEST.as_bytes() {
                        skip_string(src, len);
                        self.stage = Stage::RequestValue;
                    } else if first.len() <= 1 {
                        let trigger = String::from_utf8_lossy(first).into_owned();
                        return self.finish(PostfixItem::Trigger(trigger));
                    } else {
                        return self.finish(PostfixItem::Bad(format!(
                            "unexpected attribute {} (expecting {ATTR_REQUEST})",
                            shown(first)
                        )));
                    }
                }
                Stage::RequestValue => {
                    let Some(len) = self.reader.next_len(src, MAX_ATTR_VALUE, VALUE_TOO_LONG)?
                    else {
                        return Ok(None);
                    };
                    let name = &src[..len];
                    let plain = |request| PostfixItem::Request {
                        request,
                        warnings: Vec::new(),
                    };
                    self.stage = match name {
                        b"add" => Stage::Name(WithArgs::Add),
                        b"send_site" => Stage::Name(WithArgs::SendSite),
                        b"send_file" => Stage::Name(WithArgs::SendFile),
                        b"rfrsh" => return self.finish(plain(Request::Refresh(Refresh))),
                        b"purge" => return self.finish(plain(Request::Purge(Purge))),
                        // flush(8) compares the request name with the wakeup
                        // string as well, so `request=W` is a wakeup too.
                        b"W" => return self.finish(PostfixItem::Trigger("W".to_string())),
                        other => return self.finish(PostfixItem::Unknown(shown(other))),
                    };
                    skip_string(src, len);
                }
                Stage::Name(kind) => {
                    let Some(len) = self.reader.next_len(src, MAX_ATTR_NAME, NAME_TOO_LONG)? else {
                        return Ok(None);
                    };
                    let name = &src[..len];
                    let Some(wanted) = kind.wanted().get(self.values.len()) else {
                        // Every wanted attribute is in; flush(8) wants the terminator.
                        let mut warnings = Vec::new();
                        if !name.is_empty() {
                            warnings.push(format!(
                                "unexpected attribute {} after the request (ignored, as flush(8) does)",
                                shown(name)
                            ));
                        }
                        let item = self.build(kind, warnings);
                        return self.finish(item);
                    };
                    if name.is_empty() {
                        return self
                            .finish(PostfixItem::Bad(format!("missing attribute {wanted}")));
                    }
                    if name != wanted.as_bytes() {
                        return self.finish(PostfixItem::Bad(format!(
                            "unexpected attribute {} (expecting {wanted})",
                            shown(name)
                        )));
                    }
                    skip_string(src, len);
                    self.stage = Stage::Value(kind);
                }
                Stage::Value(kind) => {
                    let Some(len) = self.reader.next_len(src, MAX_ATTR_VALUE, VALUE_TOO_LONG)?
                    else {
                        return Ok(None);
                    };
                    self.values.push(src[..len].to_vec());
                    skip_string(src, len);
                    self.stage = Stage::Name(kind);
                }
            }
        }
    }

    /// At the end of the stream: a connection that sent nothing just ends;
    /// one that stopped in the middle of its request is BAD, the status
    /// flush(8) tries to send when `attr_scan()` hits the end of input.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<PostfixItem>, ProtoError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        match self.stage {
            Stage::Done => Ok(None),
            Stage::First if src.is_empty() => Ok(None),
            _ => {
                src.clear();
                self.finish(PostfixItem::Bad(
                    "premature end of input in the middle of the request".to_string(),
                ))
            }
        }
    }
}

impl Encoder<PostfixOut> for PostfixServerCodec {
    type Error = ProtoError;

    fn encode(&mut self, out: PostfixOut, dst: &mut BytesMut) -> Result<(), ProtoError> {
        match out {
            PostfixOut::Announcement => dst.extend_from_slice(&announcement()),
            PostfixOut::Status(status) => encode_status(dst, status),
        }
        Ok(())
    }
}

impl Encoder<Status> for PostfixServerCodec {
    type Error = ProtoError;

    fn encode(&mut self, status: Status, dst: &mut BytesMut) -> Result<(), ProtoError> {
        encode_status(dst, status);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::attr::{encode_attrs, encode_request};
    use proptest::prelude::*;

    /// Decodes `input` in one buffer, then at EOF.
    fn decode(input: &[u8]) -> Option<PostfixItem> {
        decode_split(input, &[])
    }

    /// Decodes `input` fed in pieces cut at `cuts`, then EOF; checks that
    /// at most one item comes out.
    fn decode_split(input: &[u8], cuts: &[usize]) -> Option<PostfixItem> {
        let mut codec = PostfixServerCodec::new();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            buf.extend_from_slice(&input[from..cut]);
            from = cut;
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            items.push(item);
        }
        assert!(items.len() <= 1, "{items:?}");
        items.pop()
    }

    fn ok(line: &str) -> Option<PostfixItem> {
        Some(PostfixItem::Request {
            request: Request::parse_line(line).unwrap(),
            warnings: Vec::new(),
        })
    }

    fn list(attrs: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_attrs(&mut buf, attrs);
        buf.to_vec()
    }

    fn is_bad(item: &Option<PostfixItem>) -> bool {
        matches!(item, Some(PostfixItem::Bad(_)))
    }

    #[test]
    fn every_request_split_at_every_byte() {
        for line in [
            "add relay.test 3F2A41C0B1",
            "send_site [10.0.0.1]",
            "send_file 4ZkQ5d1Xq7zBcdF",
            "refresh",
            "purge",
        ] {
            let request = Request::parse_line(line).unwrap();
            let mut wire = BytesMut::new();
            encode_request(&mut wire, &request).unwrap();
            let want = ok(line);
            assert_eq!(decode(&wire), want, "{line} whole");
            for cut in 0..=wire.len() {
                assert_eq!(decode_split(&wire, &[cut]), want, "{line} cut at {cut}");
            }
            let every: Vec<usize> = (1..wire.len()).collect();
            assert_eq!(decode_split(&wire, &every), want, "{line} byte by byte");
        }
    }

    #[test]
    fn item_comes_as_soon_as_flush_would_act() {
        // add waits for the terminator (or the next name)...
        let mut codec = PostfixServerCodec::new();
        let mut buf = BytesMut::from(&b"request\0add\0site\0a\0queue_id\0ABC\0"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\0");
        assert_eq!(codec.decode(&mut buf).unwrap(), ok("add a ABC"));
        // ... and nothing more is yielded from the connection.
        buf.extend_from_slice(b"request\0purge\0\0");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        // rfrsh and purge do not wait for the rest of the list.
        let mut codec = PostfixServerCodec::new();
        let mut buf = BytesMut::from(&b"request\0rfrsh\0"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), ok("refresh"));
    }

    #[test]
    fn triggers() {
        assert_eq!(decode(b"W\0"), Some(PostfixItem::Trigger("W".into())));
        assert_eq!(decode(b"\0"), Some(PostfixItem::Trigger(String::new())));
        assert_eq!(
            decode(b"X\0garbage"),
            Some(PostfixItem::Trigger("X".into()))
        );
        // flush(8) compares request values with the wakeup string too.
        assert_eq!(
            decode(&list(&[("request", "W")])),
            Some(PostfixItem::Trigger("W".into()))
        );
        // Two bytes or more that are not "request": BAD.
        assert!(is_bad(&decode(b"WW\0")));
        assert!(is_bad(&decode(&list(&[("site", "a")]))));
    }

    #[test]
    fn unknown_request_names() {
        for name in ["refresh", "ADD", "flush", "", "stats"] {
            assert!(
                matches!(
                    decode(&list(&[("request", name)])),
                    Some(PostfixItem::Unknown(_))
                ),
                "{name}"
            );
        }
        let item = decode(&list(&[("request", "x\u{7}y")]));
        assert_eq!(item, Some(PostfixItem::Unknown("\"x?y\"".into())));
    }

    #[test]
    fn misordered_and_missing_attributes_are_bad() {
        for attrs in [
            vec![("request", "add"), ("queue_id", "ABC"), ("site", "a")],
            vec![("request", "add"), ("site", "a")],
            vec![("request", "add")],
            vec![
                ("request", "add"),
                ("site", "a"),
                ("site", "b"),
                ("queue_id", "ABC"),
            ],
            vec![("request", "add"), ("sitex", "a"), ("queue_id", "ABC")],
            vec![("request", "send_site")],
            vec![("request", "send_site"), ("queue_id", "ABC")],
            vec![("request", "send_file")],
            vec![("request", "send_file"), ("site", "a")],
            vec![("site", "a"), ("request", "send_site")],
        ] {
            assert!(is_bad(&decode(&list(&attrs))), "{attrs:?}");
        }
    }

    #[test]
    fn extra_trailing_attribute_is_accepted_with_a_warning() {
        let wire = list(&[
            ("request", "add"),
            ("site", "a"),
            ("queue_id", "ABC"),
            ("x", "y"),
        ]);
        let Some(PostfixItem::Request { request, warnings }) = decode(&wire) else {
            panic!("not a request");
        };
        assert_eq!(request, Request::parse_line("add a ABC").unwrap());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("\"x\""), "{warnings:?}");
        // flush(8) acts on the extra name alone: its value need not arrive.
        let mut codec = PostfixServerCodec::new();
        let mut buf = BytesMut::from(&b"request\0send_file\0queue_id\0ABC\0extra\0"[..]);
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(PostfixItem::Request { .. })
        ));
    }

    #[test]
    fn values_are_checked() {
        assert!(is_bad(&decode(&list(&[
            ("request", "send_file"),
            ("queue_id", "../x")
        ]))));
        assert!(is_bad(&decode(&list(&[
            ("request", "send_file"),
            ("queue_id", "")
        ]))));
        assert!(is_bad(&decode(&list(&[
            ("request", "add"),
            ("site", "a"),
            ("queue_id", "A B")
        ]))));
        assert!(is_bad(&decode(b"request\0send_site\0site\0\xff\0\0")));
        assert!(is_bad(&decode(b"request\0send_file\0queue_id\0\xff\0\0")));
        // The site is not judged here: the actors do that.
        assert_eq!(
            decode(&list(&[("request", "send_site"), ("site", "")])),
            Some(PostfixItem::Request {
                request: Request::SendSite(SendSite::new("")),
                warnings: vec![],
            })
        );
        assert_eq!(
            decode(&list(&[("request", "send_site"), ("site", "a b/../c")])),
            Some(PostfixItem::Request {
                request: Request::SendSite(SendSite::new("a b/../c")),
                warnings: vec![],
            })
        );
    }

    #[test]
    fn limits() {
        let name = "n".repeat(MAX_ATTR_NAME);
        let value = "v".repeat(MAX_ATTR_VALUE);
        // At the limit: accepted (an extra attribute of the longest name).
        let wire = list(&[("request", "send_site"), ("site", &value), (&name, "x")]);
        assert!(matches!(decode(&wire), Some(PostfixItem::Request { .. })));
        // Over it: an error, raised before the NUL comes.
        let mut codec = PostfixServerCodec::new();
        let mut buf = BytesMut::from(&b"request\0send_site\0site\0"[..]);
        buf.extend_from_slice(value.as_bytes());
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"v");
        assert!(matches!(codec.decode(&mut buf), Err(ProtoError::Attr(_))));
        let mut codec = PostfixServerCodec::new();
        let mut buf = BytesMut::from(format!("{name}n").as_bytes());
        assert!(matches!(codec.decode(&mut buf), Err(ProtoError::Attr(_))));
    }

    #[test]
    fn end_of_input() {
        assert_eq!(decode(b""), None);
        assert!(is_bad(&decode(b"W")));
        assert!(is_bad(&decode(b"request\0add\0site\0a\0")));
        assert!(is_bad(&decode(b"request\0add\0site\0a\0queue_id\0ABC\0")));
        assert!(is_bad(&decode(b"request\0send_site\0site\0")));
    }

    #[test]
    fn encodes_announcement_and_status() {
        let mut codec = PostfixServerCodec::new();
        let mut buf = BytesMut::new();
        codec.encode(PostfixOut::Announcement, &mut buf).unwrap();
        codec
            .encode(PostfixOut::from(Status::Bad), &mut buf)
            .unwrap();
        codec.encode(Status::Ok, &mut buf).unwrap();
        assert_eq!(
            &buf[..],
            b"protocol\0queue_flush_protocol\0\0status\x003\0\0status\x000\0\0"
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..12),
        ) {
            let mut codec = PostfixServerCodec::new();
            let mut buf = BytesMut::new();
            let mut items = 0;
            for chunk in &chunks {
                buf.extend_from_slice(chunk);
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => items += 1,
                    Ok(None) => {}
                    Err(_) => return Ok(()),
                }
                // Never more buffered than one string at its limit.
                prop_assert!(buf.len() <= MAX_ATTR_VALUE);
            }
            if let Ok(Some(_)) = codec.decode_eof(&mut buf) {
                items += 1;
            }
            prop_assert!(items <= 1);
        }

        #[test]
        fn near_valid_lists_never_panic(
            names in proptest::collection::vec(
                prop_oneof![Just("request"), Just("site"), Just("queue_id"), Just(""), Just("x")], 0..6),
            values in proptest::collection::vec(
                prop_oneof![Just("add"), Just("send_site"), Just("send_file"), Just("rfrsh"), Just("ABC"), Just("a.b"), Just("")], 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let attrs: Vec<(&str, &str)> = names.iter().copied().zip(values.iter().copied()).collect();
            let wire = list(&attrs);
            let whole = decode(&wire);
            prop_assert_eq!(decode_split(&wire, &[cut.index(wire.len() + 1)]), whole);
        }
    }
}
