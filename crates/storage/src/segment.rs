//! One segment file of the log: its name, header and a checked walk over its records.
//!
//! Segment header (32 bytes, layout also in `docs/design/wal.md`):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `RKV\0WAL\0` |
//! | 8 | 4 | format version, u32 LE ([`SEGMENT_FORMAT_VERSION`]) |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | first LSN of the segment, u64 LE (equals the file name) |
//! | 24 | 4 | CRC32C over bytes `0..24`, u32 LE |
//! | 28 | 4 | reserved, zero |

use crate::record::{decode_record, read_u32, read_u64, LogRecord, RECORD_HEADER_BYTES};
use replikv_core::{LogPosition, Lsn};
use std::path::{Path, PathBuf};

/// Bytes of the header at the start of every segment file.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RKV\0WAL\0";
/// Format version written in the segment header; readers refuse any other.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
/// Extension of segment files.
const SEGMENT_EXTENSION: &str = "wal";
/// Digits in a segment file name: enough for any u64, so names sort as numbers.
const SEGMENT_NAME_DIGITS: usize = 20;

/// What the log knows about one segment file.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    /// The file.
    pub path: PathBuf,
    /// LSN of its first record (also its name); records in it are `first_lsn..`.
    pub first_lsn: Lsn,
    /// Its last record, `None` while it holds only the header.
    pub last: Option<LogPosition>,
    /// The logical end of the segment: bytes of header and records written to the file. Never
    /// more than the file's length; a preallocated file holds zeros from here on.
    pub bytes: u64,
}

/// The file name of the segment whose first record is `first_lsn`.
pub(crate) fn segment_file_name(first_lsn: Lsn) -> String {
    format!(
        "{:0width$}.{SEGMENT_EXTENSION}",
        first_lsn.0,
        width = SEGMENT_NAME_DIGITS
    )
}

/// The first LSN named by a segment file name, `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_EXTENSION)?.strip_suffix('.')?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// The header of a segment starting at `first_lsn`.
pub(crate) fn encode_segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first_lsn.0.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header and returns the first LSN it names.
pub(crate) fn decode_segment_header(buf: &[u8]) -> Result<Lsn, String> {
    let Some(h) = buf.get(..SEGMENT_HEADER_BYTES) else {
        return Err(format!(
            "segment header truncated: {} of {SEGMENT_HEADER_BYTES} bytes",
            buf.len()
        ));
    };
    if h[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".to_string());
    }
    let stored = read_u32(h, 24);
    let computed = crc32c::crc32c(&h[0..24]);
    if stored != computed {
        return Err(format!(
            "segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if read_u32(h, 12) != 0 || read_u32(h, 28) != 0 {
        return Err("segment header reserved field is not zero".to_string());
    }
    let version = read_u32(h, 8);
    if version != SEGMENT_FORMAT_VERSION {
        return Err(format!(
            "unsupported segment format version {version} (this build reads {SEGMENT_FORMAT_VERSION})"
        ));
    }
    Ok(Lsn(read_u64(h, 16)))
}

/// How a walk over a segment's records ended early.
#[derive(Debug)]
pub(crate) struct BadRecord {
    /// Byte offset in the file where the bad record starts.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// The record checksums but does not continue the log; never a torn write.
    pub discontinuous: bool,
}

/// Result of [`scan_segment`].
#[derive(Debug)]
pub(crate) struct SegmentScan {
    /// Offset just past the last good record: the logical end of the segment when the walk
    /// found no bad record.
    pub valid_end: u64,
    /// Offset just past the last non-zero byte of the bytes scanned; every byte from here on is
    /// zero (preallocated space never written, or an old-format file's length).
    pub zero_from: u64,
    /// The last good record.
    pub last: Option<LogPosition>,
    /// The first bad record, if the walk stopped before the end of the bytes.
    pub bad: Option<BadRecord>,
}

/// Walks the records of a segment file's bytes `buf` (header included), checking each record
/// and LSN continuity: the first record has LSN `first_lsn`, each next one the LSN after, and
/// epochs never go below `prev`'s (the last record of the previous segment). Calls `visit` with
/// every good record and its offset.
///
/// The walk ends cleanly at the first record boundary from which every remaining byte is zero:
/// that is where a preallocated segment's zero fill begins. No valid record is all zeros (its
/// LSN is never 0), so zeros there cannot hide one.
pub(crate) fn scan_segment(
    buf: &[u8],
    first_lsn: Lsn,
    prev: Option<LogPosition>,
    mut visit: impl FnMut(LogRecord),
) -> SegmentScan {
    let zero_from = zero_fill_start(buf).max(SEGMENT_HEADER_BYTES);
    let mut at = SEGMENT_HEADER_BYTES;
    let mut last: Option<LogPosition> = None;
    let mut bad = None;
    while at < zero_from {
        let expected_lsn = last.map_or(first_lsn, |p| p.lsn.next());
        let epoch_min = last.or(prev).map(|p| p.epoch).unwrap_or_default();
        match decode_record(&buf[at..]) {
            Ok(Some((record, used))) => {
                let pos = record.pos;
                if pos.lsn != expected_lsn || pos.epoch < epoch_min {
                    bad = Some(BadRecord {
                        offset: at as u64,
                        reason: format!(
                            "record {pos} does not continue the log: expected lsn {expected_lsn} \
                             at epoch >= {epoch_min}"
                        ),
                        discontinuous: true,
                    });
                    break;
                }
                visit(record);
                last = Some(pos);
                at += used;
            }
            Ok(None) => {
                bad = Some(BadRecord {
                    offset: at as u64,
                    reason: format!(
                        "incomplete record: {} bytes left in the file",
                        buf.len() - at
                    ),
                    discontinuous: false,
                });
                break;
            }
            Err(e) => {
                bad = Some(BadRecord {
                    offset: at as u64,
                    reason: e.to_string(),
                    discontinuous: false,
                });
                break;
            }
        }
    }
    SegmentScan {
        valid_end: at as u64,
        zero_from: zero_from as u64,
        last,
        bad,
    }
}

/// Offset just past the last non-zero byte of `buf` (0 when every byte is zero).
pub(crate) fn zero_fill_start(buf: &[u8]) -> usize {
    // Whole blocks compared against a zero block (a `memcmp`, fast even in debug builds), then
    // bytes within the last block that is not all zeros.
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut end = buf.len();
    while end >= BLOCK && buf[end - BLOCK..end] == ZEROS[..] {
        end -= BLOCK;
    }
    buf[..end]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p + 1)
}

/// Whether a complete, checksummed record that could belong after a bad record at `bad_offset`
/// starts anywhere in `buf` past that offset: LSN at least `expected_lsn` (and no further past it
/// than the remaining bytes could hold) and epoch at least `epoch_min`. When one does, the bad
/// record is not a torn tail: bytes after it reached the disk. Only offsets before `zero_from`
/// (see [`zero_fill_start`]) are tried: a record starting in all-zero bytes would have LSN 0.
pub(crate) fn valid_record_follows(
    buf: &[u8],
    bad_offset: usize,
    zero_from: usize,
    expected_lsn: Lsn,
    epoch_min: u64,
) -> bool {
    let start = bad_offset.saturating_add(1);
    (start..zero_from.min(buf.len())).any(|p| {
        let rest = &buf[p..];
        if rest.len() < RECORD_HEADER_BYTES {
            return false;
        }
        // Cheap filters first so a long garbage tail costs one pass, not one CRC per byte.
        // A genuine later record is at most one LSN further per record that fits before it.
        let lsn = read_u64(rest, 16);
        let records_between = ((p - bad_offset) / RECORD_HEADER_BYTES) as u64;
        if lsn < expected_lsn.0 || lsn > expected_lsn.0.saturating_add(records_between) {
            return false;
        }
        if read_u64(rest, 8) < epoch_min {
            return false;
        }
        matches!(decode_record(rest), Ok(Some(_)))
    })
}

/// Directory listing of segment files, sorted by first LSN.
pub(crate) fn list_segment_files(dir: &Path) -> std::io::Result<Vec<(Lsn, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(lsn) = name.to_str().and_then(parse_segment_file_name) {
            found.push((lsn, entry.path()));
        }
    }
    found.sort_by_key(|(lsn, _)| *lsn);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_as_numbers() {
        assert_eq!(segment_file_name(Lsn(1)), "00000000000000000001.wal");
        assert_eq!(
            parse_segment_file_name("00000000000000000001.wal"),
            Some(Lsn(1))
        );
        assert_eq!(
            parse_segment_file_name(&segment_file_name(Lsn(u64::MAX))),
            Some(Lsn(u64::MAX))
        );
        assert_eq!(parse_segment_file_name("1.wal"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000001.wal.tmp"),
            None
        );
        assert_eq!(parse_segment_file_name("0000000000000000000a.wal"), None);
        assert!(segment_file_name(Lsn(9)) < segment_file_name(Lsn(10)));
        assert_eq!(parse_segment_file_name(crate::spare::SPARE_FILE_NAME), None);
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_segment_header(Lsn(42));
        assert_eq!(decode_segment_header(&h), Ok(Lsn(42)));
        assert!(decode_segment_header(&h[..10]).is_err());
        for i in 0..SEGMENT_HEADER_BYTES {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert!(decode_segment_header(&bad).is_err(), "byte {i} flipped");
        }
    }

    fn records(lsns: std::ops::RangeInclusive<u64>, payload: &'static [u8]) -> Vec<u8> {
        let mut buf = encode_segment_header(Lsn(*lsns.start())).to_vec();
        for lsn in lsns {
            let record = LogRecord {
                pos: LogPosition {
                    epoch: replikv_core::Epoch(1),
                    lsn: Lsn(lsn),
                },
                payload: bytes::Bytes::from_static(payload),
            };
            crate::record::encode_record(&record, &mut buf);
        }
        buf
    }

    #[test]
    fn zero_fill_start_finds_the_last_non_zero_byte_across_blocks() {
        assert_eq!(zero_fill_start(&[]), 0);
        assert_eq!(zero_fill_start(&[0; 10_000]), 0);
        for at in [0, 1, 4095, 4096, 4097, 8191, 9_999] {
            let mut buf = vec![0u8; 10_000];
            buf[at] = 7;
            assert_eq!(zero_fill_start(&buf), at + 1, "non-zero byte at {at}");
        }
    }

    #[test]
    fn scan_ends_cleanly_where_the_zero_fill_begins() {
        // Empty payloads too: a record of length 0 is valid, and still not all zeros.
        let mut buf = records(1..=3, b"");
        let end = buf.len();
        buf.resize(end + 5000, 0);
        let scan = scan_segment(&buf, Lsn(1), None, |_| {});
        assert!(scan.bad.is_none(), "{:?}", scan.bad);
        assert_eq!(scan.valid_end, end as u64);
        assert_eq!(scan.last.map(|p| p.lsn), Some(Lsn(3)));

        // Header only, then zeros: an empty segment.
        let mut empty = encode_segment_header(Lsn(1)).to_vec();
        empty.resize(4096, 0);
        let scan = scan_segment(&empty, Lsn(1), None, |_| {});
        assert!(scan.bad.is_none());
        assert_eq!(scan.valid_end, SEGMENT_HEADER_BYTES as u64);
        assert_eq!(scan.last, None);
    }

    #[test]
    fn scan_reports_non_zero_bytes_in_the_zero_fill_as_a_bad_record() {
        let mut buf = records(1..=2, b"abc");
        let end = buf.len();
        buf.resize(end + 5000, 0);
        buf[end + 100] = 1;
        let scan = scan_segment(&buf, Lsn(1), None, |_| {});
        let bad = scan.bad.unwrap();
        assert_eq!(bad.offset, end as u64);
        assert!(!bad.discontinuous);
        assert_eq!(scan.zero_from, (end + 101) as u64);
    }
}
