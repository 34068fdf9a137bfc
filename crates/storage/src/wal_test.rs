//! Poisoning (fsyncgate): after a failed write or fsync the log refuses everything and never
//! retries the fsync. Failures are injected through the test-only `FaultPlan`.

use crate::{FsyncPolicy, GroupCommit, LogRecord, Wal, WalError, WalOptions, WalProgress};
use bytes::Bytes;
use replikv_core::{Epoch, LogPosition, Lsn};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Records `first..=last` in epoch 1 with small distinct payloads; shared by the crate's
/// fault-injection tests.
pub(crate) fn recs(first: u64, last: u64) -> Vec<LogRecord> {
    (first..=last)
        .map(|lsn| LogRecord {
            pos: LogPosition {
                epoch: Epoch(1),
                lsn: Lsn(lsn),
            },
            payload: Bytes::from(format!("payload {lsn}")),
        })
        .collect()
}

fn open(dir: &Path, segment_bytes_max: u64) -> (Wal, Vec<LogRecord>) {
    let opts = WalOptions::new(dir, segment_bytes_max, 0);
    let (wal, recovery) = Wal::open(opts, Lsn::ZERO).unwrap();
    (wal, recovery.records)
}

fn assert_refuses_everything(wal: &mut Wal) {
    assert!(wal.is_poisoned());
    assert!(matches!(
        wal.append(&recs(100, 100)),
        Err(WalError::Poisoned)
    ));
    assert!(matches!(wal.flush(), Err(WalError::Poisoned)));
    assert!(matches!(wal.sync(), Err(WalError::Poisoned)));
    assert!(matches!(wal.compact(Lsn(1)), Err(WalError::Poisoned)));
    assert!(matches!(wal.read_from(Lsn(1), 10), Err(WalError::Poisoned)));
    assert!(matches!(
        wal.reset(LogPosition::default()),
        Err(WalError::Poisoned)
    ));
}

#[test]
fn failed_write_poisons_the_log_and_synced_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), 1 << 20);
    wal.append(&recs(1, 3)).unwrap();
    wal.sync().unwrap();

    eprintln!("phase: the next write fails");
    wal.faults.write_fails_after = Some(0);
    wal.append(&recs(4, 5)).unwrap();
    let err = wal.flush().unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Io {
                op: "write segment",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(wal.written_lsn(), Lsn(3));
    assert_refuses_everything(&mut wal);
    drop(wal);

    eprintln!("phase: reopening finds the synced records");
    let (_, records) = open(dir.path(), 1 << 20);
    assert_eq!(records, recs(1, 3));
}

#[test]
fn failed_fsync_poisons_the_log_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), 1 << 20);
    wal.append(&recs(1, 2)).unwrap();
    wal.faults.fsync_fails_after = Some(0);
    let err = wal.sync().unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Io {
                op: "fsync segment",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(wal.synced_lsn(), Lsn::ZERO, "nothing is claimed durable");
    assert_eq!(wal.stats().fsyncs, 0);
    assert_refuses_everything(&mut wal);
    assert_eq!(wal.stats().fsyncs, 0, "the fsync was not tried again");
}

#[test]
fn failed_segment_roll_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // One record per segment, so the second append rolls.
    let (mut wal, _) = open(dir.path(), 40);
    wal.append(&recs(1, 1)).unwrap();
    wal.sync().unwrap();
    wal.faults.write_fails_after = Some(0);
    let err = wal.append(&recs(2, 2)).unwrap_err();
    assert!(matches!(err, WalError::Io { .. }), "{err}");
    assert_refuses_everything(&mut wal);
}

#[test]
fn group_commit_reports_a_failed_fsync_once_and_refuses_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), 1 << 20);
    // The new segment's header fsync and the first batch's succeed; the next one fails.
    wal.faults.fsync_fails_after = Some(2);
    let (tx, rx) = mpsc::channel::<Result<WalProgress, String>>();
    let gc = GroupCommit::start(
        wal,
        FsyncPolicy::Always,
        Box::new(move |p| {
            // The test may have stopped listening.
            let _ = tx.send(p);
        }),
    );

    eprintln!("phase: the first batch is fsynced, the second's fsync fails");
    gc.submit(recs(1, 2));
    assert_eq!(gc.sync_now().unwrap(), Lsn(2));
    gc.submit(recs(3, 4));
    let err = loop {
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Ok(p) => assert!(p.synced <= Lsn(2), "{p:?}"),
            Err(e) => break e,
        }
    };
    assert!(err.contains("fsync segment"), "{err}");

    eprintln!("phase: every later request is refused and the error is not reported again");
    gc.submit(recs(5, 5));
    assert!(matches!(gc.sync_now(), Err(WalError::Poisoned)));
    assert!(matches!(
        gc.reset(LogPosition::default()),
        Err(WalError::Poisoned)
    ));
    assert!(matches!(gc.shutdown(), Err(WalError::Poisoned)));
    assert_eq!(rx.try_iter().count(), 0);
}

#[test]
fn failed_spare_segment_is_discarded_and_the_roll_preallocates_itself() {
    let dir = tempfile::tempdir().unwrap();
    // Two records of 24 + 9 bytes per segment.
    let (mut wal, _) = open(dir.path(), 100);
    wal.faults.spare_fails = true;
    wal.append(&recs(1, 5)).unwrap();
    wal.sync().unwrap();
    assert!(!wal.is_poisoned());
    assert_eq!(wal.stats().segments_created, 3);
    assert_eq!(wal.stats().segments_from_spare, 0);
    drop(wal);
    let (_, records) = open(dir.path(), 100);
    assert_eq!(records, recs(1, 5));
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            100,
            "{}",
            path.display()
        );
    }
}

#[test]
fn reset_refuses_a_poisoned_log_and_leaves_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), 1 << 20);
    wal.append(&recs(1, 3)).unwrap();
    wal.sync().unwrap();
    wal.faults.write_fails_after = Some(0);
    wal.append(&recs(4, 4)).unwrap();
    assert!(wal.flush().is_err());
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(matches!(
        wal.reset(LogPosition {
            epoch: Epoch(2),
            lsn: Lsn(10)
        }),
        Err(WalError::Poisoned)
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), files);
    assert_eq!(wal.written_lsn(), Lsn(3));
    drop(wal);
    let (_, records) = open(dir.path(), 1 << 20);
    assert_eq!(records, recs(1, 3));
}

/// Files in the log directory, by name.
fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn reset_while_the_spare_segment_is_being_prepared() {
    // 8 MiB segments: the spare's thread zero-fills 8 chunks, so a reset right after open
    // usually cancels it mid-way; either way it must not reach the reset log.
    const SEGMENT_BYTES: u64 = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::new(dir.path(), SEGMENT_BYTES, 0);
    let (mut wal, _) = Wal::open(opts.clone(), Lsn::ZERO).unwrap();
    assert!(
        wal.spare_active(),
        "a log without segments prepares one at open"
    );

    eprintln!("phase: reset while the spare is being zero-filled");
    let after = LogPosition {
        epoch: Epoch(2),
        lsn: Lsn(10),
    };
    wal.reset(after).unwrap();
    assert!(
        wal.spare_active(),
        "a new spare for the reset log's first segment"
    );
    assert!(
        dir_names(dir.path())
            .iter()
            .all(|n| n == crate::spare::SPARE_FILE_NAME),
        "{:?}",
        dir_names(dir.path())
    );

    eprintln!("phase: the first append installs the new spare as segment 11");
    let new: Vec<LogRecord> = recs(11, 13)
        .into_iter()
        .map(|r| LogRecord {
            pos: LogPosition {
                epoch: Epoch(2),
                ..r.pos
            },
            ..r
        })
        .collect();
    wal.append(&new).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.stats().segments_from_spare, 1);
    assert!(!wal.spare_active());
    assert_eq!(dir_names(dir.path()), ["00000000000000000011.wal"]);
    let segment = dir.path().join("00000000000000000011.wal");
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), SEGMENT_BYTES);
    drop(wal);

    eprintln!("phase: reopened after the snapshot, the log holds exactly the new records");
    let (wal, recovery) = Wal::open(opts.clone(), Lsn(10)).unwrap();
    assert_eq!(recovery.records, new);
    assert!(recovery.torn_tail.is_none());

    eprintln!("phase: a spare started once the segment is half full is discarded the same way");
    let mut wal = wal;
    let half: Vec<LogRecord> = (14..=17)
        .map(|lsn| LogRecord {
            pos: LogPosition {
                epoch: Epoch(2),
                lsn: Lsn(lsn),
            },
            payload: Bytes::from(vec![7u8; (SEGMENT_BYTES / 8) as usize]),
        })
        .collect();
    wal.append(&half).unwrap();
    assert!(
        wal.spare_active(),
        "half full: the next segment is being prepared"
    );
    wal.reset(LogPosition {
        epoch: Epoch(3),
        lsn: Lsn(5),
    })
    .unwrap();
    wal.append(&[LogRecord {
        pos: LogPosition {
            epoch: Epoch(3),
            lsn: Lsn(6),
        },
        payload: Bytes::from_static(b"after"),
    }])
    .unwrap();
    wal.sync().unwrap();
    assert_eq!(dir_names(dir.path()), ["00000000000000000006.wal"]);
    drop(wal);
    let (_, recovery) = Wal::open(opts, Lsn(5)).unwrap();
    assert_eq!(recovery.records.len(), 1);
    assert_eq!(recovery.records[0].pos.lsn, Lsn(6));
}
