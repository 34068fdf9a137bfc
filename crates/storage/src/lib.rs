//! replikv's storage: the write-ahead log, group commit, snapshots and retention.
//!
//! - [`Wal`] ([`wal`]): the log in segment files named by their first LSN, every record
//!   checksummed with CRC32C, each created at full size and zero-filled ahead of time
//!   ([`WalOptions::preallocate`]); [`Wal::open`] replays it, zeroing a torn tail ([`recovery`]
//!   states the rule) and refusing corruption anywhere else.
//! - [`GroupCommit`] ([`group_commit`]): a writer thread owning the [`Wal`] that shares one
//!   fsync among every batch queued meanwhile, per [`FsyncPolicy`].
//! - [`InlineWal`] ([`inline_wal`]): for `fsync = interval`, appends written on the caller's
//!   thread and fsynced every interval by a background thread, without the writer-thread
//!   round trip.
//! - [`LogCursor`] ([`log_cursor`]): reads the log directory beside the writer, batch by
//!   batch up to an LSN the writer reported written, for shipping records to replicas.
//! - [`decode_record`] / [`encode_record`] ([`record`]): the record codec, also fuzzed.
//! - [`SnapshotWriter`] / [`SnapshotReader`]: snapshot files written atomically and read with
//!   every chunk checked.
//! - Retention: [`Wal::compact`] drops segments a snapshot covers, keeping
//!   [`WalOptions::retention_bytes`] of log for replicas. [`Wal::reset`] discards the whole
//!   log for a follower bootstrapped from a snapshot; [`Wal::truncate_after`] drops the
//!   records after a position, for a deposed leader that comes back and follows.
//!
//! Byte layouts are in `docs/design/wal.md`.
//!
//! ```
//! use bytes::Bytes;
//! use replikv_core::{Epoch, LogPosition, Lsn};
//! use replikv_storage::{LogRecord, Wal, WalOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let opts = WalOptions::new(dir.path(), 1 << 20, 0);
//! let (mut wal, recovery) = Wal::open(opts.clone(), Lsn::ZERO)?;
//! assert!(recovery.records.is_empty());
//! let record = LogRecord {
//!     pos: LogPosition { epoch: Epoch(1), lsn: Lsn(1) },
//!     payload: Bytes::from_static(b"SET k v"),
//! };
//! wal.append(std::slice::from_ref(&record))?;
//! wal.sync()?;
//! drop(wal);
//!
//! let (_wal, recovery) = Wal::open(opts, Lsn::ZERO)?;
//! assert_eq!(recovery.records, vec![record]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod error;
mod fs_util;
pub mod group_commit;
pub mod inline_wal;
#[cfg(test)]
mod inline_wal_test;
pub mod log_cursor;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod snapshot_meta;
pub mod snapshot_reader;
pub mod snapshot_writer;
mod spare;
pub mod stats;
pub mod wal;
#[cfg(test)]
mod wal_test;
#[cfg(test)]
mod wal_truncate_test;

pub use error::WalError;
pub use group_commit::{FsyncPolicy, GroupCommit, WalProgress, GROUP_COMMIT_DRAIN_MAX};
pub use inline_wal::InlineWal;
pub use log_cursor::{LogCursor, LOG_CURSOR_BATCH_RECORDS_MAX};
pub use record::{
    decode_record, encode_record, LogRecord, RecordError, RECORD_HEADER_BYTES,
    RECORD_PAYLOAD_BYTES_MAX,
};
pub use recovery::{Recovery, TornTail};
pub use segment::{SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC};
pub use snapshot_meta::{SnapshotMeta, SNAPSHOT_CHUNK_BYTES_MAX};
pub use snapshot_reader::SnapshotReader;
pub use snapshot_writer::SnapshotWriter;
pub use spare::PREALLOCATE_BYTES_MAX;
pub use stats::{GroupCommitStats, WalStats};
pub use wal::{Wal, WalOptions, WRITE_BUFFER_BYTES_MAX};
