//! Fuzzes the peer frame decoder (`replikv_proto::decode_frame`) with arbitrary bytes.
//!
//! The first byte picks the mode. Odd: the rest is used as is, a stream of would-be frames.
//! Even: the next two bytes are a kind code and the remainder a body, wrapped in a header with
//! the right magic, version, length and checksum, so that every body decoder is reached (random
//! bytes rarely get past the checksum). The first byte also picks where the stream is cut into
//! two reads, and the body limit (small, so the limit check is reached too).
//!
//! Invariants: nothing panics; a decoded frame took at least the header and at most the
//! buffer, re-encodes to at most as many bytes that decode to the same message (postcard
//! accepts overlong varints, so not always the same bytes), and without its last byte is
//! incomplete (`Ok(None)`); `Ok(None)` and errors leave the buffer unchanged; feeding the
//! stream in two reads gives the same messages and the same final result as one read.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use replikv_proto::{
    decode_frame, encode_frame, PeerError, PeerMessage, PEER_FRAME_HEADER_BYTES, PEER_MAGIC,
    PEER_PROTOCOL_VERSION,
};

/// Decodes every frame it can from `buf`; returns the messages and the result that stopped it
/// (`Ok(None)` or an error).
fn decode_all(
    buf: &mut BytesMut,
    body_bytes_max: usize,
    messages: &mut Vec<PeerMessage>,
) -> Result<Option<PeerMessage>, PeerError> {
    loop {
        let before = buf.clone();
        match decode_frame(buf, body_bytes_max) {
            Ok(Some(message)) => {
                let used = before.len() - buf.len();
                assert!(used >= PEER_FRAME_HEADER_BYTES, "frame of {used} bytes");
                // Postcard accepts overlong varints, so the bytes may differ; the message may
                // not, and the encoder's form is the shortest.
                let mut encoded = BytesMut::new();
                encode_frame(&message, &mut encoded).expect("a decoded message re-encodes");
                assert!(encoded.len() <= used, "re-encoding is longer");
                let again = decode_frame(&mut encoded, body_bytes_max.max(used));
                assert_eq!(again, Ok(Some(message.clone())), "re-encoding differs");
                let mut short = BytesMut::from(&before[..used - 1]);
                assert_eq!(decode_frame(&mut short, body_bytes_max), Ok(None));
                messages.push(message);
            }
            stop => {
                assert_eq!(
                    *buf, before,
                    "a decode that took no frame changed the buffer"
                );
                return stop;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let stream = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        let Some((kind, body)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let mut frame = Vec::with_capacity(PEER_FRAME_HEADER_BYTES + body.len());
        frame.extend_from_slice(&PEER_MAGIC);
        frame.extend_from_slice(&PEER_PROTOCOL_VERSION.to_le_bytes());
        frame.extend_from_slice(kind);
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame), body);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame.extend_from_slice(body);
        frame
    };
    let body_bytes_max = if mode & 2 == 0 {
        4096
    } else {
        usize::from(mode >> 2)
    };

    let mut whole = BytesMut::from(&stream[..]);
    let mut whole_messages = Vec::new();
    let whole_result = decode_all(&mut whole, body_bytes_max, &mut whole_messages);

    let split = usize::from(mode) * stream.len() / 255;
    let mut parts = BytesMut::from(&stream[..split]);
    let mut parts_messages = Vec::new();
    let first_result = decode_all(&mut parts, body_bytes_max, &mut parts_messages);
    // Header fields are checked in order as they arrive, so a prefix gives either `Ok(None)`
    // or the error the whole stream gives.
    let parts_result = match first_result {
        Ok(None) => {
            parts.extend_from_slice(&stream[split..]);
            decode_all(&mut parts, body_bytes_max, &mut parts_messages)
        }
        error => error,
    };
    assert_eq!(parts_messages, whole_messages);
    assert_eq!(parts_result, whole_result);
});
