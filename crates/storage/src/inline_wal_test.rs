//! [`InlineWal`] poisoning (fsyncgate): after a failed write or fsync every later call fails
//! and the failure is reported once. Failures are injected through the test-only `FaultPlan`.

use crate::{InlineWal, LogRecord, Wal, WalError, WalOptions, WalProgress};
use replikv_core::Lsn;
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

type Progress = Result<WalProgress, String>;

use crate::wal_test::recs;

/// A log holding records 1..=3, synced.
fn open_synced(dir: &Path) -> Wal {
    let (mut wal, _) = Wal::open(WalOptions::new(dir, 1 << 20, 0), Lsn::ZERO).unwrap();
    wal.append(&recs(1, 3)).unwrap();
    wal.sync().unwrap();
    wal
}

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

fn first_error(rx: &Receiver<Progress>) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(10)).expect("a report") {
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

fn assert_refuses_everything(log: &InlineWal, rx: &Receiver<Progress>) {
    assert!(matches!(
        log.append(recs(100, 100)),
        Err(WalError::Poisoned)
    ));
    assert!(matches!(log.sync_now(), Err(WalError::Poisoned)));
    assert!(matches!(log.compact(Lsn(1)), Err(WalError::Poisoned)));
    assert!(matches!(log.read_from(Lsn(1), 10), Err(WalError::Poisoned)));
    assert!(matches!(
        log.reset(replikv_core::LogPosition::default()),
        Err(WalError::Poisoned)
    ));
    // The failure is reported once.
    assert!(rx.try_iter().all(|p| p.is_ok()), "a second failure report");
}

fn reopen(dir: &Path) -> Vec<LogRecord> {
    let (_wal, recovery) = Wal::open(WalOptions::new(dir, 1 << 20, 0), Lsn::ZERO).unwrap();
    recovery.records
}

#[test]
fn inline_failed_sync_now_poisons_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open_synced(dir.path());
    wal.faults.fsync_fails_after = Some(0);
    let (log, rx) = start(wal, 60_000);
    assert_eq!(log.append(recs(4, 5)).unwrap(), Lsn(5));

    eprintln!("phase: the fsync fails");
    let err = log.sync_now().unwrap_err();
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
    assert!(first_error(&rx).contains("injected"));
    assert_eq!(
        log.synced_lsn().unwrap(),
        Lsn(3),
        "synced not advanced past the failure"
    );
    assert_refuses_everything(&log, &rx);
    assert!(matches!(log.shutdown(), Err(WalError::Poisoned)));

    eprintln!("phase: the written records reached the OS all the same");
    assert_eq!(reopen(dir.path()), recs(1, 5));
}

#[test]
fn inline_failed_background_fsync_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open_synced(dir.path());
    wal.faults.fsync_fails_after = Some(0);
    let (log, rx) = start(wal, 5);
    log.append(recs(4, 4)).unwrap();
    let err = first_error(&rx);
    assert!(err.contains("fsync segment"), "{err}");
    assert_refuses_everything(&log, &rx);
    drop(log);
}

#[test]
fn inline_failed_write_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open_synced(dir.path());
    wal.faults.write_fails_after = Some(0);
    let (log, rx) = start(wal, 60_000);
    let err = log.append(recs(4, 5)).unwrap_err();
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
    assert!(first_error(&rx).contains("injected"));
    assert_refuses_everything(&log, &rx);
    assert!(log.shutdown().is_err());
    assert_eq!(reopen(dir.path()), recs(1, 3));
}

#[test]
fn inline_out_of_order_append_does_not_poison() {
    let dir = tempfile::tempdir().unwrap();
    let (log, rx) = start(open_synced(dir.path()), 60_000);
    assert!(matches!(
        log.append(recs(5, 5)),
        Err(WalError::OutOfOrder { .. })
    ));
    assert_eq!(log.append(recs(4, 4)).unwrap(), Lsn(4));
    assert_eq!(log.sync_now().unwrap(), Lsn(4));
    log.shutdown().unwrap();
    assert!(rx.try_iter().all(|p| p.is_ok()));
}
