//! Property tests of the peer frame decoder: arbitrary bytes never panic it, and arbitrary
//! messages round-trip however the stream is cut into reads.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_proto::{
    decode_frame, encode_frame, DownstreamReplica, PeerError, PeerMessage, PeerMessageKind,
    PeerRecord, PEER_BODY_BYTES_MAX_DEFAULT, PEER_FRAME_HEADER_BYTES, PEER_MAGIC,
    PEER_PROTOCOL_VERSION,
};

fn position() -> impl Strategy<Value = LogPosition> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, lsn)| LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    })
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn downstream_replica() -> impl Strategy<Value = DownstreamReplica> {
    (
        ".{0,16}",
        ".{0,24}",
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        ".{0,16}",
    )
        .prop_map(
            |(node_id, addr, durable, applied, lag_ms, via)| DownstreamReplica {
                node_id,
                addr,
                durable: Lsn(durable),
                applied: Lsn(applied),
                lag_ms,
                via,
            },
        )
}

fn message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        (any::<u16>(), ".{0,16}", ".{0,16}", any::<[u8; 32]>()).prop_map(
            |(protocol_version, cluster_name, node_id, nonce)| PeerMessage::Hello {
                protocol_version,
                cluster_name,
                node_id,
                nonce,
            }
        ),
        (any::<[u8; 32]>(), ".{0,16}")
            .prop_map(|(nonce, node_id)| PeerMessage::Challenge { nonce, node_id }),
        any::<[u8; 32]>().prop_map(|mac| PeerMessage::Auth { mac }),
        ".{0,32}".prop_map(|reason| PeerMessage::Refuse { reason }),
        (position(), any::<u64>(), any::<u64>(), any::<u16>()).prop_map(
            |(from, epoch, history, listen_port)| PeerMessage::Fetch {
                from,
                epoch: Epoch(epoch),
                history,
                listen_port,
            }
        ),
        (
            any::<u64>(),
            position(),
            any::<u64>(),
            vec(
                (position(), payload()).prop_map(|(pos, payload)| PeerRecord { pos, payload }),
                0..6
            )
        )
            .prop_map(|(epoch, prev, commit, records)| PeerMessage::Entries {
                epoch: Epoch(epoch),
                prev,
                commit: Lsn(commit),
                records,
            }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(epoch, durable, applied)| {
            PeerMessage::Ack {
                epoch: Epoch(epoch),
                durable: Lsn(durable),
                applied: Lsn(applied),
            }
        }),
        vec(downstream_replica(), 0..4).prop_map(|replicas| PeerMessage::Downstream { replicas }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(epoch, commit, leader_time_ms)| {
            PeerMessage::Heartbeat {
                epoch: Epoch(epoch),
                commit: Lsn(commit),
                leader_time_ms,
            }
        }),
        (position(), any::<u64>(), any::<u64>()).prop_map(|(pos, total_bytes, history)| {
            PeerMessage::SnapshotBegin {
                pos,
                total_bytes,
                history,
            }
        }),
        (any::<u64>(), payload())
            .prop_map(|(index, data)| PeerMessage::SnapshotChunk { index, data }),
        any::<u64>().prop_map(|chunks| PeerMessage::SnapshotEnd { chunks }),
    ]
}

/// A valid header for a known kind, then arbitrary bytes: reaches the body decoders, which
/// random bytes alone would rarely do (the magic and checksum would stop them).
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(PeerMessageKind::ALL.to_vec()),
        vec(any::<u8>(), 0..128),
    )
        .prop_map(|(kind, body)| {
            let mut frame = Vec::new();
            frame.extend_from_slice(&PEER_MAGIC);
            frame.extend_from_slice(&PEER_PROTOCOL_VERSION.to_le_bytes());
            frame.extend_from_slice(&kind.code().to_le_bytes());
            frame.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
            let crc = crc32c::crc32c_append(crc32c::crc32c(&frame), &body);
            frame.extend_from_slice(&crc.to_le_bytes());
            frame.extend_from_slice(&body);
            frame
        })
}

/// Decodes `input` to the end, checking the decoder's contract on the way: `Ok(None)` and
/// `Err` leave the buffer as it was, `Ok(Some)` takes at least a header, and a decoded
/// message re-encodes to a frame no longer than its own that decodes to the same message.
fn check_decoder(input: &[u8], body_bytes_max: usize) {
    let mut buf = BytesMut::from(input);
    loop {
        let before = buf.clone();
        match decode_frame(&mut buf, body_bytes_max) {
            Ok(Some(message)) => {
                let used = before.len() - buf.len();
                assert!(used >= PEER_FRAME_HEADER_BYTES, "took {used} bytes");
                // Postcard accepts overlong varints, so the bytes may differ; the message may
                // not, and the encoder's form is the shortest.
                let mut encoded = BytesMut::new();
                encode_frame(&message, &mut encoded).unwrap();
                assert!(encoded.len() <= used, "{message:?}");
                let again = decode_frame(&mut encoded, body_bytes_max.max(used));
                assert_eq!(again, Ok(Some(message)));
            }
            Ok(None) | Err(_) => {
                assert_eq!(buf, before);
                break;
            }
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoder(
        input in vec(any::<u8>(), 0..256),
        body_bytes_max in prop_oneof![Just(PEER_BODY_BYTES_MAX_DEFAULT), 0..64usize],
    ) {
        check_decoder(&input, body_bytes_max);
    }

    #[test]
    fn random_bodies_never_panic_the_decoder(frame in framed_garbage()) {
        check_decoder(&frame, PEER_BODY_BYTES_MAX_DEFAULT);
    }

    #[test]
    fn flipped_bytes_give_an_error_or_none_never_a_different_message(
        message in message(),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let mut buf = BytesMut::new();
        encode_frame(&message, &mut buf).unwrap();
        let at = at.index(buf.len());
        buf[at] ^= flip;
        // Only the length field can turn a frame into a valid prefix of a longer one;
        // the checksum, which covers the header too, catches every other change to a byte.
        match decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT) {
            Ok(None) => prop_assert!((8..12).contains(&at), "Ok(None) after a flip at {at}"),
            Ok(Some(decoded)) => prop_assert!(false, "flip at {at} decoded as {decoded:?}"),
            Err(PeerError::BodyTooLarge { .. }) => prop_assert!((8..12).contains(&at)),
            Err(_) => {}
        }
    }

    #[test]
    fn messages_round_trip_through_any_two_reads(
        messages in vec(message(), 1..8),
        split in any::<prop::sample::Index>(),
    ) {
        let mut stream = BytesMut::new();
        for message in &messages {
            encode_frame(message, &mut stream).unwrap();
        }
        let split = split.index(stream.len() + 1);
        let mut buf = BytesMut::from(&stream[..split]);
        let mut decoded = Vec::new();
        while let Some(message) = decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT).unwrap() {
            decoded.push(message);
        }
        buf.extend_from_slice(&stream[split..]);
        while let Some(message) = decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT).unwrap() {
            decoded.push(message);
        }
        prop_assert_eq!(decoded, messages);
        prop_assert!(buf.is_empty());
    }
}
