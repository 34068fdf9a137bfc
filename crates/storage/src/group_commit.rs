//! [`GroupCommit`]: a writer thread that owns the [`Wal`] and shares one fsync among every
//! batch queued while the previous one was being written.
//!
//! The thread's loop: block for the first request, drain whatever else is queued (at most
//! [`GROUP_COMMIT_DRAIN_MAX`] requests), append every batch, write them with one `write` call,
//! then per [`FsyncPolicy`] fsync once and report through `on_progress`. Control requests
//! (`sync_now`, `compact`, `read_from`, `reset`, `truncate_after`, `shutdown`) travel the same
//! queue, so each sees every batch submitted before it.
//!
//! After the first failure (I/O, or a batch that does not continue the log) the writer calls
//! `on_progress(Err(..))` once and then refuses everything: batches are dropped and requests
//! answer [`WalError::Poisoned`].

use crate::error::WalError;
use crate::record::LogRecord;
use crate::stats::GroupCommitStats;
use crate::wal::Wal;
use replikv_core::{LogPosition, Lsn};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests the writer takes from its queue in one round before it writes and fsyncs. Bounds
/// the latency one round adds to the first batch in it.
pub const GROUP_COMMIT_DRAIN_MAX: usize = 1024;

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before a write is acknowledged (group commit shares one fsync among writers).
    Always,
    /// fsync every this many milliseconds; writes are acknowledged once written to the OS.
    IntervalMs(u64),
}

/// Progress reported by the group-commit thread after each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalProgress {
    /// Last LSN handed to the OS (`write` returned).
    pub written: Lsn,
    /// Last LSN known to be on disk (`fsync` returned).
    pub synced: Lsn,
}

/// The callback the writer reports progress through.
type ProgressFn = dyn Fn(Result<WalProgress, String>) + Send;

/// A request to the writer thread.
enum Request {
    Append(Vec<LogRecord>),
    Sync(Sender<Result<Lsn, WalError>>),
    Compact(Lsn, Sender<Result<usize, WalError>>),
    Read {
        from: Lsn,
        bytes_max: u64,
        reply: Sender<Result<Vec<LogRecord>, WalError>>,
    },
    Reset(LogPosition, Sender<Result<(), WalError>>),
    TruncateAfter(Lsn, Sender<Result<usize, WalError>>),
    Shutdown(Sender<Result<(), WalError>>),
}

/// Counters shared between the writer thread and [`GroupCommit::stats`].
#[derive(Debug, Default)]
struct Counters {
    batches_submitted: AtomicU64,
    batches_written: AtomicU64,
    records_written: AtomicU64,
    group_writes: AtomicU64,
    fsyncs: AtomicU64,
}

/// The group-commit writer: a thread that owns the [`Wal`], takes batches of records from any
/// number of submitters, writes them together and shares one fsync among them.
///
/// The queue is unbounded so that [`submit`](GroupCommit::submit) never blocks; the caller
/// bounds the writes it has in flight (queue depth is
/// `batches_submitted - batches_written` in [`stats`](GroupCommit::stats)).
#[derive(Debug)]
pub struct GroupCommit {
    tx: Sender<Request>,
    thread: JoinHandle<()>,
    counters: Arc<Counters>,
}

impl GroupCommit {
    /// Starts the writer thread. `on_progress` is called from that thread after every batch
    /// (with `Err` once, when the log fails and becomes poisoned). It runs on the writer's
    /// critical path: it should only hand the progress on (a channel send, an atomic store).
    ///
    /// # Panics
    /// When the OS cannot start a thread.
    pub fn start(
        wal: Wal,
        policy: FsyncPolicy,
        on_progress: Box<dyn Fn(Result<WalProgress, String>) + Send>,
    ) -> GroupCommit {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let reported = WalProgress {
            written: wal.written_lsn(),
            synced: wal.synced_lsn(),
        };
        let mut writer = Writer {
            wal,
            policy,
            rx,
            counters: Arc::clone(&counters),
            failed: false,
            last_fsync: Instant::now(),
            reported,
        };
        let spawned = std::thread::Builder::new()
            .name("replikv-wal".to_string())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| writer.run(&*on_progress));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(panic = %what, "group-commit writer panicked");
                    on_progress(Err(format!("group-commit writer panicked: {what}")));
                }
            });
        #[allow(clippy::expect_used)]
        let thread = spawned.expect("the OS could not start the group-commit writer thread");
        GroupCommit {
            tx,
            thread,
            counters,
        }
    }

    /// Queues records for writing; returns at once. LSNs must continue the log without gaps.
    ///
    /// A batch that does not continue the log fails the writer: `on_progress` gets the error.
    pub fn submit(&self, records: Vec<LogRecord>) {
        self.counters
            .batches_submitted
            .fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Request::Append(records)).is_err() {
            // The writer has already reported its panic through `on_progress`; nothing else can
            // be told here.
            tracing::error!("group-commit writer is gone; batch dropped");
        }
    }

    /// Blocks until everything submitted so far is fsynced; returns the synced LSN.
    ///
    /// # Errors
    /// The log failed.
    pub fn sync_now(&self) -> Result<Lsn, WalError> {
        self.call(Request::Sync)
    }

    /// Removes segments wholly covered by a snapshot at `snapshot_lsn`, keeping the newest
    /// `retention_bytes` of log; returns how many segments were removed.
    ///
    /// # Errors
    /// The log failed.
    pub fn compact(&self, snapshot_lsn: Lsn) -> Result<usize, WalError> {
        self.call(|reply| Request::Compact(snapshot_lsn, reply))
    }

    /// Reads records from LSN `from` on, after everything submitted so far is written; see
    /// [`Wal::read_from`].
    ///
    /// # Errors
    /// As [`Wal::read_from`]; [`WalError::Poisoned`] once the writer failed.
    pub fn read_from(&self, from: Lsn, bytes_max: u64) -> Result<Vec<LogRecord>, WalError> {
        self.call(|reply| Request::Read {
            from,
            bytes_max,
            reply,
        })
    }

    /// Discards the whole log and continues after the snapshot at `after`; see
    /// [`Wal::reset`]. Runs on the writer thread once every batch submitted before it is
    /// written, and blocks until done. Before it returns, `on_progress` is called with
    /// `written = synced = after.lsn` (possibly lower than reported before). Batches submitted
    /// afterwards must start at `after.lsn + 1`.
    ///
    /// # Errors
    /// As [`Wal::reset`]; a failure that poisons the log is reported through `on_progress`;
    /// [`WalError::Poisoned`] once the writer failed.
    pub fn reset(&self, after: LogPosition) -> Result<(), WalError> {
        self.call(|reply| Request::Reset(after, reply))
    }

    /// Removes every record after `lsn` and keeps the rest; returns how many records were
    /// removed; see [`Wal::truncate_after`]. Runs on the writer thread once every batch
    /// submitted before it is appended (their records past `lsn` are removed too, without
    /// being written when they were still buffered), and blocks until done. Before it returns,
    /// `on_progress` is called with the log's `written` and `synced`, both at most `lsn`
    /// (possibly lower than reported before), even when nothing was removed. Batches submitted
    /// afterwards must start at `lsn + 1`.
    ///
    /// # Errors
    /// As [`Wal::truncate_after`]; a failure that poisons the log is reported through
    /// `on_progress`; [`WalError::Poisoned`] once the writer failed.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<usize, WalError> {
        self.call(|reply| Request::TruncateAfter(lsn, reply))
    }

    /// Counters for metrics.
    #[must_use]
    pub fn stats(&self) -> GroupCommitStats {
        let c = &self.counters;
        GroupCommitStats {
            batches_submitted: c.batches_submitted.load(Ordering::Relaxed),
            batches_written: c.batches_written.load(Ordering::Relaxed),
            records_written: c.records_written.load(Ordering::Relaxed),
            group_writes: c.group_writes.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// fsyncs of segment files so far.
    #[must_use]
    pub fn fsync_count(&self) -> u64 {
        self.counters.fsyncs.load(Ordering::Relaxed)
    }

    /// Records written to the OS so far.
    #[must_use]
    pub fn records_written(&self) -> u64 {
        self.counters.records_written.load(Ordering::Relaxed)
    }

    /// Syncs everything and stops the thread.
    ///
    /// # Errors
    /// The final sync failed.
    pub fn shutdown(self) -> Result<(), WalError> {
        let result = self.call(Request::Shutdown);
        // The writer returns right after answering; a panic was already reported.
        let _joined = self.thread.join();
        result
    }

    /// Sends a request with a reply channel and waits for the answer.
    fn call<T>(
        &self,
        make: impl FnOnce(Sender<Result<T, WalError>>) -> Request,
    ) -> Result<T, WalError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .send(make(reply_tx))
            .map_err(|_| WalError::WriterStopped)?;
        reply_rx.recv().map_err(|_| WalError::WriterStopped)?
    }
}

/// The state of the writer thread.
struct Writer {
    wal: Wal,
    policy: FsyncPolicy,
    rx: Receiver<Request>,
    counters: Arc<Counters>,
    /// Set at the first failure; from then on everything is refused.
    failed: bool,
    last_fsync: Instant,
    /// The progress last reported.
    reported: WalProgress,
}

/// What waiting for the next request produced.
enum Next {
    Request(Request),
    /// The fsync interval passed with unsynced records.
    Timeout,
    /// Every [`GroupCommit`] handle is gone.
    Disconnected,
}

impl Writer {
    fn run(&mut self, on_progress: &ProgressFn) {
        loop {
            let first = match self.run_wait() {
                Next::Request(request) => request,
                Next::Timeout => {
                    self.run_fsync_if_due(on_progress);
                    continue;
                }
                Next::Disconnected => {
                    // Dropped without `shutdown`: leave the log synced all the same.
                    let _result = self.on_sync(on_progress);
                    return;
                }
            };
            let mut batch = Vec::with_capacity(16);
            batch.push(first);
            while batch.len() < GROUP_COMMIT_DRAIN_MAX {
                match self.rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let writes_before = self.wal.stats().writes;
            let mut shutdown = None;
            for request in batch {
                match request {
                    Request::Append(records) => self.on_append(&records, on_progress),
                    Request::Sync(reply) => {
                        // The requester may have gone away; then nobody needs the answer.
                        let _sent = reply.send(self.on_sync(on_progress));
                    }
                    Request::Compact(lsn, reply) => {
                        let _sent = reply.send(self.on_compact(lsn, on_progress));
                    }
                    Request::Read {
                        from,
                        bytes_max,
                        reply,
                    } => {
                        let _sent = reply.send(self.on_read(from, bytes_max, on_progress));
                    }
                    Request::Reset(after, reply) => {
                        let _sent = reply.send(self.on_reset(after, on_progress));
                    }
                    Request::TruncateAfter(lsn, reply) => {
                        let _sent = reply.send(self.on_truncate_after(lsn, on_progress));
                    }
                    Request::Shutdown(reply) => {
                        // `shutdown` consumes the only handle, so nothing follows it.
                        shutdown = Some(reply);
                    }
                }
            }
            self.run_write(on_progress);
            if self.wal.stats().writes > writes_before {
                self.counters.group_writes.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(reply) = shutdown {
                let result = self.on_sync(on_progress).map(|_| ());
                let _sent = reply.send(result);
                return;
            }
        }
    }

    /// Blocks for the next request; with an fsync interval and unsynced records, only until
    /// the interval is up.
    fn run_wait(&self) -> Next {
        let dirty = self.wal.synced_lsn() < self.wal.written_lsn();
        match self.policy {
            FsyncPolicy::IntervalMs(ms) if dirty && !self.failed => {
                let due = self.last_fsync + Duration::from_millis(ms);
                match self
                    .rx
                    .recv_timeout(due.saturating_duration_since(Instant::now()))
                {
                    Ok(request) => Next::Request(request),
                    Err(RecvTimeoutError::Timeout) => Next::Timeout,
                    Err(RecvTimeoutError::Disconnected) => Next::Disconnected,
                }
            }
            _ => match self.rx.recv() {
                Ok(request) => Next::Request(request),
                Err(_) => Next::Disconnected,
            },
        }
    }

    /// Writes what this round appended and fsyncs per policy, reporting progress.
    fn run_write(&mut self, on_progress: &ProgressFn) {
        if self.failed {
            return;
        }
        if let Err(e) = self.wal.flush() {
            self.fail(&e, on_progress);
            return;
        }
        match self.policy {
            FsyncPolicy::Always => {
                if let Err(e) = self.wal_sync() {
                    self.fail(&e, on_progress);
                    return;
                }
                self.report(on_progress);
            }
            FsyncPolicy::IntervalMs(_) => {
                self.report(on_progress);
                self.run_fsync_if_due(on_progress);
            }
        }
    }

    /// With an fsync interval: fsyncs when it has passed since the last fsync.
    fn run_fsync_if_due(&mut self, on_progress: &ProgressFn) {
        let FsyncPolicy::IntervalMs(ms) = self.policy else {
            return;
        };
        if self.failed || self.last_fsync.elapsed() < Duration::from_millis(ms) {
            return;
        }
        if let Err(e) = self.wal_sync() {
            self.fail(&e, on_progress);
            return;
        }
        self.report(on_progress);
    }

    fn on_append(&mut self, records: &[LogRecord], on_progress: &ProgressFn) {
        if self.failed {
            return;
        }
        if let Err(e) = self.wal.append(records) {
            self.fail(&e, on_progress);
            return;
        }
        self.counters
            .batches_written
            .fetch_add(1, Ordering::Relaxed);
        self.publish_counters();
    }

    fn on_sync(&mut self, on_progress: &ProgressFn) -> Result<Lsn, WalError> {
        if self.failed {
            return Err(WalError::Poisoned);
        }
        match self.wal_sync() {
            Ok(()) => {
                self.report(on_progress);
                Ok(self.wal.synced_lsn())
            }
            Err(e) => Err(self.fail(&e, on_progress).unwrap_or(e)),
        }
    }

    fn on_compact(&mut self, lsn: Lsn, on_progress: &ProgressFn) -> Result<usize, WalError> {
        if self.failed {
            return Err(WalError::Poisoned);
        }
        let result = self.wal.compact(lsn);
        if let Err(e) = &result {
            if self.wal.is_poisoned() {
                self.fail(e, on_progress);
            }
        }
        result
    }

    fn on_read(
        &mut self,
        from: Lsn,
        bytes_max: u64,
        on_progress: &ProgressFn,
    ) -> Result<Vec<LogRecord>, WalError> {
        if self.failed {
            return Err(WalError::Poisoned);
        }
        if let Err(e) = self.wal.flush() {
            return Err(self.fail(&e, on_progress).unwrap_or(e));
        }
        self.report(on_progress);
        self.wal.read_from(from, bytes_max)
    }

    fn on_reset(&mut self, after: LogPosition, on_progress: &ProgressFn) -> Result<(), WalError> {
        if self.failed {
            return Err(WalError::Poisoned);
        }
        // Batches queued before the reset were appended this round; write them first, as for
        // any other control request (the reset then removes them with the rest).
        if let Err(e) = self.wal.flush() {
            return Err(self.fail(&e, on_progress).unwrap_or(e));
        }
        if let Err(e) = self.wal.reset(after) {
            if self.wal.is_poisoned() {
                self.fail(&e, on_progress);
            }
            return Err(e);
        }
        self.report_forced(on_progress);
        Ok(())
    }

    fn on_truncate_after(&mut self, lsn: Lsn, on_progress: &ProgressFn) -> Result<usize, WalError> {
        if self.failed {
            return Err(WalError::Poisoned);
        }
        // Unlike a reset, batches queued before are not written first: the truncation drops
        // their records past `lsn` from the buffer, and the rest are written with the round.
        let removed = match self.wal.truncate_after(lsn) {
            Ok(removed) => removed,
            Err(e) => {
                if self.wal.is_poisoned() {
                    self.fail(&e, on_progress);
                }
                return Err(e);
            }
        };
        self.report_forced(on_progress);
        Ok(removed)
    }

    /// Syncs the log and notes when.
    fn wal_sync(&mut self) -> Result<(), WalError> {
        let result = self.wal.sync();
        self.last_fsync = Instant::now();
        self.publish_counters();
        result
    }

    /// Enters the failed state, reporting `error` the first time. Returns
    /// `Some(WalError::Poisoned)` when the writer had already failed (then `error` is a
    /// consequence, not news).
    fn fail(&mut self, error: &WalError, on_progress: &ProgressFn) -> Option<WalError> {
        if self.failed {
            return Some(WalError::Poisoned);
        }
        tracing::error!(%error, "group-commit writer failed; refusing further writes");
        self.failed = true;
        on_progress(Err(error.to_string()));
        None
    }

    /// Reports progress after a reset or a truncation: even when unchanged, and although it
    /// may go backwards, so the caller learns the new positions before the call returns.
    fn report_forced(&mut self, on_progress: &ProgressFn) {
        self.publish_counters();
        self.reported = WalProgress {
            written: self.wal.written_lsn(),
            synced: self.wal.synced_lsn(),
        };
        on_progress(Ok(self.reported));
    }

    /// Reports progress when it moved since the last report.
    fn report(&mut self, on_progress: &ProgressFn) {
        self.publish_counters();
        let now = WalProgress {
            written: self.wal.written_lsn(),
            synced: self.wal.synced_lsn(),
        };
        if now != self.reported {
            self.reported = now;
            on_progress(Ok(now));
        }
    }

    fn publish_counters(&self) {
        let stats = self.wal.stats();
        self.counters
            .records_written
            .store(stats.records_written, Ordering::Relaxed);
        self.counters.fsyncs.store(stats.fsyncs, Ordering::Relaxed);
    }
}
