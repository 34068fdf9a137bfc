//! Replies to client commands, independent of the wire protocol.

use bytes::Bytes;

/// A command's reply. The server turns it into RESP2 or RESP3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// A simple status string (`+PONG`).
    Status(&'static str),
    /// An integer.
    Integer(i64),
    /// A binary-safe string.
    Bulk(Bytes),
    /// The null reply (`$-1` in RESP2, `_` in RESP3).
    Nil,
    /// An array of replies.
    Array(Vec<Reply>),
    /// An error; the text starts with its code, as Redis does (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
}

impl Reply {
    /// An error reply with the given full text (code first).
    #[must_use]
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }
}
