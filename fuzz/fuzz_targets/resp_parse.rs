//! Fuzzes the RESP request parser and the reply decoder with arbitrary bytes.
//!
//! Invariants: nothing panics; a parsed request consumed bytes from the front of the buffer;
//! an incomplete request or an error leaves the buffer unchanged; the resumable decoder fed the
//! same bytes in two pieces agrees with the one-shot parser; a decoded reply consumed between 1
//! and all of the input bytes, and a complete reply without its last byte is incomplete.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use replikv_proto::{parse_frame, parse_request, Limits, ProtocolError, RequestDecoder};

/// Small limits so the fuzzer reaches the limit checks with small inputs.
const LIMITS: Limits = Limits { bulk_bytes_max: 256, multibulk_count_max: 64, inline_bytes_max: 128 };

type Outcome = (Vec<Vec<Bytes>>, Option<ProtocolError>);

/// Parses requests until `None` or an error, checking the buffer after each call.
fn drain(
    buf: &mut BytesMut,
    requests: &mut Vec<Vec<Bytes>>,
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError>,
) -> Option<ProtocolError> {
    loop {
        let before = buf.clone();
        match parse(buf) {
            Ok(Some(args)) => {
                assert!(buf.len() < before.len(), "a request consumed no bytes");
                assert!(before.ends_with(buf), "bytes were consumed from the back");
                requests.push(args);
            }
            Ok(None) => {
                assert_eq!(*buf, before, "an incomplete request changed the buffer");
                return None;
            }
            Err(error) => {
                assert_eq!(*buf, before, "an error changed the buffer");
                return Some(error);
            }
        }
    }
}

fn requests_at_once(data: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(data);
    let mut requests = Vec::new();
    let error = drain(&mut buf, &mut requests, |buf| parse_request(buf, &LIMITS));
    (requests, error)
}

fn requests_in_two_pieces(data: &[u8], cut: usize) -> Outcome {
    let mut decoder = RequestDecoder::new(LIMITS);
    let mut buf = BytesMut::from(&data[..cut]);
    let mut requests = Vec::new();
    if let Some(error) = drain(&mut buf, &mut requests, |buf| decoder.decode(buf)) {
        return (requests, Some(error));
    }
    buf.extend_from_slice(&data[cut..]);
    let error = drain(&mut buf, &mut requests, |buf| decoder.decode(buf));
    (requests, error)
}

fuzz_target!(|data: &[u8]| {
    let whole = requests_at_once(data);
    // The "too big" errors fire on how many bytes have arrived without a line end, so they
    // depend on how the input was split (in Redis too). Up to `inline_bytes_max` bytes (far
    // below `HEADER_BYTES_MAX`) none can fire, and any split must give the same outcome. The
    // first byte picks the split.
    if data.len() <= LIMITS.inline_bytes_max {
        let cut = data.first().map_or(0, |&b| usize::from(b) % (data.len() + 1));
        assert_eq!(requests_in_two_pieces(data, cut), whole, "decoder split at {cut}");
    }

    match parse_frame(data) {
        Ok(Some((_, consumed))) => {
            assert!(consumed > 0, "a reply consumed no bytes");
            assert!(consumed <= data.len(), "a reply consumed {consumed} of {} bytes", data.len());
            // Without its last byte a complete reply is incomplete, never another reply.
            let prefix = &data[..consumed - 1];
            assert!(matches!(parse_frame(prefix), Ok(None)), "prefix of a reply parsed");
        }
        Ok(None) | Err(_) => {}
    }
});
