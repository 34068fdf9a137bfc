//! Property tests of request parsing: encoded requests come back unchanged however the bytes
//! are split, and no input makes the parser panic or misreport what it consumed.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use replikv_proto::{parse_request, Limits, ProtocolError, RequestDecoder};

type Request = Vec<Vec<u8>>;

fn encode_multibulk(request: &Request) -> Vec<u8> {
    let mut bytes = format!("*{}\r\n", request.len()).into_bytes();
    for arg in request {
        bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        bytes.extend_from_slice(arg);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// An inline line that quotes every argument, escaping whatever needs it.
fn encode_inline(request: &Request) -> Vec<u8> {
    let mut line = Vec::new();
    for arg in request {
        line.push(b'"');
        for &byte in arg {
            match byte {
                b'"' | b'\\' => line.extend_from_slice(&[b'\\', byte]),
                b' '..=b'~' => line.push(byte),
                _ => line.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            }
        }
        line.extend_from_slice(b"\" ");
    }
    line.extend_from_slice(b"\r\n");
    line
}

fn to_vecs(args: Vec<Bytes>) -> Request {
    args.into_iter().map(|arg| arg.to_vec()).collect()
}

/// What a connection sees: the requests parsed in order, then the error, if any, and the bytes
/// not consumed (including those not yet fed when the error came).
#[derive(Debug, PartialEq)]
struct Outcome {
    requests: Vec<Request>,
    error: Option<ProtocolError>,
    rest: Vec<u8>,
}

/// Feeds `bytes` in the given chunks, parsing after each with `parse`, checking after every
/// call that a request consumed bytes and that `None` or an error consumed none.
fn feed(
    bytes: &[u8],
    cuts: &[usize],
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError>,
) -> Outcome {
    let mut cuts: Vec<usize> = cuts.iter().map(|&cut| cut % (bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut requests = Vec::new();
    for cut in cuts {
        buf.extend_from_slice(&bytes[fed..cut]);
        fed = cut;
        loop {
            let before = buf.clone();
            match parse(&mut buf) {
                Ok(Some(args)) => {
                    assert!(buf.len() < before.len(), "a request consumed no bytes");
                    assert!(
                        before.ends_with(&buf),
                        "parsing consumed bytes from the back"
                    );
                    requests.push(to_vecs(args));
                }
                Ok(None) => {
                    assert_eq!(buf, before, "an incomplete request changed the buffer");
                    break;
                }
                Err(error) => {
                    assert_eq!(buf, before, "an error changed the buffer");
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&bytes[fed..]);
                    return Outcome {
                        requests,
                        error: Some(error),
                        rest,
                    };
                }
            }
        }
    }
    Outcome {
        requests,
        error: None,
        rest: buf.to_vec(),
    }
}

fn stateless(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    parse_request(buf, &Limits::default())
}

fn request_strategy() -> impl Strategy<Value = Request> {
    vec(vec(any::<u8>(), 0..40), 1..6)
}

/// Bytes that look enough like RESP to reach deep into the parser.
fn resp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"-".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\x".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\0".to_vec()),
        (0_u32..20).prop_map(|n| n.to_string().into_bytes()),
        vec(any::<u8>(), 1..4),
    ];
    vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn multibulk_round_trip(requests in vec(request_strategy(), 1..6), cuts in vec(any::<usize>(), 0..8)) {
        let bytes: Vec<u8> = requests.iter().flat_map(encode_multibulk).collect();
        let expected = Outcome { requests, error: None, rest: Vec::new() };
        prop_assert_eq!(&feed(&bytes, &[], stateless), &expected);
        prop_assert_eq!(&feed(&bytes, &cuts, stateless), &expected);
        let mut decoder = RequestDecoder::new(Limits::default());
        prop_assert_eq!(&feed(&bytes, &cuts, |buf| decoder.decode(buf)), &expected);
    }

    #[test]
    fn inline_round_trip(requests in vec(request_strategy(), 1..6), cuts in vec(any::<usize>(), 0..8)) {
        let bytes: Vec<u8> = requests.iter().flat_map(encode_inline).collect();
        let expected = Outcome { requests, error: None, rest: Vec::new() };
        prop_assert_eq!(&feed(&bytes, &cuts, stateless), &expected);
        let mut decoder = RequestDecoder::new(Limits::default());
        prop_assert_eq!(&feed(&bytes, &cuts, |buf| decoder.decode(buf)), &expected);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512), cuts in vec(any::<usize>(), 0..8)) {
        let whole = feed(&bytes, &[], stateless);
        prop_assert_eq!(&feed(&bytes, &cuts, stateless), &whole);
        let mut decoder = RequestDecoder::new(Limits::default());
        prop_assert_eq!(&feed(&bytes, &cuts, |buf| decoder.decode(buf)), &whole);
    }

    #[test]
    fn resp_like_bytes_split_anywhere_parse_the_same(bytes in resp_like_bytes(), cuts in vec(any::<usize>(), 0..8)) {
        let whole = feed(&bytes, &[], stateless);
        prop_assert_eq!(&feed(&bytes, &cuts, stateless), &whole);
        let mut decoder = RequestDecoder::new(Limits::default());
        prop_assert_eq!(&feed(&bytes, &cuts, |buf| decoder.decode(buf)), &whole);
    }
}
