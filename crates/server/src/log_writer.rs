//! The node's log writer: group commit on its own thread under `fsync = always`, inline writes
//! with a background fsync under `fsync = interval`.
//!
//! Under `interval` a write is acknowledged once the OS has it, so the `write` call is made on
//! the event loop itself, as Redis does with its append-only file: no thread hand-off stands
//! between a round's writes and its replies. Under `always` the fsync would block the event loop,
//! so a writer thread does it and shares it among every write queued meanwhile.

use replikv_core::{LogPosition, Lsn};
use replikv_storage::{GroupCommit, InlineWal, LogRecord, WalError};

/// Either kind of log writer, behind one interface.
pub enum LogWriter {
    /// `fsync = always`: the group-commit thread.
    Group(GroupCommit),
    /// `fsync = interval`: writes on the caller's thread, fsyncs in the background.
    Inline(InlineWal),
}

impl LogWriter {
    /// Hands records to the log. Returns the written LSN when they were written before the
    /// call returned (inline), `None` when a writer thread will report it.
    ///
    /// # Errors
    /// The log refused or failed the write.
    pub fn submit(&self, records: Vec<LogRecord>) -> Result<Option<Lsn>, WalError> {
        match self {
            LogWriter::Group(g) => {
                g.submit(records);
                Ok(None)
            }
            LogWriter::Inline(w) => w.append(records).map(Some),
        }
    }

    /// Blocks until everything handed over so far is fsynced.
    ///
    /// # Errors
    /// The log failed.
    pub fn sync_now(&self) -> Result<Lsn, WalError> {
        match self {
            LogWriter::Group(g) => g.sync_now(),
            LogWriter::Inline(w) => w.sync_now(),
        }
    }

    /// Removes log a snapshot at `lsn` covers, beyond retention.
    ///
    /// # Errors
    /// The log failed.
    pub fn compact(&self, lsn: Lsn) -> Result<usize, WalError> {
        match self {
            LogWriter::Group(g) => g.compact(lsn),
            LogWriter::Inline(w) => w.compact(lsn),
        }
    }

    /// Reads records from LSN `from` on, stopping once their payloads total `bytes_max` (at
    /// least one record when any exists), after everything handed over so far is written.
    /// Goes through the writer (its thread, or its lock): for shipping to replicas prefer a
    /// `LogCursor`, which does not.
    ///
    /// # Errors
    /// `WalError::Compacted` when `from` is no longer kept; the log failed.
    pub fn read_from(&self, from: Lsn, bytes_max: u64) -> Result<Vec<LogRecord>, WalError> {
        match self {
            LogWriter::Group(g) => g.read_from(from, bytes_max),
            LogWriter::Inline(w) => w.read_from(from, bytes_max),
        }
    }

    /// Discards the whole log and continues after the snapshot at `after` (a follower
    /// bootstrapped from a snapshot), once everything handed over before is written. Blocks
    /// until done; the progress callback then reports `written = synced = after.lsn`, which
    /// may be lower than before. Call it only once that snapshot is durable.
    ///
    /// # Errors
    /// The log failed, or was already poisoned.
    pub fn reset(&self, after: LogPosition) -> Result<(), WalError> {
        match self {
            LogWriter::Group(g) => g.reset(after),
            LogWriter::Inline(w) => w.reset(after),
        }
    }

    /// Removes every record after `lsn` and keeps the rest (a deposed leader that comes back
    /// drops the records the new leader never had, after the last one they share), once
    /// everything handed over before is appended; returns how many records were removed.
    /// Blocks until done; the progress callback then reports `written` and `synced` at most
    /// `lsn`, which may be lower than before. Records handed over afterwards must start at
    /// `lsn + 1`. Call it only with `lsn` at or past the snapshot's LSN.
    ///
    /// # Errors
    /// `WalError::TruncateCompacted` when records after `lsn` are no longer kept (a snapshot
    /// covers them; the log is unchanged); the log failed, or was already poisoned.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<usize, WalError> {
        match self {
            LogWriter::Group(g) => g.truncate_after(lsn),
            LogWriter::Inline(w) => w.truncate_after(lsn),
        }
    }

    /// fsyncs of segment files so far.
    pub fn fsync_count(&self) -> u64 {
        match self {
            LogWriter::Group(g) => g.fsync_count(),
            LogWriter::Inline(w) => w.fsync_count(),
        }
    }

    /// Records written so far.
    pub fn records_written(&self) -> u64 {
        match self {
            LogWriter::Group(g) => g.records_written(),
            LogWriter::Inline(w) => w.records_written(),
        }
    }

    /// Syncs everything and stops the writer's threads.
    ///
    /// # Errors
    /// The final sync failed.
    pub fn shutdown(self) -> Result<(), WalError> {
        match self {
            LogWriter::Group(g) => g.shutdown(),
            LogWriter::Inline(w) => w.shutdown(),
        }
    }
}
