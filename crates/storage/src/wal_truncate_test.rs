//! [`Wal::truncate_after`] stopped after each of its durable steps, as a crash would: the log
//! reopens as a prefix of the old one at least as long as the truncated one (never past a gap,
//! never longer than before), and running the truncation again completes it. Crashes are
//! injected through the test-only `FaultPlan`.

use crate::wal_test::recs;
use crate::{LogRecord, Wal, WalError, WalOptions};
use replikv_core::Lsn;
use std::path::Path;

/// Records 1..=30 over 8 segments of 4 records each (`recs` payloads are 9 or 10 bytes).
const RECORDS: u64 = 30;
const SEGMENT_BYTES: u64 = 32 + 4 * 34;

fn options(dir: &Path, preallocate: bool) -> WalOptions {
    WalOptions {
        preallocate,
        ..WalOptions::new(dir, SEGMENT_BYTES, 0)
    }
}

fn reopen(o: &WalOptions) -> (Wal, Vec<LogRecord>) {
    let (wal, recovery) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    assert!(recovery.torn_tail.is_none(), "{:?}", recovery.torn_tail);
    (wal, recovery.records)
}

/// Truncates a fresh log of [`RECORDS`] records to `lsn`, crashing after each step in turn.
fn crash_after_each_step(lsn: u64, preallocate: bool) {
    let old = recs(1, RECORDS);
    let mut left_before = old.len();
    for steps in 0.. {
        eprintln!("phase: cut after {lsn} (preallocate {preallocate}), crash after {steps} steps");
        let dir = tempfile::tempdir().unwrap();
        let o = options(dir.path(), preallocate);
        let (mut wal, _) = reopen(&o);
        wal.append(&old).unwrap();
        wal.sync().unwrap();
        assert_eq!(wal.segment_count(), 8);
        wal.faults.truncate_crash_after = Some(steps);
        match wal.truncate_after(Lsn(lsn)) {
            Ok(removed) => {
                assert_eq!(removed as u64, RECORDS - lsn);
                drop(wal);
                assert_eq!(reopen(&o).1, &old[..lsn as usize]);
                assert!(
                    steps > 0,
                    "a truncation across segments has a step to crash after"
                );
                return;
            }
            Err(e) => {
                assert!(e.to_string().contains("injected crash"), "{e}");
                assert!(wal.is_poisoned());
                assert!(matches!(
                    wal.truncate_after(Lsn(lsn)),
                    Err(WalError::Poisoned)
                ));
            }
        }
        drop(wal);

        eprintln!("phase: reopened after the crash, a prefix of the old log");
        let (mut wal, records) = reopen(&o);
        let left = records.len();
        assert_eq!(records, &old[..left]);
        assert!(left >= lsn as usize, "{left} records left, cut after {lsn}");
        assert!(
            left < left_before,
            "step {steps} made no progress: {left} records"
        );
        left_before = left;

        eprintln!("phase: the truncation run again completes it; appends go on");
        assert_eq!(wal.truncate_after(Lsn(lsn)).unwrap(), left - lsn as usize);
        let new = recs(lsn + 1, lsn + 2);
        wal.append(&new).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let expected: Vec<LogRecord> = old[..lsn as usize].iter().chain(&new).cloned().collect();
        assert_eq!(reopen(&o).1, expected);
    }
}

#[test]
fn truncate_crash_after_each_step_in_the_middle_of_a_segment() {
    for preallocate in [true, false] {
        crash_after_each_step(14, preallocate);
    }
}

#[test]
fn truncate_crash_after_each_step_at_a_segment_boundary() {
    for preallocate in [true, false] {
        crash_after_each_step(12, preallocate);
    }
}

#[test]
fn truncate_crash_after_each_step_of_removing_everything() {
    crash_after_each_step(0, true);
}

#[test]
fn truncate_refuses_a_poisoned_log_and_leaves_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), true);
    let (mut wal, _) = reopen(&o);
    wal.append(&recs(1, 10)).unwrap();
    wal.sync().unwrap();
    wal.faults.write_fails_after = Some(0);
    wal.append(&recs(11, 11)).unwrap();
    assert!(wal.flush().is_err());
    // Segment files only: the spare is prepared by a thread of its own, at any time.
    let segments = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != std::ffi::OsStr::new(crate::spare::SPARE_FILE_NAME))
            .count()
    };
    let files = segments();
    assert!(matches!(
        wal.truncate_after(Lsn(3)),
        Err(WalError::Poisoned)
    ));
    assert_eq!(segments(), files);
    drop(wal);
    assert_eq!(reopen(&o).1, recs(1, 10));
}
