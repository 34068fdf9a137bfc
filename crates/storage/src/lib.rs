//! replikv's storage: the write-ahead log and snapshots. (Skeleton: the helper implementing this
//! crate replaces the bodies and may split it into modules; the public signatures below are the
//! contract the server is written against.)
#![deny(missing_docs)]

use bytes::Bytes;
use replikv_core::{LogPosition, Lsn};
use std::path::{Path, PathBuf};

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync before a write is acknowledged (group commit shares one fsync among writers).
    Always,
    /// fsync every this many milliseconds; writes are acknowledged once written to the OS.
    IntervalMs(u64),
}

/// Where and how the log is kept.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Directory holding the segment files.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes_max: u64,
    /// Bytes of log kept even when a snapshot covers them (for replicas that need them later).
    pub retention_bytes: u64,
}

/// One log record: its position and opaque payload (an encoded `replikv_core::Command`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// `(epoch, lsn)` of the record.
    pub pos: LogPosition,
    /// The encoded command.
    pub payload: Bytes,
}

/// What opening the log found.
#[derive(Debug)]
pub struct Recovery {
    /// Records after the LSN passed to [`Wal::open`], in order.
    pub records: Vec<LogRecord>,
    /// Position of the last valid record in the log (or the `after` position when none).
    pub last: LogPosition,
    /// Set when a torn last record was found and truncated.
    pub torn_tail: Option<TornTail>,
}

/// A torn tail that recovery truncated.
#[derive(Debug, Clone)]
pub struct TornTail {
    /// The segment file.
    pub file: PathBuf,
    /// Offset where the bad record started (the file now ends here).
    pub offset: u64,
    /// Bytes dropped.
    pub bytes_dropped: u64,
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record that is not the last one fails its checksum or is malformed.
    #[error("corrupt log record in {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier fsync failed; the log refuses further writes.
    #[error("log is poisoned by an earlier I/O failure")]
    Poisoned,
}

/// The segmented, checksummed write-ahead log. Synchronous; one owner.
#[derive(Debug)]
pub struct Wal {}

impl Wal {
    /// Opens (creating if needed) the log in `opts.dir`, truncating a torn tail, and returns the
    /// records after `after` (the LSN the loaded snapshot covers).
    ///
    /// # Errors
    /// I/O failure, or corruption anywhere but the tail (the error names file and offset).
    pub fn open(_opts: WalOptions, _after: Lsn) -> Result<(Wal, Recovery), WalError> {
        todo!()
    }
}

/// Progress reported by the group-commit thread after each batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalProgress {
    /// Last LSN handed to the OS (`write` returned).
    pub written: Lsn,
    /// Last LSN known to be on disk (`fsync` returned).
    pub synced: Lsn,
}

/// The group-commit writer: a thread that owns the [`Wal`], takes batches of records from any
/// number of submitters, writes them together and shares one fsync among them.
pub struct GroupCommit {}

impl GroupCommit {
    /// Starts the writer thread. `on_progress` is called from that thread after every batch
    /// (with `Err` once, when the log fails and becomes poisoned).
    pub fn start(
        _wal: Wal,
        _policy: FsyncPolicy,
        _on_progress: Box<dyn Fn(Result<WalProgress, String>) + Send>,
    ) -> GroupCommit {
        todo!()
    }

    /// Queues records for writing; returns at once. LSNs must continue the log without gaps.
    pub fn submit(&self, _records: Vec<LogRecord>) {
        todo!()
    }

    /// Blocks until everything submitted so far is fsynced.
    ///
    /// # Errors
    /// The log failed.
    pub fn sync_now(&self) -> Result<Lsn, WalError> {
        todo!()
    }

    /// Removes segments wholly covered by a snapshot at `snapshot_lsn`, keeping the newest
    /// `retention_bytes` of log; returns how many segments were removed.
    ///
    /// # Errors
    /// The log failed.
    pub fn compact(&self, _snapshot_lsn: Lsn) -> Result<usize, WalError> {
        todo!()
    }

    /// Syncs everything and stops the thread.
    ///
    /// # Errors
    /// The final sync failed.
    pub fn shutdown(self) -> Result<(), WalError> {
        todo!()
    }
}

/// Identity of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The log position the snapshot is consistent at (it reflects every entry up to it).
    pub pos: LogPosition,
    /// When it was taken (Unix ms).
    pub created_unix_ms: u64,
}

/// Writes a snapshot as a sequence of chunks to a temporary file; `finish` fsyncs, renames and
/// fsyncs the directory.
pub struct SnapshotWriter {}

impl SnapshotWriter {
    /// Starts a snapshot file in `dir`.
    ///
    /// # Errors
    /// I/O failure.
    pub fn create(_dir: &Path, _meta: SnapshotMeta) -> Result<SnapshotWriter, WalError> {
        todo!()
    }

    /// Appends one chunk (an opaque, self-contained piece of the state).
    ///
    /// # Errors
    /// I/O failure.
    pub fn write_chunk(&mut self, _chunk: &[u8]) -> Result<(), WalError> {
        todo!()
    }

    /// Completes the snapshot atomically and removes older snapshots; returns its path.
    ///
    /// # Errors
    /// I/O failure.
    pub fn finish(self) -> Result<PathBuf, WalError> {
        todo!()
    }
}

/// Reads the newest complete snapshot in a directory, chunk by chunk, checking every checksum.
pub struct SnapshotReader {}

impl SnapshotReader {
    /// Opens the newest snapshot in `dir`, or `None` when there is none.
    ///
    /// # Errors
    /// I/O failure or a corrupt header (naming the file).
    pub fn open_latest(_dir: &Path) -> Result<Option<SnapshotReader>, WalError> {
        todo!()
    }

    /// The snapshot's identity.
    #[must_use]
    pub fn meta(&self) -> SnapshotMeta {
        todo!()
    }

    /// The next chunk, or `None` at the (verified) end.
    ///
    /// # Errors
    /// I/O failure or a corrupt chunk (naming file and offset).
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, WalError> {
        todo!()
    }
}
