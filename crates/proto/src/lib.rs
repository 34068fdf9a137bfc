//! replikv's wire protocols. (Skeleton: the helper implementing this crate replaces the bodies
//! and may split it into modules; the public signatures below are the contract the server is
//! written against.)
#![deny(missing_docs)]

use bytes::{Bytes, BytesMut};

/// Bounds on what one client request may declare, checked before anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (Redis `proto-max-bulk-len`, default 512 MiB).
    pub bulk_bytes_max: usize,
    /// Most elements in one multibulk request (Redis: 1024*1024*1024 for authenticated).
    pub multibulk_count_max: usize,
    /// Longest inline command line (Redis: 64 KiB).
    pub inline_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bulk_bytes_max: 512 * 1024 * 1024,
            multibulk_count_max: 1024 * 1024 * 1024,
            inline_bytes_max: 64 * 1024,
        }
    }
}

/// A request that is not valid RESP. The text follows Redis's (`Protocol error: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// Parses one client request (a multibulk array of bulk strings, or an inline command line)
/// from the front of `buf`.
///
/// Returns `Ok(Some((args, consumed)))` for a complete request (`args` may be empty for an
/// empty inline line or `*0`; the caller skips it), `Ok(None)` when more bytes are needed,
/// and `Err` when the bytes can never become a valid request. The arguments are zero-copy
/// slices of `buf` when it is frozen by the caller; here they are copied out of `buf` only if
/// needed (helper decides; the API takes `&mut BytesMut` and splits consumed bytes off).
///
/// # Errors
/// [`ProtocolError`] with Redis's message (`invalid multibulk length`, `invalid bulk length`,
/// `expected '$', got 'x'`, `unbalanced quotes in request`, `too big inline request`, ...).
pub fn parse_request(
    _buf: &mut BytesMut,
    _limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    todo!()
}

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

/// The protocol version a connection speaks (`HELLO 2|3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2 (the default).
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Frame {
    /// Appends the frame's encoding in `proto` to `out`.
    pub fn encode(&self, _proto: Protocol, _out: &mut BytesMut) {
        todo!()
    }
}
