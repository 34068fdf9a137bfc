//! Decoding server replies (RESP2 and RESP3) into [`Frame`]s, for clients and tests.

use bytes::Bytes;
use memchr::memchr;

use crate::number::parse_i64;
use crate::{Frame, ProtocolError};

/// Deepest nesting of aggregates (arrays, maps, sets, pushes, attributes) that
/// [`parse_frame`] accepts; the top-level value is depth 0. Bounds the parser's recursion.
pub const FRAME_DEPTH_MAX: usize = 128;

/// Elements reserved up front for an aggregate, whatever count it declares; more are added as
/// they actually arrive.
const ITEMS_RESERVED_MAX: usize = 64;

/// Decodes one RESP2 or RESP3 reply from the front of `buf`.
///
/// Returns `Ok(Some((frame, consumed)))` for a complete reply of `consumed` bytes, `Ok(None)`
/// when more bytes are needed. Nothing is allocated from a declared count or length beyond
/// what `buf` holds, and nesting deeper than [`FRAME_DEPTH_MAX`] is an error.
///
/// RESP3 types without a [`Frame`] variant decode to the nearest one: a blob error `!` to
/// [`Frame::Error`], a push `>` to [`Frame::Array`], a big number `(` to [`Frame::Bulk`] of its
/// digits, a verbatim string with a format other than `txt` or `mkd` to [`Frame::Bulk`] of its
/// whole payload (`fmt:text`). An attribute `|` is skipped and the value after it returned.
/// Null bulk strings and null arrays (`$-1`, `*-1`) decode to [`Frame::Null`]. Streamed
/// strings and aggregates (`$?`) are not supported. Simple strings and errors that are not
/// UTF-8 are decoded lossily.
///
/// # Errors
/// A [`ProtocolError`] when the bytes can never become a valid reply (unknown type byte, bad
/// length or number, missing `\r\n`, nesting too deep).
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

fn parse_at(
    buf: &[u8],
    mut pos: usize,
    depth: usize,
) -> Result<Option<(Frame, usize)>, ProtocolError> {
    if depth > FRAME_DEPTH_MAX {
        return Err(ProtocolError(format!(
            "reply nested deeper than {FRAME_DEPTH_MAX} levels"
        )));
    }
    loop {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        if !matches!(
            kind,
            b'+' | b'-'
                | b':'
                | b'$'
                | b'!'
                | b'='
                | b'*'
                | b'%'
                | b'~'
                | b'>'
                | b'|'
                | b'_'
                | b','
                | b'#'
                | b'('
        ) {
            return Err(ProtocolError(format!(
                "unknown reply type '{}'",
                char::from(kind)
            )));
        }
        let Some((line, next)) = read_line(buf, pos + 1)? else {
            return Ok(None);
        };
        let frame = match kind {
            b'+' => Frame::Simple(String::from_utf8_lossy(line).into_owned()),
            b'-' => Frame::Error(String::from_utf8_lossy(line).into_owned()),
            b':' => Frame::Integer(parse_i64(line).ok_or_else(|| invalid("integer"))?),
            b'_' if line.is_empty() => Frame::Null,
            b'_' => return Err(invalid("null")),
            b'#' => match line {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(invalid("boolean")),
            },
            b',' => Frame::Double(
                std::str::from_utf8(line)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| invalid("double"))?,
            ),
            b'(' => {
                let digits = line.strip_prefix(b"-").unwrap_or(line);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(invalid("big number"));
                }
                Frame::Bulk(Bytes::copy_from_slice(line))
            }
            b'$' | b'!' | b'=' => return parse_blob(buf, kind, line, next),
            b'|' => {
                // Attributes describe the reply that follows; skip them.
                let pairs = parse_count(line, kind)?.unwrap_or(0);
                let Some((_, after)) = parse_items(buf, next, pairs.saturating_mul(2), depth)?
                else {
                    return Ok(None);
                };
                pos = after;
                continue;
            }
            _ => return parse_aggregate(buf, kind, line, next, depth),
        };
        return Ok(Some((frame, next)));
    }
}

fn invalid(what: &str) -> ProtocolError {
    ProtocolError(format!("invalid {what}"))
}

/// Reads the line starting at `start` up to its `\r\n`; returns it and the offset after it.
fn read_line(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let Some(rest) = buf.get(start..) else {
        return Ok(None);
    };
    let Some(cr) = memchr(b'\r', rest) else {
        return Ok(None);
    };
    match rest.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((&rest[..cr], start + cr + 2))),
        Some(_) => Err(ProtocolError::new("expected '\\n' after '\\r'")),
    }
}

/// The count of an aggregate header; `None` for `-1` (a RESP2 null array), allowed only for `*`.
fn parse_count(line: &[u8], kind: u8) -> Result<Option<usize>, ProtocolError> {
    match parse_i64(line) {
        Some(-1) if kind == b'*' => Ok(None),
        Some(count) => usize::try_from(count)
            .map(Some)
            .map_err(|_| invalid("aggregate length")),
        None => Err(invalid("aggregate length")),
    }
}

/// A bulk string `$`, blob error `!` or verbatim string `=` whose length line was `line`.
fn parse_blob(
    buf: &[u8],
    kind: u8,
    line: &[u8],
    start: usize,
) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let len = parse_i64(line).ok_or_else(|| invalid("bulk length"))?;
    if len == -1 && kind == b'$' {
        return Ok(Some((Frame::Null, start)));
    }
    let len = usize::try_from(len).map_err(|_| invalid("bulk length"))?;
    let end = start
        .checked_add(len)
        .ok_or_else(|| invalid("bulk length"))?;
    let Some(after) = end.checked_add(2).filter(|&after| after <= buf.len()) else {
        return Ok(None);
    };
    if &buf[end..after] != b"\r\n" {
        return Err(ProtocolError::new("expected '\\r\\n' after bulk data"));
    }
    let payload = &buf[start..end];
    let frame = match kind {
        b'!' => Frame::Error(String::from_utf8_lossy(payload).into_owned()),
        b'=' => {
            let (format, text) = match payload {
                [a, b, c, b':', text @ ..] => ([*a, *b, *c], text),
                _ => return Err(invalid("verbatim string")),
            };
            match &format {
                b"txt" => Frame::Verbatim("txt", Bytes::copy_from_slice(text)),
                b"mkd" => Frame::Verbatim("mkd", Bytes::copy_from_slice(text)),
                _ => Frame::Bulk(Bytes::copy_from_slice(payload)),
            }
        }
        _ => Frame::Bulk(Bytes::copy_from_slice(payload)),
    };
    Ok(Some((frame, after)))
}

/// An array `*`, map `%`, set `~` or push `>` whose count line was `line`.
fn parse_aggregate(
    buf: &[u8],
    kind: u8,
    line: &[u8],
    start: usize,
    depth: usize,
) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let Some(count) = parse_count(line, kind)? else {
        return Ok(Some((Frame::Null, start)));
    };
    if kind == b'%' {
        let Some((items, after)) = parse_items(buf, start, count.saturating_mul(2), depth)? else {
            return Ok(None);
        };
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            pairs.push((key, value));
        }
        return Ok(Some((Frame::Map(pairs), after)));
    }
    let Some((items, after)) = parse_items(buf, start, count, depth)? else {
        return Ok(None);
    };
    let frame = if kind == b'~' {
        Frame::Set(items)
    } else {
        Frame::Array(items)
    };
    Ok(Some((frame, after)))
}

/// Parses `count` values from `start`, one level below `depth`.
fn parse_items(
    buf: &[u8],
    start: usize,
    count: usize,
    depth: usize,
) -> Result<Option<(Vec<Frame>, usize)>, ProtocolError> {
    // Every value takes at least 3 bytes, so this loop ends within buf.len() / 3 rounds
    // whatever `count` says.
    let mut items = Vec::with_capacity(count.min(ITEMS_RESERVED_MAX));
    let mut pos = start;
    for _ in 0..count {
        let Some((item, after)) = parse_at(buf, pos, depth + 1)? else {
            return Ok(None);
        };
        items.push(item);
        pos = after;
    }
    Ok(Some((items, pos)))
}

#[cfg(test)]
#[path = "frame_parser_test.rs"]
mod tests;
