//! `Wal::reset`: a follower bootstrapped from a snapshot discards its whole log, forward or
//! back, and continues after the snapshot, before and after reopening; through `GroupCommit`
//! and `InlineWal` too, with progress reported at the snapshot.

mod common;

use common::{opts, rec, recs, segment_files};
use replikv_core::{Epoch, LogPosition, Lsn};
use replikv_storage::{
    FsyncPolicy, GroupCommit, InlineWal, LogRecord, Wal, WalError, WalOptions, WalProgress,
};
use std::sync::mpsc;

type Progress = Result<WalProgress, String>;

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

/// Records `first..=last` in `epoch`, with payloads naming both.
fn recs_in(epoch: u64, first: u64, last: u64) -> Vec<LogRecord> {
    (first..=last)
        .map(|lsn| rec(epoch, lsn, format!("epoch {epoch} lsn {lsn}").as_bytes()))
        .collect()
}

fn progress_at(lsn: u64) -> WalProgress {
    WalProgress {
        written: Lsn(lsn),
        synced: Lsn(lsn),
    }
}

/// A log with records `1..=last` in epoch 1 over several segments, synced.
fn open_with(o: &WalOptions, last: u64) -> Wal {
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.append(&recs(1, last, 40)).unwrap();
    wal.sync().unwrap();
    assert!(wal.segment_count() > 2, "{} segments", wal.segment_count());
    wal
}

fn assert_empty_after(wal: &Wal, lsn: u64) {
    assert_eq!(wal.written_lsn(), Lsn(lsn));
    assert_eq!(wal.synced_lsn(), Lsn(lsn));
    assert_eq!(wal.next_lsn(), Lsn(lsn + 1));
    assert_eq!(wal.first_lsn(), Lsn(lsn + 1));
    assert_eq!(wal.last_position(), LogPosition::default());
    assert_eq!(wal.segment_count(), 0);
    assert_eq!(wal.bytes_on_disk(), 0);
    assert!(segment_files(wal.dir()).is_empty());
    assert!(matches!(
        wal.read_from(Lsn(1), u64::MAX),
        Err(WalError::Compacted { first, .. }) if first == Lsn(lsn + 1)
    ));
    assert!(wal.read_from(Lsn(lsn + 1), u64::MAX).unwrap().is_empty());
    wal.check_invariants();
}

#[test]
fn reset_forward_empties_the_log_and_continues_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 300, 0);
    let mut wal = open_with(&o, 30);
    wal.append(&recs(31, 32, 40)).unwrap();

    eprintln!("phase: reset to a snapshot at 2:100; buffered records go too");
    wal.reset(pos(2, 100)).unwrap();
    assert_empty_after(&wal, 100);

    eprintln!("phase: the next append must be 101");
    assert!(matches!(
        wal.append(&recs_in(2, 33, 33)),
        Err(WalError::OutOfOrder {
            expected_lsn: Lsn(101),
            ..
        })
    ));
    wal.append(&recs_in(2, 101, 105)).unwrap();
    wal.sync().unwrap();
    assert_eq!(
        wal.read_from(Lsn(101), u64::MAX).unwrap(),
        recs_in(2, 101, 105)
    );
    assert_eq!(
        segment_files(dir.path()),
        vec![dir.path().join("00000000000000000101.wal")]
    );
    drop(wal);

    eprintln!("phase: reopened after the snapshot, the log holds only the new records");
    let (wal, recovery) = Wal::open(o, Lsn(100)).unwrap();
    assert_eq!(recovery.records, recs_in(2, 101, 105));
    assert_eq!(wal.next_lsn(), Lsn(106));
}

#[test]
fn reset_backward_discards_diverged_records_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 300, 0);
    let mut wal = open_with(&o, 50);

    eprintln!("phase: a diverged follower is reset back to its leader's snapshot at 2:20");
    wal.reset(pos(2, 20)).unwrap();
    assert_empty_after(&wal, 20);

    eprintln!("phase: the leader's records from 21 on take the diverged ones' place");
    wal.append(&recs_in(2, 21, 25)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, recovery) = Wal::open(o, Lsn(20)).unwrap();
    assert_eq!(recovery.records, recs_in(2, 21, 25));
    assert_eq!(recovery.last, pos(2, 25));
    assert_eq!(wal.next_lsn(), Lsn(26));
}

#[test]
fn reopen_right_after_a_reset_finds_no_records_and_the_next_lsn() {
    for (last, after) in [(10, 40), (50, 5)] {
        eprintln!("phase: log 1..={last} reset to {after}, then reopened");
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path(), 300, 0);
        let mut wal = open_with(&o, last);
        wal.reset(pos(3, after)).unwrap();
        drop(wal);
        let (mut wal, recovery) = Wal::open(o.clone(), Lsn(after)).unwrap();
        assert!(recovery.records.is_empty());
        assert_eq!(recovery.last.lsn, Lsn(after));
        assert!(recovery.torn_tail.is_none());
        assert_empty_after(&wal, after);
        wal.append(&recs_in(3, after + 1, after + 1)).unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, recovery) = Wal::open(o, Lsn(after)).unwrap();
        assert_eq!(recovery.records, recs_in(3, after + 1, after + 1));
    }
}

#[test]
fn reset_twice_and_reset_of_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 300, 0);
    let (mut wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    wal.reset(pos(1, 7)).unwrap();
    assert_empty_after(&wal, 7);
    wal.reset(pos(1, 3)).unwrap();
    assert_empty_after(&wal, 3);
    wal.append(&recs_in(1, 4, 4)).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, recovery) = Wal::open(o, Lsn(3)).unwrap();
    assert_eq!(recovery.records, recs_in(1, 4, 4));
}

#[test]
fn group_commit_reset_runs_after_earlier_batches_and_reports_the_snapshot_position() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 300, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (tx, rx) = mpsc::channel();
    let on_progress = move |p: Progress| {
        let _ = tx.send(p);
    };
    let gc = GroupCommit::start(wal, FsyncPolicy::Always, Box::new(on_progress));
    gc.submit(recs(1, 10, 40));
    gc.submit(recs(11, 12, 40));

    eprintln!("phase: reset back to 5; the last report before it returns is 5/5");
    gc.reset(pos(2, 5)).unwrap();
    let reports: Vec<WalProgress> = rx.try_iter().map(|p| p.unwrap()).collect();
    assert_eq!(reports.last(), Some(&progress_at(5)), "{reports:?}");
    assert!(matches!(
        gc.read_from(Lsn(1), u64::MAX),
        Err(WalError::Compacted { first: Lsn(6), .. })
    ));

    eprintln!("phase: a reset to the same position reports again");
    gc.reset(pos(2, 5)).unwrap();
    assert_eq!(
        rx.try_iter().map(|p| p.unwrap()).collect::<Vec<_>>(),
        [progress_at(5)]
    );

    eprintln!("phase: appends go on at 6");
    gc.submit(recs_in(2, 6, 8));
    assert_eq!(gc.sync_now().unwrap(), Lsn(8));
    gc.shutdown().unwrap();
    let (_, recovery) = Wal::open(o, Lsn(5)).unwrap();
    assert_eq!(recovery.records, recs_in(2, 6, 8));
}

#[test]
fn inline_wal_reset_reports_the_snapshot_position_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 300, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (tx, rx) = mpsc::channel();
    let on_progress = move |p: Progress| {
        let _ = tx.send(p);
    };
    let log = InlineWal::start(wal, 60_000, Box::new(on_progress));
    log.append(recs(1, 10, 40)).unwrap();
    assert_eq!(log.sync_now().unwrap(), Lsn(10));

    eprintln!("phase: reset forward to 50");
    log.reset(pos(2, 50)).unwrap();
    let reports: Vec<WalProgress> = rx.try_iter().map(|p| p.unwrap()).collect();
    assert_eq!(reports.last(), Some(&progress_at(50)), "{reports:?}");
    assert_eq!(log.written_lsn().unwrap(), Lsn(50));
    assert_eq!(log.synced_lsn().unwrap(), Lsn(50));

    eprintln!("phase: reset back to 20; appends go on at 21 and are synced");
    log.reset(pos(2, 20)).unwrap();
    assert_eq!(
        rx.try_iter().map(|p| p.unwrap()).collect::<Vec<_>>(),
        [progress_at(20)]
    );
    assert_eq!(log.append(recs_in(2, 21, 30)).unwrap(), Lsn(30));
    assert_eq!(log.sync_now().unwrap(), Lsn(30));
    log.shutdown().unwrap();
    let (_, recovery) = Wal::open(o, Lsn(20)).unwrap();
    assert_eq!(recovery.records, recs_in(2, 21, 30));
}
