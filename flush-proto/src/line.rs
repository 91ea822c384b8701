//! The line protocol codecs (PROTOCOL.md section 1): flushd's own persistent,
//! pipelined protocol, one request line in, one reply line out.
//!
//! [`LineCodec`] is the server side (requests in, [`Reply`] out) and
//! [`ClientCodec`] the client side (requests out, replies in). Both find lines
//! with the same length-capped framer, which remembers how far it has searched
//! so that a long pipelined burst is decoded in linear time. Postfix has no
//! equivalent: its flush(8) speaks only the attribute lists of [`crate::attr`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{ProtoError, Reply, Request, Status};

/// Longest request line the server accepts by default, in bytes, not counting
/// the line ending.
pub const DEFAULT_MAX_LINE: usize = 4096;

/// Longest reply line a client accepts, in bytes: `stats` answers with one
/// line of JSON that grows with the number of actors.
pub const MAX_REPLY_LINE: usize = 16 * 1024 * 1024;

/// The reason of the `BAD` reply to a line longer than the limit.
pub const LINE_TOO_LONG: &str = "line too long";

/// The reason of the `BAD` reply to a line that is not UTF-8.
pub const NOT_UTF8: &str = "request is not UTF-8";

/// What the framer found in the buffer.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// A whole line, without its LF and without a CR right before the LF.
    Line(BytesMut),
    /// The line in progress is longer than the limit.
    TooLong,
}

/// Cuts a byte stream into LF-terminated lines of at most `max` bytes.
///
/// After reporting [`Frame::TooLong`] it drops bytes up to and including the
/// next LF, however many reads that takes, without buffering them.
#[derive(Debug, Clone)]
struct LineFramer {
    max: usize,
    /// How many bytes at the front of the buffer are known to hold no LF.
    searched: usize,
    /// Dropping the rest of an over-long line.
    discarding: bool,
}

impl LineFramer {
    fn new(max: usize) -> LineFramer {
        LineFramer {
            max,
            searched: 0,
            discarding: false,
        }
    }

    /// The next line or over-long line in `src`, or `None` if more bytes are needed.
    fn next_frame(&mut self, src: &mut BytesMut) -> Option<Frame> {
        if self.discarding {
            match find_lf(&src[..]) {
                Some(lf) => {
                    src.advance(lf + 1);
                    self.discarding = false;
                }
                None => {
                    src.clear();
                    return None;
                }
            }
        }
        // A line of `max` bytes may still be followed by CR and LF, so look
        // at most `max + 2` bytes ahead; beyond that it is too long anyway.
        let window = src.len().min(self.max.saturating_add(2));
        let start = self.searched.min(window);
        if let Some(offset) = find_lf(&src[start..window]) {
            let lf = start + offset;
            self.searched = 0;
            let mut line = src.split_to(lf + 1);
            line.truncate(lf);
            if line.last() == Some(&b'\r') {
                line.truncate(lf - 1);
            }
            if line.len() > self.max {
                // `max + 1` bytes then LF: the limit is exceeded, but the
                // line already ended, so there is nothing to discard.
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(line));
        }
        self.searched = window;
        let too_long = window > self.max.saturating_add(1)
            || (window == self.max.saturating_add(1) && src[self.max] != b'\r');
        if too_long {
            src.advance(window);
            self.searched = 0;
            self.discarding = true;
            return Some(Frame::TooLong);
        }
        None
    }

    /// At the end of the stream: the unterminated remainder, if any, as a
    /// last line. An over-long line being discarded just ends.
    fn last_frame(&mut self, src: &mut BytesMut) -> Option<Frame> {
        if let Some(frame) = self.next_frame(src) {
            return Some(frame);
        }
        self.searched = 0;
        if self.discarding || src.is_empty() {
            self.discarding = false;
            src.clear();
            return None;
        }
        let mut line = src.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        Some(Frame::Line(line))
    }
}

fn find_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// Server side of the line protocol: decodes request lines, encodes replies.
///
/// Each decoded item is `Ok(request)` or `Err(reason)`; the reason is meant
/// for a `BAD` reply and the connection goes on. Only I/O errors end the
/// stream.
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::line::LineCodec;
/// use flush_proto::Request;
/// use tokio_util::codec::Decoder;
///
/// let mut codec = LineCodec::default();
/// let mut buf = BytesMut::from(&b"send_site relay.test\r\nbogus\nsend_f"[..]);
/// let first = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(first, Request::parse_line("send_site relay.test"));
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Err("unknown request bogus".into())));
/// assert_eq!(codec.decode(&mut buf).unwrap(), None); // incomplete, not an error
/// ```
#[derive(Debug, Clone)]
pub struct LineCodec {
    framer: LineFramer,
}

impl LineCodec {
    /// A codec that answers `BAD line too long` to lines longer than
    /// `max_line` bytes (not counting CR and LF).
    pub fn new(max_line: usize) -> LineCodec {
        LineCodec {
            framer: LineFramer::new(max_line),
        }
    }

    /// The line length limit.
    pub fn max_line(&self) -> usize {
        self.framer.max
    }
}

impl Default for LineCodec {
    fn default() -> LineCodec {
        LineCodec::new(DEFAULT_MAX_LINE)
    }
}

/// Turns one framed line into a request or the reason of a `BAD` reply.
fn parse_frame(frame: Frame) -> Result<Request, String> {
    match frame {
        Frame::TooLong => Err(LINE_TOO_LONG.to_string()),
        Frame::Line(line) => match std::str::from_utf8(&line) {
            Ok(text) => Request::parse_line(text),
            Err(_) => Err(NOT_UTF8.to_string()),
        },
    }
}

impl Decoder for LineCodec {
    type Item = Result<Request, String>;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, ProtoError> {
        Ok(self.framer.next_frame(src).map(parse_frame))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, ProtoError> {
        Ok(self.framer.last_frame(src).map(parse_frame))
    }
}

impl Encoder<Reply> for LineCodec {
    type Error = ProtoError;

    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), ProtoError> {
        encode_reply(&reply, dst);
        Ok(())
    }
}

impl Encoder<&Reply> for LineCodec {
    type Error = ProtoError;

    fn encode(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtoError> {
        encode_reply(reply, dst);
        Ok(())
    }
}

/// The reply as the bytes of its line, as [`encode_reply`] writes it; a
/// reply without detail (most of them) is a static line, not an allocation.
///
/// ```
/// use flush_proto::{line::reply_line, Reply, Status};
///
/// assert_eq!(&reply_line(&Reply::ok())[..], b"OK\n");
/// assert_eq!(&reply_line(&Reply::new(Status::Bad, "no"))[..], b"BAD no\n");
/// ```
pub fn reply_line(reply: &Reply) -> Bytes {
    if reply.detail.is_empty() {
        return Bytes::from_static(match reply.status {
            Status::Ok => b"OK\n",
            Status::Fail => b"FAIL\n",
            Status::Bad => b"BAD\n",
            Status::Deny => b"DENY\n",
        });
    }
    let mut out = BytesMut::new();
    encode_reply(reply, &mut out);
    out.freeze()
}

/// Writes `STATUS\n` or `STATUS detail\n`.
///
/// [`Reply::new`] already keeps newlines out of the detail; a `Reply` built
/// by hand could still hold one, so they become spaces here too: one reply
/// is always one line.
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::{line::encode_reply, Reply, Status};
///
/// let mut buf = BytesMut::new();
/// encode_reply(&Reply::ok(), &mut buf);
/// encode_reply(&Reply::new(Status::Deny, "not eligible"), &mut buf);
/// assert_eq!(&buf[..], b"OK\nDENY not eligible\n");
/// ```
pub fn encode_reply(reply: &Reply, dst: &mut BytesMut) {
    let status = reply.status.as_str();
    dst.reserve(status.len() + reply.detail.len() + 2);
    dst.put_slice(status.as_bytes());
    if !reply.detail.is_empty() {
        dst.put_u8(b' ');
        let start = dst.len();
        dst.put_slice(reply.detail.as_bytes());
        for byte in &mut dst[start..] {
            if *byte == b'\n' || *byte == b'\r' {
                *byte = b' ';
            }
        }
    }
    dst.put_u8(b'\n');
}

/// Parses one reply line (without its line ending): `OK[ detail]`,
/// `BAD reason`, `DENY reason` or `FAIL reason`.
///
/// A missing reason after `BAD`, `DENY` or `FAIL` is tolerated (empty detail).
///
/// # Errors
/// [`ProtoError::Reply`] when the line does not start with one of the four
/// status words, exactly as written, followed by the end or a space.
///
/// ```
/// use flush_proto::{line::parse_reply_line, Status};
/// let reply = parse_reply_line("BAD invalid queue ID").unwrap();
/// assert_eq!(reply.status, Status::Bad);
/// assert_eq!(reply.detail, "invalid queue ID");
/// assert!(parse_reply_line("HELLO").is_err());
/// ```
pub fn parse_reply_line(line: &str) -> Result<Reply, ProtoError> {
    let (word, detail) = line.split_once(' ').unwrap_or((line, ""));
    let status = Status::ALL
        .into_iter()
        .find(|s| s.as_str() == word)
        .ok_or_else(|| {
            ProtoError::Reply(format!(
                "unknown status {}",
                crate::request::printable(word, 32)
            ))
        })?;
    Ok(Reply::new(status, detail))
}

/// Client side of the line protocol: encodes requests, decodes replies.
///
/// Reply lines may be up to [`MAX_REPLY_LINE`] bytes; a longer or
/// unparseable reply is an error that ends the stream, since the client can
/// no longer tell which request a later reply belongs to.
///
/// ```
/// use bytes::BytesMut;
/// use flush_proto::{line::ClientCodec, Reply, Request, Status};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = ClientCodec::default();
/// let mut out = BytesMut::new();
/// codec.encode(Request::parse_line("send_file 3F2A41C0B1").unwrap(), &mut out).unwrap();
/// assert_eq!(&out[..], b"send_file 3F2A41C0B1\n");
///
/// let mut input = BytesMut::from(&b"OK\nBAD invalid queue ID\n"[..]);
/// assert_eq!(codec.decode(&mut input).unwrap(), Some(Reply::ok()));
/// assert_eq!(codec.decode(&mut input).unwrap().unwrap().status, Status::Bad);
/// ```
#[derive(Debug, Clone)]
pub struct ClientCodec {
    framer: LineFramer,
}

impl ClientCodec {
    /// A client codec accepting reply lines of up to `max_reply` bytes.
    pub fn new(max_reply: usize) -> ClientCodec {
        ClientCodec {
            framer: LineFramer::new(max_reply),
        }
    }
}

impl Default for ClientCodec {
    fn default() -> ClientCodec {
        ClientCodec::new(MAX_REPLY_LINE)
    }
}

fn reply_from_frame(frame: Frame) -> Result<Reply, ProtoError> {
    match frame {
        Frame::TooLong => Err(ProtoError::Reply("reply line too long".to_string())),
        Frame::Line(line) => {
            let text = std::str::from_utf8(&line)
                .map_err(|_| ProtoError::Reply("reply is not UTF-8".to_string()))?;
            parse_reply_line(text)
        }
    }
}

impl Decoder for ClientCodec {
    type Item = Reply;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtoError> {
        self.framer
            .next_frame(src)
            .map(reply_from_frame)
            .transpose()
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, ProtoError> {
        self.framer
            .last_frame(src)
            .map(reply_from_frame)
            .transpose()
    }
}

impl Encoder<Request> for ClientCodec {
    type Error = ProtoError;

    fn encode(&mut self, request: Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        self.encode(&request, dst)
    }
}

impl Encoder<&Request> for ClientCodec {
    type Error = ProtoError;

    /// # Errors
    /// A request whose line would hold a CR or LF (a site built by hand):
    /// sending it would smuggle a second request onto the connection.
    fn encode(&mut self, request: &Request, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let line = request.to_line();
        if line.contains(['\n', '\r']) {
            return Err(ProtoError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "request holds a line break",
            )));
        }
        dst.reserve(line.len() + 1);
        dst.put_slice(line.as_bytes());
        dst.put_u8(b'\n');
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::request::{Add, SendFile, SendSite};
    use proptest::prelude::*;

    #[test]
    fn reply_lines_match_encode_reply() {
        for status in Status::ALL {
            for detail in ["", "3 queued"] {
                let reply = Reply::new(status, detail);
                let mut encoded = BytesMut::new();
                encode_reply(&reply, &mut encoded);
                assert_eq!(reply_line(&reply), encoded.freeze(), "{status} {detail:?}");
            }
        }
    }

    /// Feeds `chunks` one after the other, then EOF, collecting every item.
    fn decode_chunks(codec: &mut LineCodec, chunks: &[&[u8]]) -> Vec<Result<Request, String>> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                out.push(item);
            }
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            out.push(item);
        }
        out
    }

    fn decode_all(input: &[u8]) -> Vec<Result<Request, String>> {
        decode_chunks(&mut LineCodec::default(), &[input])
    }

    fn req(line: &str) -> Result<Request, String> {
        Ok(Request::parse_line(line).unwrap())
    }

    fn bad(reason: &str) -> Result<Request, String> {
        Err(reason.to_string())
    }

    #[test]
    fn partial_line_fed_byte_by_byte() {
        let mut codec = LineCodec::default();
        let mut buf = BytesMut::new();
        let line = b"add relay.test 3F2A41C0B1\n";
        for (i, byte) in line.iter().enumerate() {
            buf.put_u8(*byte);
            let item = codec.decode(&mut buf).unwrap();
            if i + 1 < line.len() {
                assert_eq!(item, None, "after {} bytes", i + 1);
            } else {
                assert_eq!(item, Some(req("add relay.test 3F2A41C0B1")));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn crlf_is_accepted_and_lone_cr_is_kept() {
        assert_eq!(decode_all(b"purge\r\n"), vec![req("purge")]);
        // A CR that is not right before the LF belongs to the line.
        assert_eq!(
            decode_all(b"send_site a\rb\n"),
            vec![Ok(Request::SendSite(SendSite::new("a\rb")))]
        );
    }

    #[test]
    fn pipelined_lines_in_one_buffer() {
        let input =
            b"add a.test ABC\nsend_site a.test\r\nsend_file ABC\nrefresh\nrfrsh\npurge\nstats\n";
        assert_eq!(
            decode_all(input),
            vec![
                req("add a.test ABC"),
                req("send_site a.test"),
                req("send_file ABC"),
                req("refresh"),
                req("refresh"),
                req("purge"),
                req("stats"),
            ]
        );
    }

    #[test]
    fn over_long_line_then_good_line_in_the_same_buffer() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\npurge\n");
        let got = decode_chunks(&mut LineCodec::new(10), &[&input]);
        assert_eq!(got, vec![bad(LINE_TOO_LONG), req("purge")]);
    }

    #[test]
    fn over_long_line_reported_at_once_and_discarded_over_later_reads() {
        let mut codec = LineCodec::new(10);
        let mut buf = BytesMut::from(&b"send_site 0123456789"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(bad(LINE_TOO_LONG)));
        // Nothing of the over-long line stays buffered.
        assert!(buf.len() <= 10, "buffered {}", buf.len());
        for _ in 0..1000 {
            buf.extend_from_slice(b"yyyyyyyyyyyyyyyyyyyy");
            assert_eq!(codec.decode(&mut buf).unwrap(), None);
            assert!(buf.is_empty());
        }
        buf.extend_from_slice(b"zz\nstats\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(req("stats")));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn one_error_per_over_long_line() {
        let long = vec![b'x'; 50];
        let got = decode_chunks(
            &mut LineCodec::new(10),
            &[&long, &long, b"\n", &long, b"\n", b"purge\n"],
        );
        assert_eq!(
            got,
            vec![bad(LINE_TOO_LONG), bad(LINE_TOO_LONG), req("purge")]
        );
    }

    #[test]
    fn limit_is_exact() {
        let max = 16;
        let exact = format!("send_site {}", "a".repeat(max - 10));
        assert_eq!(exact.len(), max);
        for ending in ["\n", "\r\n"] {
            let input = format!("{exact}{ending}");
            assert_eq!(
                decode_chunks(&mut LineCodec::new(max), &[input.as_bytes()]),
                vec![req(&exact)],
                "{ending:?}"
            );
        }
        // The same, fed byte by byte.
        let input = format!("{exact}\r\n");
        let bytes: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
        assert_eq!(
            decode_chunks(&mut LineCodec::new(max), &bytes),
            vec![req(&exact)]
        );
        // One byte more is too long, whatever ends it.
        let over = format!("{exact}a");
        for ending in ["\n", "\r\n", "\rX\n"] {
            let input = format!("{over}{ending}purge\n");
            assert_eq!(
                decode_chunks(&mut LineCodec::new(max), &[input.as_bytes()]),
                vec![bad(LINE_TOO_LONG), req("purge")],
                "{ending:?}"
            );
        }
        // A CR at the limit that turns out not to end the line.
        let input = format!("{exact}\rX\npurge\n");
        assert_eq!(
            decode_chunks(&mut LineCodec::new(max), &[input.as_bytes()]),
            vec![bad(LINE_TOO_LONG), req("purge")]
        );
    }

    #[test]
    fn too_long_is_reported_before_the_line_ends() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"abcd"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.put_u8(b'\r');
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.put_u8(b'e');
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(bad(LINE_TOO_LONG)));
        // Without a CR, the fifth byte is already one too many.
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"abcd"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.put_u8(b'e');
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(bad(LINE_TOO_LONG)));
        assert!(buf.is_empty());
    }

    #[test]
    fn non_utf8_and_empty_lines_are_bad() {
        assert_eq!(
            decode_all(b"add \xff\xfe ABC\n\n \t\npurge\n"),
            vec![
                bad(NOT_UTF8),
                bad("empty request"),
                bad("empty request"),
                req("purge")
            ]
        );
    }

    #[test]
    fn wrong_argument_counts_and_bad_queue_ids() {
        for line in [
            "add",
            "add a",
            "add a B c",
            "send_site",
            "send_site a b",
            "send_file",
            "send_file A B",
            "refresh x",
            "rfrsh x",
            "purge x",
            "stats x",
            "add a.test ../etc",
            "add a.test A-B",
            "send_file A.B",
            "send_file \u{e9}",
            "flush a",
        ] {
            let got = decode_all(format!("{line}\n").as_bytes());
            assert_eq!(got.len(), 1, "{line}");
            assert!(got[0].is_err(), "{line}: {:?}", got[0]);
        }
        let long_id = "A".repeat(256);
        let got = decode_all(format!("send_file {long_id}\n").as_bytes());
        assert!(got[0].is_err());
    }

    #[test]
    fn eof_decodes_the_remainder_as_a_last_line() {
        assert_eq!(
            decode_all(b"purge\nsend_file ABC"),
            vec![req("purge"), req("send_file ABC")]
        );
        assert_eq!(decode_all(b"stats\r"), vec![req("stats")]);
        assert_eq!(decode_all(b""), vec![]);
        // While an over-long line is being discarded, EOF just ends.
        assert_eq!(
            decode_chunks(&mut LineCodec::new(4), &[b"purge purge"]),
            vec![bad(LINE_TOO_LONG)]
        );
    }

    #[test]
    fn long_burst_is_decoded_in_one_pass() {
        let mut input = Vec::new();
        for i in 0..10_000 {
            input.extend_from_slice(format!("add site{i}.test Q{i}\n").as_bytes());
        }
        let got = decode_all(&input);
        assert_eq!(got.len(), 10_000);
        assert_eq!(
            got[9_999],
            Ok(Request::Add(Add::new("site9999.test", "Q9999")))
        );
    }

    #[test]
    fn reply_encoding() {
        let mut codec = LineCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(Reply::ok(), &mut buf).unwrap();
        codec
            .encode(Reply::new(Status::Ok, "{\"a\":1}"), &mut buf)
            .unwrap();
        codec
            .encode(Reply::new(Status::Bad, "line\ntoo long"), &mut buf)
            .unwrap();
        let sneaky = Reply {
            status: Status::Fail,
            detail: "a\r\nb".to_string(),
        };
        codec.encode(&sneaky, &mut buf).unwrap();
        assert_eq!(
            &buf[..],
            b"OK\nOK {\"a\":1}\nBAD line too long\nFAIL a  b\n"
        );
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            Reply::ok(),
            Reply::new(Status::Ok, "{\"stats\":{}}"),
            Reply::new(Status::Ok, " two  spaces "),
            Reply::new(Status::Bad, "invalid queue ID"),
            Reply::new(Status::Deny, "relay.test: not eligible"),
            Reply::new(Status::Fail, "I/O error"),
        ];
        let mut server = LineCodec::default();
        let mut buf = BytesMut::new();
        for reply in &replies {
            server.encode(reply, &mut buf).unwrap();
        }
        let mut client = ClientCodec::default();
        for reply in &replies {
            assert_eq!(client.decode(&mut buf).unwrap().as_ref(), Some(reply));
        }
        assert_eq!(client.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn unparseable_replies_are_errors() {
        for line in ["", "ok", "OKAY", "HELLO there", "\u{e9}"] {
            assert!(
                matches!(parse_reply_line(line), Err(ProtoError::Reply(_))),
                "{line:?}"
            );
        }
        let mut client = ClientCodec::default();
        let mut buf = BytesMut::from(&b"OK \xff\n"[..]);
        assert!(matches!(client.decode(&mut buf), Err(ProtoError::Reply(_))));
        let mut client = ClientCodec::new(8);
        let mut buf = BytesMut::from(&b"OK 0123456789"[..]);
        assert!(matches!(client.decode(&mut buf), Err(ProtoError::Reply(_))));
        assert_eq!(
            parse_reply_line("DENY").unwrap(),
            Reply::new(Status::Deny, "")
        );
    }

    #[test]
    fn client_refuses_line_breaks_in_requests() {
        let mut client = ClientCodec::default();
        let mut buf = BytesMut::new();
        let sneaky = Request::SendSite(SendSite::new("a\npurge"));
        assert!(client.encode(sneaky, &mut buf).is_err());
        assert!(buf.is_empty());
        client
            .encode(Request::SendFile(SendFile::new("ABC")), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"send_file ABC\n");
    }

    fn request_strategy() -> impl Strategy<Value = Request> {
        let site = "[a-zA-Z0-9.\\[\\]:_-]{1,40}";
        let id = "[A-Za-z0-9_]{1,40}";
        prop_oneof![
            (site, id).prop_map(|(s, i)| Request::Add(Add::new(s, i))),
            site.prop_map(|s| Request::SendSite(SendSite::new(s))),
            id.prop_map(|i| Request::SendFile(SendFile::new(i))),
            Just(Request::parse_line("refresh").unwrap()),
            Just(Request::parse_line("purge").unwrap()),
            Just(Request::parse_line("stats").unwrap()),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_chunks_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16),
            max in 0usize..32,
        ) {
            let mut codec = LineCodec::new(max);
            let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let items = decode_chunks(&mut codec, &slices);
            let lfs = chunks.iter().flatten().filter(|&&b| b == b'\n').count();
            // Never more items than lines, counting an unterminated last one.
            prop_assert!(items.len() <= lfs + 1);
            let mut client = ClientCodec::new(max);
            let mut buf = BytesMut::new();
            for chunk in &chunks {
                buf.extend_from_slice(chunk);
                while let Ok(Some(_)) = client.decode(&mut buf) {}
            }
        }

        #[test]
        fn split_requests_decode_to_what_was_encoded(
            requests in proptest::collection::vec(request_strategy(), 0..20),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            crlf in any::<bool>(),
        ) {
            let mut client = ClientCodec::default();
            let mut wire = BytesMut::new();
            for request in &requests {
                client.encode(request, &mut wire).unwrap();
                if crlf {
                    let lf = wire.len() - 1;
                    wire.truncate(lf);
                    wire.extend_from_slice(b"\r\n");
                }
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
            let got = decode_chunks(&mut LineCodec::default(), &chunks);
            let want: Vec<Result<Request, String>> = requests.into_iter().map(Ok).collect();
            prop_assert_eq!(got, want);
        }
    }
}
