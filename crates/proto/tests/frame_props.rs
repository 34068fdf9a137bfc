//! Property tests of reply encoding: every frame encoded in RESP3 decodes back to itself, and
//! in RESP2 to the RESP2 form Redis gives it.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use replikv_proto::{format_double, parse_frame, Frame, Protocol, DOUBLE_TEXT_BYTES_MAX};

/// Pieces of replies, for inputs that reach deep into the decoder.
const REPLY_TOKENS: &[&[u8]] = &[
    b"*", b"%", b"~", b">", b"|", b"$", b"=", b"!", b",", b"#", b"_", b"(", b":", b"+", b"-",
    b"\r\n", b"1", b"2", b"4", b"txt:", b"t", b"inf",
];

fn frame_strategy() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        "[^\r\n]{0,20}".prop_map(Frame::Simple),
        "[^\r\n]{0,20}".prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        vec(any::<u8>(), 0..32).prop_map(|bytes| Frame::Bulk(Bytes::from(bytes))),
        Just(Frame::Null),
        // NaN is not equal to itself; the unit tests cover it.
        any::<f64>()
            .prop_filter("NaN", |v| !v.is_nan())
            .prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        (
            prop_oneof![Just("txt"), Just("mkd")],
            vec(any::<u8>(), 0..32)
        )
            .prop_map(|(format, text)| Frame::Verbatim(format, Bytes::from(text))),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(Frame::Map),
            vec(inner, 0..6).prop_map(Frame::Set),
        ]
    })
}

/// The frame a RESP2 client sees for `frame`.
fn resp2_form(frame: &Frame) -> Frame {
    match frame {
        Frame::Array(items) | Frame::Set(items) => {
            Frame::Array(items.iter().map(resp2_form).collect())
        }
        Frame::Map(pairs) => Frame::Array(
            pairs
                .iter()
                .flat_map(|(key, value)| [resp2_form(key), resp2_form(value)])
                .collect(),
        ),
        Frame::Double(value) => {
            let mut text = [0; DOUBLE_TEXT_BYTES_MAX];
            Frame::Bulk(Bytes::copy_from_slice(format_double(*value, &mut text)))
        }
        Frame::Boolean(value) => Frame::Integer(i64::from(*value)),
        Frame::Verbatim(_, text) => Frame::Bulk(text.clone()),
        other => other.clone(),
    }
}

fn encoded(frame: &Frame, proto: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(proto, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn resp3_round_trip(frame in frame_strategy()) {
        let bytes = encoded(&frame, Protocol::Resp3);
        prop_assert_eq!(parse_frame(&bytes), Ok(Some((frame, bytes.len()))));
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse_frame(&bytes[..cut]), Ok(None));
        }
    }

    #[test]
    fn resp2_round_trip_gives_the_resp2_form(frame in frame_strategy()) {
        let bytes = encoded(&frame, Protocol::Resp2);
        prop_assert_eq!(parse_frame(&bytes), Ok(Some((resp2_form(&frame), bytes.len()))));
    }

    #[test]
    fn doubles_read_back_exactly(value in any::<f64>().prop_filter("NaN", |v| !v.is_nan())) {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let bytes = encoded(&Frame::Double(value), proto);
            let back = match parse_frame(&bytes) {
                Ok(Some((Frame::Double(back), _))) => back,
                Ok(Some((Frame::Bulk(text), _))) => {
                    std::str::from_utf8(&text).ok().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN)
                }
                other => panic!("{value:e} decoded as {other:?}"),
            };
            prop_assert_eq!(back.to_bits(), value.to_bits());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        if let Ok(Some((_, consumed))) = parse_frame(&bytes) {
            prop_assert!(consumed > 0 && consumed <= bytes.len());
        }
    }

    #[test]
    fn resp_like_bytes_never_panic(
        tokens in vec(proptest::sample::select(REPLY_TOKENS), 0..80)
    ) {
        let bytes = tokens.concat();
        if let Ok(Some((_, consumed))) = parse_frame(&bytes) {
            prop_assert!(consumed > 0 && consumed <= bytes.len());
        }
    }
}
