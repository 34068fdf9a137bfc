//! The write-ahead log on real files: round trips, segment rolling, recovery of torn tails and
//! refusal of corruption, snapshots newer than the log, compaction with retention, reads for
//! replication.

mod common;

use common::{opts, rec, record_spans, recs, segment_files};
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{Wal, WalError, SEGMENT_HEADER_BYTES};
use std::fs::OpenOptions;

#[test]
fn durability_round_trip_append_sync_reopen_returns_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);

    eprintln!("phase: a fresh log is empty");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert!(recovery.records.is_empty());
    assert_eq!(recovery.last, LogPosition::default());
    assert!(recovery.torn_tail.is_none());
    assert_eq!(wal.next_lsn(), Lsn(1));

    eprintln!("phase: append in two batches across an epoch change, sync");
    let mut written = recs(1, 5, 0);
    written.push(rec(2, 6, b""));
    written.push(rec(2, 7, b"after failover"));
    wal.append(&written[..3]).unwrap();
    wal.append(&written[3..]).unwrap();
    assert_eq!(wal.written_lsn(), Lsn::ZERO, "append only buffers");
    wal.sync().unwrap();
    assert_eq!(wal.written_lsn(), Lsn(7));
    assert_eq!(wal.synced_lsn(), Lsn(7));
    assert_eq!(wal.stats().fsyncs, 1);
    assert_eq!(wal.stats().records_written, 7);
    drop(wal);

    eprintln!("phase: reopen returns every record, in order");
    let (wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written);
    assert_eq!(
        recovery.last,
        LogPosition {
            epoch: Epoch(2),
            lsn: Lsn(7)
        }
    );
    assert_eq!(wal.last_position(), recovery.last);
    assert_eq!(wal.next_lsn(), Lsn(8));
    drop(wal);

    eprintln!("phase: reopen after a snapshot at 4 returns only later records");
    let (_wal, recovery) = Wal::open(o, Lsn(4)).unwrap();
    assert_eq!(recovery.records, written[4..].to_vec());
}

#[test]
fn segments_roll_past_segment_bytes_max_and_are_named_by_first_lsn() {
    let dir = tempfile::tempdir().unwrap();
    // Each record is 24 + 100 bytes; a segment holds its header plus up to 4 of them.
    let o = opts(dir.path(), (SEGMENT_HEADER_BYTES + 4 * 124) as u64, 0);
    let written = recs(1, 10, 100);

    eprintln!("phase: ten records roll into three segments");
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    for r in &written {
        wal.append(std::slice::from_ref(r)).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!(wal.segment_count(), 3);
    let names: Vec<String> = segment_files(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "00000000000000000001.wal",
            "00000000000000000005.wal",
            "00000000000000000009.wal"
        ]
    );
    for file in segment_files(dir.path()) {
        let len = std::fs::metadata(&file).unwrap().len();
        assert!(
            len <= o.segment_bytes_max,
            "{} is {len} bytes",
            file.display()
        );
    }
    // Rolling fsyncs the full segment: two rolls and the final sync.
    assert_eq!(wal.stats().fsyncs, 3);
    drop(wal);

    eprintln!("phase: reopen reads across every segment");
    let (wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written);
    assert_eq!(wal.segment_count(), 3);
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 100, 0);
    let written = recs(1, 3, 500);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&written).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.segment_count(), 3);
    drop(wal);
    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written);
}

#[test]
fn append_that_does_not_continue_the_log_is_refused_and_leaves_it_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(opts(dir.path(), 1 << 20, 0), Lsn::ZERO).unwrap();
    wal.append(&[rec(3, 1, b"a"), rec(3, 2, b"b")]).unwrap();

    eprintln!("phase: a gap, a repeat and a lower epoch are each refused");
    for bad in [
        vec![rec(3, 4, b"gap")],
        vec![rec(3, 2, b"repeat")],
        vec![rec(2, 3, b"older epoch")],
        vec![rec(3, 3, b"ok"), rec(3, 5, b"gap inside the batch")],
    ] {
        let err = wal.append(&bad).unwrap_err();
        assert!(matches!(err, WalError::OutOfOrder { .. }), "{err}");
        assert_eq!(wal.next_lsn(), Lsn(3), "nothing of {bad:?} was buffered");
        assert_eq!(
            wal.last_position(),
            LogPosition {
                epoch: Epoch(3),
                lsn: Lsn(2)
            }
        );
    }
    assert!(!wal.is_poisoned(), "a caller's bug does not poison the log");

    eprintln!("phase: the log still takes the right record");
    wal.append(&[rec(3, 3, b"c")]).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.read_from(Lsn(1), u64::MAX).unwrap().len(), 3);
}

#[test]
fn torn_tail_mid_record_is_truncated_and_reported_then_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    let written = recs(1, 4, 10);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&written).unwrap();
    wal.sync().unwrap();
    drop(wal);

    eprintln!("phase: a crash left half of record 4 on disk");
    let file = segment_files(dir.path()).pop().unwrap();
    let spans = record_spans(&std::fs::read(&file).unwrap());
    let (start, end) = spans[3];
    let f = OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(((start + end) / 2) as u64).unwrap();
    drop(f);

    eprintln!("phase: recovery keeps records 1-3 and cuts the file where record 4 began");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written[..3].to_vec());
    let torn = recovery.torn_tail.unwrap();
    assert_eq!(torn.file, file);
    assert_eq!(torn.offset, start as u64);
    assert_eq!(torn.bytes_dropped, ((end - start) / 2) as u64);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), start as u64);
    assert_eq!(wal.next_lsn(), Lsn(4));

    eprintln!("phase: record 4 is written again and survives a reopen");
    wal.append(&written[3..]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written);
    assert!(recovery.torn_tail.is_none());
}

#[test]
fn zero_filled_tail_is_a_torn_tail() {
    // File systems may expose zeros past the last durable write after a crash.
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 2, 0)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let file = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len + 4096)
        .unwrap();

    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records.len(), 2);
    let torn = recovery.torn_tail.unwrap();
    assert_eq!((torn.offset, torn.bytes_dropped), (len, 4096));
}

#[test]
fn damaged_record_followed_by_a_valid_one_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 3, 10)).unwrap();
    wal.sync().unwrap();
    drop(wal);

    eprintln!("phase: flip a payload byte of record 2 of 3 in the last segment");
    let file = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let (start, end) = record_spans(&bytes)[1];
    bytes[end - 1] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let err = Wal::open(o, Lsn::ZERO).unwrap_err();
    let WalError::Corrupt {
        file: bad_file,
        offset,
        reason,
    } = err
    else {
        panic!("expected Corrupt, got {err}");
    };
    assert_eq!(bad_file, file);
    assert_eq!(offset, start as u64);
    assert!(reason.contains("checksum"), "{reason}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "a refused log is left as found"
    );
}

#[test]
fn damage_in_a_segment_before_the_last_is_corruption_even_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    // Records of 24 + 20 bytes, two per segment.
    let o = opts(dir.path(), (SEGMENT_HEADER_BYTES + 2 * 44) as u64, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 6, 20)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);

    eprintln!("phase: cut the middle segment inside its last record");
    let spans = record_spans(&std::fs::read(&files[1]).unwrap());
    let (start, _) = *spans.last().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&files[1])
        .unwrap()
        .set_len(start as u64 + 5)
        .unwrap();

    let err = Wal::open(o, Lsn::ZERO).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { file, offset, .. } if *file == files[1] && *offset == start as u64),
        "{err}"
    );
}

#[test]
fn last_segment_with_a_torn_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 2, 0)).unwrap();
    wal.sync().unwrap();
    drop(wal);

    eprintln!("phase: a crash while creating segment 3 left 10 bytes of its header");
    let torn = dir.path().join("00000000000000000003.wal");
    std::fs::write(&torn, [0x52, 0x4b, 0x56, 0, 0x57, 0x41, 0x4c, 0, 1, 0]).unwrap();

    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records.len(), 2);
    let t = recovery.torn_tail.unwrap();
    assert_eq!((t.file, t.offset, t.bytes_dropped), (torn.clone(), 0, 10));
    assert!(!torn.exists());
    wal.append(&recs(3, 3, 0)).unwrap();
    wal.sync().unwrap();
}

#[test]
fn bad_header_in_the_first_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 60, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 3, 10)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[0] = b'X';
    std::fs::write(&first, &bytes).unwrap();
    let err = Wal::open(o, Lsn::ZERO).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { file, offset: 0, .. } if *file == first),
        "{err}"
    );
}

#[test]
fn snapshot_newer_than_the_log_continues_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 10, 0)).unwrap();
    wal.sync().unwrap();
    drop(wal);

    eprintln!("phase: open after a snapshot at 50 (installed from a leader)");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn(50)).unwrap();
    assert!(recovery.records.is_empty());
    assert_eq!(recovery.last.lsn, Lsn(50));
    assert_eq!(
        wal.last_position().lsn,
        Lsn(10),
        "the log's own last record"
    );
    assert_eq!(wal.next_lsn(), Lsn(51));
    assert_eq!(wal.synced_lsn(), Lsn(50));
    let err = wal.append(&recs(11, 11, 0)).unwrap_err();
    assert!(matches!(err, WalError::OutOfOrder { .. }), "{err}");

    eprintln!("phase: the next record starts a new segment at 51");
    wal.append(&[rec(2, 51, b"x"), rec(2, 52, b"y")]).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.segment_count(), 2);
    assert!(dir.path().join("00000000000000000051.wal").exists());
    assert!(matches!(
        wal.read_from(Lsn(30), u64::MAX),
        Err(WalError::Compacted {
            requested: Lsn(30),
            first: Lsn(51)
        })
    ));
    assert_eq!(wal.read_from(Lsn(51), u64::MAX).unwrap().len(), 2);
    drop(wal);

    eprintln!("phase: reopen with the same snapshot accepts the gap 11..50");
    let (wal, recovery) = Wal::open(o.clone(), Lsn(50)).unwrap();
    assert_eq!(recovery.records, vec![rec(2, 51, b"x"), rec(2, 52, b"y")]);
    assert_eq!(wal.next_lsn(), Lsn(53));
    drop(wal);

    eprintln!("phase: reopen without the snapshot finds entries missing");
    let err = Wal::open(o, Lsn(10)).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { file, offset: 0, reason }
            if file.ends_with("00000000000000000051.wal") && reason.contains("missing")),
        "{err}"
    );
}

#[test]
fn compaction_removes_covered_segments_but_keeps_retention_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // 4 records of 124 bytes per segment: segments of 528 bytes.
    let seg_bytes = (SEGMENT_HEADER_BYTES + 4 * 124) as u64;
    let o = opts(dir.path(), seg_bytes, 2 * seg_bytes);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 24, 100)).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.segment_count(), 6);

    eprintln!("phase: a snapshot at 10 covers segments 1-4 and 5-8 only");
    assert_eq!(wal.compact(Lsn(10)).unwrap(), 2);
    assert_eq!(wal.first_lsn(), Lsn(9));
    assert!(!dir.path().join("00000000000000000001.wal").exists());
    assert!(matches!(
        wal.read_from(Lsn(8), u64::MAX),
        Err(WalError::Compacted { first: Lsn(9), .. })
    ));

    eprintln!("phase: a snapshot covering everything still leaves two segments of retention");
    assert_eq!(wal.compact(Lsn(24)).unwrap(), 2);
    assert_eq!(wal.segment_count(), 2);
    assert!(wal.bytes_on_disk() >= o.retention_bytes);
    assert_eq!(wal.first_lsn(), Lsn(17));
    drop(wal);

    eprintln!("phase: the compacted log reopens after a snapshot that covers what was removed");
    let (wal, recovery) = Wal::open(o.clone(), Lsn(20)).unwrap();
    assert_eq!(recovery.records, recs(21, 24, 100));
    drop(wal);
    let err = Wal::open(o, Lsn(10)).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
}

#[test]
fn compaction_without_retention_never_removes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 100, 0);
    let (mut wal, _) = Wal::open(o, Lsn::ZERO).unwrap();
    wal.append(&recs(1, 5, 50)).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.segment_count(), 5);
    assert_eq!(wal.compact(Lsn(5)).unwrap(), 4);
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(wal.compact(Lsn(5)).unwrap(), 0);
    wal.append(&recs(6, 6, 0)).unwrap();
    wal.sync().unwrap();
    let mut expected = recs(5, 5, 50);
    expected.extend(recs(6, 6, 0));
    assert_eq!(wal.read_from(Lsn(5), u64::MAX).unwrap(), expected);
}

#[test]
fn read_from_serves_replication_in_order_within_a_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 300, 0);
    let (mut wal, _) = Wal::open(o, Lsn::ZERO).unwrap();
    let written = recs(1, 20, 40);
    wal.append(&written).unwrap();

    eprintln!("phase: records not yet written to the OS are not served");
    wal.flush().unwrap();
    wal.append(&recs(21, 21, 0)).unwrap();
    let all = wal.read_from(Lsn(1), u64::MAX).unwrap();
    assert_eq!(all, written);

    eprintln!("phase: a byte budget cuts the read after the record that reaches it");
    let some = wal.read_from(Lsn(7), 100).unwrap();
    assert_eq!(some, written[6..9].to_vec());
    assert_eq!(wal.read_from(Lsn(7), 0).unwrap(), written[6..7].to_vec());
    assert!(wal.read_from(Lsn(21), u64::MAX).unwrap().is_empty());
    assert!(wal.read_from(Lsn(1000), u64::MAX).unwrap().is_empty());
}
