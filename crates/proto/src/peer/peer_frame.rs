//! The peer frame: a 16-byte header, then a postcard body.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `RKVP` |
//! | 4 | 2 | protocol version, u16 LE |
//! | 6 | 2 | message kind, u16 LE |
//! | 8 | 4 | body length in bytes, u32 LE |
//! | 12 | 4 | CRC32C of bytes 0..12 and then the body, u32 LE |
//! | 16 | length | body: the message's fields, postcard |

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use replikv_core::{Epoch, LogPosition, Lsn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::peer_error::PeerError;
use super::peer_message::{PeerMessage, PeerRecord, PEER_MAC_BYTES};
use super::peer_message_kind::PeerMessageKind;

/// The four bytes that open every peer frame.
pub const PEER_MAGIC: [u8; 4] = *b"RKVP";

/// The peer protocol version this build speaks, and the only one its decoder accepts.
pub const PEER_PROTOCOL_VERSION: u16 = 1;

/// Size of the frame header: magic, version, kind, body length, CRC32C.
pub const PEER_FRAME_HEADER_BYTES: usize = 16;

/// The header bytes the checksum covers, before the body: magic, version, kind and length.
/// Covering them means a damaged kind code cannot turn one message into another.
const CHECKED_HEADER_BYTES: usize = 12;

/// Default largest body of a bulk frame (`Entries`, `SnapshotChunk`): 1 GiB + 1 MiB, so one
/// log record holding a maximal key and a maximal value (512 MiB each) fits in one frame with
/// room for its framing. Senders bound their batches well below it; the decoder's limit is
/// a parameter so a link may use a smaller one.
pub const PEER_BODY_BYTES_MAX_DEFAULT: usize = (1 << 30) + (1 << 20);

/// Largest body of a control frame (every kind but `Entries` and `SnapshotChunk`), whatever
/// the link's limit. Bounds what an unauthenticated peer can make a node buffer during the
/// handshake, and the length of names and refusal reasons.
pub const PEER_CONTROL_BODY_BYTES_MAX: usize = 64 * 1024;

const _: () = assert!(PEER_BODY_BYTES_MAX_DEFAULT <= u32::MAX as usize);
const _: () = assert!(PEER_CONTROL_BODY_BYTES_MAX <= PEER_BODY_BYTES_MAX_DEFAULT);
const _: () = assert!(PEER_FRAME_HEADER_BYTES == 4 + 2 + 2 + 4 + 4);
// A snapshot chunk as core cuts it, plus one value that overshoots the target, fits a frame.
const _: () =
    assert!(replikv_core::SNAPSHOT_CHUNK_BYTES_TARGET + (512 << 20) < PEER_BODY_BYTES_MAX_DEFAULT);

/// Appends `message` to `out` as one frame.
///
/// # Panics
/// Never for a well-formed message: postcard cannot fail to serialize these types (asserted).
///
/// # Errors
/// [`PeerError::BodyTooLarge`] when the serialized body is over
/// [`PEER_CONTROL_BODY_BYTES_MAX`] for a control message, or over `u32::MAX` bytes for a
/// bulk one; `out` is then left as it was. Senders bound their batches so that this does
/// not happen; the receiver's limit (see [`decode_frame`]) is usually lower still.
pub fn encode_frame(message: &PeerMessage, out: &mut BytesMut) -> Result<(), PeerError> {
    let kind = message.kind();
    let start = out.len();
    out.put_slice(&PEER_MAGIC);
    out.put_u16_le(PEER_PROTOCOL_VERSION);
    out.put_u16_le(kind.code());
    // Length and checksum are patched in once the body is written.
    out.put_u64_le(0);
    let body_start = out.len();
    let serialized = match message {
        PeerMessage::Hello {
            protocol_version,
            cluster_name,
            node_id,
            nonce,
        } => serialize_body(&(protocol_version, cluster_name, node_id, nonce), out),
        PeerMessage::Challenge { nonce, node_id } => serialize_body(&(nonce, node_id), out),
        PeerMessage::Auth { mac } => serialize_body(mac, out),
        PeerMessage::Fetch {
            from,
            epoch,
            history,
            listen_port,
        } => serialize_body(&(from, epoch, history, listen_port), out),
        PeerMessage::Entries {
            epoch,
            prev,
            commit,
            records,
        } => serialize_body(&(epoch, prev, commit, records), out),
        PeerMessage::Ack {
            epoch,
            durable,
            applied,
        } => serialize_body(&(epoch, durable, applied), out),
        PeerMessage::Heartbeat {
            epoch,
            commit,
            leader_time_ms,
        } => serialize_body(&(epoch, commit, leader_time_ms), out),
        PeerMessage::Downstream { replicas } => serialize_body(replicas, out),
        PeerMessage::SnapshotBegin {
            pos,
            total_bytes,
            history,
        } => serialize_body(&(pos, total_bytes, history), out),
        PeerMessage::SnapshotChunk { index, data } => serialize_body(&(index, data), out),
        PeerMessage::SnapshotEnd { chunks } => serialize_body(chunks, out),
        PeerMessage::Refuse { reason } => serialize_body(reason, out),
        PeerMessage::Control { body } => serialize_body(body, out),
        PeerMessage::Lineage {
            epochs,
            truncatable_from,
        } => serialize_body(&(epochs, truncatable_from), out),
        PeerMessage::Truncate { to } => serialize_body(to, out),
    };
    // Serializing into a growable buffer cannot fail: every field type has an infallible
    // `Serialize` impl, sequences know their length, and the flavor never refuses bytes.
    assert!(
        serialized.is_ok(),
        "{kind} body failed to serialize: {serialized:?}"
    );
    let body_bytes = out.len() - body_start;
    let body_bytes_max = if kind.is_bulk() {
        u32::MAX as usize
    } else {
        PEER_CONTROL_BODY_BYTES_MAX
    };
    let body_len = match u32::try_from(body_bytes) {
        Ok(len) if body_bytes <= body_bytes_max => len,
        _ => {
            out.truncate(start);
            return Err(PeerError::BodyTooLarge {
                kind,
                body_bytes: body_bytes as u64,
                body_bytes_max: body_bytes_max as u64,
            });
        }
    };
    out[start + 8..start + 12].copy_from_slice(&body_len.to_le_bytes());
    let crc = frame_crc(
        &out[start..start + CHECKED_HEADER_BYTES],
        &out[body_start..],
    );
    out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Takes one frame from the front of `buf` and decodes its message.
///
/// `body_bytes_max` bounds the body of bulk frames (`Entries`, `SnapshotChunk`); use
/// [`PEER_BODY_BYTES_MAX_DEFAULT`] unless the link is configured otherwise, and
/// [`PEER_CONTROL_BODY_BYTES_MAX`] until the handshake has authenticated the peer, so that an
/// unauthenticated peer cannot make the link buffer a large body. Control frames are always
/// bounded by [`PEER_CONTROL_BODY_BYTES_MAX`] (or `body_bytes_max`, if lower).
/// Header fields are checked as soon as their bytes have arrived, so a bad header fails
/// before its body is awaited. Byte payloads (`PeerRecord::payload`,
/// `SnapshotChunk::data`) share the frame's allocation rather than being copied.
///
/// Returns `Ok(None)` when `buf` holds a valid prefix of a frame but not all of it; `buf`
/// is then untouched and the caller reads more and calls again. Returns `Ok(Some(message))`
/// after removing exactly one frame from the front of `buf`.
///
/// # Example
/// ```
/// use bytes::BytesMut;
/// use replikv_core::{Epoch, Lsn};
/// use replikv_proto::{decode_frame, encode_frame, PeerMessage, PEER_BODY_BYTES_MAX_DEFAULT};
///
/// let ack = PeerMessage::Ack { epoch: Epoch(2), durable: Lsn(10), applied: Lsn(9) };
/// let mut wire = BytesMut::new();
/// encode_frame(&ack, &mut wire).unwrap();
///
/// let mut read = wire.split_to(5); // only part of the frame has arrived
/// assert_eq!(decode_frame(&mut read, PEER_BODY_BYTES_MAX_DEFAULT), Ok(None));
/// read.unsplit(wire);
/// assert_eq!(decode_frame(&mut read, PEER_BODY_BYTES_MAX_DEFAULT), Ok(Some(ack)));
/// assert!(read.is_empty());
/// ```
///
/// # Errors
/// A [`PeerError`] saying what is wrong: bad magic, unsupported version, unknown kind, body
/// too large, checksum mismatch, undecodable body or trailing bytes. `buf` is left untouched;
/// the link should be closed, since the stream cannot be resynchronized.
pub fn decode_frame(
    buf: &mut BytesMut,
    body_bytes_max: usize,
) -> Result<Option<PeerMessage>, PeerError> {
    let Some(header) = decode_header(buf, body_bytes_max)? else {
        return Ok(None);
    };
    let frame_bytes = PEER_FRAME_HEADER_BYTES + header.body_bytes;
    if buf.len() < frame_bytes {
        return Ok(None);
    }
    let body = &buf[PEER_FRAME_HEADER_BYTES..frame_bytes];
    let actual = frame_crc(&buf[..CHECKED_HEADER_BYTES], body);
    if actual != header.crc {
        return Err(PeerError::ChecksumMismatch {
            kind: header.kind,
            expected: header.crc,
            actual,
        });
    }
    let decoded = decode_body(header.kind, body)?;
    buf.advance(PEER_FRAME_HEADER_BYTES);
    let body = buf.split_to(header.body_bytes).freeze();
    Ok(Some(decoded.into_message(&body)))
}

/// A frame header whose fields have all been checked.
struct Header {
    kind: PeerMessageKind,
    body_bytes: usize,
    crc: u32,
}

/// Checks each header field that has fully arrived, in order; `Ok(None)` until all have.
fn decode_header(buf: &[u8], body_bytes_max: usize) -> Result<Option<Header>, PeerError> {
    let Some(magic) = buf.get(0..4) else {
        return Ok(None);
    };
    if magic != PEER_MAGIC {
        let mut found = [0; 4];
        found.copy_from_slice(magic);
        return Err(PeerError::BadMagic { found });
    }
    let Some(version) = read_u16(buf, 4) else {
        return Ok(None);
    };
    if version != PEER_PROTOCOL_VERSION {
        return Err(PeerError::UnsupportedVersion { version });
    }
    let Some(code) = read_u16(buf, 6) else {
        return Ok(None);
    };
    let Some(kind) = PeerMessageKind::from_code(code) else {
        return Err(PeerError::UnknownKind { kind: code });
    };
    let Some(body_len) = read_u32(buf, 8) else {
        return Ok(None);
    };
    let kind_max = if kind.is_bulk() {
        body_bytes_max
    } else {
        body_bytes_max.min(PEER_CONTROL_BODY_BYTES_MAX)
    };
    let body_bytes = match usize::try_from(body_len) {
        Ok(body_bytes) if body_bytes <= kind_max => body_bytes,
        _ => {
            return Err(PeerError::BodyTooLarge {
                kind,
                body_bytes: u64::from(body_len),
                body_bytes_max: kind_max as u64,
            })
        }
    };
    let Some(crc) = read_u32(buf, 12) else {
        return Ok(None);
    };
    Ok(Some(Header {
        kind,
        body_bytes,
        crc,
    }))
}

/// The frame checksum: CRC32C of the header's first 12 bytes followed by the body.
fn frame_crc(checked_header: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(checked_header), body)
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at + 2)?;
    Some(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A decoded body whose byte payloads are still ranges into the body, so that decoding can
/// finish before `buf` is touched.
enum DecodedBody {
    Message(PeerMessage),
    Entries {
        epoch: Epoch,
        prev: LogPosition,
        commit: Lsn,
        records: Vec<(LogPosition, Range<usize>)>,
    },
    SnapshotChunk {
        index: u64,
        data: Range<usize>,
    },
    Control(Range<usize>),
}

impl DecodedBody {
    fn into_message(self, body: &Bytes) -> PeerMessage {
        match self {
            DecodedBody::Message(message) => message,
            DecodedBody::Entries {
                epoch,
                prev,
                commit,
                records,
            } => PeerMessage::Entries {
                epoch,
                prev,
                commit,
                records: records
                    .into_iter()
                    .map(|(pos, range)| PeerRecord {
                        pos,
                        payload: body.slice(range),
                    })
                    .collect(),
            },
            DecodedBody::SnapshotChunk { index, data } => PeerMessage::SnapshotChunk {
                index,
                data: body.slice(data),
            },
            DecodedBody::Control(range) => PeerMessage::Control {
                body: body.slice(range),
            },
        }
    }
}

/// A record as it sits in the body: the payload borrowed, not copied.
#[derive(Deserialize)]
struct BorrowedRecord<'a> {
    pos: LogPosition,
    payload: &'a [u8],
}

fn decode_body(kind: PeerMessageKind, body: &[u8]) -> Result<DecodedBody, PeerError> {
    // The range a payload borrowed from `body` occupies in it.
    let range_in_body = |payload: &[u8]| {
        let start = payload.as_ptr() as usize - body.as_ptr() as usize;
        start..start + payload.len()
    };
    let message = match kind {
        PeerMessageKind::Hello => {
            let (protocol_version, cluster_name, node_id, nonce) = deserialize_body(kind, body)?;
            PeerMessage::Hello {
                protocol_version,
                cluster_name,
                node_id,
                nonce,
            }
        }
        PeerMessageKind::Challenge => {
            let (nonce, node_id) = deserialize_body(kind, body)?;
            PeerMessage::Challenge { nonce, node_id }
        }
        PeerMessageKind::Auth => {
            let mac: [u8; PEER_MAC_BYTES] = deserialize_body(kind, body)?;
            PeerMessage::Auth { mac }
        }
        PeerMessageKind::Refuse => PeerMessage::Refuse {
            reason: deserialize_body(kind, body)?,
        },
        PeerMessageKind::Fetch => {
            let (from, epoch, history, listen_port) = deserialize_body(kind, body)?;
            PeerMessage::Fetch {
                from,
                epoch,
                history,
                listen_port,
            }
        }
        PeerMessageKind::Entries => {
            let (epoch, prev, commit, records): (_, _, _, Vec<BorrowedRecord<'_>>) =
                take_body(kind, body)?;
            return Ok(DecodedBody::Entries {
                epoch,
                prev,
                commit,
                records: records
                    .into_iter()
                    .map(|record| (record.pos, range_in_body(record.payload)))
                    .collect(),
            });
        }
        PeerMessageKind::Ack => {
            let (epoch, durable, applied) = deserialize_body(kind, body)?;
            PeerMessage::Ack {
                epoch,
                durable,
                applied,
            }
        }
        PeerMessageKind::Heartbeat => {
            let (epoch, commit, leader_time_ms) = deserialize_body(kind, body)?;
            PeerMessage::Heartbeat {
                epoch,
                commit,
                leader_time_ms,
            }
        }
        PeerMessageKind::Downstream => PeerMessage::Downstream {
            replicas: deserialize_body(kind, body)?,
        },
        PeerMessageKind::SnapshotBegin => {
            let (pos, total_bytes, history) = deserialize_body(kind, body)?;
            PeerMessage::SnapshotBegin {
                pos,
                total_bytes,
                history,
            }
        }
        PeerMessageKind::SnapshotChunk => {
            let (index, data): (u64, &[u8]) = take_body(kind, body)?;
            return Ok(DecodedBody::SnapshotChunk {
                index,
                data: range_in_body(data),
            });
        }
        PeerMessageKind::SnapshotEnd => PeerMessage::SnapshotEnd {
            chunks: deserialize_body(kind, body)?,
        },
        PeerMessageKind::Lineage => {
            let (epochs, truncatable_from) = deserialize_body(kind, body)?;
            PeerMessage::Lineage {
                epochs,
                truncatable_from,
            }
        }
        PeerMessageKind::Truncate => PeerMessage::Truncate {
            to: deserialize_body(kind, body)?,
        },
        PeerMessageKind::Control => {
            let data: &[u8] = take_body(kind, body)?;
            return Ok(DecodedBody::Control(range_in_body(data)));
        }
    };
    Ok(DecodedBody::Message(message))
}

fn deserialize_body<T: DeserializeOwned>(
    kind: PeerMessageKind,
    body: &[u8],
) -> Result<T, PeerError> {
    take_body(kind, body)
}

/// Decodes the whole body as `T`; bytes left over are an error. (Postcard accepts overlong
/// varints, so a message may still have more than one body; the encoder writes the shortest.)
fn take_body<'a, T: Deserialize<'a>>(
    kind: PeerMessageKind,
    body: &'a [u8],
) -> Result<T, PeerError> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(PeerError::BodyTrailingBytes {
            kind,
            trailing_bytes: rest.len(),
        }),
        Err(source) => Err(PeerError::BodyUndecodable { kind, source }),
    }
}

fn serialize_body<T: Serialize + ?Sized>(value: &T, out: &mut BytesMut) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, BytesMutFlavor(out))
}

/// Postcard output straight into the frame buffer, byte slices copied in one go.
struct BytesMutFlavor<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
