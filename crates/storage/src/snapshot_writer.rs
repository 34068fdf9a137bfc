//! [`SnapshotWriter`]: writes a snapshot to a temporary file and installs it atomically.

use crate::error::WalError;
use crate::fs_util::{ensure_dir, fsync_dir};
use crate::snapshot_meta::{
    chunk_crc, encode_snapshot_header, parse_snapshot_file_name, snapshot_file_name,
    snapshot_temp_file_name, SnapshotFileKind, SnapshotMeta, SNAPSHOT_CHUNK_BYTES_MAX,
    SNAPSHOT_END_MARKER, SNAPSHOT_FOOTER_MAGIC,
};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes a snapshot as a sequence of chunks to a temporary file; `finish` fsyncs, renames and
/// fsyncs the directory.
///
/// Dropping it without `finish` leaves the `.tmp` file behind; [`SnapshotReader::open_latest`]
/// ignores it and the next `finish` in the directory removes it.
///
/// [`SnapshotReader::open_latest`]: crate::SnapshotReader::open_latest
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    temp_path: PathBuf,
    meta: SnapshotMeta,
    out: BufWriter<File>,
    /// Chunks written so far.
    chunk_count: u64,
    /// CRC32C of every byte written so far; the footer stores it.
    file_crc: u32,
    /// Set after a failed write: the file is unusable and `finish` refuses.
    failed: bool,
}

impl SnapshotWriter {
    /// Starts a snapshot file in `dir` (created when missing).
    ///
    /// # Errors
    /// I/O failure.
    pub fn create(dir: &Path, meta: SnapshotMeta) -> Result<SnapshotWriter, WalError> {
        ensure_dir(dir)?;
        let temp_path = dir.join(snapshot_temp_file_name(meta.pos.lsn));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .map_err(|e| WalError::io("create snapshot", &temp_path, e))?;
        let mut writer = SnapshotWriter {
            dir: dir.to_path_buf(),
            temp_path,
            meta,
            out: BufWriter::with_capacity(1 << 20, file),
            chunk_count: 0,
            file_crc: 0,
            failed: false,
        };
        writer.put(&encode_snapshot_header(&meta))?;
        Ok(writer)
    }

    /// The identity of the snapshot being written.
    #[must_use]
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// Appends one chunk (an opaque, self-contained piece of the state).
    ///
    /// # Errors
    /// [`WalError::TooLarge`] past [`SNAPSHOT_CHUNK_BYTES_MAX`] (nothing written); I/O failure
    /// (the writer is then unusable).
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), WalError> {
        if self.failed {
            return Err(WalError::Poisoned);
        }
        let len = u32::try_from(chunk.len())
            .ok()
            .filter(|&len| len as usize <= SNAPSHOT_CHUNK_BYTES_MAX)
            .ok_or(WalError::TooLarge {
                what: "snapshot chunk",
                len: chunk.len() as u64,
                max: SNAPSHOT_CHUNK_BYTES_MAX as u64,
            })?;
        let crc = chunk_crc(self.chunk_count, chunk);
        self.put(&len.to_le_bytes())?;
        self.put(&crc.to_le_bytes())?;
        self.put(chunk)?;
        self.chunk_count += 1;
        Ok(())
    }

    /// Completes the snapshot atomically and removes older snapshots; returns its path.
    ///
    /// Writes the footer, fsyncs the file, renames it to `snapshot-<lsn>.snap`, fsyncs the
    /// directory, then removes older `.snap` files and stray `.tmp` files (failing to remove one
    /// is logged, not returned: the new snapshot is already in place).
    ///
    /// # Errors
    /// I/O failure; [`WalError::Poisoned`] after an earlier failed write.
    pub fn finish(mut self) -> Result<PathBuf, WalError> {
        if self.failed {
            return Err(WalError::Poisoned);
        }
        let mut footer = [0u8; 16];
        footer[0..4].copy_from_slice(&SNAPSHOT_END_MARKER.to_le_bytes());
        footer[8..16].copy_from_slice(&self.chunk_count.to_le_bytes());
        self.put(&footer)?;
        let crc = self.file_crc;
        self.put(&crc.to_le_bytes())?;
        self.put(&SNAPSHOT_FOOTER_MAGIC)?;

        let temp_path = self.temp_path.clone();
        let file = self
            .out
            .into_inner()
            .map_err(|e| WalError::io("write snapshot", &temp_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| WalError::io("fsync snapshot", &temp_path, e))?;
        drop(file);
        let path = self.dir.join(snapshot_file_name(self.meta.pos.lsn));
        std::fs::rename(&temp_path, &path)
            .map_err(|e| WalError::io("rename snapshot", &temp_path, e))?;
        fsync_dir(&self.dir)?;
        remove_older(&self.dir, &path, self.meta);
        Ok(path)
    }

    /// Writes bytes, folding them into the file CRC.
    fn put(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        if let Err(e) = self.out.write_all(bytes) {
            self.failed = true;
            return Err(WalError::io("write snapshot", &self.temp_path, e));
        }
        self.file_crc = crc32c::crc32c_append(self.file_crc, bytes);
        Ok(())
    }
}

/// Removes complete snapshots older than `meta` and every `.tmp` file in `dir`.
fn remove_older(dir: &Path, keep: &Path, meta: SnapshotMeta) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot list snapshots to remove old ones");
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(kind) = entry
            .file_name()
            .to_str()
            .and_then(parse_snapshot_file_name)
        else {
            continue;
        };
        let stale = match kind {
            SnapshotFileKind::Complete(lsn) => lsn < meta.pos.lsn,
            SnapshotFileKind::Temp => true,
        };
        if stale && path != keep {
            if let Err(error) = std::fs::remove_file(&path) {
                // Left behind, it costs disk space only: readers pick the newest snapshot and
                // the next `finish` tries again.
                tracing::warn!(file = %path.display(), %error, "cannot remove old snapshot file");
            }
        }
    }
}
