//! Reply encoders for the server's hot path: each appends one RESP value (or an aggregate
//! header) to the output buffer without building a [`Frame`](crate::Frame).

use bytes::{BufMut, BytesMut};
use memchr::memchr2;

use crate::number::{format_double, DOUBLE_TEXT_BYTES_MAX};
use crate::Protocol;

/// Appends `<prefix><n>\r\n`.
fn put_number_line(out: &mut BytesMut, prefix: u8, n: impl itoa::Integer) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n).as_bytes();
    out.reserve(digits.len() + 3);
    out.put_u8(prefix);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}

/// Appends `<prefix><text>\r\n` with each `\r` and `\n` of `text` replaced by a space, as
/// Redis does for error replies, so that no text can end the line early.
fn put_line(out: &mut BytesMut, prefix: u8, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 3);
    out.put_u8(prefix);
    if memchr2(b'\r', b'\n', bytes).is_none() {
        out.put_slice(bytes);
    } else {
        for &byte in bytes {
            out.put_u8(if byte == b'\r' || byte == b'\n' {
                b' '
            } else {
                byte
            });
        }
    }
    out.put_slice(b"\r\n");
}

/// Appends `+OK\r\n`.
pub fn encode_ok(out: &mut BytesMut) {
    out.put_slice(b"+OK\r\n");
}

/// Appends the simple string `+<text>\r\n`; `\r` and `\n` in `text` become spaces.
pub fn encode_simple(out: &mut BytesMut, text: &str) {
    put_line(out, b'+', text);
}

/// Appends the error `-<text>\r\n`. `text` starts with the error code (`ERR unknown command`,
/// `WRONGTYPE ...`); `\r` and `\n` in it become spaces, as in Redis's `addReplyError`.
pub fn encode_error(out: &mut BytesMut, text: &str) {
    put_line(out, b'-', text);
}

/// Appends the integer `:<n>\r\n`.
pub fn encode_integer(out: &mut BytesMut, n: i64) {
    put_number_line(out, b':', n);
}

/// Appends the bulk string `$<len>\r\n<data>\r\n`.
pub fn encode_bulk(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 16);
    put_number_line(out, b'$', data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends just the header `$<len>\r\n` of a bulk string; the caller then appends exactly
/// `len` bytes and `\r\n`.
pub fn encode_bulk_header(out: &mut BytesMut, len: usize) {
    put_number_line(out, b'$', len);
}

/// Appends a null: `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn encode_null(proto: Protocol, out: &mut BytesMut) {
    out.put_slice(match proto {
        Protocol::Resp2 => b"$-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// Appends an array header `*<count>\r\n`; `count` values follow.
pub fn encode_array_header(out: &mut BytesMut, count: usize) {
    put_number_line(out, b'*', count);
}

/// Appends a map header: `%<pairs>\r\n` in RESP3, `*<2 × pairs>\r\n` in RESP2. `pairs` keys,
/// each followed by its value, follow.
pub fn encode_map_header(proto: Protocol, out: &mut BytesMut, pairs: usize) {
    match proto {
        Protocol::Resp2 => put_number_line(out, b'*', pairs.saturating_mul(2)),
        Protocol::Resp3 => put_number_line(out, b'%', pairs),
    }
}

/// Appends a set header: `~<count>\r\n` in RESP3, `*<count>\r\n` in RESP2.
pub fn encode_set_header(proto: Protocol, out: &mut BytesMut, count: usize) {
    match proto {
        Protocol::Resp2 => put_number_line(out, b'*', count),
        Protocol::Resp3 => put_number_line(out, b'~', count),
    }
}

/// Appends a push header (pub/sub messages): `><count>\r\n` in RESP3, `*<count>\r\n` in RESP2.
pub fn encode_push_header(proto: Protocol, out: &mut BytesMut, count: usize) {
    match proto {
        Protocol::Resp2 => put_number_line(out, b'*', count),
        Protocol::Resp3 => put_number_line(out, b'>', count),
    }
}

/// Appends a double: `,<text>\r\n` in RESP3, a bulk string of the text in RESP2. The text is
/// Redis's ([`format_double`](crate::format_double)): `1.5`, `3`, `1e+300`, `inf`, `-inf`,
/// `nan`.
pub fn encode_double(proto: Protocol, out: &mut BytesMut, value: f64) {
    let mut text = [0; DOUBLE_TEXT_BYTES_MAX];
    let text = format_double(value, &mut text);
    match proto {
        Protocol::Resp2 => encode_bulk(out, text),
        Protocol::Resp3 => {
            out.reserve(text.len() + 3);
            out.put_u8(b',');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
    }
}

/// Appends a boolean: `#t\r\n`/`#f\r\n` in RESP3, `:1\r\n`/`:0\r\n` in RESP2.
pub fn encode_boolean(proto: Protocol, out: &mut BytesMut, value: bool) {
    out.put_slice(match (proto, value) {
        (Protocol::Resp2, true) => b":1\r\n",
        (Protocol::Resp2, false) => b":0\r\n",
        (Protocol::Resp3, true) => b"#t\r\n",
        (Protocol::Resp3, false) => b"#f\r\n",
    });
}

/// Appends a verbatim string: `=<len>\r\n<format>:<text>\r\n` in RESP3 (`len` counts the
/// format and colon), a bulk string of `text` alone in RESP2.
///
/// # Panics
/// If `format` is not exactly 3 bytes (`txt`, `mkd`): the format is chosen by server code,
/// never by a client, so a wrong one is a bug.
pub fn encode_verbatim(proto: Protocol, out: &mut BytesMut, format: &str, text: &[u8]) {
    assert!(
        format.len() == 3,
        "verbatim format {format:?} is not 3 bytes"
    );
    match proto {
        Protocol::Resp2 => encode_bulk(out, text),
        Protocol::Resp3 => {
            out.reserve(text.len() + 24);
            put_number_line(out, b'=', text.len() + 4);
            out.put_slice(format.as_bytes());
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
#[path = "encode_test.rs"]
mod tests;
