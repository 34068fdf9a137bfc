//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{decode_record, LogRecord, WalOptions, SEGMENT_HEADER_BYTES};
use std::path::{Path, PathBuf};

/// A record at `(epoch, lsn)` with `payload`.
pub fn rec(epoch: u64, lsn: u64, payload: &[u8]) -> LogRecord {
    LogRecord {
        pos: LogPosition {
            epoch: Epoch(epoch),
            lsn: Lsn(lsn),
        },
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Records `first..=last` in epoch 1 with payloads naming their LSN and padded to `pad` bytes.
pub fn recs(first: u64, last: u64, pad: usize) -> Vec<LogRecord> {
    (first..=last)
        .map(|lsn| {
            let mut payload = format!("SET key{lsn} value{lsn}").into_bytes();
            payload.resize(payload.len().max(pad), b'.');
            rec(1, lsn, &payload)
        })
        .collect()
}

/// Log options for `dir`, with preallocated segments.
pub fn opts(dir: &Path, segment_bytes_max: u64, retention_bytes: u64) -> WalOptions {
    WalOptions::new(dir, segment_bytes_max, retention_bytes)
}

/// Log options for `dir`, with segments created holding only their header and grown by
/// appending (the file ends at the last record).
pub fn opts_unallocated(dir: &Path, segment_bytes_max: u64, retention_bytes: u64) -> WalOptions {
    WalOptions {
        preallocate: false,
        ..WalOptions::new(dir, segment_bytes_max, retention_bytes)
    }
}

/// Segment files in `dir`, sorted by name.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Offsets `(start, end)` of every record in a segment file's bytes. The records end where
/// the zero fill of a preallocated segment begins (or at the end of the file).
///
/// # Panics
/// When a bad record comes before the zero fill.
pub fn record_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while let Ok(Some((_, used))) = decode_record(&bytes[at..]) {
        spans.push((at, at + used));
        at += used;
    }
    assert!(
        bytes[at..].iter().all(|&b| b == 0),
        "a bad record at offset {at}, not the zero fill"
    );
    spans
}

/// The logical end of a segment file's bytes: the offset just past its last record, where a
/// preallocated segment's zero fill begins.
pub fn logical_end(bytes: &[u8]) -> usize {
    record_spans(bytes)
        .last()
        .map_or(SEGMENT_HEADER_BYTES, |&(_, end)| end)
}

/// Writes `data` at `offset` of the file, in place (a write that reached the disk).
pub fn write_at(file: &Path, offset: usize, data: &[u8]) {
    let mut bytes = std::fs::read(file).unwrap();
    let end = offset + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset..end].copy_from_slice(data);
    std::fs::write(file, &bytes).unwrap();
}

/// Overwrites bytes `from..to` of the file with zeros: in a preallocated segment, the part of
/// a write that never reached the disk.
pub fn zero_range(file: &Path, from: usize, to: usize) {
    write_at(file, from, &vec![0u8; to - from]);
}

/// Whether every byte of the file from `offset` on is zero.
pub fn zeros_from(file: &Path, offset: usize) -> bool {
    std::fs::read(file).unwrap()[offset..]
        .iter()
        .all(|&b| b == 0)
}
