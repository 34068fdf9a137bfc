//! A RESP value, as built by the server for replies and as decoded by a client.

use bytes::{Bytes, BytesMut};

use crate::encode::{
    encode_array_header, encode_boolean, encode_bulk, encode_double, encode_error, encode_integer,
    encode_map_header, encode_null, encode_set_header, encode_simple, encode_verbatim,
};
use crate::Protocol;

/// A RESP value to send to a client.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+text`.
    Simple(String),
    /// `-text`.
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len\r\nbytes`.
    Bulk(Bytes),
    /// Null: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// `*n` array.
    Array(Vec<Frame>),
    /// RESP3 map `%n`; a flat array of key, value, ... in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 set `~n`; an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 double `,`; a bulk string in RESP2.
    Double(f64),
    /// RESP3 boolean `#t`/`#f`; integer 1/0 in RESP2.
    Boolean(bool),
    /// RESP3 verbatim string `=len\r\ntxt:...`; a bulk string in RESP2. The format is 3 bytes.
    Verbatim(&'static str, Bytes),
}

impl Frame {
    /// Appends the frame's encoding in `proto` to `out`.
    ///
    /// In RESP2 the RESP3-only types take the forms Redis gives them: a map becomes a flat
    /// array of key, value, ...; a set an array; a double a bulk string of its text (see
    /// [`format_double`](crate::format_double)); a boolean the integer 1 or 0; a verbatim
    /// string a bulk string of its text without the format. `\r` and `\n` in simple and error
    /// text become spaces.
    ///
    /// # Panics
    /// If a [`Frame::Verbatim`] format is not exactly 3 bytes (a bug in the code that built it).
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        match self {
            Frame::Simple(text) => encode_simple(out, text),
            Frame::Error(text) => encode_error(out, text),
            Frame::Integer(n) => encode_integer(out, *n),
            Frame::Bulk(data) => encode_bulk(out, data),
            Frame::Null => encode_null(proto, out),
            Frame::Array(items) => {
                encode_array_header(out, items.len());
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Map(pairs) => {
                encode_map_header(proto, out, pairs.len());
                for (key, value) in pairs {
                    key.encode(proto, out);
                    value.encode(proto, out);
                }
            }
            Frame::Set(items) => {
                encode_set_header(proto, out, items.len());
                for item in items {
                    item.encode(proto, out);
                }
            }
            Frame::Double(value) => encode_double(proto, out, *value),
            Frame::Boolean(value) => encode_boolean(proto, out, *value),
            Frame::Verbatim(format, text) => encode_verbatim(proto, out, format, text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &Frame, proto: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame.encode(proto, &mut out);
        out.to_vec()
    }

    #[test]
    fn nested_frames_in_both_protocols() {
        let frame = Frame::Array(vec![
            Frame::Map(vec![(Frame::Simple("k".into()), Frame::Double(0.5))]),
            Frame::Set(vec![Frame::Integer(7)]),
            Frame::Null,
            Frame::Boolean(true),
            Frame::Verbatim("txt", Bytes::from_static(b"v")),
            Frame::Error("ERR x".into()),
            Frame::Bulk(Bytes::from_static(b"b")),
        ]);
        assert_eq!(
            encoded(&frame, Protocol::Resp3),
            b"*7\r\n%1\r\n+k\r\n,0.5\r\n~1\r\n:7\r\n_\r\n#t\r\n=5\r\ntxt:v\r\n-ERR x\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            encoded(&frame, Protocol::Resp2),
            b"*7\r\n*2\r\n+k\r\n$3\r\n0.5\r\n*1\r\n:7\r\n$-1\r\n:1\r\n$1\r\nv\r\n-ERR x\r\n$1\r\nb\r\n"
        );
    }
}
