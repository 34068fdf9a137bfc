//! Request parsing: Redis 7's error texts, limits and edge cases, and the same requests however
//! the bytes are split across reads.

use bytes::{Bytes, BytesMut};
use replikv_proto::{parse_request, Limits, ProtocolError, RequestDecoder, HEADER_BYTES_MAX};

type Request = Vec<Vec<u8>>;

fn to_vecs(args: Vec<Bytes>) -> Request {
    args.into_iter().map(|arg| arg.to_vec()).collect()
}

/// Parses every complete request in `bytes`; returns them and the bytes left over.
fn parse_all(bytes: &[u8], limits: &Limits) -> Result<(Vec<Request>, Vec<u8>), ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    let mut requests = Vec::new();
    while let Some(args) = parse_request(&mut buf, limits)? {
        requests.push(to_vecs(args));
    }
    Ok((requests, buf.to_vec()))
}

fn one(bytes: &[u8]) -> Request {
    match parse_all(bytes, &Limits::default()) {
        Ok((mut requests, rest)) if requests.len() == 1 && rest.is_empty() => requests.remove(0),
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn args(list: &[&[u8]]) -> Request {
    list.iter().map(|arg| arg.to_vec()).collect()
}

/// Asserts that parsing `bytes` fails with `message`, and leaves the buffer as it was.
fn fails_with(bytes: &[u8], limits: &Limits, message: &str) {
    let mut buf = BytesMut::from(bytes);
    let result = parse_request(&mut buf, limits);
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
    assert_eq!(
        result,
        Err(ProtocolError(message.to_string())),
        "input {shown:?}"
    );
    assert_eq!(
        &buf[..],
        bytes,
        "an error must leave the buffer unchanged ({shown:?})"
    );
    let mut decoder = RequestDecoder::new(*limits);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError(message.to_string())),
        "{shown:?}"
    );
    assert_eq!(&buf[..], bytes);
}

/// Asserts that `bytes` is an incomplete request, and that the buffer is untouched.
fn incomplete(bytes: &[u8], limits: &Limits) {
    let mut buf = BytesMut::from(bytes);
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
    assert_eq!(parse_request(&mut buf, limits), Ok(None), "input {shown:?}");
    assert_eq!(
        &buf[..],
        bytes,
        "incomplete input must stay in the buffer ({shown:?})"
    );
}

#[test]
fn multibulk_requests() {
    assert_eq!(one(b"*1\r\n$4\r\nPING\r\n"), args(&[b"PING"]));
    assert_eq!(
        one(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"),
        args(&[b"SET", b"k", b""])
    );
    // Binary-safe: payloads may hold CR, LF and NUL.
    assert_eq!(
        one(b"*2\r\n$3\r\nGET\r\n$4\r\na\r\n\0\r\n"),
        args(&[b"GET", b"a\r\n\0"])
    );
}

#[test]
fn empty_and_negative_counts_are_skipped_like_redis() {
    for bytes in [&b"*0\r\n"[..], b"*-1\r\n", b"*-100\r\n"] {
        assert_eq!(
            one(bytes),
            Request::new(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn redis_does_not_check_the_bytes_after_cr_or_after_a_payload() {
    // processMultibulkBuffer skips the byte after `\r` and the 2 bytes after a payload
    // without looking at them; so do we, so that both accept the same streams.
    assert_eq!(one(b"*1\rX$3\rYfooAB"), args(&[b"foo"]));
}

#[test]
fn inline_requests() {
    assert_eq!(one(b"PING\r\n"), args(&[b"PING"]));
    assert_eq!(one(b"PING\n"), args(&[b"PING"]));
    assert_eq!(one(b"SET k v\r\n"), args(&[b"SET", b"k", b"v"]));
    assert_eq!(one(b"  SET   k\tv  \r\n"), args(&[b"SET", b"k", b"v"]));
    assert_eq!(
        one(b"SET k \"a b\\r\\n\\x00\"\r\n"),
        args(&[b"SET", b"k", b"a b\r\n\0"])
    );
    assert_eq!(one(b"SET k 'it\\'s'\n"), args(&[b"SET", b"k", b"it's"]));
    assert_eq!(one(b"SET k \"\"\n"), args(&[b"SET", b"k", b""]));
    // Only one `\r` before the `\n` belongs to the line ending; another is a blank.
    assert_eq!(one(b"GET k\r\r\n"), args(&[b"GET", b"k"]));
}

#[test]
fn empty_inline_lines_yield_no_arguments() {
    for bytes in [&b"\r\n"[..], b"\n", b"   \r\n", b"\t\n"] {
        assert_eq!(
            one(bytes),
            Request::new(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn inline_quoting_errors() {
    let limits = Limits::default();
    for bytes in [
        &b"SET k \"abc\r\n"[..],
        b"SET k 'abc\n",
        b"SET k \"abc\"def\n",
        b"SET k 'abc'def\n",
        b"SET k \"abc\\\"\n",
    ] {
        fails_with(bytes, &limits, "unbalanced quotes in request");
    }
}

#[test]
fn invalid_multibulk_length() {
    let limits = Limits::default();
    for bytes in [
        &b"*\r\n"[..],
        b"*abc\r\n",
        b"*+1\r\n",
        b"*01\r\n",
        b"* 1\r\n",
        b"*1 \r\n",
        b"*-0\r\n",
        b"*1.0\r\n",
        b"*99999999999999999999\r\n",
        b"*1073741825\r\n",
    ] {
        fails_with(bytes, &limits, "invalid multibulk length");
    }
    let small = Limits {
        multibulk_count_max: 2,
        ..Limits::default()
    };
    fails_with(b"*3\r\n", &small, "invalid multibulk length");
    incomplete(b"*2\r\n", &small);
}

#[test]
fn invalid_bulk_length() {
    let limits = Limits::default();
    for bytes in [
        &b"*1\r\n$\r\n"[..],
        b"*1\r\n$abc\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$-5\r\n",
        b"*1\r\n$+3\r\n",
        b"*1\r\n$03\r\n",
        b"*1\r\n$536870913\r\n",
        b"*2\r\n$3\r\nGET\r\n$x\r\n",
    ] {
        fails_with(bytes, &limits, "invalid bulk length");
    }
    let small = Limits {
        bulk_bytes_max: 3,
        ..Limits::default()
    };
    fails_with(b"*1\r\n$4\r\n", &small, "invalid bulk length");
    assert_eq!(
        parse_all(b"*1\r\n$3\r\nabc\r\n", &small).map(|(requests, _)| requests),
        Ok(vec![args(&[b"abc"])])
    );
}

#[test]
fn expected_dollar() {
    let limits = Limits::default();
    fails_with(b"*1\r\nfoo\r\n", &limits, "expected '$', got 'f'");
    fails_with(b"*1\r\n:1\r\n", &limits, "expected '$', got ':'");
    fails_with(b"*2\r\n$1\r\na\r\n*1\r\n", &limits, "expected '$', got '*'");
    // The check waits for a whole line, as Redis's does.
    incomplete(b"*1\r\nfoo", &limits);
}

#[test]
fn too_big_header_lines() {
    let limits = Limits::default();
    let mut count = b"*".to_vec();
    count.resize(HEADER_BYTES_MAX, b'1');
    incomplete(&count, &limits);
    count.push(b'1');
    fails_with(&count, &limits, "too big mbulk count string");

    let mut bulk = b"*1\r\n$".to_vec();
    bulk.resize(4 + HEADER_BYTES_MAX, b'1');
    incomplete(&bulk, &limits);
    bulk.push(b'1');
    fails_with(&bulk, &limits, "too big bulk count string");
}

#[test]
fn too_big_inline_request() {
    let limits = Limits::default();
    let mut line = vec![b'a'; limits.inline_bytes_max];
    incomplete(&line, &limits);
    line.push(b'a');
    fails_with(&line, &limits, "too big inline request");
    // A line with its newline is parsed whatever its length, as in Redis.
    line.push(b'\n');
    assert_eq!(one(&line), vec![vec![b'a'; limits.inline_bytes_max + 1]]);

    let small = Limits {
        inline_bytes_max: 4,
        ..Limits::default()
    };
    incomplete(b"PING", &small);
    fails_with(b"PING ", &small, "too big inline request");
}

#[test]
fn error_display_is_redis_text() {
    let mut buf = BytesMut::from(&b"*x\r\n"[..]);
    let error = parse_request(&mut buf, &Limits::default()).err();
    assert_eq!(
        error.map(|e| e.to_string()),
        Some("Protocol error: invalid multibulk length".to_string())
    );
}

#[test]
fn huge_declared_sizes_wait_for_bytes() {
    let limits = Limits::default();
    incomplete(b"*1073741824\r\n", &limits);
    incomplete(b"*1073741824\r\n$536870912\r\n", &limits);
    incomplete(b"*1\r\n$536870912\r\nabc", &limits);
    let unlimited = Limits {
        bulk_bytes_max: usize::MAX,
        multibulk_count_max: usize::MAX,
        inline_bytes_max: usize::MAX,
    };
    incomplete(
        b"*9223372036854775807\r\n$9223372036854775807\r\nabc",
        &unlimited,
    );
}

#[test]
fn arguments_are_slices_of_the_input() {
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\nSET k v\r\n"[..]);
    let range = buf.as_ptr_range();
    let limits = Limits::default();
    for _ in 0..2 {
        let request = parse_request(&mut buf, &limits);
        for arg in request.ok().flatten().unwrap_or_default() {
            assert!(range.contains(&arg.as_ptr()), "{arg:?} was copied");
        }
    }
    assert!(buf.is_empty());
}

/// A pipeline mixing every request shape.
fn pipeline() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n");
    bytes.extend_from_slice(b"PING\r\n");
    bytes.extend_from_slice(b"*0\r\n");
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
    bytes.extend_from_slice(b"SET k \"a \\x41\" 'b c'\n");
    bytes.extend_from_slice(b"*-1\r\n");
    let many: Vec<u8> = (0..40)
        .flat_map(|i| format!("$2\r\n{i:02}\r\n").into_bytes())
        .collect();
    bytes.extend_from_slice(b"*40\r\n");
    bytes.extend_from_slice(&many);
    bytes.extend_from_slice(b"ECHO x\n");
    bytes
}

#[test]
fn byte_at_a_time_equals_all_at_once() {
    let limits = Limits::default();
    let bytes = pipeline();
    let (expected, rest) = parse_all(&bytes, &limits).unwrap_or_default();
    assert_eq!(expected.len(), 9);
    assert!(rest.is_empty());

    let mut buf = BytesMut::new();
    let mut decoder_buf = BytesMut::new();
    let mut decoder = RequestDecoder::new(limits);
    let mut stateless = Vec::new();
    let mut resumed = Vec::new();
    for &byte in &bytes {
        buf.extend_from_slice(&[byte]);
        while let Some(args) = parse_request(&mut buf, &limits).unwrap_or_default() {
            stateless.push(to_vecs(args));
        }
        decoder_buf.extend_from_slice(&[byte]);
        while let Some(args) = decoder.decode(&mut decoder_buf).unwrap_or_default() {
            resumed.push(to_vecs(args));
        }
    }
    assert_eq!(stateless, expected);
    assert_eq!(resumed, expected);
    assert!(buf.is_empty() && decoder_buf.is_empty());
}

#[test]
fn every_split_point_equals_all_at_once() {
    let limits = Limits::default();
    let bytes = pipeline();
    let (expected, _) = parse_all(&bytes, &limits).unwrap_or_default();
    for cut in 0..=bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        let mut decoder = RequestDecoder::new(limits);
        let mut decoder_buf = buf.clone();
        let mut got = Vec::new();
        let mut got_decoder = Vec::new();
        while let Some(args) = parse_request(&mut buf, &limits).unwrap_or_default() {
            got.push(to_vecs(args));
        }
        while let Some(args) = decoder.decode(&mut decoder_buf).unwrap_or_default() {
            got_decoder.push(to_vecs(args));
        }
        buf.extend_from_slice(&bytes[cut..]);
        decoder_buf.extend_from_slice(&bytes[cut..]);
        while let Some(args) = parse_request(&mut buf, &limits).unwrap_or_default() {
            got.push(to_vecs(args));
        }
        while let Some(args) = decoder.decode(&mut decoder_buf).unwrap_or_default() {
            got_decoder.push(to_vecs(args));
        }
        assert_eq!(got, expected, "cut at {cut}");
        assert_eq!(got_decoder, expected, "decoder, cut at {cut}");
    }
}

#[test]
fn decoder_errors_reset_it() {
    let mut decoder = RequestDecoder::new(Limits::default());
    let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"x\r\n");
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ProtocolError("expected '$', got 'x'".into()))
    );
    // After an error the caller discards the connection's buffer; a new one starts afresh.
    let mut buf = BytesMut::from(&b"PING\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf).map(|r| r.map(to_vecs)),
        Ok(Some(args(&[b"PING"])))
    );
}
