//! [`Recovery`]: what [`Wal::open`](crate::Wal::open) found, and the scan that finds it.
//!
//! Where a segment's records end: segments are preallocated (created at full size and
//! zero-filled, see `docs/design/wal.md`), so the end of the log is not the end of the file. A
//! walk over a segment's records ends cleanly at the first record boundary from which every
//! remaining byte of the file is zero; that offset is the segment's *logical end*. No valid
//! record is all zeros (its LSN is never 0; a record with an empty payload, length field 0, is
//! valid but has a non-zero LSN and CRC), so zeros there cannot hide a record. This holds in
//! every segment: a segment rolled before it was full ends in zeros, and the next segment must
//! then start at the next LSN (the continuity checks below). A file that ends right after its
//! last record (written before preallocation, or by a log opened with `preallocate: false`) is
//! the same case with no zeros.
//!
//! The rule for a bad record (failed checksum, bad length, incomplete bytes, non-zero bytes
//! after the last record, or a bad segment header):
//!
//! - In any segment but the last: corruption ([`WalError::Corrupt`]). Segments are fsynced
//!   before the next one is created, so their bytes were durable.
//! - In the last segment: a torn tail, unless a complete record that passes its checksum, with
//!   an LSN at least the one expected at the bad offset and an epoch at least the previous
//!   record's, starts at any later offset of the file. Then bytes after the bad record reached
//!   the disk, and it is corruption. A torn record followed by zeros (an unsynced write into
//!   preallocated space) is a torn tail like any other. The repair overwrites the file with
//!   zeros from the bad record's offset to its last non-zero byte and fsyncs it, keeping the
//!   file's length and allocated blocks: the segment then has a clean logical end there.
//! - A record that passes its checksum but does not continue the log (wrong LSN, epoch going
//!   down) is always corruption: a torn write cannot produce it.
//! - A last segment shorter than its header, or exactly header-sized with a bad header, is a
//!   segment whose creation was torn (its header is fsynced before any record is written to
//!   it): the file is removed. Preallocated segments never take this path: a spare file gets
//!   its segment name only after its header is durable.

use crate::error::WalError;
use crate::fs_util::fsync_dir;
use crate::record::LogRecord;
use crate::segment::{
    decode_segment_header, list_segment_files, scan_segment, valid_record_follows, Segment,
    SEGMENT_HEADER_BYTES,
};
use crate::spare::ZERO_FILL_CHUNK_BYTES;
use replikv_core::{LogPosition, Lsn};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What opening the log found.
#[derive(Debug)]
pub struct Recovery {
    /// Records after the LSN passed to [`Wal::open`](crate::Wal::open), in order.
    pub records: Vec<LogRecord>,
    /// Position of the last valid record in the log (or the `after` position when none).
    ///
    /// When `after` is past the last record on disk (a snapshot newer than the log), this is
    /// `after` with the epoch of the last record on disk (0 when there is none): the log does not
    /// know the snapshot's epoch, so the caller takes it from the snapshot's meta.
    /// [`Wal::last_position`](crate::Wal::last_position) gives the last record on disk.
    pub last: LogPosition,
    /// Set when a torn last record was found and zeroed.
    pub torn_tail: Option<TornTail>,
}

/// A torn tail that recovery removed.
#[derive(Debug, Clone)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Offset where the bad record started: the log now ends here (the file holds zeros from
    /// here on, its length unchanged). 0 when the segment's header was torn and the file was
    /// removed.
    pub offset: u64,
    /// Bytes dropped: from `offset` to the last non-zero byte of the file, the zeros after it
    /// not counted (they were never log data). The file's length when it was removed.
    pub bytes_dropped: u64,
}

/// The outcome of scanning the segment files.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// Segments left on disk, oldest first.
    pub segments: Vec<Segment>,
    /// The last record on disk.
    pub last_on_disk: Option<LogPosition>,
    /// Records with LSN above `after`.
    pub records: Vec<LogRecord>,
    /// The torn tail removed, if any.
    pub torn_tail: Option<TornTail>,
}

/// Scans every segment in `dir`, zeroing a torn tail, and checks that the log continues the
/// snapshot at `after`: the first segment starts at or before `after + 1`, and a gap between
/// segments is allowed only where the snapshot covers it.
pub(crate) fn scan_dir(dir: &Path, after: Lsn) -> Result<Scanned, WalError> {
    let files = list_segment_files(dir).map_err(|e| WalError::io("list directory", dir, e))?;
    let mut segments = Vec::with_capacity(files.len());
    let mut records = Vec::new();
    let mut prev: Option<LogPosition> = None;
    let mut torn_tail = None;
    let count = files.len();
    for (index, (name_lsn, path)) in files.into_iter().enumerate() {
        let is_last = index + 1 == count;
        let buf = std::fs::read(&path).map_err(|e| WalError::io("read segment", &path, e))?;

        let header_lsn = match decode_segment_header(&buf) {
            Ok(lsn) => lsn,
            Err(reason) if is_last && buf.len() <= SEGMENT_HEADER_BYTES => {
                tracing::warn!(
                    file = %path.display(),
                    offset = 0,
                    bytes_dropped = buf.len(),
                    %reason,
                    "removing log segment whose creation was torn"
                );
                std::fs::remove_file(&path)
                    .map_err(|e| WalError::io("remove segment", &path, e))?;
                fsync_dir(dir)?;
                torn_tail = Some(TornTail {
                    file: path,
                    offset: 0,
                    bytes_dropped: buf.len() as u64,
                });
                break;
            }
            Err(reason) => return Err(WalError::corrupt(&path, 0, reason)),
        };
        if header_lsn != name_lsn {
            return Err(WalError::corrupt(
                &path,
                0,
                format!("segment header names lsn {header_lsn}, the file name {name_lsn}"),
            ));
        }
        check_segment_start(&path, name_lsn, prev, after)?;

        let scan = scan_segment(&buf, name_lsn, prev, |record| {
            if record.pos.lsn > after {
                records.push(record);
            }
        });
        if let Some(bad) = scan.bad {
            let expected_lsn = scan.last.map_or(name_lsn, |p| p.lsn.next());
            let epoch_min = scan.last.or(prev).map_or(0, |p| p.epoch.0);
            // Offsets come from indexes into `buf`, so they fit in usize.
            let bad_at = usize::try_from(bad.offset).unwrap_or(usize::MAX);
            let zero_from = usize::try_from(scan.zero_from).unwrap_or(usize::MAX);
            let torn = is_last
                && !bad.discontinuous
                && !valid_record_follows(&buf, bad_at, zero_from, expected_lsn, epoch_min);
            if !torn {
                return Err(WalError::corrupt(&path, bad.offset, bad.reason));
            }
            let bytes_dropped = scan.zero_from - bad.offset;
            tracing::warn!(
                file = %path.display(),
                offset = bad.offset,
                bytes_dropped,
                reason = %bad.reason,
                "zeroing the torn tail of the log"
            );
            zero_segment_tail(&path, bad.offset, scan.zero_from)?;
            torn_tail = Some(TornTail {
                file: path.clone(),
                offset: bad.offset,
                bytes_dropped,
            });
        }
        prev = scan.last.or(prev);
        segments.push(Segment {
            path,
            first_lsn: name_lsn,
            last: scan.last,
            bytes: scan.valid_end,
        });
    }
    Ok(Scanned {
        segments,
        last_on_disk: prev,
        records,
        torn_tail,
    })
}

/// Checks that a segment starting at `first_lsn` may follow the last record `prev` (or start
/// the log) given a snapshot at `after`.
fn check_segment_start(
    path: &Path,
    first_lsn: Lsn,
    prev: Option<LogPosition>,
    after: Lsn,
) -> Result<(), WalError> {
    if first_lsn == Lsn::ZERO {
        return Err(WalError::corrupt(path, 0, "segment names lsn 0"));
    }
    let covered_by_snapshot = first_lsn.0 <= after.0.saturating_add(1);
    match prev {
        None if !covered_by_snapshot => Err(WalError::corrupt(
            path,
            0,
            format!(
                "the log starts at lsn {first_lsn} but the snapshot covers only up to {after}: \
                 entries are missing"
            ),
        )),
        Some(p) if first_lsn <= p.lsn => Err(WalError::corrupt(
            path,
            0,
            format!("segment starts at lsn {first_lsn}, overlapping the record {p} before it"),
        )),
        Some(p) if first_lsn != p.lsn.next() && !covered_by_snapshot => Err(WalError::corrupt(
            path,
            0,
            format!(
                "segment starts at lsn {first_lsn} after record {p}: entries are missing and \
                 the snapshot covers only up to {after}"
            ),
        )),
        _ => Ok(()),
    }
}

/// Overwrites bytes `from..to` of a segment file with zeros and makes that durable. The file
/// keeps its length and blocks, so a preallocated segment stays preallocated.
fn zero_segment_tail(path: &Path, from: u64, to: u64) -> Result<(), WalError> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open segment", path, e))?;
    file.seek(SeekFrom::Start(from))
        .map_err(|e| WalError::io("seek segment", path, e))?;
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
    let mut left = to.saturating_sub(from);
    while left > 0 {
        let n = usize::try_from(left).map_or(zeros.len(), |l| l.min(zeros.len()));
        file.write_all(&zeros[..n])
            .map_err(|e| WalError::io("zero torn tail of segment", path, e))?;
        left -= n as u64;
    }
    file.sync_all()
        .map_err(|e| WalError::io("fsync segment", path, e))
}
