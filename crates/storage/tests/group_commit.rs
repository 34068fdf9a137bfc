//! The group-commit writer: concurrent submitters share fsyncs, progress is reported per
//! policy, a caller's LSN gap fails the writer once, control requests see earlier batches.

mod common;

use common::{opts, rec, recs};
use replikv_core::Lsn;
use replikv_storage::{FsyncPolicy, GroupCommit, Wal, WalError, WalProgress};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Progress = Result<WalProgress, String>;

/// A progress callback that forwards every report to the returned receiver.
fn forward() -> (Box<dyn Fn(Progress) + Send>, Receiver<Progress>) {
    let (tx, rx) = mpsc::channel();
    let callback = move |p: Progress| {
        // The test may have stopped listening; the writer must not care.
        let _ = tx.send(p);
    };
    (Box::new(callback), rx)
}

/// Waits for the first report matching `want`, failing after a generous timeout.
fn wait_for(rx: &Receiver<Progress>, want: impl Fn(&Progress) -> bool) -> Progress {
    loop {
        let p = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("progress within 10 s");
        if want(&p) {
            return p;
        }
    }
}

#[test]
fn group_commit_concurrent_submitters_share_fsyncs() {
    const THREADS: u64 = 4;
    const BATCHES_PER_THREAD: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 64 << 10, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();

    eprintln!("phase: the first progress report blocks the writer until every batch is queued");
    // A gate instead of sleeps: while the writer waits in its first report, submitters queue
    // up, and the next round must take them all with one fsync.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let writer_gate = Arc::clone(&gate);
    let on_progress = move |p: Progress| {
        let (open, cv) = &*writer_gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        let _ = tx.send(p);
    };
    let gc = Arc::new(GroupCommit::start(
        wal,
        FsyncPolicy::Always,
        Box::new(on_progress),
    ));

    eprintln!("phase: {THREADS} threads submit batches of 1-3 records");
    // The mutex serializes LSN assignment and submission, so queue order is LSN order.
    let next_lsn = Arc::new(Mutex::new(1u64));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let gc = Arc::clone(&gc);
            let next_lsn = Arc::clone(&next_lsn);
            std::thread::spawn(move || {
                for b in 0..BATCHES_PER_THREAD {
                    let mut next = next_lsn.lock().unwrap();
                    let n = 1 + (t + b) % 3;
                    let batch: Vec<_> = (*next..*next + n)
                        .map(|lsn| rec(1, lsn, format!("t{t} b{b} lsn{lsn}").as_bytes()))
                        .collect();
                    *next += n;
                    gc.submit(batch);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = *next_lsn.lock().unwrap() - 1;
    let batches = THREADS * BATCHES_PER_THREAD;
    assert_eq!(gc.stats().batches_submitted, batches);

    eprintln!("phase: open the gate and wait until everything is durable");
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    assert_eq!(gc.sync_now().unwrap(), Lsn(total));

    let stats = gc.stats();
    eprintln!(
        "fsyncs {} for {} batches ({} group writes): {:.3} fsyncs per batch",
        stats.fsyncs,
        stats.batches_written,
        stats.group_writes,
        stats.fsyncs as f64 / stats.batches_written as f64
    );
    assert_eq!(stats.batches_written, batches);
    assert_eq!(stats.records_written, total);
    assert!(stats.fsyncs < batches, "{stats:?}");
    // One round before the gate opened, then at most one per GROUP_COMMIT_DRAIN_MAX requests.
    assert!(stats.fsyncs <= 3, "{stats:?}");
    assert_eq!(gc.fsync_count(), stats.fsyncs);
    assert_eq!(gc.records_written(), total);

    eprintln!("phase: reports only move forward, and under Always each is fsynced");
    let reports: Vec<WalProgress> = rx.try_iter().map(|p| p.unwrap()).collect();
    assert!(!reports.is_empty());
    for r in &reports {
        assert_eq!(r.written, r.synced, "{r:?}");
    }
    for w in reports.windows(2) {
        assert!(w[0].synced < w[1].synced, "{w:?}");
    }
    assert_eq!(reports.last().unwrap().synced, Lsn(total));

    eprintln!("phase: after shutdown every record is on disk, in LSN order");
    let gc = Arc::into_inner(gc).unwrap();
    gc.shutdown().unwrap();
    let (_, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    let lsns: Vec<u64> = recovery.records.iter().map(|r| r.pos.lsn.0).collect();
    assert_eq!(lsns, (1..=total).collect::<Vec<_>>());
}

#[test]
fn interval_policy_reports_written_first_and_fsyncs_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path(), 1 << 20, 0), Lsn::ZERO).unwrap();
    let (on_progress, rx) = forward();
    let gc = GroupCommit::start(wal, FsyncPolicy::IntervalMs(50), on_progress);
    let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    let at = |written, synced| WalProgress {
        written: Lsn(written),
        synced: Lsn(synced),
    };

    for (first, last) in [(1, 3), (4, 5)] {
        eprintln!("phase: batch {first}..={last} is reported written before it is synced");
        gc.submit(recs(first, last, 0));
        assert_eq!(next(), at(last, first - 1));
        eprintln!("phase: with no further submissions the writer fsyncs when the interval ends");
        assert_eq!(next(), at(last, last));
    }
    assert_eq!(gc.fsync_count(), 2);
    gc.shutdown().unwrap();
}

#[test]
fn interval_policy_writer_dropped_without_shutdown_still_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path(), 1 << 20, 0), Lsn::ZERO).unwrap();
    let (on_progress, rx) = forward();
    let gc = GroupCommit::start(wal, FsyncPolicy::IntervalMs(3_600_000), on_progress);
    gc.submit(recs(1, 3, 0));
    let written = wait_for(&rx, |p| p.as_ref().is_ok_and(|p| p.written == Lsn(3)));
    assert_eq!(
        written.unwrap().synced,
        Lsn::ZERO,
        "the hour-long interval has not passed"
    );
    drop(gc);
    let last = wait_for(&rx, |p| p.as_ref().is_ok_and(|p| p.synced == Lsn(3)));
    assert_eq!(last.unwrap().written, Lsn(3));
}

#[test]
fn submission_gap_is_reported_once_and_the_writer_refuses_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path(), 1 << 20, 0), Lsn::ZERO).unwrap();
    let (on_progress, rx) = forward();
    let gc = GroupCommit::start(wal, FsyncPolicy::Always, on_progress);

    eprintln!("phase: a caller bug skips lsn 3");
    gc.submit(recs(1, 2, 0));
    gc.submit(recs(4, 4, 0));
    let err = wait_for(&rx, Result::is_err).unwrap_err();
    assert!(err.contains("does not continue"), "{err}");

    eprintln!("phase: everything after is refused, and the error is not repeated");
    assert!(matches!(gc.sync_now(), Err(WalError::Poisoned)));
    gc.submit(recs(3, 3, 0));
    assert!(matches!(gc.compact(Lsn(1)), Err(WalError::Poisoned)));
    assert!(matches!(gc.read_from(Lsn(1), 100), Err(WalError::Poisoned)));
    assert!(matches!(gc.shutdown(), Err(WalError::Poisoned)));
    let later_errors = rx.try_iter().filter(Result::is_err).count();
    assert_eq!(later_errors, 0);
}

#[test]
fn control_requests_see_every_batch_submitted_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 200, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (on_progress, _rx) = forward();
    let gc = GroupCommit::start(wal, FsyncPolicy::IntervalMs(3_600_000), on_progress);

    for lsn in 1..=20 {
        gc.submit(recs(lsn, lsn, 40));
    }
    eprintln!("phase: a read right after submitting sees all 20 records");
    let read = gc.read_from(Lsn(1), u64::MAX).unwrap();
    assert_eq!(read, recs(1, 20, 40));

    eprintln!("phase: sync_now makes them durable; compaction drops covered segments");
    assert_eq!(gc.sync_now().unwrap(), Lsn(20));
    let removed = gc.compact(Lsn(10)).unwrap();
    assert!(removed > 0);
    assert!(matches!(
        gc.read_from(Lsn(1), u64::MAX),
        Err(WalError::Compacted { .. })
    ));
    gc.shutdown().unwrap();

    let (_, recovery) = Wal::open(o, Lsn(10)).unwrap();
    assert_eq!(recovery.records, recs(11, 20, 40));
}
