//! The peer protocol through the public API: every message survives a frame round trip, a
//! stream of frames decodes the same however the bytes are split across reads, and the
//! handshake MAC passes only with the right secret and the exact transcript.

use bytes::{Bytes, BytesMut};
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_proto::{
    auth_mac, decode_frame, encode_frame, verify_mac, AuthRole, DownstreamReplica, PeerMessage,
    PeerMessageKind, PeerRecord, Transcript, PEER_BODY_BYTES_MAX_DEFAULT, PEER_PROTOCOL_VERSION,
};

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

/// One message of every kind, with edge values (empty, zero, maximal) among them.
fn every_message() -> Vec<PeerMessage> {
    vec![
        PeerMessage::Hello {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_name: "prod-eu".into(),
            node_id: "node-1".into(),
            nonce: [0x11; 32],
        },
        PeerMessage::Challenge {
            nonce: [0x22; 32],
            node_id: "node-2".into(),
        },
        PeerMessage::Auth { mac: [0xa5; 32] },
        PeerMessage::Refuse {
            reason: "epoch 3 is lower than 4".into(),
        },
        PeerMessage::Refuse {
            reason: String::new(),
        },
        PeerMessage::Fetch {
            from: pos(4, 100),
            epoch: Epoch(5),
            history: 0x5eed,
            listen_port: 6380,
        },
        PeerMessage::Fetch {
            from: pos(0, 0),
            epoch: Epoch(0),
            history: 0,
            listen_port: u16::MAX,
        },
        PeerMessage::Entries {
            epoch: Epoch(5),
            prev: pos(4, 100),
            commit: Lsn(99),
            records: vec![
                PeerRecord {
                    pos: pos(5, 101),
                    payload: Bytes::from_static(b"SET k v"),
                },
                PeerRecord {
                    pos: pos(5, 102),
                    payload: Bytes::new(),
                },
                PeerRecord {
                    pos: pos(u64::MAX, u64::MAX),
                    payload: Bytes::from(vec![0xff; 300]),
                },
            ],
        },
        PeerMessage::Entries {
            epoch: Epoch(0),
            prev: pos(0, 0),
            commit: Lsn::ZERO,
            records: Vec::new(),
        },
        PeerMessage::Ack {
            epoch: Epoch(5),
            durable: Lsn(102),
            applied: Lsn(101),
        },
        PeerMessage::Downstream {
            replicas: vec![
                DownstreamReplica {
                    node_id: "node-3".into(),
                    addr: "10.0.0.3:6379".into(),
                    durable: Lsn(102),
                    applied: Lsn(101),
                    lag_ms: 12,
                    via: "node-2".into(),
                },
                DownstreamReplica {
                    node_id: "node-4".into(),
                    addr: "[fd00::4]:6379".into(),
                    durable: Lsn::ZERO,
                    applied: Lsn::ZERO,
                    lag_ms: u64::MAX,
                    via: "node-3".into(),
                },
            ],
        },
        PeerMessage::Downstream {
            replicas: Vec::new(),
        },
        PeerMessage::Heartbeat {
            epoch: Epoch(5),
            commit: Lsn(102),
            leader_time_ms: 1_700_000_000_000,
        },
        PeerMessage::SnapshotBegin {
            pos: pos(4, 90),
            total_bytes: 1 << 40,
            history: u64::MAX,
        },
        PeerMessage::SnapshotChunk {
            index: 0,
            data: Bytes::from(vec![7; 70_000]),
        },
        PeerMessage::SnapshotEnd { chunks: u64::MAX },
        PeerMessage::Lineage {
            epochs: vec![(Epoch(1), Lsn(1)), (Epoch(4), Lsn(90))],
            truncatable_from: Lsn(12),
        },
        PeerMessage::Truncate { to: pos(4, 89) },
        PeerMessage::Control {
            body: Bytes::from(vec![9; 70_000]),
        },
    ]
}

fn encode_all(messages: &[PeerMessage]) -> BytesMut {
    let mut out = BytesMut::new();
    for message in messages {
        encode_frame(message, &mut out).unwrap();
    }
    out
}

/// Decodes every whole frame in `buf`.
fn decode_all(buf: &mut BytesMut) -> Vec<PeerMessage> {
    let mut messages = Vec::new();
    while let Some(message) = decode_frame(buf, PEER_BODY_BYTES_MAX_DEFAULT).unwrap() {
        messages.push(message);
    }
    messages
}

#[test]
fn every_message_round_trips() {
    let covered: Vec<PeerMessageKind> = every_message().iter().map(PeerMessage::kind).collect();
    for kind in PeerMessageKind::ALL {
        assert!(covered.contains(&kind), "no sample of {kind}");
    }
    for message in every_message() {
        let mut buf = encode_all(std::slice::from_ref(&message));
        let decoded = decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT);
        assert_eq!(decoded, Ok(Some(message)));
        assert!(buf.is_empty(), "{} bytes left", buf.len());
    }
}

/// Splitting the stream into two reads at every offset gives the same messages; every prefix
/// that ends inside a frame is `Ok(None)` with the buffer untouched.
#[test]
fn every_split_of_a_stream_gives_the_same_messages() {
    // The 70 000-byte chunk is left out to keep this quadratic walk quick; the property test
    // splits large frames at random points.
    let messages: Vec<PeerMessage> = every_message()
        .into_iter()
        .filter(|m| m.kind() != PeerMessageKind::SnapshotChunk)
        .chain([PeerMessage::SnapshotChunk {
            index: 1,
            data: Bytes::from_static(b"chunk"),
        }])
        .collect();
    let stream = encode_all(&messages);
    for split in 0..=stream.len() {
        let mut buf = BytesMut::from(&stream[..split]);
        let mut decoded = decode_all(&mut buf);
        let pending = buf.clone();
        assert_eq!(
            decode_frame(&mut buf, PEER_BODY_BYTES_MAX_DEFAULT),
            Ok(None)
        );
        assert_eq!(buf, pending, "Ok(None) changed the buffer at split {split}");
        buf.extend_from_slice(&stream[split..]);
        decoded.extend(decode_all(&mut buf));
        assert_eq!(decoded, messages, "split at {split}");
        assert!(buf.is_empty());
    }
}

/// Feeding the stream one byte per read gives the same messages.
#[test]
fn byte_by_byte_reads_give_the_same_messages() {
    let messages = every_message();
    let stream = encode_all(&messages);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for byte in &stream {
        buf.extend_from_slice(&[*byte]);
        decoded.extend(decode_all(&mut buf));
    }
    assert_eq!(decoded, messages);
}

const SECRET: &[u8] = b"correct horse battery staple";

fn transcript(prover: AuthRole) -> Transcript<'static> {
    Transcript {
        prover,
        protocol_version: PEER_PROTOCOL_VERSION,
        cluster_name: "prod-eu",
        client_node_id: "node-1",
        client_nonce: &[0x11; 32],
        server_node_id: "node-2",
        server_nonce: &[0x22; 32],
    }
}

#[test]
fn mac_with_the_right_secret_verifies() {
    for prover in [AuthRole::Client, AuthRole::Server] {
        let mac = auth_mac(SECRET, &transcript(prover));
        assert!(verify_mac(SECRET, &transcript(prover), &mac));
    }
}

#[test]
fn mac_with_a_wrong_secret_fails() {
    let mac = auth_mac(
        b"correct horse battery stapl",
        &transcript(AuthRole::Client),
    );
    assert!(!verify_mac(SECRET, &transcript(AuthRole::Client), &mac));
    let mac = auth_mac(b"", &transcript(AuthRole::Client));
    assert!(!verify_mac(SECRET, &transcript(AuthRole::Client), &mac));
}

#[test]
fn mac_over_a_tampered_transcript_fails() {
    let honest = transcript(AuthRole::Client);
    let mac = auth_mac(SECRET, &honest);
    let tampered = [
        Transcript {
            protocol_version: 0,
            ..honest
        },
        Transcript {
            cluster_name: "prod-us",
            ..honest
        },
        Transcript {
            client_node_id: "node-3",
            ..honest
        },
        Transcript {
            client_nonce: &[0x12; 32],
            ..honest
        },
        Transcript {
            server_node_id: "node-3",
            ..honest
        },
        Transcript {
            server_nonce: &[0x21; 32],
            ..honest
        },
        // Moving a byte between adjacent strings keeps their concatenation; the length
        // prefixes tell them apart.
        Transcript {
            cluster_name: "prod-eun",
            client_node_id: "ode-1",
            ..honest
        },
    ];
    for transcript in tampered {
        assert!(!verify_mac(SECRET, &transcript, &mac), "{transcript:?}");
    }
    let mut flipped = mac;
    flipped[31] ^= 1;
    assert!(!verify_mac(SECRET, &honest, &flipped));
}

/// Reflection: the server's tag is not the client's, so a peer that does not know the
/// secret cannot pass by sending back the `Auth` it received.
#[test]
fn client_and_server_macs_differ() {
    let client = auth_mac(SECRET, &transcript(AuthRole::Client));
    let server = auth_mac(SECRET, &transcript(AuthRole::Server));
    assert_ne!(client, server);
    assert!(!verify_mac(SECRET, &transcript(AuthRole::Server), &client));
}

/// A whole handshake through frames, as two drivers would run it.
#[test]
fn handshake_sequence_authenticates_both_sides() {
    let client_nonce = [0x31; 32];
    let server_nonce = [0x32; 32];
    let mut wire = BytesMut::new();

    // Client opens with Hello.
    let hello = PeerMessage::Hello {
        protocol_version: PEER_PROTOCOL_VERSION,
        cluster_name: "c".into(),
        node_id: "a".into(),
        nonce: client_nonce,
    };
    encode_frame(&hello, &mut wire).unwrap();
    let Some(PeerMessage::Hello {
        protocol_version,
        cluster_name,
        node_id: client_id,
        nonce: got_client_nonce,
    }) = decode_frame(&mut wire, PEER_BODY_BYTES_MAX_DEFAULT).unwrap()
    else {
        panic!("expected Hello");
    };

    // Server answers with Challenge.
    let challenge = PeerMessage::Challenge {
        nonce: server_nonce,
        node_id: "b".into(),
    };
    encode_frame(&challenge, &mut wire).unwrap();
    let Some(PeerMessage::Challenge {
        nonce: got_server_nonce,
        node_id: server_id,
    }) = decode_frame(&mut wire, PEER_BODY_BYTES_MAX_DEFAULT).unwrap()
    else {
        panic!("expected Challenge");
    };

    // Both now hold the same transcript; the client proves first, then the server.
    let seen = Transcript {
        prover: AuthRole::Client,
        protocol_version,
        cluster_name: &cluster_name,
        client_node_id: &client_id,
        client_nonce: &got_client_nonce,
        server_node_id: &server_id,
        server_nonce: &got_server_nonce,
    };
    for prover in [AuthRole::Client, AuthRole::Server] {
        let transcript = Transcript { prover, ..seen };
        encode_frame(
            &PeerMessage::Auth {
                mac: auth_mac(SECRET, &transcript),
            },
            &mut wire,
        )
        .unwrap();
        let Some(PeerMessage::Auth { mac }) =
            decode_frame(&mut wire, PEER_BODY_BYTES_MAX_DEFAULT).unwrap()
        else {
            panic!("expected Auth");
        };
        assert!(verify_mac(SECRET, &transcript, &mac), "{prover:?}");
    }
}
