//! [`InlineWal`]: the log for `fsync = interval` written on the caller's thread, fsynced by a
//! background thread.
//!
//! [`append`](InlineWal::append) encodes the records and hands them to the OS with one `write`
//! before it returns, holding a mutex only for that. A syncer thread fdatasyncs every
//! `interval_ms` without holding the mutex across the fsync: under the lock it takes the
//! written LSN and a duplicate handle of the active segment ([`File::try_clone`](std::fs::File::try_clone)), releases the
//! lock, fdatasyncs the duplicate, then marks that LSN synced and reports it through
//! `on_progress`. This saves the cross-thread round trip [`GroupCommit`](crate::GroupCommit)
//! pays per write (submit, writer thread, callback, wake the caller), the way Redis writes the
//! AOF inline and fsyncs it from a background thread.
//!
//! Why `synced` is never reported past data that is not on disk: the LSN taken under the lock
//! was written (its `write` returned) before the lock was taken, so the fdatasync of the
//! duplicate handle, issued afterwards on the same open file, covers it; records in older
//! segments were fsynced when the log rolled past them ([`Wal::append`] syncs the full segment
//! before it starts the next one, under the same lock). Syncs and reports are serialized, so
//! reports never go backwards.
//!
//! After the first failed write or fsync the log is poisoned: `on_progress(Err(..))` is called
//! once, and every later call answers [`WalError::Poisoned`]. An fsync is never retried.

use crate::error::WalError;
use crate::group_commit::WalProgress;
use crate::record::LogRecord;
use crate::wal::Wal;
use replikv_core::{LogPosition, Lsn};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The callback progress is reported through.
type ProgressFn = dyn Fn(Result<WalProgress, String>) + Send;

/// The log for `fsync = interval`: appends write on the caller's thread, a background thread
/// fsyncs every `interval_ms`. `Sync`: share it behind an [`Arc`] to append from several
/// threads (appends are serialized; LSNs must still continue the log in call order).
#[derive(Debug)]
pub struct InlineWal {
    shared: Arc<Shared>,
    /// Wakes the syncer for an early fsync; dropping it stops the syncer.
    wake: Option<Sender<()>>,
    syncer: Option<JoinHandle<()>>,
}

/// State shared by callers and the syncer thread.
struct Shared {
    /// Held only to append+write, to take a sync handle, to mark it synced, and (longer) by
    /// `compact`, `read_from`, `reset` and `truncate_after`. Never held across the syncer's
    /// fsync.
    wal: Mutex<Wal>,
    /// Serializes syncs, resets, truncations and progress reports, so `synced` is reported in
    /// order and no sync straddles a reset or a truncation. Taken before `wal` when both are
    /// needed; never taken while holding `wal`.
    reporter: Mutex<Reporter>,
    records_written: AtomicU64,
    fsyncs: AtomicU64,
}

/// The progress callback and what it was last told.
struct Reporter {
    on_progress: Box<ProgressFn>,
    reported: WalProgress,
    /// Set once the failure was reported.
    failed: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("records_written", &self.records_written)
            .field("fsyncs", &self.fsyncs)
            .finish_non_exhaustive()
    }
}

impl InlineWal {
    /// Starts the syncer thread, which fdatasyncs every `interval_ms` when records are written
    /// but not synced. `on_progress` is called with the new `synced` (and the `written` of that
    /// moment) after each fsync, from the syncer thread or from the thread calling
    /// [`sync_now`](InlineWal::sync_now) or [`shutdown`](InlineWal::shutdown); with `Err` once,
    /// from whichever thread meets the failure first. It is not called per append (`append`
    /// returns the written LSN). It must only hand the progress on (a channel send, an atomic
    /// store) and must not call back into this `InlineWal`.
    ///
    /// # Panics
    /// When the OS cannot start a thread.
    pub fn start(
        wal: Wal,
        interval_ms: u64,
        on_progress: Box<dyn Fn(Result<WalProgress, String>) + Send>,
    ) -> InlineWal {
        let reported = WalProgress {
            written: wal.written_lsn(),
            synced: wal.synced_lsn(),
        };
        let stats = wal.stats();
        let shared = Arc::new(Shared {
            wal: Mutex::new(wal),
            reporter: Mutex::new(Reporter {
                on_progress,
                reported,
                failed: false,
            }),
            records_written: AtomicU64::new(stats.records_written),
            fsyncs: AtomicU64::new(stats.fsyncs),
        });
        let (wake, rx) = mpsc::channel();
        let interval = Duration::from_millis(interval_ms.max(1));
        let syncer_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("replikv-wal-sync".to_string())
            .spawn(move || {
                let run =
                    std::panic::AssertUnwindSafe(|| syncer_run(&syncer_shared, &rx, interval));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(panic = %what, "wal syncer panicked");
                    if let Ok(mut reporter) = syncer_shared.reporter.lock() {
                        reporter.fail(&format!("wal syncer panicked: {what}"));
                    }
                }
            });
        #[allow(clippy::expect_used)]
        let syncer = spawned.expect("the OS could not start the wal syncer thread");
        InlineWal {
            shared,
            wake: Some(wake),
            syncer: Some(syncer),
        }
    }

    /// Appends `records` and writes them to the OS before returning (one `write` call, on this
    /// thread); returns the last LSN written. LSNs must continue the log without gaps.
    ///
    /// When the active segment is full this also rolls the log: it fdatasyncs the full
    /// segment and creates the next one (with the directory fsynced) before writing.
    ///
    /// # Errors
    /// [`WalError::OutOfOrder`] or [`WalError::TooLarge`]: nothing was written and the log is
    /// still usable (a bug in the caller). A failed write: the log is poisoned and
    /// `on_progress` gets the error. [`WalError::Poisoned`].
    pub fn append(&self, records: Vec<LogRecord>) -> Result<Lsn, WalError> {
        let result = {
            let mut wal = self.shared.lock_wal()?;
            let result = wal
                .append(&records)
                .and_then(|()| wal.flush())
                .map(|()| wal.written_lsn());
            if result.is_ok() {
                self.shared
                    .records_written
                    .store(wal.stats().records_written, Ordering::Relaxed);
            }
            result.map_err(|e| (e, wal.is_poisoned()))
        };
        match result {
            Ok(lsn) => Ok(lsn),
            Err((e, true)) => {
                // The wal lock is released: the reporter is never taken while holding it.
                self.shared.lock_reporter()?.fail(&e.to_string());
                Err(e)
            }
            Err((e, false)) => Err(e),
        }
    }

    /// Wakes the syncer to fsync now instead of at the end of its interval; returns at once.
    pub fn request_sync(&self) {
        if let Some(wake) = &self.wake {
            // The syncer stops only when this handle is dropped, or after a failure that
            // `on_progress` already reported.
            let _sent = wake.send(());
        }
    }

    /// fsyncs everything appended so far, on this thread; returns the synced LSN.
    ///
    /// # Errors
    /// The fsync failed (the log is poisoned); [`WalError::Poisoned`].
    pub fn sync_now(&self) -> Result<Lsn, WalError> {
        self.shared.sync()
    }

    /// Removes segments wholly covered by a snapshot at `snapshot_lsn`, keeping the newest
    /// `retention_bytes` of log; returns how many segments were removed. Appends wait while it
    /// removes files and fsyncs the directory.
    ///
    /// # Errors
    /// As [`Wal::compact`]; a failure that poisons the log is reported through `on_progress`.
    pub fn compact(&self, snapshot_lsn: Lsn) -> Result<usize, WalError> {
        let result = {
            let mut wal = self.shared.lock_wal()?;
            wal.compact(snapshot_lsn)
                .map_err(|e| (e, wal.is_poisoned()))
        };
        match result {
            Ok(removed) => Ok(removed),
            Err((e, true)) => {
                self.shared.lock_reporter()?.fail(&e.to_string());
                Err(e)
            }
            Err((e, false)) => Err(e),
        }
    }

    /// Reads records from LSN `from` on (everything appended so far is written); see
    /// [`Wal::read_from`]. Appends wait while it reads.
    ///
    /// # Errors
    /// As [`Wal::read_from`]; [`WalError::Poisoned`].
    pub fn read_from(&self, from: Lsn, bytes_max: u64) -> Result<Vec<LogRecord>, WalError> {
        self.shared.lock_wal()?.read_from(from, bytes_max)
    }

    /// Discards the whole log and continues after the snapshot at `after`; see
    /// [`Wal::reset`]. Every append that returned before it was written; appends wait while
    /// it runs. It waits for a sync in progress (the syncer's included), so no fsync of the
    /// discarded log is reported afterwards. Before it returns, `on_progress` is called with
    /// `written = synced = after.lsn` (possibly lower than reported before).
    ///
    /// # Errors
    /// As [`Wal::reset`]; a failure that poisons the log is reported through `on_progress`;
    /// [`WalError::Poisoned`].
    pub fn reset(&self, after: LogPosition) -> Result<(), WalError> {
        // The reporter first, as in a sync: a sync holds it from taking its handle to
        // reporting, so none straddles the reset.
        let mut reporter = self.shared.lock_reporter()?;
        let result = {
            let mut wal = self.shared.lock_wal()?;
            wal.reset(after)
                .map(|()| WalProgress {
                    written: wal.written_lsn(),
                    synced: wal.synced_lsn(),
                })
                .map_err(|e| (e, wal.is_poisoned()))
        };
        match result {
            Ok(progress) => {
                reporter.report_forced(progress);
                Ok(())
            }
            Err((e, true)) => Err(reporter.fail_with(e)),
            Err((e, false)) => Err(e),
        }
    }

    /// Removes every record after `lsn` and keeps the rest; returns how many records were
    /// removed; see [`Wal::truncate_after`]. Every append that returned before it was written;
    /// appends wait while it runs. It waits for a sync in progress (the syncer's included), so
    /// no fsync taken before the truncation is reported after it. Before it returns,
    /// `on_progress` is called with the log's `written` and `synced`, both at most `lsn`
    /// (possibly lower than reported before), even when nothing was removed. Appends
    /// afterwards must start at `lsn + 1`.
    ///
    /// # Errors
    /// As [`Wal::truncate_after`]; a failure that poisons the log is reported through
    /// `on_progress`; [`WalError::Poisoned`].
    pub fn truncate_after(&self, lsn: Lsn) -> Result<usize, WalError> {
        // The reporter first, as in `reset`: a sync holds it from taking its handle to
        // reporting, so none straddles the truncation.
        let mut reporter = self.shared.lock_reporter()?;
        let result = {
            let mut wal = self.shared.lock_wal()?;
            let result = wal.truncate_after(lsn);
            // The cut segment's fsync counts.
            self.shared
                .fsyncs
                .store(wal.stats().fsyncs, Ordering::Relaxed);
            result
                .map(|removed| {
                    let progress = WalProgress {
                        written: wal.written_lsn(),
                        synced: wal.synced_lsn(),
                    };
                    (removed, progress)
                })
                .map_err(|e| (e, wal.is_poisoned()))
        };
        match result {
            Ok((removed, progress)) => {
                reporter.report_forced(progress);
                Ok(removed)
            }
            Err((e, true)) => Err(reporter.fail_with(e)),
            Err((e, false)) => Err(e),
        }
    }

    /// Last LSN handed to the OS.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] when a thread panicked holding the log.
    pub fn written_lsn(&self) -> Result<Lsn, WalError> {
        Ok(self.shared.lock_wal()?.written_lsn())
    }

    /// Last LSN fsynced.
    ///
    /// # Errors
    /// [`WalError::Poisoned`] when a thread panicked holding the log.
    pub fn synced_lsn(&self) -> Result<Lsn, WalError> {
        Ok(self.shared.lock_wal()?.synced_lsn())
    }

    /// fsyncs of segment files so far (the syncer's, `sync_now`'s and those of rolls).
    #[must_use]
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Records written to the OS so far.
    #[must_use]
    pub fn records_written(&self) -> u64 {
        self.shared.records_written.load(Ordering::Relaxed)
    }

    /// Stops the syncer thread and syncs everything.
    ///
    /// # Errors
    /// The final sync failed; [`WalError::Poisoned`].
    pub fn shutdown(mut self) -> Result<(), WalError> {
        self.syncer_stop();
        self.shared.sync().map(|_| ())
    }

    /// Stops the syncer thread (once) and waits for it.
    fn syncer_stop(&mut self) {
        drop(self.wake.take());
        if let Some(syncer) = self.syncer.take() {
            // A panic was already reported through `on_progress`.
            let _joined = syncer.join();
        }
    }
}

impl Drop for InlineWal {
    /// Dropped without [`shutdown`](InlineWal::shutdown): stops the syncer and leaves the log
    /// synced all the same (a failure was already reported through `on_progress`).
    fn drop(&mut self) {
        if self.syncer.is_some() {
            self.syncer_stop();
            if let Err(error) = self.shared.sync() {
                tracing::warn!(%error, "final wal sync at drop failed");
            }
        }
    }
}

/// The syncer thread: fsyncs every `interval`, or when woken; stops when the [`InlineWal`] is
/// dropped or after a failure.
fn syncer_run(shared: &Shared, rx: &Receiver<()>, interval: Duration) {
    let mut due = Instant::now() + interval;
    loop {
        match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => due = Instant::now() + interval,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if shared.sync().is_err() {
            // Reported through `on_progress`; every later sync would fail the same way.
            return;
        }
    }
}

impl Shared {
    /// The log; [`WalError::Poisoned`] when a thread panicked holding it.
    fn lock_wal(&self) -> Result<MutexGuard<'_, Wal>, WalError> {
        self.wal.lock().map_err(|_| WalError::Poisoned)
    }

    fn lock_reporter(&self) -> Result<MutexGuard<'_, Reporter>, WalError> {
        self.reporter.lock().map_err(|_| WalError::Poisoned)
    }

    /// fsyncs everything written so far without holding the log across the fsync, then
    /// reports progress. Returns the synced LSN.
    fn sync(&self) -> Result<Lsn, WalError> {
        let mut reporter = self.lock_reporter()?;
        let handle = self.lock_wal()?.sync_handle();
        let handle = match handle {
            Ok(handle) => handle,
            Err(e) => return Err(reporter.fail_with(e)),
        };
        let progress = match handle {
            None => {
                let wal = self.lock_wal()?;
                WalProgress {
                    written: wal.written_lsn(),
                    synced: wal.synced_lsn(),
                }
            }
            Some(mut handle) => {
                // The fsync: appends go on meanwhile.
                let result = handle.sync();
                let mut wal = self.lock_wal()?;
                let done = wal.sync_handle_done(&handle, result);
                self.fsyncs.store(wal.stats().fsyncs, Ordering::Relaxed);
                let progress = WalProgress {
                    written: wal.written_lsn(),
                    synced: wal.synced_lsn(),
                };
                drop(wal);
                if let Err(e) = done {
                    return Err(reporter.fail_with(e));
                }
                progress
            }
        };
        reporter.report(progress);
        Ok(progress.synced)
    }
}

impl Reporter {
    /// Reports `error` as the failure, the first time only.
    fn fail(&mut self, error: &str) {
        if self.failed {
            return;
        }
        tracing::error!(%error, "inline wal failed; refusing further writes");
        self.failed = true;
        (self.on_progress)(Err(error.to_string()));
    }

    /// Reports `error` when it is news and passes it on; [`WalError::Poisoned`] passes through
    /// unreported when the failure was already reported.
    fn fail_with(&mut self, error: WalError) -> WalError {
        if matches!(error, WalError::Poisoned) && self.failed {
            return error;
        }
        self.fail(&error.to_string());
        error
    }

    /// Reports the progress after a reset or a truncation: always, and although it may go
    /// backwards.
    fn report_forced(&mut self, now: WalProgress) {
        if self.failed {
            return;
        }
        self.reported = now;
        (self.on_progress)(Ok(now));
    }

    /// Reports progress when it moved since the last report.
    fn report(&mut self, now: WalProgress) {
        if self.failed || now == self.reported {
            return;
        }
        debug_assert!(
            now.synced >= self.reported.synced,
            "synced reported out of order"
        );
        self.reported = now;
        (self.on_progress)(Ok(now));
    }
}
