//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{LogRecord, WalOptions};
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

/// Log options for `dir`.
pub fn opts(dir: &Path, segment_bytes_max: u64, retention_bytes: u64) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes_max,
        retention_bytes,
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

/// Offsets `(start, end)` of every record in a segment file's bytes.
pub fn record_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = replikv_storage::SEGMENT_HEADER_BYTES;
    while at < bytes.len() {
        let (_, used) = replikv_storage::decode_record(&bytes[at..])
            .unwrap()
            .expect("a complete record");
        spans.push((at, at + used));
        at += used;
    }
    spans
}
