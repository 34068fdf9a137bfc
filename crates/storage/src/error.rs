//! [`WalError`]: every failure of the log, the group-commit writer and snapshots.

use replikv_core::{LogPosition, Lsn};
use std::path::{Path, PathBuf};

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
    /// A snapshot file is truncated or fails a checksum.
    #[error("corrupt snapshot {file} at offset {offset}: {reason}")]
    SnapshotCorrupt {
        /// The snapshot file.
        file: PathBuf,
        /// Byte offset of the bad header, chunk or footer.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Appended records do not continue the log: the LSN is not the next one or the epoch went
    /// down. A bug in the caller; nothing was written.
    #[error(
        "record {found} does not continue the log: expected lsn {expected_lsn} at epoch >= {last}"
    )]
    OutOfOrder {
        /// The last record in the log.
        last: LogPosition,
        /// The LSN the next record must have.
        expected_lsn: Lsn,
        /// The offending record.
        found: LogPosition,
    },
    /// A record payload or snapshot chunk is larger than the format allows. Nothing was written.
    #[error("{what} of {len} bytes exceeds the maximum {max}")]
    TooLarge {
        /// "record payload" or "snapshot chunk".
        what: &'static str,
        /// Its length.
        len: u64,
        /// The maximum.
        max: u64,
    },
    /// The requested records were removed by compaction; the reader needs a snapshot.
    #[error("lsn {requested} was compacted away; the log now starts at {first}")]
    Compacted {
        /// The first LSN asked for.
        requested: Lsn,
        /// The first LSN the log still holds.
        first: Lsn,
    },
    /// [`Wal::truncate_after`](crate::Wal::truncate_after) would have to remove records the
    /// log no longer holds: some record after `lsn` was compacted away, or lies in a gap a
    /// snapshot covers. Those records are in a snapshot, so they were applied and cannot be
    /// taken back by truncating the log. Nothing was removed.
    #[error(
        "cannot truncate the log back to lsn {lsn}: records after it were compacted away or a \
         snapshot covers them; the log can be truncated back to lsn {lsn_min} at the earliest"
    )]
    TruncateCompacted {
        /// The LSN asked to truncate back to.
        lsn: Lsn,
        /// The lowest LSN the log can be truncated back to: every record from `lsn_min + 1` to
        /// the end of the log is held, without gaps.
        lsn_min: Lsn,
    },
    /// The group-commit thread is gone (it panicked, or was shut down).
    #[error("the group-commit writer thread has stopped")]
    WriterStopped,
}

impl WalError {
    /// Wraps an I/O error with the operation and file.
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A corrupt-log error.
    pub(crate) fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> WalError {
        WalError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// A corrupt-snapshot error.
    pub(crate) fn snapshot_corrupt(
        file: &Path,
        offset: u64,
        reason: impl Into<String>,
    ) -> WalError {
        WalError::SnapshotCorrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}
