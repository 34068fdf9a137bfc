//! `Wal::truncate_after`: a deposed leader that comes back drops the records the new leader
//! never had and follows from the last record they share. Checked in the middle of a segment,
//! at a segment boundary, across segments, in the write buffer, below the compacted start and
//! past the end; after each, reopening finds exactly the records up to the cut and appends go
//! on from the next LSN. A leftover partial truncation (later segments removed, the cut not
//! done) reopens as a prefix of the old log, never past a gap. Through `GroupCommit` and
//! `InlineWal` too, with progress reported at the cut. A property test compares random logs,
//! segment sizes and cuts against the prefix they must leave.

mod common;

use common::{opts, opts_unallocated, rec, recs, segment_files, write_at};
use proptest::prelude::*;
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{
    FsyncPolicy, GroupCommit, InlineWal, LogCursor, LogRecord, Wal, WalError, WalOptions,
    WalProgress, SEGMENT_HEADER_BYTES,
};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};

type Progress = Result<WalProgress, String>;

/// 4 records of `recs(.., 40)` (64 bytes each) fit in a segment of this size after its
/// header: segments are named 1, 5, 9, 13, ...
const SEGMENT_BYTES: u64 = 300;
const RECORD_BYTES: u64 = 64;

/// Records `first..=last` in `epoch`, with payloads naming both (the new leader's history).
fn recs_in(epoch: u64, first: u64, last: u64) -> Vec<LogRecord> {
    (first..=last)
        .map(|lsn| rec(epoch, lsn, format!("epoch {epoch} lsn {lsn}").as_bytes()))
        .collect()
}

/// A log with records `1..=last` in epoch 1 (`recs(.., 40)`), synced.
fn open_with(o: &WalOptions, last: u64) -> Wal {
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, last, 40)).unwrap();
    wal.sync().unwrap();
    wal
}

fn segment_name(lsn: u64) -> String {
    format!("{lsn:020}.wal")
}

fn segment_names(dir: &Path) -> Vec<String> {
    segment_files(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Checks the state right after truncating to `lsn` a log whose records were `old`.
fn assert_truncated(wal: &Wal, old: &[LogRecord], lsn: u64) {
    let kept = &old[..lsn as usize];
    assert_eq!(wal.next_lsn(), Lsn(lsn + 1));
    assert_eq!(
        wal.last_position(),
        kept.last().map(|r| r.pos).unwrap_or_default()
    );
    assert!(wal.written_lsn() <= Lsn(lsn), "{}", wal.written_lsn());
    assert!(wal.synced_lsn() <= wal.written_lsn());
    wal.check_invariants();
}

/// Reopens the log in `o` and checks it holds exactly `expected`, with no torn tail.
fn assert_reopens_with(o: &WalOptions, expected: &[LogRecord]) -> Wal {
    let (wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, expected);
    assert!(recovery.torn_tail.is_none(), "{:?}", recovery.torn_tail);
    let next = expected.last().map_or(1, |r| r.pos.lsn.0 + 1);
    assert_eq!(wal.next_lsn(), Lsn(next));
    wal
}

/// Appends `new` to `wal`, syncs, reopens and checks the log is `kept` then `new`.
fn assert_appends_go_on(mut wal: Wal, o: &WalOptions, kept: &[LogRecord], new: &[LogRecord]) {
    wal.append(new).unwrap();
    wal.sync().unwrap();
    let first_new = new[0].pos.lsn;
    assert_eq!(wal.read_from(first_new, u64::MAX).unwrap(), new);
    drop(wal);
    let expected: Vec<LogRecord> = kept.iter().chain(new).cloned().collect();
    assert_reopens_with(o, &expected);
}

#[test]
fn truncate_in_the_middle_of_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let old = recs(1, 11, 40);
    let mut wal = open_with(&o, 11);
    assert_eq!(segment_names(dir.path()).last().unwrap(), &segment_name(9));

    eprintln!("phase: cut after 10, inside the active segment 9..=11");
    assert_eq!(wal.truncate_after(Lsn(10)).unwrap(), 1);
    assert_truncated(&wal, &old, 10);
    assert_eq!(wal.written_lsn(), Lsn(10));
    assert_eq!(wal.synced_lsn(), Lsn(10), "the cut is fsynced");
    let active = dir.path().join(segment_name(9));
    let cut_at = SEGMENT_HEADER_BYTES as u64 + 2 * RECORD_BYTES;
    assert_eq!(std::fs::metadata(&active).unwrap().len(), cut_at);
    assert_eq!(wal.read_from(Lsn(9), u64::MAX).unwrap(), &old[8..10]);

    eprintln!("phase: the new leader's records follow from 11, in the cut segment");
    assert!(matches!(
        wal.append(&recs_in(2, 12, 12)),
        Err(WalError::OutOfOrder {
            expected_lsn: Lsn(11),
            ..
        })
    ));
    let new = recs_in(2, 11, 11);
    wal.append(&new).unwrap();
    wal.sync().unwrap();
    assert_eq!(segment_names(dir.path()).last().unwrap(), &segment_name(9));
    drop(wal);
    let expected: Vec<LogRecord> = old[..10].iter().chain(&new).cloned().collect();
    let wal = assert_reopens_with(&o, &expected);

    eprintln!("phase: the log rolls on as before");
    assert_appends_go_on(wal, &o, &expected, &recs_in(2, 12, 20));
}

#[test]
fn truncate_across_several_segments_removes_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let old = recs(1, 30, 40);
    let mut wal = open_with(&o, 30);
    assert_eq!(wal.segment_count(), 8);

    eprintln!("phase: cut after 14: segments 17..29 go, segment 13 is cut after its 2nd record");
    assert_eq!(wal.truncate_after(Lsn(14)).unwrap(), 16);
    assert_truncated(&wal, &old, 14);
    assert_eq!(
        segment_names(dir.path()),
        [1, 5, 9, 13].map(segment_name).to_vec()
    );
    assert_eq!(wal.segment_count(), 4);
    assert_eq!(
        wal.bytes_on_disk(),
        4 * SEGMENT_HEADER_BYTES as u64 + 14 * RECORD_BYTES
    );
    drop(wal);

    eprintln!("phase: reopened, exactly 1..=14; appends go on at 15 and roll as before");
    let wal = assert_reopens_with(&o, &old[..14]);
    assert_appends_go_on(wal, &o, &old[..14], &old[14..24]);
    assert_eq!(
        segment_names(dir.path()),
        [1, 5, 9, 13, 17, 21].map(segment_name).to_vec()
    );
}

#[test]
fn truncate_at_a_segment_boundary_removes_the_segment_that_starts_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts_unallocated(dir.path(), SEGMENT_BYTES, 0);
    let old = recs(1, 20, 40);
    drop(open_with(&o, 20));

    eprintln!("phase: reopened with larger segments, so segment 9 has room again");
    let bigger = opts_unallocated(dir.path(), 4 * SEGMENT_BYTES, 0);
    let (mut wal, _) = Wal::open(bigger.clone(), Lsn::ZERO).unwrap();

    eprintln!("phase: cut after 12, the last record of segment 9: segments 13 and 17 go");
    assert_eq!(wal.truncate_after(Lsn(12)).unwrap(), 8);
    assert_truncated(&wal, &old, 12);
    assert_eq!(wal.written_lsn(), Lsn(12));
    assert_eq!(wal.synced_lsn(), Lsn(12));
    assert_eq!(
        segment_names(dir.path()),
        [1, 5, 9].map(segment_name).to_vec()
    );

    eprintln!("phase: 13 is appended to segment 9, reopened for append at its end");
    let new = recs_in(2, 13, 14);
    wal.append(&new).unwrap();
    wal.sync().unwrap();
    assert_eq!(
        segment_names(dir.path()),
        [1, 5, 9].map(segment_name).to_vec()
    );
    let seg9 = dir.path().join(segment_name(9));
    let new_bytes: usize = new.iter().map(LogRecord::encoded_len).sum();
    assert_eq!(
        std::fs::metadata(&seg9).unwrap().len(),
        SEGMENT_HEADER_BYTES as u64 + 4 * RECORD_BYTES + new_bytes as u64
    );
    drop(wal);
    let expected: Vec<LogRecord> = old[..12].iter().chain(&new).cloned().collect();
    assert_reopens_with(&bigger, &expected);
}

#[test]
fn truncate_back_to_before_the_first_record_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let mut wal = open_with(&o, 10);

    eprintln!("phase: cut after 0: every segment goes");
    assert_eq!(wal.truncate_after(Lsn::ZERO).unwrap(), 10);
    assert_eq!(wal.segment_count(), 0);
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(wal.last_position(), LogPosition::default());
    assert_eq!(wal.next_lsn(), Lsn(1));
    assert_eq!((wal.written_lsn(), wal.synced_lsn()), (Lsn(0), Lsn(0)));
    drop(wal);
    let wal = assert_reopens_with(&o, &[]);
    assert_appends_go_on(wal, &o, &[], &recs_in(2, 1, 6));
}

#[test]
fn truncate_buffered_records_that_were_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let old = recs(1, 14, 40);
    let mut wal = open_with(&o, 6);
    wal.append(&old[6..14]).unwrap();
    assert_eq!(wal.written_lsn(), Lsn(12), "the roll to 13 wrote 7..=12");
    let files_before = segment_names(dir.path());

    eprintln!("phase: cut after 13, inside the buffer: no file changes");
    assert_eq!(wal.truncate_after(Lsn(13)).unwrap(), 1);
    assert_truncated(&wal, &old, 13);
    assert_eq!(wal.written_lsn(), Lsn(12));
    assert_eq!(segment_names(dir.path()), files_before);

    eprintln!("phase: cut after 12, the first buffered record: the empty segment 13 stays");
    assert_eq!(wal.truncate_after(Lsn(12)).unwrap(), 1);
    assert_truncated(&wal, &old, 12);
    assert_eq!(segment_names(dir.path()), files_before);
    assert_eq!(
        wal.bytes_on_disk(),
        4 * SEGMENT_HEADER_BYTES as u64 + 12 * RECORD_BYTES
    );

    eprintln!("phase: buffered again, then cut after 10, in the written records");
    wal.append(&recs_in(2, 13, 15)).unwrap();
    assert_eq!(wal.truncate_after(Lsn(10)).unwrap(), 5);
    assert_truncated(&wal, &old, 10);
    assert_eq!((wal.written_lsn(), wal.synced_lsn()), (Lsn(10), Lsn(10)));
    assert_eq!(
        segment_names(dir.path()),
        [1, 5, 9].map(segment_name).to_vec()
    );

    eprintln!("phase: records buffered up to the cut are kept and written later");
    wal.append(&recs_in(2, 11, 16)).unwrap();
    assert_eq!(wal.truncate_after(Lsn(14)).unwrap(), 2);
    wal.sync().unwrap();
    drop(wal);
    let expected: Vec<LogRecord> = old[..10]
        .iter()
        .cloned()
        .chain(recs_in(2, 11, 14))
        .collect();
    let wal = assert_reopens_with(&o, &expected);
    assert_appends_go_on(wal, &o, &expected, &recs_in(3, 15, 15));
}

#[test]
fn truncate_below_the_compacted_start_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let mut wal = open_with(&o, 20);
    assert_eq!(wal.compact(Lsn(10)).unwrap(), 2);
    assert_eq!(wal.first_lsn(), Lsn(9));
    let files = segment_names(dir.path());

    eprintln!("phase: records 8 and before were compacted away: cutting after 7 is refused");
    let err = wal.truncate_after(Lsn(7)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::TruncateCompacted {
                lsn: Lsn(7),
                lsn_min: Lsn(8)
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at the earliest"), "{err}");
    assert!(!wal.is_poisoned());
    assert_eq!(segment_names(dir.path()), files);
    assert_eq!(wal.next_lsn(), Lsn(21));
    assert_eq!(wal.written_lsn(), Lsn(20));
    assert_eq!(wal.read_from(Lsn(9), u64::MAX).unwrap(), recs(9, 20, 40));

    eprintln!("phase: cutting after 8 removes every record held");
    assert_eq!(wal.truncate_after(Lsn(8)).unwrap(), 12);
    assert_eq!(wal.segment_count(), 0);
    assert_eq!(wal.next_lsn(), Lsn(9));
    wal.append(&recs_in(2, 9, 9)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovery) = Wal::open(o, Lsn(8)).unwrap();
    assert_eq!(recovery.records, recs_in(2, 9, 9));
}

#[test]
fn truncate_refuses_a_segment_damaged_before_the_cut_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let mut wal = open_with(&o, 20);
    let files = segment_names(dir.path());

    eprintln!("phase: a byte of record 13 flips on disk; cutting after 14 must read it");
    let seg13 = dir.path().join(segment_name(13));
    let at = SEGMENT_HEADER_BYTES + 30;
    let mut byte = std::fs::read(&seg13).unwrap()[at];
    byte ^= 0x40;
    write_at(&seg13, at, &[byte]);
    let err = wal.truncate_after(Lsn(14)).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { file, offset, .. }
            if *file == seg13 && *offset == SEGMENT_HEADER_BYTES as u64),
        "{err}"
    );
    assert!(!wal.is_poisoned());
    assert_eq!(segment_names(dir.path()), files);
    assert_eq!(wal.next_lsn(), Lsn(21));
    assert_eq!(wal.written_lsn(), Lsn(20));

    eprintln!("phase: a cut that does not need that segment read still works");
    assert_eq!(wal.truncate_after(Lsn(18)).unwrap(), 2);
    assert_eq!(wal.truncate_after(Lsn(12)).unwrap(), 6);
    drop(wal);
    assert_reopens_with(&o, &recs(1, 12, 40));
}

#[test]
fn truncate_past_a_gap_a_snapshot_covers_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    drop(open_with(&o, 6));

    eprintln!("phase: opened after a snapshot at 15: records 7..=15 are in no segment");
    let (mut wal, _) = Wal::open(o.clone(), Lsn(15)).unwrap();
    for lsn in [14, 10, 6, 3] {
        assert!(
            matches!(
                wal.truncate_after(Lsn(lsn)),
                Err(WalError::TruncateCompacted {
                    lsn_min: Lsn(15),
                    ..
                })
            ),
            "cut after {lsn}"
        );
    }
    assert_eq!(
        wal.truncate_after(Lsn(15)).unwrap(),
        0,
        "the end: nothing to do"
    );

    eprintln!("phase: records past the gap can be cut, back to the snapshot at most");
    wal.append(&recs_in(2, 16, 20)).unwrap();
    wal.sync().unwrap();
    assert!(matches!(
        wal.truncate_after(Lsn(12)),
        Err(WalError::TruncateCompacted {
            lsn_min: Lsn(15),
            ..
        })
    ));
    assert_eq!(wal.truncate_after(Lsn(17)).unwrap(), 3);
    assert_eq!(wal.truncate_after(Lsn(15)).unwrap(), 2);
    assert_eq!(wal.next_lsn(), Lsn(16));
    assert_eq!(
        wal.last_position().lsn,
        Lsn(6),
        "the last record before the gap"
    );
    assert_eq!(segment_names(dir.path()), [1, 5].map(segment_name).to_vec());
    wal.append(&recs_in(3, 16, 16)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovery) = Wal::open(o, Lsn(15)).unwrap();
    assert_eq!(recovery.records, recs_in(3, 16, 16));
}

#[test]
fn truncate_at_or_past_the_end_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let mut wal = open_with(&o, 10);
    wal.append(&recs(11, 12, 40)).unwrap();
    for lsn in [12, 13, 1000, u64::MAX - 1] {
        assert_eq!(wal.truncate_after(Lsn(lsn)).unwrap(), 0, "cut after {lsn}");
    }
    assert_eq!(wal.next_lsn(), Lsn(13));
    assert_eq!(wal.written_lsn(), Lsn(10), "11 and 12 still buffered");
    wal.sync().unwrap();

    eprintln!("phase: an empty log too");
    let empty = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(opts(empty.path(), SEGMENT_BYTES, 0), Lsn::ZERO).unwrap();
    assert_eq!(wal.truncate_after(Lsn::ZERO).unwrap(), 0);
    assert_eq!(wal.truncate_after(Lsn(5)).unwrap(), 0);
    assert_eq!(wal.next_lsn(), Lsn(1));
    drop(wal);
    assert_reopens_with(&o, &recs(1, 12, 40));
}

#[test]
fn leftover_partial_truncation_reopens_as_a_prefix_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let old = recs(1, 30, 40);
    drop(open_with(&o, 30));

    eprintln!("phase: a crash after removing segments 29 and 25 of a cut after 14");
    for lsn in [29, 25] {
        std::fs::remove_file(dir.path().join(segment_name(lsn))).unwrap();
    }
    let mut wal = assert_reopens_with(&o, &old[..24]);

    eprintln!("phase: the truncation run again after the restart completes it");
    assert_eq!(wal.truncate_after(Lsn(14)).unwrap(), 10);
    drop(wal);
    let wal = assert_reopens_with(&o, &old[..14]);

    eprintln!("phase: a crash after every later segment went but before the cut");
    drop(wal);
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    drop(open_with(&o, 30));
    for lsn in [29, 25, 21, 17] {
        std::fs::remove_file(dir.path().join(segment_name(lsn))).unwrap();
    }
    let mut wal = assert_reopens_with(&o, &old[..16]);
    assert_eq!(wal.truncate_after(Lsn(14)).unwrap(), 2);
    drop(wal);
    let wal = assert_reopens_with(&o, &old[..14]);
    assert_appends_go_on(wal, &o, &old[..14], &recs_in(2, 15, 15));
}

#[test]
fn a_new_cursor_after_truncation_reads_the_new_history() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let mut wal = open_with(&o, 20);
    wal.truncate_after(Lsn(10)).unwrap();
    let new = recs_in(2, 11, 18);
    wal.append(&new).unwrap();
    wal.flush().unwrap();
    let mut cursor = LogCursor::open(dir.path(), Lsn(9)).unwrap();
    let read = cursor.next_batch(wal.written_lsn(), u64::MAX).unwrap();
    let expected: Vec<LogRecord> = recs(9, 10, 40).into_iter().chain(new).collect();
    assert_eq!(read, expected);
}

/// A progress callback that forwards every report to the returned receiver.
fn forward() -> (Box<dyn Fn(Progress) + Send>, Receiver<Progress>) {
    let (tx, rx) = mpsc::channel();
    let callback = move |p: Progress| {
        // The test may have stopped listening; the writer must not care.
        let _ = tx.send(p);
    };
    (Box::new(callback), rx)
}

fn progress_at(written: u64, synced: u64) -> WalProgress {
    WalProgress {
        written: Lsn(written),
        synced: Lsn(synced),
    }
}

#[test]
fn group_commit_truncate_after_reports_the_cut_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (on_progress, rx) = forward();
    let gc = GroupCommit::start(wal, FsyncPolicy::Always, Box::new(on_progress));
    gc.submit(recs(1, 20, 40));
    assert_eq!(gc.sync_now().unwrap(), Lsn(20));

    eprintln!("phase: cut after 14; the last report before it returns is 14/14");
    assert_eq!(gc.truncate_after(Lsn(14)).unwrap(), 6);
    let reports: Vec<WalProgress> = rx.try_iter().map(|p| p.unwrap()).collect();
    assert_eq!(reports.last(), Some(&progress_at(14, 14)), "{reports:?}");

    eprintln!("phase: a batch queued before the cut is cut too (buffered or written)");
    gc.submit(recs_in(2, 15, 18));
    assert_eq!(gc.truncate_after(Lsn(16)).unwrap(), 2);
    assert_eq!(gc.sync_now().unwrap(), Lsn(16));
    // Every report made before `sync_now` answered is in the channel by now. The cut's own
    // report comes before it; the batch may have been written before the cut (reported past
    // 16) or after it.
    let reports: Vec<WalProgress> = rx.try_iter().map(|p| p.unwrap()).collect();
    let cut_at = reports
        .iter()
        .position(|p| p.written <= Lsn(16))
        .unwrap_or_else(|| panic!("the cut is reported: {reports:?}"));
    assert!(
        reports[cut_at..].iter().all(|p| p.written <= Lsn(16)),
        "{reports:?}"
    );
    assert_eq!(reports.last(), Some(&progress_at(16, 16)), "{reports:?}");
    assert_eq!(gc.read_from(Lsn(15), u64::MAX).unwrap(), recs_in(2, 15, 16));

    eprintln!("phase: cut back to 3, then past the end (nothing to do, reported anyway)");
    assert_eq!(gc.truncate_after(Lsn(3)).unwrap(), 13);
    assert_eq!(gc.truncate_after(Lsn(5)).unwrap(), 0);
    assert_eq!(
        rx.try_iter().map(|p| p.unwrap()).collect::<Vec<_>>(),
        [progress_at(3, 3), progress_at(3, 3)]
    );

    eprintln!("phase: appends go on at 4");
    gc.submit(recs_in(3, 4, 9));
    assert_eq!(gc.sync_now().unwrap(), Lsn(9));
    assert_eq!(
        rx.try_iter().map(|p| p.unwrap()).last(),
        Some(progress_at(9, 9))
    );
    gc.shutdown().unwrap();
    let expected: Vec<LogRecord> = recs(1, 3, 40).into_iter().chain(recs_in(3, 4, 9)).collect();
    assert_reopens_with(&o, &expected);
}

#[test]
fn group_commit_truncate_refused_below_the_compacted_start_keeps_the_writer_going() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (on_progress, rx) = forward();
    let gc = GroupCommit::start(wal, FsyncPolicy::IntervalMs(60_000), Box::new(on_progress));
    gc.submit(recs(1, 12, 40));
    assert_eq!(gc.sync_now().unwrap(), Lsn(12));
    assert_eq!(gc.compact(Lsn(8)).unwrap(), 2);
    assert!(matches!(
        gc.truncate_after(Lsn(2)),
        Err(WalError::TruncateCompacted {
            lsn_min: Lsn(8),
            ..
        })
    ));
    gc.submit(recs(13, 13, 40));
    assert_eq!(gc.sync_now().unwrap(), Lsn(13));
    gc.shutdown().unwrap();
    assert!(rx.try_iter().all(|p| p.is_ok()));
}

#[test]
fn inline_wal_truncate_after_reports_the_cut_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (on_progress, rx) = forward();
    let log = InlineWal::start(wal, 60_000, on_progress);
    assert_eq!(log.append(recs(1, 20, 40)).unwrap(), Lsn(20));
    assert_eq!(log.sync_now().unwrap(), Lsn(20));
    assert_eq!(log.append(recs(21, 22, 40)).unwrap(), Lsn(22));

    eprintln!("phase: cut after 10, written and unsynced records included; reported 10/10");
    let fsyncs = log.fsync_count();
    assert_eq!(log.truncate_after(Lsn(10)).unwrap(), 12);
    assert_eq!(log.fsync_count(), fsyncs + 1, "the cut segment's fsync");
    let reports: Vec<WalProgress> = rx.try_iter().map(|p| p.unwrap()).collect();
    assert_eq!(reports.last(), Some(&progress_at(10, 10)), "{reports:?}");
    assert_eq!(log.written_lsn().unwrap(), Lsn(10));
    assert_eq!(log.synced_lsn().unwrap(), Lsn(10));
    assert_eq!(log.read_from(Lsn(9), u64::MAX).unwrap(), recs(9, 10, 40));

    eprintln!("phase: a no-op truncation reports all the same");
    assert_eq!(log.truncate_after(Lsn(10)).unwrap(), 0);
    assert_eq!(
        rx.try_iter().map(|p| p.unwrap()).collect::<Vec<_>>(),
        [progress_at(10, 10)]
    );

    eprintln!("phase: appends go on at 11 and are synced");
    assert_eq!(log.append(recs_in(2, 11, 16)).unwrap(), Lsn(16));
    assert_eq!(log.sync_now().unwrap(), Lsn(16));
    log.shutdown().unwrap();
    let expected: Vec<LogRecord> = recs(1, 10, 40)
        .into_iter()
        .chain(recs_in(2, 11, 16))
        .collect();
    assert_reopens_with(&o, &expected);
}

/// Records with LSNs 1.. and non-decreasing epochs, payloads of the given sizes.
fn records_strategy() -> impl Strategy<Value = Vec<LogRecord>> {
    prop::collection::vec((0usize..120, any::<u8>(), 0u64..2), 0..40).prop_map(|specs| {
        let mut epoch = 1;
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (size, fill, bump))| {
                epoch += bump;
                rec(epoch, i as u64 + 1, &vec![fill; size])
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// For any log, segment size and cut (written, buffered or past the end), truncating
    /// leaves exactly the prefix up to the cut, in memory and after reopening, and the log
    /// continues from the next LSN; a second cut of the continued log (into a segment cut
    /// before, or its new records) leaves its prefix too.
    #[test]
    fn truncation_leaves_exactly_the_prefix(
        records in records_strategy(),
        segment_bytes_max in 100u64..1500,
        preallocate in any::<bool>(),
        buffered in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        cut_again in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let o = if preallocate {
            opts(dir.path(), segment_bytes_max, 0)
        } else {
            opts_unallocated(dir.path(), segment_bytes_max, 0)
        };
        let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
        let written = records.len() - buffered.index(records.len() + 1);
        for batch in records[..written].chunks(3) {
            wal.append(batch).unwrap();
        }
        wal.sync().unwrap();
        wal.append(&records[written..]).unwrap();
        let len = records.len() as u64;
        // Past the end now and then, to check the no-op.
        let lsn = cut.index(records.len() + 3) as u64;

        let removed = wal.truncate_after(Lsn(lsn)).unwrap();
        let kept_len = lsn.min(len);
        prop_assert_eq!(removed as u64, len - kept_len);
        let kept = &records[..kept_len as usize];
        prop_assert_eq!(wal.next_lsn(), Lsn(kept_len + 1));
        prop_assert_eq!(wal.last_position(), kept.last().map(|r| r.pos).unwrap_or_default());
        prop_assert!(wal.written_lsn() <= Lsn(kept_len));
        wal.check_invariants();
        wal.flush().unwrap();
        prop_assert_eq!(&wal.read_from(Lsn(1), u64::MAX).unwrap(), kept);

        let epoch = records.last().map_or(1, |r| r.pos.epoch.0) + 1;
        let new = recs_in(epoch, kept_len + 1, kept_len + 3);
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
        prop_assert_eq!(&recovery.records, kept);
        prop_assert!(recovery.torn_tail.is_none());
        wal.append(&new).unwrap();
        wal.sync().unwrap();
        let more = recs_in(epoch, kept_len + 4, kept_len + 6);
        wal.append(&more).unwrap();

        let all: Vec<LogRecord> = kept.iter().chain(&new).chain(&more).cloned().collect();
        let lsn = cut_again.index(all.len() + 1);
        prop_assert_eq!(wal.truncate_after(Lsn(lsn as u64)).unwrap(), all.len() - lsn);
        wal.check_invariants();
        wal.sync().unwrap();
        drop(wal);
        let (_, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
        prop_assert_eq!(&recovery.records, &all[..lsn]);
        prop_assert!(recovery.torn_tail.is_none());
    }
}

#[test]
fn epochs_of_the_kept_records_bound_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), SEGMENT_BYTES, 0);
    let (mut wal, _) = Wal::open(o, Lsn::ZERO).unwrap();
    wal.append(&recs_in(1, 1, 5)).unwrap();
    wal.append(&recs_in(3, 6, 9)).unwrap();
    wal.sync().unwrap();
    wal.truncate_after(Lsn(5)).unwrap();
    assert_eq!(
        wal.last_position(),
        LogPosition {
            epoch: Epoch(1),
            lsn: Lsn(5)
        }
    );
    wal.append(&recs_in(2, 6, 6)).unwrap();
}
