//! The write-ahead log on real files: round trips, segment rolling, preallocated segments and
//! where their records end, recovery of torn tails and refusal of corruption, snapshots newer
//! than the log, compaction with retention, reads for replication.
//!
//! Segments are preallocated (created at full size, zero-filled) unless a test says otherwise,
//! so "the end of the log" is the offset after the last record ([`common::logical_end`]), not
//! the end of the file; damage a crash could leave is written there.

mod common;

use common::{
    logical_end, opts, opts_unallocated, rec, record_spans, recs, segment_files, write_at,
    zero_range, zeros_from,
};
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{encode_record, Wal, WalError, SEGMENT_HEADER_BYTES};
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
        assert_eq!(
            len,
            o.segment_bytes_max,
            "{} is preallocated to segment_bytes_max",
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
    for file in segment_files(dir.path()) {
        // The record grew the 100-byte preallocated file past it.
        let len = std::fs::metadata(&file).unwrap().len();
        assert_eq!(len, (SEGMENT_HEADER_BYTES + 24 + 500) as u64);
    }
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
fn torn_tail_mid_record_is_zeroed_and_reported_then_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    // Payloads padded with dots, so the half of record 4 left holds no zero bytes at its end.
    let written = recs(1, 4, 100);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&written).unwrap();
    wal.sync().unwrap();
    drop(wal);

    eprintln!("phase: a crash left half of record 4 on disk; the rest reads as the zero fill");
    let file = segment_files(dir.path()).pop().unwrap();
    let spans = record_spans(&std::fs::read(&file).unwrap());
    let (start, end) = spans[3];
    zero_range(&file, (start + end) / 2, end);

    eprintln!("phase: recovery keeps records 1-3 and zeroes the file from where record 4 began");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written[..3].to_vec());
    let torn = recovery.torn_tail.unwrap();
    assert_eq!(torn.file, file);
    assert_eq!(torn.offset, start as u64);
    assert_eq!(torn.bytes_dropped, ((end - start) / 2) as u64);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        1 << 20,
        "still preallocated"
    );
    assert!(zeros_from(&file, start));
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
fn torn_tail_at_the_end_of_a_segment_that_is_not_preallocated_is_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts_unallocated(dir.path(), 1 << 20, 0);
    let written = recs(1, 4, 100);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&written).unwrap();
    wal.sync().unwrap();
    drop(wal);

    eprintln!("phase: the file ends at the last record; a crash cut record 4 in half");
    let file = segment_files(dir.path()).pop().unwrap();
    let spans = record_spans(&std::fs::read(&file).unwrap());
    let (start, end) = spans[3];
    assert_eq!(std::fs::metadata(&file).unwrap().len(), end as u64);
    let cut = (start + end) / 2;
    let f = OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(cut as u64).unwrap();
    drop(f);

    eprintln!("phase: the torn bytes are zeroed, the file keeps its length, the log continues");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written[..3].to_vec());
    let torn = recovery.torn_tail.unwrap();
    assert_eq!(
        (torn.offset, torn.bytes_dropped),
        (start as u64, (cut - start) as u64)
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), cut as u64);
    assert!(zeros_from(&file, start));
    wal.append(&written[3..]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, written);
    assert!(recovery.torn_tail.is_none());
}

#[test]
fn zero_filled_tail_is_a_clean_end_not_a_torn_tail() {
    // File systems may expose zeros past the last durable write after a crash, and a segment
    // written before preallocation (or with it off) may be followed by such zeros: all zeros
    // after the last record are never log data.
    let dir = tempfile::tempdir().unwrap();
    let o = opts_unallocated(dir.path(), 1 << 20, 0);
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

    eprintln!("phase: reopen finds both records and no torn tail");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 2, 0));
    assert!(recovery.torn_tail.is_none());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len + 4096);

    eprintln!("phase: the next record goes over the zeros, where the log ended");
    wal.append(&recs(3, 3, 0)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 3, 0));
    assert!(recovery.torn_tail.is_none());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len + 4096);
}

#[test]
fn clean_end_in_a_preallocated_segment_then_appending_continues_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 << 10, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 3, 50)).unwrap();
    wal.sync().unwrap();
    drop(wal);

    eprintln!("phase: the segment is full size; zeros follow the last record");
    let file = segment_files(dir.path()).pop().unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 64 << 10);
    let end = logical_end(&std::fs::read(&file).unwrap());
    assert_eq!(end, SEGMENT_HEADER_BYTES + 3 * (24 + 50));
    assert!(zeros_from(&file, end));

    eprintln!("phase: reopen ends the log at the last record, with no torn tail");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 3, 50));
    assert!(recovery.torn_tail.is_none());
    assert_eq!(wal.next_lsn(), Lsn(4));
    assert_eq!(
        wal.bytes_on_disk(),
        end as u64,
        "the logical size, not the file's"
    );

    eprintln!("phase: appends after the reopen overwrite the zero fill in place");
    wal.append(&recs(4, 6, 50)).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.read_from(Lsn(1), u64::MAX).unwrap(), recs(1, 6, 50));
    drop(wal);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 64 << 10);
    assert_eq!(
        logical_end(&std::fs::read(&file).unwrap()),
        SEGMENT_HEADER_BYTES + 6 * (24 + 50)
    );
    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 6, 50));
    assert!(recovery.torn_tail.is_none());
    assert_eq!(segment_files(dir.path()), [file]);
}

#[test]
fn torn_write_inside_preallocated_space_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 << 10, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 3, 50)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let file = segment_files(dir.path()).pop().unwrap();
    let end = logical_end(&std::fs::read(&file).unwrap());

    eprintln!("phase: an unsynced write of records 4-5 left 60 of its bytes and a stray sector");
    let mut next = Vec::new();
    for r in recs(4, 5, 50) {
        encode_record(&r, &mut next);
    }
    write_at(&file, end, &next[..60]);
    // A later sector of the same write landed too, away from the first.
    write_at(&file, end + 4096, &[0xAB; 512]);

    eprintln!("phase: nothing valid follows the torn record: zeroed up to the stray sector");
    let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 3, 50));
    let torn = recovery.torn_tail.unwrap();
    assert_eq!(torn.file, file);
    assert_eq!(torn.offset, end as u64);
    assert_eq!(torn.bytes_dropped, (4096 + 512) as u64);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 64 << 10);
    assert!(zeros_from(&file, end));

    eprintln!("phase: records 4-5 are written again and survive a reopen");
    wal.append(&recs(4, 5, 50)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 5, 50));
    assert!(recovery.torn_tail.is_none());
}

#[test]
fn roll_installs_the_segment_prepared_ahead_and_earlier_segments_end_in_zeros() {
    let dir = tempfile::tempdir().unwrap();
    // Records of 24 + 100 bytes; 7 fit in a segment, so the fill after them stays zero.
    let o = opts(dir.path(), 900, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();

    eprintln!("phase: the first segment comes from the spare started at open");
    wal.append(&recs(1, 4, 100)).unwrap();
    wal.flush().unwrap();
    assert_eq!(wal.stats().segments_created, 1);
    assert_eq!(wal.stats().segments_from_spare, 1);

    eprintln!("phase: past half full, the next one is prepared; the roll installs it");
    wal.append(&recs(5, 12, 100)).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.stats().segments_created, 2);
    assert_eq!(wal.stats().segments_from_spare, 2);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    assert!(files[1].ends_with("00000000000000000008.wal"));
    for file in &files {
        assert_eq!(std::fs::metadata(file).unwrap().len(), 900);
    }
    let first = std::fs::read(&files[0]).unwrap();
    assert_eq!(logical_end(&first), SEGMENT_HEADER_BYTES + 7 * 124);
    assert!(zeros_from(&files[0], SEGMENT_HEADER_BYTES + 7 * 124));
    assert_eq!(wal.read_from(Lsn(6), u64::MAX).unwrap(), recs(6, 12, 100));
    drop(wal);
    assert!(
        !dir.path().join("spare.wal.tmp").exists(),
        "dropping the log removes the spare it was preparing"
    );

    eprintln!("phase: a spare left by a crash is removed at open; the zero fill of segment 1 is a clean end");
    std::fs::write(dir.path().join("spare.wal.tmp"), b"half-filled").unwrap();
    let (wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 12, 100));
    assert!(recovery.torn_tail.is_none());
    drop(wal);
    assert!(!dir.path().join("spare.wal.tmp").exists());

    eprintln!("phase: with preallocation off, segments hold only what was written");
    let dir = tempfile::tempdir().unwrap();
    let o = opts_unallocated(dir.path(), 900, 0);
    let (mut wal, _) = Wal::open(o, Lsn::ZERO).unwrap();
    wal.append(&recs(1, 12, 100)).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.stats().segments_from_spare, 0);
    drop(wal);
    let lens: Vec<u64> = segment_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    assert_eq!(lens, [32 + 7 * 124, 32 + 5 * 124]);
    assert!(!dir.path().join("spare.wal.tmp").exists());
}

#[test]
fn records_zeroed_at_the_end_of_an_earlier_segment_leave_a_gap_that_is_corruption() {
    // A zero fill after the last record of an earlier segment is normal (it was rolled before
    // it was full), so lost records there show as entries missing before the next segment.
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), (SEGMENT_HEADER_BYTES + 2 * 44) as u64, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 6, 20)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);
    let (start, end) = *record_spans(&std::fs::read(&files[1]).unwrap())
        .last()
        .unwrap();
    zero_range(&files[1], start, end);

    let err = Wal::open(o, Lsn::ZERO).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { file, offset: 0, reason }
            if *file == files[2] && reason.contains("missing")),
        "{err}"
    );
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

    eprintln!("phase: zero the middle segment's last record after its first 5 bytes");
    let spans = record_spans(&std::fs::read(&files[1]).unwrap());
    let (start, end) = *spans.last().unwrap();
    zero_range(&files[1], start + 5, end);

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
