//! Unit tests of `frame_parser`.

use super::*;

fn parsed(bytes: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
    parse_frame(bytes)
}

fn complete(bytes: &[u8]) -> Frame {
    match parse_frame(bytes) {
        Ok(Some((frame, consumed))) => {
            assert_eq!(
                consumed,
                bytes.len(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            frame
        }
        other => panic!("{:?} parsed as {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn bulk(bytes: &'static [u8]) -> Frame {
    Frame::Bulk(Bytes::from_static(bytes))
}

#[test]
fn resp2_types() {
    assert_eq!(complete(b"+OK\r\n"), Frame::Simple("OK".into()));
    assert_eq!(complete(b"-ERR x\r\n"), Frame::Error("ERR x".into()));
    assert_eq!(complete(b":-12\r\n"), Frame::Integer(-12));
    assert_eq!(complete(b"$3\r\nfoo\r\n"), bulk(b"foo"));
    assert_eq!(complete(b"$0\r\n\r\n"), bulk(b""));
    assert_eq!(complete(b"$-1\r\n"), Frame::Null);
    assert_eq!(complete(b"*-1\r\n"), Frame::Null);
    assert_eq!(complete(b"*0\r\n"), Frame::Array(vec![]));
    assert_eq!(
        complete(b"*2\r\n:1\r\n*1\r\n$1\r\na\r\n"),
        Frame::Array(vec![Frame::Integer(1), Frame::Array(vec![bulk(b"a")])])
    );
}

#[test]
fn resp3_types() {
    assert_eq!(complete(b"_\r\n"), Frame::Null);
    assert_eq!(complete(b"#t\r\n"), Frame::Boolean(true));
    assert_eq!(complete(b"#f\r\n"), Frame::Boolean(false));
    assert_eq!(complete(b",1.5\r\n"), Frame::Double(1.5));
    assert_eq!(complete(b",inf\r\n"), Frame::Double(f64::INFINITY));
    assert_eq!(complete(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
    assert!(matches!(complete(b",nan\r\n"), Frame::Double(v) if v.is_nan()));
    assert_eq!(complete(b"(-123\r\n"), bulk(b"-123"));
    assert_eq!(complete(b"!5\r\nERR x\r\n"), Frame::Error("ERR x".into()));
    assert_eq!(
        complete(b"=6\r\ntxt:hi\r\n"),
        Frame::Verbatim("txt", Bytes::from_static(b"hi"))
    );
    assert_eq!(
        complete(b"=6\r\nmkd:hi\r\n"),
        Frame::Verbatim("mkd", Bytes::from_static(b"hi"))
    );
    assert_eq!(complete(b"=6\r\nraw:hi\r\n"), bulk(b"raw:hi"));
    assert_eq!(
        complete(b"%1\r\n+k\r\n:1\r\n"),
        Frame::Map(vec![(Frame::Simple("k".into()), Frame::Integer(1))])
    );
    assert_eq!(
        complete(b"~1\r\n:1\r\n"),
        Frame::Set(vec![Frame::Integer(1)])
    );
    assert_eq!(
        complete(b">1\r\n:1\r\n"),
        Frame::Array(vec![Frame::Integer(1)])
    );
    assert_eq!(complete(b"|1\r\n+ttl\r\n:3\r\n:7\r\n"), Frame::Integer(7));
}

#[test]
fn incomplete_replies_need_more_bytes() {
    let whole: &[u8] = b"*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n,2.5\r\n|1\r\n+a\r\n:1\r\n#t\r\n";
    assert!(parse_frame(whole).is_ok_and(|r| r.is_some()));
    for cut in 0..whole.len() {
        assert_eq!(parsed(&whole[..cut]), Ok(None), "cut at {cut}");
    }
}

#[test]
fn malformed_replies_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"?x\r\n", "unknown reply type '?'"),
        (b":1x\r\n", "invalid integer"),
        (b":1\rx", "expected '\\n' after '\\r'"),
        (b"$x\r\n", "invalid bulk length"),
        (b"$-2\r\n", "invalid bulk length"),
        (b"$1\r\nab\r\n", "expected '\\r\\n' after bulk data"),
        (b"*-2\r\n", "invalid aggregate length"),
        (b"%-1\r\n", "invalid aggregate length"),
        (b"_x\r\n", "invalid null"),
        (b"#x\r\n", "invalid boolean"),
        (b",x\r\n", "invalid double"),
        (b"(1.5\r\n", "invalid big number"),
        (b"=2\r\nab\r\n", "invalid verbatim string"),
        (b"$?\r\n", "invalid bulk length"),
    ];
    for &(bytes, message) in cases {
        assert_eq!(
            parsed(bytes),
            Err(ProtocolError::new(message)),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn nesting_is_bounded() {
    let mut ok = "*1\r\n".repeat(FRAME_DEPTH_MAX);
    ok.push_str(":1\r\n");
    assert!(parse_frame(ok.as_bytes()).is_ok_and(|r| r.is_some()));
    let too_deep = "*1\r\n".repeat(FRAME_DEPTH_MAX + 1) + ":1\r\n";
    assert_eq!(
        parse_frame(too_deep.as_bytes()),
        Err(ProtocolError(format!(
            "reply nested deeper than {FRAME_DEPTH_MAX} levels"
        )))
    );
    // Far deeper input must fail the same way, without exhausting the stack.
    let abyss = "*1\r\n".repeat(1_000_000);
    assert!(parse_frame(abyss.as_bytes()).is_err());
}

#[test]
fn huge_declared_sizes_wait_without_allocating() {
    assert_eq!(parsed(b"*9223372036854775807\r\n:1\r\n"), Ok(None));
    assert_eq!(parsed(b"%9223372036854775807\r\n:1\r\n"), Ok(None));
    assert_eq!(parsed(b"$9223372036854775807\r\nabc"), Ok(None));
    assert_eq!(parsed(b"|9223372036854775807\r\n:1\r\n"), Ok(None));
}
