//! The log record and its byte encoding (layout in `docs/design/wal.md`).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | payload length `n`, u32 LE, at most [`RECORD_PAYLOAD_BYTES_MAX`] |
//! | 4 | 4 | CRC32C over bytes `8..24 + n` (epoch, lsn, payload), u32 LE |
//! | 8 | 8 | epoch, u64 LE |
//! | 16 | 8 | lsn, u64 LE, never 0 |
//! | 24 | n | payload |

use bytes::Bytes;
use replikv_core::{Epoch, LogPosition, Lsn};

/// Bytes of a record before its payload: length, CRC, epoch, LSN.
pub const RECORD_HEADER_BYTES: usize = 24;

/// The largest payload a record may carry (1 GiB). Larger than the biggest RESP bulk string the
/// server accepts (512 MiB) plus the command around it; a length above this in a file is
/// corruption, never a reason to allocate.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 30;

const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(RECORD_HEADER_BYTES == 4 + 4 + 8 + 8);

/// One log record: its position and opaque payload (an encoded `replikv_core::Command`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// `(epoch, lsn)` of the record.
    pub pos: LogPosition,
    /// The encoded command.
    pub payload: Bytes,
}

impl LogRecord {
    /// Bytes this record takes in a segment file.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// Why bytes are not a valid record. "Not enough bytes yet" is not an error: see
/// [`decode_record`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The length field exceeds [`RECORD_PAYLOAD_BYTES_MAX`].
    #[error("record length {len} exceeds the maximum {max}")]
    LengthTooLarge {
        /// The length read.
        len: u64,
        /// [`RECORD_PAYLOAD_BYTES_MAX`].
        max: u64,
    },
    /// The stored CRC32C does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// CRC in the record.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The record claims LSN 0, which no record has.
    #[error("record has lsn 0")]
    ZeroLsn,
}

/// Appends the encoding of `record` to `out`.
///
/// # Panics
/// When the payload is longer than [`RECORD_PAYLOAD_BYTES_MAX`] or the LSN is 0; the [`Wal`]
/// rejects both with an error before encoding.
///
/// [`Wal`]: crate::Wal
pub fn encode_record(record: &LogRecord, out: &mut Vec<u8>) {
    let len = record.payload.len();
    assert!(
        len <= RECORD_PAYLOAD_BYTES_MAX,
        "payload of {len} bytes exceeds {RECORD_PAYLOAD_BYTES_MAX}"
    );
    assert!(record.pos.lsn != Lsn::ZERO, "a record cannot have lsn 0");
    let epoch = record.pos.epoch.0.to_le_bytes();
    let lsn = record.pos.lsn.0.to_le_bytes();
    let crc = record_crc(&epoch, &lsn, &record.payload);
    out.reserve(RECORD_HEADER_BYTES + len);
    // The assert above bounds `len` by u32::MAX (compile-time check on the constant).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&epoch);
    out.extend_from_slice(&lsn);
    out.extend_from_slice(&record.payload);
}

/// Decodes the record at the start of `buf`.
///
/// Returns `Ok(Some((record, bytes_used)))` for a valid record, `Ok(None)` when `buf` holds only
/// a prefix of a record whose length is within bounds (more bytes are needed), and `Err` when the
/// bytes cannot be a valid record. Checks length bounds, the checksum and `lsn != 0`; LSN
/// continuity is the caller's job. Never panics and never allocates more than `buf.len()` bytes.
///
/// A length field of 0 is an empty payload, valid like any other. Zero bytes are never a
/// record: 24 of them fail the checksum (the CRC32C of 16 zero bytes is not 0) and name LSN 0.
/// Recovery finds where a preallocated segment's zero fill begins without help from this
/// function (see [`recovery`](crate::recovery)).
///
/// # Errors
/// [`RecordError`] for a length past the maximum, a checksum mismatch or LSN 0.
pub fn decode_record(buf: &[u8]) -> Result<Option<(LogRecord, usize)>, RecordError> {
    let Some(header) = buf.get(..RECORD_HEADER_BYTES) else {
        return Ok(None);
    };
    let len = u64::from(read_u32(header, 0));
    if len > RECORD_PAYLOAD_BYTES_MAX as u64 {
        return Err(RecordError::LengthTooLarge {
            len,
            max: RECORD_PAYLOAD_BYTES_MAX as u64,
        });
    }
    // `len` is at most RECORD_PAYLOAD_BYTES_MAX, which fits in usize on every supported target.
    let total =
        RECORD_HEADER_BYTES + usize::try_from(len).unwrap_or(usize::MAX - RECORD_HEADER_BYTES);
    let Some(payload) = buf.get(RECORD_HEADER_BYTES..total) else {
        return Ok(None);
    };
    let stored = read_u32(header, 4);
    let (epoch, lsn) = (&header[8..16], &header[16..24]);
    let computed = record_crc(epoch, lsn, payload);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let lsn = read_u64(header, 16);
    if lsn == 0 {
        return Err(RecordError::ZeroLsn);
    }
    let record = LogRecord {
        pos: LogPosition {
            epoch: Epoch(read_u64(header, 8)),
            lsn: Lsn(lsn),
        },
        payload: Bytes::copy_from_slice(payload),
    };
    Ok(Some((record, total)))
}

fn record_crc(epoch: &[u8], lsn: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(epoch);
    let crc = crc32c::crc32c_append(crc, lsn);
    crc32c::crc32c_append(crc, payload)
}

/// Reads a little-endian u32 at `at`; the caller has checked that `buf` holds `at + 4` bytes.
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian u64 at `at`; the caller has checked that `buf` holds `at + 8` bytes.
pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: u64, lsn: u64, payload: &'static [u8]) -> LogRecord {
        LogRecord {
            pos: LogPosition {
                epoch: Epoch(epoch),
                lsn: Lsn(lsn),
            },
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn round_trip_and_every_prefix_needs_more_bytes() {
        let r = rec(3, 7, b"hello");
        let mut buf = Vec::new();
        encode_record(&r, &mut buf);
        assert_eq!(buf.len(), r.encoded_len());
        assert_eq!(decode_record(&buf), Ok(Some((r, buf.len()))));
        for cut in 0..buf.len() {
            assert_eq!(
                decode_record(&buf[..cut]),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected_or_needs_more_bytes() {
        let mut buf = Vec::new();
        encode_record(&rec(1, 2, b"payload"), &mut buf);
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                !matches!(decode_record(&bad), Ok(Some(_))),
                "bit {i} flipped and the record still decoded"
            );
        }
    }

    #[test]
    fn huge_length_is_an_error_not_an_allocation() {
        let mut buf = vec![0u8; RECORD_HEADER_BYTES];
        buf[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_record(&buf),
            Err(RecordError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn an_empty_payload_is_a_valid_record_that_is_not_all_zeros() {
        let r = rec(1, 1, b"");
        let mut buf = Vec::new();
        encode_record(&r, &mut buf);
        assert_eq!(buf[..4], [0, 0, 0, 0], "length field 0");
        assert_eq!(decode_record(&buf), Ok(Some((r, RECORD_HEADER_BYTES))));
        assert!(buf.iter().any(|&b| b != 0));
    }

    #[test]
    fn zeroed_bytes_fail_the_checksum() {
        // A preallocated or zero-filled tail must not read as a record.
        let buf = vec![0u8; 64];
        assert!(matches!(
            decode_record(&buf),
            Err(RecordError::Checksum { .. })
        ));
    }
}
