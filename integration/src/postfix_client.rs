//! A test client for Postfix's flush protocol: the attr0 wire format of
//! `src/util/attr_print0.c` and `src/util/attr_scan0.c`, used the way
//! `src/global/flush_clnt.c` uses it (PROTOCOL.md section 2). Written apart
//! from flush-proto's codec on purpose: a test should not check the product
//! with the product's own code.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::daemon::{MAX_REPLY, REPLY_TIMEOUT};

/// What a Postfix flush server announces on connect.
pub const PROTOCOL_ANNOUNCEMENT: &[u8] = b"protocol\0queue_flush_protocol\0\0";

/// One request-reply exchange with a Postfix-protocol server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostfixExchange {
    /// The reply exactly as received (the attribute list, final NUL included).
    pub reply: Vec<u8>,
    /// The reply's attributes, in order.
    pub attrs: Vec<(String, String)>,
    /// The `status` attribute (Postfix prints -1 as 4294967295).
    pub status: u32,
}

/// Encodes an attribute list: `name NUL value NUL` per attribute, then `NUL`.
pub fn encode_attrs(attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in attrs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out.push(0);
    out
}

/// An attribute list as read: its raw bytes, and whether it ended properly
/// (as opposed to end of file in the middle).
struct AttrList {
    raw: Vec<u8>,
    attrs: Vec<(String, String)>,
    complete: bool,
}

/// Reads one attribute list (or what arrives before end of file).
fn read_attr_list(reader: &mut impl BufRead) -> io::Result<AttrList> {
    let mut list = AttrList {
        raw: Vec::new(),
        attrs: Vec::new(),
        complete: false,
    };
    let mut limited = reader.by_ref().take(MAX_REPLY);
    loop {
        let mut name = Vec::new();
        if limited.read_until(0, &mut name)? == 0 {
            return Ok(list);
        }
        list.raw.extend_from_slice(&name);
        if name.pop() != Some(0) {
            return Ok(list);
        }
        if name.is_empty() {
            list.complete = true;
            return Ok(list);
        }
        let mut value = Vec::new();
        limited.read_until(0, &mut value)?;
        list.raw.extend_from_slice(&value);
        if value.pop() != Some(0) {
            return Ok(list);
        }
        list.attrs.push((
            String::from_utf8_lossy(&name).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
}

/// Connects to a Postfix-protocol socket and checks the announcement.
fn postfix_connect(socket: &Path) -> io::Result<BufReader<UnixStream>> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
    let mut reader = BufReader::new(stream);
    let hello = read_attr_list(&mut reader)?;
    if hello.raw != PROTOCOL_ANNOUNCEMENT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "unexpected announcement {:?}",
                String::from_utf8_lossy(&hello.raw)
            ),
        ));
    }
    Ok(reader)
}

/// Sends `payload` after the announcement and parses the reply list.
fn postfix_exchange(socket: &Path, payload: &[u8]) -> io::Result<PostfixExchange> {
    let mut reader = postfix_connect(socket)?;
    reader.get_mut().write_all(payload)?;
    let reply = read_attr_list(&mut reader)?;
    if !reply.complete {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("incomplete reply {:?}", String::from_utf8_lossy(&reply.raw)),
        ));
    }
    let status = reply
        .attrs
        .iter()
        .find(|(name, _)| name == "status")
        .and_then(|(_, value)| value.parse::<u32>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "no numeric status in {:?}",
                    String::from_utf8_lossy(&reply.raw)
                ),
            )
        })?;
    Ok(PostfixExchange {
        reply: reply.raw,
        attrs: reply.attrs,
        status,
    })
}

/// One Postfix-protocol request, as `flush_clnt.c` sends it: connect, read and
/// check the `protocol` announcement, send `attrs` as one list, read the reply.
///
/// # Errors
/// Connection and I/O errors (including the read timeout), `InvalidData` for a
/// wrong announcement or a reply without a numeric `status`, `UnexpectedEof`
/// when the server closes before a complete reply.
pub fn postfix_request(socket: &Path, attrs: &[(&str, &str)]) -> io::Result<PostfixExchange> {
    postfix_exchange(socket, &encode_attrs(attrs))
}

/// The master(8) wakeup: `W NUL` after the announcement, then the reply
/// (flush(8) answers status 0 and starts a refresh).
///
/// # Errors
/// As [`postfix_request`].
pub fn postfix_wakeup(socket: &Path) -> io::Result<PostfixExchange> {
    postfix_exchange(socket, b"W\0")
}

/// Sends arbitrary bytes after the announcement and returns whatever comes
/// back: one complete attribute list, or the bytes before end of file (empty
/// when the server closes without replying). For byte-for-byte comparisons.
///
/// # Errors
/// Connection and I/O errors (including the read timeout), and a wrong
/// announcement.
pub fn postfix_raw(socket: &Path, payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut reader = postfix_connect(socket)?;
    reader.get_mut().write_all(payload)?;
    Ok(read_attr_list(&mut reader)?.raw)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attr_lists_encode_and_parse() {
        let bytes = encode_attrs(&[("request", "add"), ("site", "a.test")]);
        assert_eq!(bytes, b"request\0add\0site\0a.test\0\0");
        let mut reader = BufReader::new(&bytes[..]);
        let list = read_attr_list(&mut reader).unwrap();
        assert!(list.complete);
        assert_eq!(list.raw, bytes);
        assert_eq!(list.attrs[1], ("site".to_string(), "a.test".to_string()));
        // Truncated input is reported as incomplete, with what arrived.
        let mut reader = BufReader::new(&b"status\x000"[..]);
        let list = read_attr_list(&mut reader).unwrap();
        assert!(!list.complete);
        assert_eq!(list.raw, b"status\x000");
    }
}
