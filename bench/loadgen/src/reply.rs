//! A minimal RESP2/RESP3 reply reader: it finds where one reply ends and keeps only what the
//! load loop needs (error text, integer value); nested elements are checked and skipped.

use std::fmt;

/// Longest simple line (`+`, `-`, `:`, `,`, `#`, `(`, `_` and every length header) accepted.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// Largest bulk string or blob accepted, in bytes.
pub const BULK_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most elements one aggregate may declare (maps count their keys and values).
pub const AGGREGATE_LEN_MAX: usize = 1 << 20;
/// Deepest nesting of aggregates accepted.
pub const DEPTH_MAX: usize = 16;

/// One reply, reduced to what the load tool looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`: a status such as `OK`.
    Simple(String),
    /// `-text` or `!len` (RESP3 blob error): the request failed.
    Error(String),
    /// `:n`: an integer, such as the replica count `WAIT` answers.
    Integer(i64),
    /// `$len`, `=len` (verbatim): a bulk string of this many bytes.
    Bulk(usize),
    /// `$-1`, `*-1` or `_`: no value.
    Null,
    /// `*`, `%`, `~` or `>`: an aggregate of this many elements (a map's keys and values both
    /// count), all of them parsed and skipped.
    Aggregate(usize),
    /// `,` (double), `#` (boolean) or `(` (big number).
    Scalar,
}

/// Why bytes are not a RESP reply. "Need more bytes" is not an error: see [`parse_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The first byte of a reply is not a known RESP type.
    UnknownType(u8),
    /// A line did not end with `\r\n` within [`LINE_BYTES_MAX`] bytes, or `\r` was not
    /// followed by `\n`.
    BadLine,
    /// A length or integer did not parse, or is out of range.
    BadNumber(String),
    /// A bulk string exceeds [`BULK_BYTES_MAX`] or an aggregate [`AGGREGATE_LEN_MAX`].
    TooLarge(u64),
    /// Aggregates nest deeper than [`DEPTH_MAX`].
    TooDeep,
    /// RESP3 attributes (`|`) are not supported.
    Attribute,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            Self::BadLine => write!(f, "RESP line without CRLF or too long"),
            Self::BadNumber(s) => write!(f, "bad RESP number {s:?}"),
            Self::TooLarge(n) => write!(f, "RESP length {n} is over this tool's bound"),
            Self::TooDeep => write!(f, "RESP aggregates nest deeper than {DEPTH_MAX}"),
            Self::Attribute => write!(f, "RESP3 attributes are not supported"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Parses one reply from the front of `buf`.
///
/// Returns `Ok(Some((reply, consumed)))` when a whole reply is present, `Ok(None)` when more
/// bytes are needed, and `Err` when the bytes can never become a valid reply.
///
/// # Errors
/// [`ReplyError`] for bytes that are not RESP or exceed this reader's bounds.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    match parse_at(buf, &mut pos, 0)? {
        Some(reply) => Ok(Some((reply, pos))),
        None => Ok(None),
    }
}

/// Parses the reply starting at `*pos`; on success `*pos` is just past it.
fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Reply>, ReplyError> {
    if depth > DEPTH_MAX {
        return Err(ReplyError::TooDeep);
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    let Some((line, next)) = line_at(buf, *pos + 1)? else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    let reply = match kind {
        b'+' => Reply::Simple(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Integer(number(line)?),
        b',' | b'#' | b'(' => Reply::Scalar,
        b'_' => Reply::Null,
        b'$' | b'=' | b'!' => {
            let len = number(line)?;
            if len < 0 {
                if kind == b'$' && len == -1 {
                    *pos = next;
                    return Ok(Some(Reply::Null));
                }
                return Err(ReplyError::BadNumber(text()));
            }
            let len = bounded(len, BULK_BYTES_MAX)?;
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ReplyError::BadLine);
            }
            *pos = end + 2;
            return Ok(Some(if kind == b'!' {
                Reply::Error(String::from_utf8_lossy(&buf[next..end]).into_owned())
            } else {
                Reply::Bulk(len)
            }));
        }
        b'*' | b'%' | b'~' | b'>' => {
            let declared = number(line)?;
            if declared < 0 {
                if kind == b'*' && declared == -1 {
                    *pos = next;
                    return Ok(Some(Reply::Null));
                }
                return Err(ReplyError::BadNumber(text()));
            }
            let mut count = bounded(declared, AGGREGATE_LEN_MAX)?;
            if kind == b'%' {
                count *= 2;
            }
            let mut at = next;
            for _ in 0..count {
                if parse_at(buf, &mut at, depth + 1)?.is_none() {
                    return Ok(None);
                }
            }
            *pos = at;
            return Ok(Some(Reply::Aggregate(count)));
        }
        b'|' => return Err(ReplyError::Attribute),
        other => return Err(ReplyError::UnknownType(other)),
    };
    *pos = next;
    Ok(Some(reply))
}

/// The line starting at `start` without its `\r\n`, and the index just past the `\n`.
fn line_at(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ReplyError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = &rest[..rest.len().min(LINE_BYTES_MAX + 2)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) if i > LINE_BYTES_MAX => Err(ReplyError::BadLine),
        Some(i) => match window.get(i + 1) {
            Some(b'\n') => Ok(Some((&window[..i], start + i + 2))),
            Some(_) => Err(ReplyError::BadLine),
            None => Ok(None),
        },
        None if rest.len() > LINE_BYTES_MAX => Err(ReplyError::BadLine),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ReplyError::BadNumber(String::from_utf8_lossy(line).into_owned()))
}

fn bounded(len: i64, max: usize) -> Result<usize, ReplyError> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ReplyError::TooLarge(len.unsigned_abs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Reply {
        let (reply, used) = parse_reply(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "reply {bytes:?} not consumed whole");
        reply
    }

    #[test]
    fn replies_the_load_loop_reads() {
        assert_eq!(whole(b"+OK\r\n"), Reply::Simple("OK".into()));
        assert_eq!(whole(b":2\r\n"), Reply::Integer(2));
        assert_eq!(
            whole(b"-NOREPLICAS Not enough good replicas\r\n"),
            Reply::Error("NOREPLICAS Not enough good replicas".into())
        );
        assert_eq!(whole(b"$3\r\na\r\n\r\n"), Reply::Bulk(3));
        assert_eq!(whole(b"$-1\r\n"), Reply::Null);
        assert_eq!(whole(b"*-1\r\n"), Reply::Null);
        assert_eq!(whole(b"*2\r\n$1\r\na\r\n:1\r\n"), Reply::Aggregate(2));
        // RESP3: a map counts keys and values; blob errors are errors.
        assert_eq!(whole(b"%1\r\n+k\r\n#t\r\n"), Reply::Aggregate(2));
        assert_eq!(whole(b"!5\r\nERR x\r\n"), Reply::Error("ERR x".into()));
        assert_eq!(whole(b"_\r\n"), Reply::Null);
    }

    #[test]
    fn two_pipelined_replies_parse_one_at_a_time() {
        let buf = b"+OK\r\n:1\r\n";
        let (first, used) = parse_reply(buf).unwrap().unwrap();
        assert_eq!((first, used), (Reply::Simple("OK".into()), 5));
        assert_eq!(
            parse_reply(&buf[used..]).unwrap(),
            Some((Reply::Integer(1), 4))
        );
    }

    #[test]
    fn every_strict_prefix_needs_more_bytes() {
        let full: &[u8] = b"*3\r\n$3\r\nabc\r\n%1\r\n+k\r\n:-7\r\n$-1\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_reply(&full[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(whole(full), Reply::Aggregate(3));
    }

    #[test]
    fn invalid_bytes_are_errors_not_panics() {
        assert_eq!(parse_reply(b"?x\r\n"), Err(ReplyError::UnknownType(b'?')));
        assert!(matches!(
            parse_reply(b":12a\r\n"),
            Err(ReplyError::BadNumber(_))
        ));
        assert!(matches!(
            parse_reply(b"$-2\r\n"),
            Err(ReplyError::BadNumber(_))
        ));
        assert_eq!(parse_reply(b"+OK\rX"), Err(ReplyError::BadLine));
        assert_eq!(parse_reply(b"$1\r\nab\r\n"), Err(ReplyError::BadLine));
        assert_eq!(
            parse_reply(b"$99999999999\r\n"),
            Err(ReplyError::TooLarge(99_999_999_999))
        );
        assert_eq!(parse_reply(b"|1\r\n"), Err(ReplyError::Attribute));
        let deep = b"*1\r\n".repeat(DEPTH_MAX + 2);
        assert_eq!(parse_reply(&deep), Err(ReplyError::TooDeep));
        let long = [b"+".as_slice(), &[b'a'; LINE_BYTES_MAX + 1]].concat();
        assert_eq!(parse_reply(&long), Err(ReplyError::BadLine));
    }
}
