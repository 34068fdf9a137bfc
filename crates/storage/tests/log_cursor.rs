//! [`LogCursor`]: reads the log directory beside the writer, in batches bounded by `upto`,
//! `bytes_max` and a record count; crosses segment rolls; answers `Compacted` for removed
//! segments, gaps and resets, and `Corrupt` (file, offset) for a damaged record.

mod common;

use common::{opts, opts_unallocated, rec, record_spans, recs, segment_files};
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{
    FsyncPolicy, GroupCommit, InlineWal, LogCursor, LogRecord, Wal, WalError, WalOptions,
    WalProgress, LOG_CURSOR_BATCH_RECORDS_MAX,
};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Reads batches of `bytes_max` until one comes back empty; checks each batch's bounds.
fn read_to(cursor: &mut LogCursor, upto: Lsn, bytes_max: u64) -> Vec<LogRecord> {
    let mut all = Vec::new();
    loop {
        let batch = cursor.next_batch(upto, bytes_max).unwrap();
        if batch.is_empty() {
            return all;
        }
        check_batch(&batch, upto, bytes_max);
        all.extend(batch);
    }
}

/// A batch stays at or below `upto` and stops at the record that reaches `bytes_max`.
fn check_batch(batch: &[LogRecord], upto: Lsn, bytes_max: u64) {
    assert!(batch.iter().all(|r| r.pos.lsn <= upto), "past upto {upto}");
    let before_last: u64 = batch[..batch.len() - 1]
        .iter()
        .map(|r| r.payload.len() as u64)
        .sum();
    assert!(
        before_last < bytes_max || batch.len() == 1,
        "the batch went on after reaching {bytes_max} bytes"
    );
}

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

fn open_with(o: &WalOptions, records: &[LogRecord]) -> Wal {
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(records).unwrap();
    wal.flush().unwrap();
    wal
}

fn compacted(result: Result<Vec<LogRecord>, WalError>) -> (Lsn, Lsn) {
    match result {
        Err(WalError::Compacted { requested, first }) => (requested, first),
        other => panic!("expected Compacted, got {other:?}"),
    }
}

#[test]
fn cursor_reads_every_record_across_segment_rolls_preallocated_or_not() {
    for preallocate in [true, false] {
        eprintln!("phase: segments of 300 bytes, preallocate {preallocate}");
        let dir = tempfile::tempdir().unwrap();
        let o = if preallocate {
            opts(dir.path(), 300, 0)
        } else {
            opts_unallocated(dir.path(), 300, 0)
        };
        let written = recs(1, 40, 40);
        let wal = open_with(&o, &written);
        assert!(wal.segment_count() > 5, "{} segments", wal.segment_count());

        let mut cursor = LogCursor::open(dir.path(), Lsn(1)).unwrap();
        assert_eq!(read_to(&mut cursor, wal.written_lsn(), 100), written);
        assert_eq!(cursor.next_lsn(), Lsn(41));
    }
}

#[test]
fn cursor_opened_mid_log_starts_at_from_and_resumes_across_calls() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 300, 0);
    let mut wal = open_with(&o, &recs(1, 20, 40));

    eprintln!("phase: from 17, in a segment that starts before it");
    let mut cursor = LogCursor::open(dir.path(), Lsn(17)).unwrap();
    assert_eq!(
        cursor.next_batch(Lsn(18), u64::MAX).unwrap(),
        recs(17, 18, 40)
    );
    assert!(cursor.next_batch(Lsn(18), u64::MAX).unwrap().is_empty());

    eprintln!("phase: the writer goes on; the cursor goes on from where it stopped");
    wal.append(&recs(21, 30, 40)).unwrap();
    wal.flush().unwrap();
    assert_eq!(read_to(&mut cursor, Lsn(30), 1), recs(19, 30, 40));

    eprintln!("phase: a cursor opened past the written log waits for its record");
    let mut ahead = LogCursor::open(dir.path(), Lsn(35)).unwrap();
    assert!(ahead.next_batch(Lsn(30), u64::MAX).unwrap().is_empty());
    wal.append(&recs(31, 40, 40)).unwrap();
    wal.flush().unwrap();
    assert_eq!(read_to(&mut ahead, Lsn(40), u64::MAX), recs(35, 40, 40));
}

#[test]
fn cursor_bytes_max_cuts_after_the_record_that_reaches_it_and_upto_bounds_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let written = recs(1, 10, 40);
    let _wal = open_with(&opts(dir.path(), 1 << 20, 0), &written);
    let payload = written[0].payload.len() as u64;

    let mut cursor = LogCursor::open(dir.path(), Lsn(1)).unwrap();
    assert_eq!(cursor.next_batch(Lsn(10), 0).unwrap(), written[0..1]);
    assert_eq!(
        cursor.next_batch(Lsn(10), 2 * payload).unwrap(),
        written[1..3]
    );
    assert_eq!(
        cursor.next_batch(Lsn(10), 2 * payload + 1).unwrap(),
        written[3..6]
    );
    assert_eq!(cursor.next_batch(Lsn(7), u64::MAX).unwrap(), written[6..7]);
    assert!(cursor.next_batch(Lsn(7), u64::MAX).unwrap().is_empty());
    assert_eq!(cursor.next_batch(Lsn(10), u64::MAX).unwrap(), written[7..]);
}

#[test]
fn cursor_batch_holds_at_most_the_record_count_bound() {
    let dir = tempfile::tempdir().unwrap();
    let count = LOG_CURSOR_BATCH_RECORDS_MAX as u64 + 10;
    let written: Vec<LogRecord> = (1..=count).map(|lsn| rec(1, lsn, b"")).collect();
    let _wal = open_with(&opts(dir.path(), 8 << 20, 0), &written);
    let mut cursor = LogCursor::open(dir.path(), Lsn(1)).unwrap();
    let first = cursor.next_batch(Lsn(count), u64::MAX).unwrap();
    assert_eq!(first.len(), LOG_CURSOR_BATCH_RECORDS_MAX);
    let rest = cursor.next_batch(Lsn(count), u64::MAX).unwrap();
    assert_eq!(rest.len(), 10);
    assert_eq!(rest.last(), written.last());
}

#[test]
fn cursor_reads_empty_payloads_whose_length_word_is_zero() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<LogRecord> = (1..=5).map(|lsn| rec(1, lsn, b"")).collect();
    let _wal = open_with(&opts(dir.path(), 1 << 20, 0), &written);
    let mut cursor = LogCursor::open(dir.path(), Lsn(1)).unwrap();
    assert_eq!(read_to(&mut cursor, Lsn(5), 0), written);
}

#[test]
fn cursor_on_a_directory_without_segments_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut cursor = LogCursor::open(dir.path(), Lsn::ZERO).unwrap();
    assert_eq!(cursor.next_lsn(), Lsn(1), "from 0 is taken as 1");
    assert!(cursor.next_batch(Lsn::ZERO, u64::MAX).unwrap().is_empty());
    let _wal = open_with(&opts(dir.path(), 1 << 20, 0), &recs(1, 3, 0));
    assert_eq!(read_to(&mut cursor, Lsn(3), u64::MAX), recs(1, 3, 0));
}

#[test]
fn cursor_compacted_before_the_oldest_segment_and_when_its_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    // 4 records of 124 bytes per segment.
    let seg_bytes = (replikv_storage::SEGMENT_HEADER_BYTES + 4 * 124) as u64;
    let mut wal = open_with(&opts(dir.path(), seg_bytes, 0), &recs(1, 24, 100));
    wal.sync().unwrap();
    let mut reading = LogCursor::open(dir.path(), Lsn(1)).unwrap();
    assert_eq!(reading.next_batch(Lsn(24), 150).unwrap(), recs(1, 2, 100));

    eprintln!("phase: a snapshot at 10 lets compaction remove segments 1-4 and 5-8");
    assert_eq!(wal.compact(Lsn(10)).unwrap(), 2);
    assert!(matches!(
        LogCursor::open(dir.path(), Lsn(3)),
        Err(WalError::Compacted {
            requested: Lsn(3),
            first: Lsn(9)
        })
    ));
    assert_eq!(
        compacted(reading.next_batch(Lsn(24), 150)),
        (Lsn(3), Lsn(9))
    );
    assert_eq!(
        compacted(reading.next_batch(Lsn(24), 150)),
        (Lsn(3), Lsn(9)),
        "the error repeats: the cursor is unchanged"
    );

    eprintln!("phase: a cursor opened at the first kept lsn reads on");
    let mut kept = LogCursor::open(dir.path(), Lsn(9)).unwrap();
    assert_eq!(read_to(&mut kept, Lsn(24), 300), recs(9, 24, 100));
}

#[test]
fn cursor_meets_a_gap_a_snapshot_covers_as_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    drop(open_with(&o, &recs(1, 10, 0)));
    eprintln!("phase: reopened after a snapshot at 50, the log goes on at 51 in a new segment");
    let (mut wal, _) = Wal::open(o, Lsn(50)).unwrap();
    wal.append(&recs(51, 55, 0)).unwrap();
    wal.flush().unwrap();

    let mut cursor = LogCursor::open(dir.path(), Lsn(5)).unwrap();
    assert_eq!(
        cursor.next_batch(Lsn(55), u64::MAX).unwrap(),
        recs(5, 10, 0),
        "the records before the gap come first"
    );
    assert_eq!(
        compacted(cursor.next_batch(Lsn(55), u64::MAX)),
        (Lsn(11), Lsn(51))
    );
    let mut after_gap = LogCursor::open(dir.path(), Lsn(51)).unwrap();
    assert_eq!(read_to(&mut after_gap, Lsn(55), u64::MAX), recs(51, 55, 0));
}

#[test]
fn cursor_reports_a_flipped_record_as_corrupt_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let _wal = open_with(&opts(dir.path(), 1 << 20, 0), &recs(1, 10, 20));
    let file = segment_files(dir.path())[0].clone();
    let mut bytes = std::fs::read(&file).unwrap();
    let (start, end) = record_spans(&bytes)[5];
    bytes[end - 1] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    let mut cursor = LogCursor::open(dir.path(), Lsn(1)).unwrap();
    eprintln!("phase: records up to 5 are read; the damaged 6th is past upto, never looked at");
    assert_eq!(cursor.next_batch(Lsn(5), u64::MAX).unwrap(), recs(1, 5, 20));
    eprintln!("phase: once upto covers it, the damage is Corrupt at its offset, every time");
    for _ in 0..2 {
        match cursor.next_batch(Lsn(10), u64::MAX) {
            Err(WalError::Corrupt {
                file: f, offset, ..
            }) => {
                assert_eq!(f, file);
                assert_eq!(offset, start as u64);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    eprintln!("phase: records before the damage in the same call come back first");
    let mut fresh = LogCursor::open(dir.path(), Lsn(3)).unwrap();
    assert_eq!(fresh.next_batch(Lsn(10), u64::MAX).unwrap(), recs(3, 5, 20));
    assert!(matches!(
        fresh.next_batch(Lsn(10), u64::MAX),
        Err(WalError::Corrupt { .. })
    ));
}

#[test]
fn cursor_after_a_reset_reports_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open_with(&opts(dir.path(), 1 << 20, 0), &recs(1, 10, 0));
    let mut cursor = LogCursor::open(dir.path(), Lsn(1)).unwrap();
    assert_eq!(cursor.next_batch(Lsn(10), 0).unwrap(), recs(1, 1, 0));

    eprintln!("phase: reset forward to 20 and continued; the cursor's segment is gone");
    wal.reset(pos(2, 20)).unwrap();
    let forward: Vec<LogRecord> = (21..=25).map(|lsn| rec(2, lsn, b"new")).collect();
    wal.append(&forward).unwrap();
    wal.flush().unwrap();
    assert_eq!(compacted(cursor.next_batch(Lsn(25), 0)), (Lsn(2), Lsn(21)));

    eprintln!("phase: reset back to 22 under a cursor at 24: first <= requested says reset");
    let mut cursor = LogCursor::open(dir.path(), Lsn(21)).unwrap();
    assert_eq!(cursor.next_batch(Lsn(25), 9).unwrap(), forward[..3]);
    wal.reset(pos(3, 22)).unwrap();
    let back: Vec<LogRecord> = (23..=30).map(|lsn| rec(3, lsn, b"newer")).collect();
    wal.append(&back).unwrap();
    wal.flush().unwrap();
    assert_eq!(compacted(cursor.next_batch(Lsn(30), 0)), (Lsn(24), Lsn(23)));
    let mut reopened = LogCursor::open(dir.path(), Lsn(24)).unwrap();
    assert_eq!(read_to(&mut reopened, Lsn(30), 0), back[1..]);
}

/// Reads in another thread, up to each LSN `progress` delivers, until `last`.
fn reader_thread(
    dir: &Path,
    progress: mpsc::Receiver<Lsn>,
    last: Lsn,
) -> std::thread::JoinHandle<Vec<LogRecord>> {
    let mut cursor = LogCursor::open(dir, Lsn(1)).unwrap();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut upto = Lsn::ZERO;
        while upto < last {
            upto = upto.max(
                progress
                    .recv_timeout(Duration::from_secs(10))
                    .expect("progress within 10 s"),
            );
            loop {
                let batch = cursor.next_batch(upto, 500).unwrap();
                if batch.is_empty() {
                    break;
                }
                check_batch(&batch, upto, 500);
                got.extend(batch);
            }
        }
        got
    })
}

#[test]
fn cursor_follows_group_commit_appending_in_another_thread() {
    const LAST: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path(), 4 << 10, 0), Lsn::ZERO).unwrap();
    let (tx, rx) = mpsc::channel();
    let on_progress = move |p: Result<WalProgress, String>| {
        // The reader stops listening once it has everything.
        let _ = tx.send(p.expect("no failure").written);
    };
    let gc = GroupCommit::start(wal, FsyncPolicy::Always, Box::new(on_progress));
    let reader = reader_thread(dir.path(), rx, Lsn(LAST));

    eprintln!("phase: batches of 1-5 records while the cursor reads");
    let mut next = 1;
    while next <= LAST {
        let last = (next + next % 5).min(LAST);
        gc.submit(recs(next, last, 30));
        next = last + 1;
    }
    let got = reader.join().unwrap();
    assert_eq!(got, recs(1, LAST, 30));
    assert!(segment_files(dir.path()).len() > 10);
    gc.shutdown().unwrap();
}

#[test]
fn cursor_follows_inline_wal_appending_in_another_thread() {
    const LAST: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts_unallocated(dir.path(), 4 << 10, 0), Lsn::ZERO).unwrap();
    let log = InlineWal::start(wal, 5, Box::new(|_: Result<WalProgress, String>| {}));
    let (tx, rx) = mpsc::channel();
    let reader = reader_thread(dir.path(), rx, Lsn(LAST));

    eprintln!("phase: appends of 1-5 records, each written LSN handed to the reader");
    let mut next = 1;
    while next <= LAST {
        let last = (next + next % 5).min(LAST);
        let written = log.append(recs(next, last, 30)).unwrap();
        tx.send(written).unwrap();
        next = last + 1;
    }
    let got = reader.join().unwrap();
    assert_eq!(got, recs(1, LAST, 30));
    log.shutdown().unwrap();
}

#[test]
fn cursor_reads_records_larger_than_its_read_ahead_between_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<LogRecord> = (1..=9)
        .map(|lsn| {
            let len = if lsn % 3 == 0 { 700 << 10 } else { 10 };
            rec(1, lsn, &vec![lsn as u8; len])
        })
        .collect();
    let _wal = open_with(&opts(dir.path(), 1 << 20, 0), &written);
    let mut cursor = LogCursor::open(dir.path(), Lsn(2)).unwrap();
    assert_eq!(read_to(&mut cursor, Lsn(9), 1), written[1..]);
}
