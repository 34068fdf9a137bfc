//! Unit tests of the peer frame codec: exact header bytes, each header and body check, and
//! that a decode which fails leaves its buffer as it was.

use bytes::{Bytes, BytesMut};
use replikv_core::{Epoch, LogPosition, Lsn};

use super::*;

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

fn encoded(message: &PeerMessage) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(message, &mut out).unwrap();
    out
}

/// The checksum as the layout defines it, computed independently of the codec.
fn expected_crc(header: &[u8], body: &[u8]) -> u32 {
    let mut covered = header[..12].to_vec();
    covered.extend_from_slice(body);
    crc32c::crc32c(&covered)
}

/// A frame with the given header fields and body, and a correct checksum.
fn raw_frame(version: u16, kind: u16, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&PEER_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    let crc = expected_crc(&out, body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes `message`, checks that the frame decodes back to it with nothing left over, and
/// returns the frame's body.
fn round_trip_body(message: &PeerMessage) -> Vec<u8> {
    let mut buf = encoded(message);
    let body = buf[PEER_FRAME_HEADER_BYTES..].to_vec();
    assert_eq!(
        decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT),
        Ok(Some(message.clone()))
    );
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    body
}

fn replica(node_id: &str, addr: &str, via: &str) -> DownstreamReplica {
    DownstreamReplica {
        node_id: node_id.into(),
        addr: addr.into(),
        durable: Lsn(300),
        applied: Lsn(299),
        lag_ms: 5,
        via: via.into(),
    }
}

/// Decodes `buf` expecting `error`, and checks the buffer is unchanged afterwards.
fn assert_error(mut buf: BytesMut, body_bytes_max: usize, error: &PeerError) {
    let before = buf.clone();
    assert_eq!(decode_frame(&mut buf, body_bytes_max).as_ref(), Err(error));
    assert_eq!(buf, before, "buffer changed by a failed decode");
}

#[test]
fn header_layout_is_magic_version_kind_length_crc() {
    let out = encoded(&PeerMessage::SnapshotEnd { chunks: 3 });
    // postcard: u64 3 is one varint byte.
    let body = [3u8];
    let mut expected = Vec::new();
    expected.extend_from_slice(b"RKVP");
    expected.extend_from_slice(&1u16.to_le_bytes());
    expected.extend_from_slice(&34u16.to_le_bytes());
    expected.extend_from_slice(&1u32.to_le_bytes());
    let crc = expected_crc(&expected, &body);
    expected.extend_from_slice(&crc.to_le_bytes());
    expected.extend_from_slice(&body);
    assert_eq!(&out[..], &expected[..]);
    assert_eq!(out.len(), PEER_FRAME_HEADER_BYTES + 1);
}

#[test]
fn kind_codes_round_trip_and_are_distinct() {
    for kind in PeerMessageKind::ALL {
        assert_eq!(PeerMessageKind::from_code(kind.code()), Some(kind));
    }
    let mut codes: Vec<u16> = PeerMessageKind::ALL.iter().map(|k| k.code()).collect();
    codes.dedup();
    assert_eq!(codes.len(), PeerMessageKind::ALL.len());
    assert_eq!(PeerMessageKind::from_code(0), None);
    assert_eq!(PeerMessageKind::from_code(u16::MAX), None);
}

/// The body layouts in `docs/design/peer-protocol.md`: `Fetch` is `from, epoch, history,
/// listen_port`, in that order, each a varint.
#[test]
fn fetch_body_is_from_epoch_history_listen_port() {
    let message = PeerMessage::Fetch {
        from: pos(4, 100),
        epoch: Epoch(5),
        history: 300,
        listen_port: 6379,
    };
    // 300 = 0xac 0x02 and 6379 = 0xeb 0x31 as LEB128 varints.
    assert_eq!(
        round_trip_body(&message),
        [4, 100, 5, 0xac, 0x02, 0xeb, 0x31]
    );
    // A follower with an empty log: no history, and the largest port.
    let message = PeerMessage::Fetch {
        from: pos(0, 0),
        epoch: Epoch(0),
        history: 0,
        listen_port: u16::MAX,
    };
    assert_eq!(round_trip_body(&message), [0, 0, 0, 0, 0xff, 0xff, 0x03]);
}

#[test]
fn snapshot_begin_body_is_pos_total_bytes_history() {
    let message = PeerMessage::SnapshotBegin {
        pos: pos(4, 90),
        total_bytes: 2,
        history: 7,
    };
    assert_eq!(round_trip_body(&message), [4, 90, 2, 7]);
    let message = PeerMessage::SnapshotBegin {
        pos: pos(u64::MAX, u64::MAX),
        total_bytes: u64::MAX,
        history: u64::MAX,
    };
    let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(round_trip_body(&message), [max; 4].concat());
}

/// `Downstream` is a count of replicas, then each replica's fields in declaration order.
#[test]
fn downstream_body_is_a_list_of_replicas() {
    assert_eq!(PeerMessageKind::Downstream.code(), 20);
    assert_eq!(PeerMessageKind::Downstream.name(), "Downstream");
    assert_eq!(
        round_trip_body(&PeerMessage::Downstream { replicas: vec![] }),
        [0]
    );
    let message = PeerMessage::Downstream {
        replicas: vec![replica("c", "10.0.0.3:6379", "b")],
    };
    let mut body = vec![1, 1, b'c', 13];
    body.extend_from_slice(b"10.0.0.3:6379");
    body.extend_from_slice(&[0xac, 0x02, 0xab, 0x02, 5, 1, b'b']);
    assert_eq!(round_trip_body(&message), body);
    // A report relayed from further down the tree, with an IPv6 address.
    let message = PeerMessage::Downstream {
        replicas: vec![
            replica("node-c", "10.0.0.3:6379", "node-b"),
            replica("node-d", "[fd00::4]:6380", "node-c"),
        ],
    };
    round_trip_body(&message);
}

/// `Downstream` is a control message: at most 64 KiB whatever the link's limit, on both sides.
#[test]
fn downstream_is_bounded_as_a_control_message() {
    assert!(!PeerMessageKind::Downstream.is_bulk());
    // Each replica below is 5 varint bytes (durable 300 and applied 299 take two each, lag
    // one), 3 length bytes and 120 bytes of strings: 128 bytes. 512 of them and the 2-byte
    // count are 65 538 bytes, two over the limit; 511 fit.
    let name = "n".repeat(40);
    let many = |count| PeerMessage::Downstream {
        replicas: vec![replica(&name, &name, &name); count],
    };
    let mut out = BytesMut::from(&b"earlier frames"[..]);
    assert_eq!(
        encode_frame(&many(512), &mut out),
        Err(PeerError::BodyTooLarge {
            kind: PeerMessageKind::Downstream,
            body_bytes: 2 + 512 * 128,
            body_bytes_max: PEER_CONTROL_BODY_BYTES_MAX as u64,
        })
    );
    assert_eq!(&out[..], b"earlier frames");
    encode_frame(&many(511), &mut out).unwrap();
    let mut frame = out.split_off(14);
    assert_eq!(
        decode_frame(&mut frame, PEER_BODY_BYTES_MAX_DEFAULT),
        Ok(Some(many(511)))
    );
    let mut header = raw_frame(
        PEER_PROTOCOL_VERSION,
        PeerMessageKind::Downstream.code(),
        &[],
    );
    let over = u32::try_from(PEER_CONTROL_BODY_BYTES_MAX + 1).unwrap();
    header[8..12].copy_from_slice(&over.to_le_bytes());
    assert_error(
        header,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BodyTooLarge {
            kind: PeerMessageKind::Downstream,
            body_bytes: u64::from(over),
            body_bytes_max: PEER_CONTROL_BODY_BYTES_MAX as u64,
        },
    );
}

#[test]
fn decode_appends_nothing_and_takes_exactly_one_frame() {
    let first = PeerMessage::Ack {
        epoch: Epoch(2),
        durable: Lsn(10),
        applied: Lsn(9),
    };
    let mut buf = encoded(&first);
    buf.extend_from_slice(b"RKV");
    assert_eq!(
        decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT),
        Ok(Some(first))
    );
    assert_eq!(&buf[..], b"RKV");
    assert_eq!(
        decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT),
        Ok(None)
    );
    assert_eq!(&buf[..], b"RKV");
}

#[test]
fn bad_magic_is_refused_once_four_bytes_arrive() {
    let mut buf = BytesMut::from(&b"GET"[..]);
    assert_eq!(
        decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT),
        Ok(None)
    );
    buf.extend_from_slice(b" ");
    assert_error(
        buf,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BadMagic { found: *b"GET " },
    );
}

#[test]
fn other_versions_are_refused() {
    for version in [0, 2, u16::MAX] {
        let frame = raw_frame(version, PeerMessageKind::SnapshotEnd.code(), &[0]);
        // Refused from the version field alone, before kind, length or body arrive.
        assert_error(
            BytesMut::from(&frame[..6]),
            PEER_BODY_BYTES_MAX_DEFAULT,
            &PeerError::UnsupportedVersion { version },
        );
        assert_error(
            frame,
            PEER_BODY_BYTES_MAX_DEFAULT,
            &PeerError::UnsupportedVersion { version },
        );
    }
}

#[test]
fn unknown_kinds_are_refused() {
    for kind in [0, 5, 15, 23, 35, u16::MAX] {
        let frame = raw_frame(PEER_PROTOCOL_VERSION, kind, &[]);
        assert_error(
            BytesMut::from(&frame[..8]),
            PEER_BODY_BYTES_MAX_DEFAULT,
            &PeerError::UnknownKind { kind },
        );
    }
}

#[test]
fn declared_length_over_the_limit_is_refused_from_the_header() {
    let mut header = raw_frame(PEER_PROTOCOL_VERSION, PeerMessageKind::Entries.code(), &[]);
    header[8..12].copy_from_slice(&1001u32.to_le_bytes());
    // The length field alone is enough: the checksum has not arrived yet.
    assert_error(
        BytesMut::from(&header[..12]),
        1000,
        &PeerError::BodyTooLarge {
            kind: PeerMessageKind::Entries,
            body_bytes: 1001,
            body_bytes_max: 1000,
        },
    );
    // At the limit it waits for the body.
    header[8..12].copy_from_slice(&1000u32.to_le_bytes());
    let mut at_limit = header.clone();
    assert_eq!(decode_frame(&mut at_limit, 1000), Ok(None));
    assert_eq!(at_limit, header);
    // u32::MAX is over the default.
    header[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_error(
        header,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BodyTooLarge {
            kind: PeerMessageKind::Entries,
            body_bytes: u64::from(u32::MAX),
            body_bytes_max: PEER_BODY_BYTES_MAX_DEFAULT as u64,
        },
    );
}

#[test]
fn control_frames_are_bounded_whatever_the_link_limit() {
    let mut header = raw_frame(PEER_PROTOCOL_VERSION, PeerMessageKind::Hello.code(), &[]);
    let over = u32::try_from(PEER_CONTROL_BODY_BYTES_MAX + 1).unwrap();
    header[8..12].copy_from_slice(&over.to_le_bytes());
    assert_error(
        header,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BodyTooLarge {
            kind: PeerMessageKind::Hello,
            body_bytes: u64::from(over),
            body_bytes_max: PEER_CONTROL_BODY_BYTES_MAX as u64,
        },
    );
}

#[test]
fn checksum_mismatch_is_refused() {
    let mut frame = encoded(&PeerMessage::Refuse {
        reason: "lower epoch".into(),
    });
    let last = frame.len() - 1;
    frame[last] ^= 0x01;
    let actual = expected_crc(&frame, &frame[PEER_FRAME_HEADER_BYTES..]);
    let expected = u32::from_le_bytes(frame[12..16].try_into().unwrap());
    assert_error(
        frame,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::ChecksumMismatch {
            kind: PeerMessageKind::Refuse,
            expected,
            actual,
        },
    );
}

/// The checksum covers the header too: a kind code damaged into another valid one (Ack and
/// Heartbeat bodies are both three integers) is caught.
#[test]
fn damaged_kind_code_is_caught_by_the_checksum() {
    let mut frame = encoded(&PeerMessage::Ack {
        epoch: Epoch(1),
        durable: Lsn(2),
        applied: Lsn(3),
    });
    frame[6..8].copy_from_slice(&PeerMessageKind::Heartbeat.code().to_le_bytes());
    let expected = u32::from_le_bytes(frame[12..16].try_into().unwrap());
    let actual = expected_crc(&frame, &frame[PEER_FRAME_HEADER_BYTES..]);
    assert_error(
        frame,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::ChecksumMismatch {
            kind: PeerMessageKind::Heartbeat,
            expected,
            actual,
        },
    );
}

#[test]
fn undecodable_body_is_refused() {
    // Auth needs 32 bytes; 31 is the end of input.
    let frame = raw_frame(
        PEER_PROTOCOL_VERSION,
        PeerMessageKind::Auth.code(),
        &[7; 31],
    );
    assert_error(
        frame,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BodyUndecodable {
            kind: PeerMessageKind::Auth,
            source: postcard::Error::DeserializeUnexpectedEnd,
        },
    );
    // A string that is not UTF-8.
    let frame = raw_frame(
        PEER_PROTOCOL_VERSION,
        PeerMessageKind::Refuse.code(),
        &[2, 0xff, 0xfe],
    );
    assert_error(
        frame,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BodyUndecodable {
            kind: PeerMessageKind::Refuse,
            source: postcard::Error::DeserializeBadUtf8,
        },
    );
    // A record count far beyond the body: fails at the end of input, allocates little.
    let frame = raw_frame(
        PEER_PROTOCOL_VERSION,
        PeerMessageKind::Entries.code(),
        &[1, 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f],
    );
    assert_error(
        frame,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BodyUndecodable {
            kind: PeerMessageKind::Entries,
            source: postcard::Error::DeserializeUnexpectedEnd,
        },
    );
}

#[test]
fn trailing_body_bytes_are_refused() {
    let frame = raw_frame(
        PEER_PROTOCOL_VERSION,
        PeerMessageKind::SnapshotEnd.code(),
        &[3, 0, 0],
    );
    assert_error(
        frame,
        PEER_BODY_BYTES_MAX_DEFAULT,
        &PeerError::BodyTrailingBytes {
            kind: PeerMessageKind::SnapshotEnd,
            trailing_bytes: 2,
        },
    );
}

#[test]
fn oversized_control_message_is_not_encoded() {
    let mut out = BytesMut::from(&b"earlier frames"[..]);
    let message = PeerMessage::Refuse {
        reason: "x".repeat(PEER_CONTROL_BODY_BYTES_MAX),
    };
    let error = encode_frame(&message, &mut out).unwrap_err();
    assert_eq!(
        error,
        PeerError::BodyTooLarge {
            kind: PeerMessageKind::Refuse,
            body_bytes: PEER_CONTROL_BODY_BYTES_MAX as u64 + 3,
            body_bytes_max: PEER_CONTROL_BODY_BYTES_MAX as u64,
        }
    );
    assert_eq!(&out[..], b"earlier frames");
    // One byte of room for the three-byte length prefix, and it fits.
    let message = PeerMessage::Refuse {
        reason: "x".repeat(PEER_CONTROL_BODY_BYTES_MAX - 3),
    };
    encode_frame(&message, &mut out).unwrap();
    let mut frame = out.split_off(14);
    assert_eq!(
        decode_frame(&mut frame, PEER_BODY_BYTES_MAX_DEFAULT),
        Ok(Some(message))
    );
}

#[test]
fn decoded_payloads_share_the_frame_allocation() {
    let message = PeerMessage::Entries {
        epoch: Epoch(3),
        prev: pos(3, 9),
        commit: Lsn(9),
        records: vec![
            PeerRecord {
                pos: pos(3, 10),
                payload: Bytes::from_static(b"first"),
            },
            PeerRecord {
                pos: pos(3, 11),
                payload: Bytes::from_static(b"second"),
            },
        ],
    };
    let mut buf = encoded(&message);
    let frame_start = buf.as_ptr() as usize;
    let frame_end = frame_start + buf.len();
    let decoded = decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT)
        .unwrap()
        .unwrap();
    assert_eq!(decoded, message);
    let PeerMessage::Entries { records, .. } = decoded else {
        panic!("not Entries: {decoded:?}");
    };
    for record in records {
        let at = record.payload.as_ptr() as usize;
        assert!(
            (frame_start..frame_end).contains(&at),
            "payload at {at:#x} outside the frame {frame_start:#x}..{frame_end:#x}"
        );
    }
}

/// Found by the `peer_frame` fuzz target: postcard reads the overlong varint `ff 00` as 127,
/// so a body is not canonical. The decoder accepts it; re-encoding is shorter and decodes to
/// the same message.
#[test]
fn overlong_varint_decodes_and_reencodes_shorter() {
    let body = [0, 0xff, 0x00, 0, 0, 0];
    let mut frame = raw_frame(
        PEER_PROTOCOL_VERSION,
        PeerMessageKind::Entries.code(),
        &body,
    );
    let message = PeerMessage::Entries {
        epoch: Epoch(0),
        prev: pos(127, 0),
        commit: Lsn(0),
        records: Vec::new(),
    };
    assert_eq!(
        decode_frame(&mut frame, PEER_BODY_BYTES_MAX_DEFAULT),
        Ok(Some(message.clone()))
    );
    let reencoded = encoded(&message);
    assert_eq!(reencoded.len(), PEER_FRAME_HEADER_BYTES + body.len() - 1);
}

/// `Control` carries the control plane's opaque messages (Raft among them), so it is bulk: a
/// Raft snapshot of the map may exceed a control frame.
#[test]
fn control_messages_round_trip_and_are_bulk() {
    assert!(PeerMessageKind::Control.is_bulk());
    round_trip_body(&PeerMessage::Control {
        body: Bytes::from_static(b"\x00raft bytes\xff"),
    });
    round_trip_body(&PeerMessage::Control { body: Bytes::new() });
}

#[test]
fn lineage_and_truncate_round_trip() {
    round_trip_body(&PeerMessage::Lineage {
        epochs: vec![(Epoch(1), Lsn(1)), (Epoch(3), Lsn(141))],
        truncatable_from: Lsn(120),
    });
    round_trip_body(&PeerMessage::Lineage {
        epochs: Vec::new(),
        truncatable_from: Lsn(0),
    });
    round_trip_body(&PeerMessage::Truncate {
        to: LogPosition {
            epoch: Epoch(2),
            lsn: Lsn(140),
        },
    });
}
