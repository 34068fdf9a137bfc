//! Snapshot files: round trip, atomic replacement of older snapshots, detection of every
//! truncation and of changed bytes, unfinished files ignored.

use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{SnapshotMeta, SnapshotReader, SnapshotWriter, WalError};
use std::path::{Path, PathBuf};

fn meta(epoch: u64, lsn: u64) -> SnapshotMeta {
    SnapshotMeta {
        pos: LogPosition {
            epoch: Epoch(epoch),
            lsn: Lsn(lsn),
        },
        created_unix_ms: 1_700_000_000_000 + lsn,
    }
}

fn chunks() -> Vec<Vec<u8>> {
    vec![b"first chunk".to_vec(), Vec::new(), vec![0xab; 5000]]
}

fn write_snapshot(dir: &Path, m: SnapshotMeta, chunks: &[Vec<u8>]) -> PathBuf {
    let mut w = SnapshotWriter::create(dir, m).unwrap();
    assert_eq!(w.meta(), m);
    for c in chunks {
        w.write_chunk(c).unwrap();
    }
    w.finish().unwrap()
}

/// A snapshot's identity and chunks.
type Contents = (SnapshotMeta, Vec<Vec<u8>>);

/// Reads every chunk of the newest snapshot; the error of the first failing step otherwise.
fn read_all(dir: &Path) -> Result<Option<Contents>, WalError> {
    let Some(mut r) = SnapshotReader::open_latest(dir)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk()? {
        out.push(c);
    }
    Ok(Some((r.meta(), out)))
}

#[test]
fn snapshot_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_all(dir.path()).unwrap().is_none(), "no snapshot yet");
    assert!(SnapshotReader::open_latest(&dir.path().join("missing"))
        .unwrap()
        .is_none());

    let path = write_snapshot(dir.path(), meta(2, 42), &chunks());
    assert_eq!(path, dir.path().join("snapshot-00000000000000000042.snap"));
    let mut r = SnapshotReader::open_latest(dir.path()).unwrap().unwrap();
    assert_eq!(r.meta(), meta(2, 42));
    assert_eq!(r.path(), path);
    for c in chunks() {
        assert_eq!(r.next_chunk().unwrap(), Some(c));
    }
    assert_eq!(r.next_chunk().unwrap(), None);
    assert_eq!(r.next_chunk().unwrap(), None, "the end stays the end");
}

#[test]
fn snapshot_with_no_chunks_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), meta(1, 0), &[]);
    assert_eq!(read_all(dir.path()).unwrap(), Some((meta(1, 0), vec![])));
}

#[test]
fn finishing_a_newer_snapshot_removes_older_ones_and_stray_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_snapshot(dir.path(), meta(1, 10), &chunks());
    let stray = dir.path().join("snapshot-00000000000000000005.tmp");
    std::fs::write(&stray, b"left by a crash").unwrap();
    let unrelated = dir.path().join("00000000000000000001.wal");
    std::fs::write(&unrelated, b"not a snapshot").unwrap();

    let new = write_snapshot(dir.path(), meta(1, 20), &[b"new".to_vec()]);
    assert!(!old.exists());
    assert!(!stray.exists());
    assert!(new.exists());
    assert!(unrelated.exists(), "only snapshot files are touched");
    assert_eq!(
        read_all(dir.path()).unwrap(),
        Some((meta(1, 20), vec![b"new".to_vec()]))
    );
}

#[test]
fn unfinished_snapshot_is_ignored_by_open_latest() {
    let dir = tempfile::tempdir().unwrap();

    eprintln!("phase: with only an unfinished snapshot there is none");
    let mut w = SnapshotWriter::create(dir.path(), meta(1, 30)).unwrap();
    w.write_chunk(b"partial").unwrap();
    drop(w);
    assert!(dir
        .path()
        .join("snapshot-00000000000000000030.tmp")
        .exists());
    assert!(read_all(dir.path()).unwrap().is_none());

    eprintln!("phase: an older complete snapshot wins over a newer unfinished one");
    write_snapshot(dir.path(), meta(1, 10), &chunks());
    let mut w = SnapshotWriter::create(dir.path(), meta(1, 40)).unwrap();
    w.write_chunk(b"partial").unwrap();
    drop(w);
    assert_eq!(read_all(dir.path()).unwrap(), Some((meta(1, 10), chunks())));
}

#[test]
fn every_truncation_of_a_snapshot_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_snapshot(dir.path(), meta(3, 7), &[b"ab".to_vec(), b"cdef".to_vec()]);
    let bytes = std::fs::read(&path).unwrap();
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = read_all(dir.path()).unwrap_err();
        assert!(
            matches!(&err, WalError::SnapshotCorrupt { file, .. } if *file == path),
            "cut at {len}: {err}"
        );
    }
    std::fs::write(&path, &bytes).unwrap();
    assert!(read_all(dir.path()).is_ok());
}

#[test]
fn every_changed_byte_of_a_snapshot_is_detected_at_the_damaged_part() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_snapshot(dir.path(), meta(3, 7), &[b"ab".to_vec(), b"cdef".to_vec()]);
    let bytes = std::fs::read(&path).unwrap();
    // Header 48, chunk 0 at 48 (8 + 2 bytes), chunk 1 at 58 (8 + 4), footer at 70 (24).
    assert_eq!(bytes.len(), 94);
    let part_start = |i: usize| match i {
        0..48 => 0,
        48..58 => 48,
        58..70 => 58,
        _ => 70,
    };
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        let err = read_all(dir.path()).unwrap_err();
        let WalError::SnapshotCorrupt { file, offset, .. } = &err else {
            panic!("byte {i}: {err}");
        };
        assert_eq!(*file, path);
        // A changed length field may make the chunk swallow what follows; then the damage shows
        // where the reader next looks, never before the damaged part.
        assert!(*offset >= part_start(i) as u64 || i < 48, "byte {i}: {err}");
        if i < 48 {
            assert_eq!(*offset, 0, "byte {i} is in the header: {err}");
        }
    }
}

#[test]
fn errors_repeat_after_a_corrupt_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_snapshot(dir.path(), meta(1, 1), &[b"abc".to_vec()]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[48 + 8] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let mut r = SnapshotReader::open_latest(dir.path()).unwrap().unwrap();
    let first = r.next_chunk().unwrap_err().to_string();
    let again = r.next_chunk().unwrap_err().to_string();
    assert_eq!(first, again);
    assert!(first.contains("offset 48"), "{first}");
}
