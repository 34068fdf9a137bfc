//! Unit tests of `encode`.

use super::*;

fn encoded(write: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut out = BytesMut::new();
    write(&mut out);
    out.to_vec()
}

#[test]
fn scalars() {
    assert_eq!(encoded(encode_ok), b"+OK\r\n");
    assert_eq!(encoded(|o| encode_simple(o, "PONG")), b"+PONG\r\n");
    assert_eq!(encoded(|o| encode_error(o, "ERR bad")), b"-ERR bad\r\n");
    assert_eq!(encoded(|o| encode_integer(o, 0)), b":0\r\n");
    assert_eq!(
        encoded(|o| encode_integer(o, i64::MIN)),
        b":-9223372036854775808\r\n"
    );
    assert_eq!(encoded(|o| encode_bulk(o, b"")), b"$0\r\n\r\n");
    assert_eq!(encoded(|o| encode_bulk(o, b"a\r\nb")), b"$4\r\na\r\nb\r\n");
    assert_eq!(encoded(|o| encode_bulk_header(o, 12)), b"$12\r\n");
    assert_eq!(encoded(|o| encode_null(Protocol::Resp2, o)), b"$-1\r\n");
    assert_eq!(encoded(|o| encode_null(Protocol::Resp3, o)), b"_\r\n");
}

#[test]
fn line_breaks_in_text_become_spaces() {
    assert_eq!(
        encoded(|o| encode_error(o, "ERR a\r\nb\nc")),
        b"-ERR a  b c\r\n"
    );
    assert_eq!(encoded(|o| encode_simple(o, "x\ry")), b"+x y\r\n");
}

#[test]
fn aggregate_headers() {
    assert_eq!(encoded(|o| encode_array_header(o, 3)), b"*3\r\n");
    assert_eq!(
        encoded(|o| encode_map_header(Protocol::Resp2, o, 3)),
        b"*6\r\n"
    );
    assert_eq!(
        encoded(|o| encode_map_header(Protocol::Resp3, o, 3)),
        b"%3\r\n"
    );
    assert_eq!(
        encoded(|o| encode_set_header(Protocol::Resp2, o, 2)),
        b"*2\r\n"
    );
    assert_eq!(
        encoded(|o| encode_set_header(Protocol::Resp3, o, 2)),
        b"~2\r\n"
    );
    assert_eq!(
        encoded(|o| encode_push_header(Protocol::Resp2, o, 3)),
        b"*3\r\n"
    );
    assert_eq!(
        encoded(|o| encode_push_header(Protocol::Resp3, o, 3)),
        b">3\r\n"
    );
}

#[test]
fn resp3_types_and_their_resp2_forms() {
    assert_eq!(
        encoded(|o| encode_double(Protocol::Resp3, o, 1.5)),
        b",1.5\r\n"
    );
    assert_eq!(
        encoded(|o| encode_double(Protocol::Resp2, o, 1.5)),
        b"$3\r\n1.5\r\n"
    );
    assert_eq!(
        encoded(|o| encode_double(Protocol::Resp2, o, 2.0)),
        b"$1\r\n2\r\n"
    );
    assert_eq!(
        encoded(|o| encode_double(Protocol::Resp3, o, f64::INFINITY)),
        b",inf\r\n"
    );
    assert_eq!(
        encoded(|o| encode_double(Protocol::Resp2, o, f64::NEG_INFINITY)),
        b"$4\r\n-inf\r\n"
    );
    assert_eq!(
        encoded(|o| encode_double(Protocol::Resp3, o, f64::NAN)),
        b",nan\r\n"
    );
    assert_eq!(
        encoded(|o| encode_boolean(Protocol::Resp3, o, true)),
        b"#t\r\n"
    );
    assert_eq!(
        encoded(|o| encode_boolean(Protocol::Resp3, o, false)),
        b"#f\r\n"
    );
    assert_eq!(
        encoded(|o| encode_boolean(Protocol::Resp2, o, true)),
        b":1\r\n"
    );
    assert_eq!(
        encoded(|o| encode_boolean(Protocol::Resp2, o, false)),
        b":0\r\n"
    );
    assert_eq!(
        encoded(|o| encode_verbatim(Protocol::Resp3, o, "txt", b"hi")),
        b"=6\r\ntxt:hi\r\n"
    );
    assert_eq!(
        encoded(|o| encode_verbatim(Protocol::Resp2, o, "txt", b"hi")),
        b"$2\r\nhi\r\n"
    );
}

#[test]
#[should_panic(expected = "is not 3 bytes")]
fn verbatim_format_must_be_three_bytes() {
    encode_verbatim(Protocol::Resp3, &mut BytesMut::new(), "text", b"x");
}
