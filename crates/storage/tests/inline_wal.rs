//! [`InlineWal`]: appends are written before `append` returns, the syncer reports `synced`
//! advancing (never past what was written), `sync_now`, compaction, concurrent appenders.

mod common;

use common::{opts, recs, segment_files};
use replikv_core::Lsn;
use replikv_storage::{InlineWal, Wal, WalError, WalProgress};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Progress = Result<WalProgress, String>;

fn start(wal: Wal, interval_ms: u64) -> (InlineWal, Receiver<Progress>) {
    let (tx, rx) = mpsc::channel();
    let on_progress = move |p: Progress| {
        let _ = tx.send(p);
    };
    (
        InlineWal::start(wal, interval_ms, Box::new(on_progress)),
        rx,
    )
}

/// Waits for the first report with `synced >= lsn`.
fn wait_synced(rx: &Receiver<Progress>, lsn: u64) -> WalProgress {
    loop {
        let p = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("progress within 10 s")
            .expect("no failure");
        if p.synced >= Lsn(lsn) {
            return p;
        }
    }
}

#[test]
fn inline_append_returns_written_lsn_and_bytes_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path(), 1 << 20, 0), Lsn::ZERO).unwrap();
    let (log, _rx) = start(wal, 60_000);
    assert_eq!(log.append(recs(1, 16, 0)).unwrap(), Lsn(16));
    assert_eq!(log.append(recs(17, 17, 0)).unwrap(), Lsn(17));
    assert_eq!(log.written_lsn().unwrap(), Lsn(17));
    assert_eq!(log.synced_lsn().unwrap(), Lsn::ZERO, "no fsync yet");
    assert_eq!(log.records_written(), 17);

    eprintln!("phase: the bytes are in the file before any fsync");
    let files = segment_files(dir.path());
    let data = std::fs::read(&files[0]).unwrap();
    let needle = b"SET key17 value17";
    assert!(data.windows(needle.len()).any(|w| w == needle));
    assert_eq!(log.read_from(Lsn(1), u64::MAX).unwrap(), recs(1, 17, 0));
}

#[test]
fn inline_drop_without_shutdown_keeps_appended_records() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 1 << 20, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (log, _rx) = start(wal, 60_000);
    for first in (1..=100).step_by(10) {
        log.append(recs(first, first + 9, 50)).unwrap();
    }
    drop(log);
    let (_wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert_eq!(recovery.records, recs(1, 100, 50));
}

#[test]
fn inline_background_sync_reports_synced_advancing() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path(), 1 << 20, 0), Lsn::ZERO).unwrap();
    let (log, rx) = start(wal, 5);
    log.append(recs(1, 10, 0)).unwrap();
    let p = wait_synced(&rx, 10);
    assert_eq!(p.synced, Lsn(10));
    log.append(recs(11, 20, 0)).unwrap();
    let p = wait_synced(&rx, 20);
    assert_eq!(
        p,
        WalProgress {
            written: Lsn(20),
            synced: Lsn(20)
        }
    );
    assert!(log.fsync_count() >= 2, "{}", log.fsync_count());
    assert_eq!(log.synced_lsn().unwrap(), Lsn(20));
    log.shutdown().unwrap();
}

#[test]
fn inline_sync_now_syncs_everything_appended() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(opts(dir.path(), 1 << 20, 0), Lsn::ZERO).unwrap();
    let (log, rx) = start(wal, 60_000);
    log.append(recs(1, 5, 0)).unwrap();
    assert_eq!(log.sync_now().unwrap(), Lsn(5));
    assert_eq!(
        rx.try_recv().unwrap().unwrap(),
        WalProgress {
            written: Lsn(5),
            synced: Lsn(5)
        }
    );
    let fsyncs = log.fsync_count();
    assert_eq!(log.sync_now().unwrap(), Lsn(5));
    assert_eq!(log.fsync_count(), fsyncs, "nothing new: no fsync");
    assert!(rx.try_recv().is_err(), "nothing new: no report");

    eprintln!("phase: request_sync wakes the syncer long before its interval");
    log.append(recs(6, 6, 0)).unwrap();
    log.request_sync();
    assert_eq!(wait_synced(&rx, 6).synced, Lsn(6));
    log.shutdown().unwrap();
}

#[test]
fn inline_compaction_removes_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), 4 << 10, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    let (log, _rx) = start(wal, 60_000);
    for first in (1..=200).step_by(10) {
        log.append(recs(first, first + 9, 100)).unwrap();
    }
    let before = segment_files(dir.path()).len();
    assert!(before > 3, "{before} segments");
    assert_eq!(log.sync_now().unwrap(), Lsn(200));
    let removed = log.compact(Lsn(150)).unwrap();
    assert!(removed > 0);
    assert_eq!(segment_files(dir.path()).len(), before - removed);
    assert!(matches!(
        log.read_from(Lsn(1), u64::MAX),
        Err(WalError::Compacted { .. })
    ));
    assert_eq!(
        log.read_from(Lsn(151), u64::MAX).unwrap(),
        recs(151, 200, 100)
    );
    log.shutdown().unwrap();
    let (_wal, recovery) = Wal::open(o, Lsn(150)).unwrap();
    assert_eq!(recovery.records, recs(151, 200, 100));
}

#[test]
fn inline_concurrent_appenders_with_rolls_keep_order_and_synced_honest() {
    const THREADS: u64 = 2;
    const BATCHES_PER_THREAD: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the log rolls often while the syncer fsyncs every millisecond.
    let o = opts(dir.path(), 8 << 10, 0);
    let (wal, _) = Wal::open(o.clone(), Lsn::ZERO).unwrap();
    // The highest LSN `append` has returned, updated under the same lock as the append (which
    // also assigns LSNs in append order, as the node's single loop would).
    let written = Arc::new(Mutex::new(0u64));
    // Checked in the callback, as reports arrive: `synced` never goes back and never passes
    // what `append` has returned (the callback waits for an append in flight to finish).
    let violations = Arc::new(Mutex::new(Vec::new()));
    let synced = Arc::new(Mutex::new(Lsn::ZERO));
    let on_progress = {
        let (written, violations, synced) = (
            Arc::clone(&written),
            Arc::clone(&violations),
            Arc::clone(&synced),
        );
        move |p: Progress| {
            let p = match p {
                Ok(p) => p,
                Err(e) => return violations.lock().unwrap().push(e),
            };
            let written_now = *written.lock().unwrap();
            let mut synced = synced.lock().unwrap();
            if p.synced < *synced || p.synced > p.written || p.synced.0 > written_now {
                violations.lock().unwrap().push(format!(
                    "{p:?} after synced {synced}, appended {written_now}"
                ));
            }
            *synced = p.synced;
        }
    };
    let log = Arc::new(InlineWal::start(wal, 1, Box::new(on_progress)));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            let written = Arc::clone(&written);
            std::thread::spawn(move || {
                for b in 0..BATCHES_PER_THREAD {
                    let mut last = written.lock().unwrap();
                    let n = 1 + (t + b) % 3;
                    let lsn = log.append(recs(*last + 1, *last + n, 60)).unwrap();
                    assert_eq!(lsn, Lsn(*last + n));
                    *last += n;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = *written.lock().unwrap();
    let log = Arc::try_unwrap(log).unwrap();
    assert!(log.fsync_count() > 1);
    log.shutdown().unwrap();
    assert_eq!(*violations.lock().unwrap(), Vec::<String>::new());
    assert_eq!(*synced.lock().unwrap(), Lsn(total));
    let (wal, recovery) = Wal::open(o, Lsn::ZERO).unwrap();
    assert!(wal.segment_count() > 2);
    assert_eq!(recovery.records, recs(1, total, 60));
}
