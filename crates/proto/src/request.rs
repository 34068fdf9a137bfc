//! Parsing client requests: multibulk arrays of bulk strings and inline command lines.
//!
//! The rules, limits and error texts are Redis 7's (`processMultibulkBuffer` and
//! `processInlineBuffer` in `networking.c`), including two of its leniencies: the byte after the
//! `\r` that ends a header line, and the two bytes after a bulk string's payload, are skipped
//! without being checked to be `\n` and `\r\n`.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

use crate::limits::HEADER_BYTES_MAX;
use crate::number::parse_i64;
use crate::split_args::{split_args, Token};
use crate::{Limits, ProtocolError};

const INVALID_MULTIBULK_LENGTH: &str = "invalid multibulk length";
const INVALID_BULK_LENGTH: &str = "invalid bulk length";
const TOO_BIG_MBULK_COUNT: &str = "too big mbulk count string";
const TOO_BIG_BULK_COUNT: &str = "too big bulk count string";
const TOO_BIG_INLINE: &str = "too big inline request";

/// Argument positions kept on the stack by [`parse_request`]; longer requests spill to the heap.
const SPANS_INLINE: usize = 16;

/// Parses one client request (a multibulk array of bulk strings, or an inline command line)
/// from the front of `buf`.
///
/// On a complete request, splits its bytes off the front of `buf` and returns its arguments
/// as zero-copy slices of them. The arguments are empty for an empty inline line, `*0` or a
/// negative count (Redis skips such requests; so should the caller). Returns `Ok(None)` when
/// more bytes are needed; `buf` is then untouched, and the next call parses the request from
/// its start again.
///
/// Nothing is allocated from a declared count or length: a request declaring a billion
/// arguments or a 512 MiB bulk costs only the bytes that actually arrived. A server reading a
/// request with very many arguments in many small reads re-parses its prefix each time;
/// [`RequestDecoder`](crate::RequestDecoder) resumes instead and is the better fit there.
///
/// # Errors
/// A [`ProtocolError`] with Redis's message when the bytes can never become a valid request:
/// `invalid multibulk length`, `invalid bulk length`, `expected '$', got 'x'`,
/// `too big mbulk count string`, `too big bulk count string`, `too big inline request`,
/// `unbalanced quotes in request`. `buf` is left unchanged.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits, &mut 0),
    }
}

fn parse_multibulk(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let mut spans = SpanList::new();
    let mut scan = MultibulkScan::default();
    match scan_multibulk(buf, &mut scan, limits, &mut |start, len| {
        spans.push(start, len)
    })? {
        ScanOutcome::Incomplete => Ok(None),
        ScanOutcome::Complete { end } => {
            Ok(Some(slice_args(buf.split_to(end).freeze(), spans.iter())))
        }
    }
}

/// Cuts the arguments at `spans` (`(start, len)`, in order) out of `request`. Each argument
/// shares `request`'s allocation; the last one takes over `request`'s own reference, which
/// saves a reference-count increment and decrement per request.
pub(crate) fn slice_args(
    mut request: Bytes,
    spans: impl ExactSizeIterator<Item = (usize, usize)>,
) -> Vec<Bytes> {
    let mut args = Vec::with_capacity(spans.len());
    let last = spans.len().saturating_sub(1);
    for (index, (start, len)) in spans.enumerate() {
        if index == last {
            request.advance(start);
            request.truncate(len);
            args.push(request);
            break;
        }
        args.push(request.slice(start..start + len));
    }
    args
}

/// Parses an inline line at the front of `buf`. `searched` is how far an earlier call already
/// looked for `\n` in vain; it is updated so that a resumed search does not rescan.
pub(crate) fn parse_inline(
    buf: &mut BytesMut,
    limits: &Limits,
    searched: &mut usize,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let from = (*searched).min(buf.len());
    let Some(found) = memchr(b'\n', &buf[from..]) else {
        if buf.len() > limits.inline_bytes_max {
            return Err(ProtocolError::new(TOO_BIG_INLINE));
        }
        *searched = buf.len();
        return Ok(None);
    };
    let newline = from + found;
    let line_end = match newline.checked_sub(1) {
        Some(before) if buf[before] == b'\r' => before,
        _ => newline,
    };
    let tokens = split_args(&buf[..line_end])?;
    *searched = 0;
    let line = buf.split_to(newline + 1).freeze();
    Ok(Some(
        tokens
            .into_iter()
            .map(|token| match token {
                Token::Span { start, end } => line.slice(start..end),
                Token::Owned(bytes) => Bytes::from(bytes),
            })
            .collect(),
    ))
}

/// How far a multibulk scan got; lets a caller resume once more bytes arrive.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MultibulkScan {
    /// Offset of the next unread `$<len>` header once the count is known.
    pub(crate) pos: usize,
    /// Arguments still to read; `None` until the `*<count>` line has been read.
    pub(crate) args_left: Option<usize>,
}

/// What [`scan_multibulk`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanOutcome {
    /// More bytes are needed.
    Incomplete,
    /// The request is the first `end` bytes of the buffer.
    Complete {
        /// Length of the request in bytes.
        end: usize,
    },
}

/// Scans the multibulk request at the front of `buf` (which starts with `*`) from where `scan`
/// stands, calling `on_arg(start, len)` for each complete argument, in order, exactly once.
pub(crate) fn scan_multibulk(
    buf: &[u8],
    scan: &mut MultibulkScan,
    limits: &Limits,
    on_arg: &mut impl FnMut(usize, usize),
) -> Result<ScanOutcome, ProtocolError> {
    let mut args_left = if let Some(args_left) = scan.args_left {
        args_left
    } else {
        let Some((count, next)) = read_header(buf, 0, b'*', TOO_BIG_MBULK_COUNT)? else {
            return Ok(ScanOutcome::Incomplete);
        };
        let count = count.ok_or_else(|| ProtocolError::new(INVALID_MULTIBULK_LENGTH))?;
        let Ok(count) = usize::try_from(count) else {
            // Redis skips a request with a negative count.
            return Ok(ScanOutcome::Complete { end: next });
        };
        if count > limits.multibulk_count_max {
            return Err(ProtocolError::new(INVALID_MULTIBULK_LENGTH));
        }
        scan.pos = next;
        scan.args_left = Some(count);
        count
    };
    let mut pos = scan.pos;
    while args_left > 0 {
        let Some((len, data_start)) = read_header(buf, pos, b'$', TOO_BIG_BULK_COUNT)? else {
            break;
        };
        let prefix = buf[pos];
        if prefix != b'$' {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                char::from(prefix)
            )));
        }
        let len = len
            .and_then(|len| usize::try_from(len).ok())
            .filter(|&len| len <= limits.bulk_bytes_max)
            .ok_or_else(|| ProtocolError::new(INVALID_BULK_LENGTH))?;
        let available = buf.len() - data_start;
        if available < len || available - len < 2 {
            break;
        }
        on_arg(data_start, len);
        pos = data_start + len + 2;
        args_left -= 1;
    }
    scan.pos = pos;
    scan.args_left = Some(args_left);
    Ok(if args_left == 0 {
        ScanOutcome::Complete { end: pos }
    } else {
        ScanOutcome::Incomplete
    })
}

/// Reads the `<prefix><number>\r\n` header line at `start` as Redis does: the line ends at the
/// first `\r`, which must have one more byte after it (skipped unchecked); the number is the
/// bytes between the first byte and the `\r`.
///
/// Returns `Ok(None)` when the line is incomplete, else the number (`None` when not a valid
/// `string2ll` number) and the offset after the line. The caller checks the first byte.
///
/// # Errors
/// `too_big` when more than [`HEADER_BYTES_MAX`] bytes follow `start` without a `\r`.
fn read_header(
    buf: &[u8],
    start: usize,
    prefix: u8,
    too_big: &'static str,
) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
    // Fast path for the usual header: the expected prefix, up to 18 digits (which cannot
    // overflow) without a leading zero, then `\r` and one more byte.
    if buf.get(start) == Some(&prefix) {
        let digits_start = start + 1;
        let digits_end = buf.len().min(digits_start + 18);
        let mut value: i64 = 0;
        let mut i = digits_start;
        while i < digits_end && buf[i].is_ascii_digit() {
            value = value * 10 + i64::from(buf[i] - b'0');
            i += 1;
        }
        if i > digits_start
            && i + 1 < buf.len()
            && buf[i] == b'\r'
            && (buf[digits_start] != b'0' || i == digits_start + 1)
        {
            return Ok(Some((Some(value), i + 2)));
        }
    }
    let Some(rest) = buf.get(start..) else {
        return Ok(None);
    };
    match memchr(b'\r', rest) {
        None if rest.len() > HEADER_BYTES_MAX => Err(ProtocolError::new(too_big)),
        None => Ok(None),
        Some(newline) if newline + 2 > rest.len() => Ok(None),
        Some(newline) => Ok(Some((
            rest.get(1..newline).and_then(parse_i64),
            start + newline + 2,
        ))),
    }
}

/// Argument positions `(start, len)` of one request: the first [`SPANS_INLINE`] on the stack,
/// the rest on the heap.
struct SpanList {
    inline: [(usize, usize); SPANS_INLINE],
    inline_count: usize,
    spill: Vec<(usize, usize)>,
}

impl SpanList {
    fn new() -> Self {
        SpanList {
            inline: [(0, 0); SPANS_INLINE],
            inline_count: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, start: usize, len: usize) {
        if let Some(slot) = self.inline.get_mut(self.inline_count) {
            *slot = (start, len);
            self.inline_count += 1;
        } else {
            self.spill.push((start, len));
        }
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        // Chain is not ExactSizeIterator; the two parts are, and sum to the count.
        SpanIter {
            inline: self.inline[..self.inline_count].iter(),
            spill: self.spill.iter(),
        }
    }
}

struct SpanIter<'a> {
    inline: std::slice::Iter<'a, (usize, usize)>,
    spill: std::slice::Iter<'a, (usize, usize)>,
}

impl Iterator for SpanIter<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        self.inline.next().or_else(|| self.spill.next()).copied()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let count = self.inline.len() + self.spill.len();
        (count, Some(count))
    }
}

impl ExactSizeIterator for SpanIter<'_> {}

#[cfg(test)]
#[path = "request_test.rs"]
mod tests;
