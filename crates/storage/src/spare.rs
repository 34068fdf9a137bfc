//! [`Spare`]: the next segment file, created at full size and zero-filled ahead of time by a
//! helper thread, so that rolling to a new segment does not pay for it.
//!
//! Why zeros are written rather than the file only sized (`set_len`) or `fallocate`d: appending
//! to a file, or writing into a hole or an unwritten extent, changes file-system metadata (size,
//! block map, extent state) that every `fdatasync` must then journal. Overwriting blocks that
//! were written and fsynced before needs no metadata, so the `fdatasync` on the hot path is
//! cheaper (PostgreSQL zero-fills its WAL segments for the same reason).
//!
//! The spare is the file [`SPARE_FILE_NAME`] in the log directory. It holds no log data: the
//! log only installs it as a segment (header written and fsynced, then renamed to its segment
//! name) once it is complete, and [`Wal::open`](crate::Wal::open) removes one left behind.

use crate::error::WalError;
use crate::fs_util::fsync_dir;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Name of the spare segment file in the log directory. It does not parse as a segment name
/// (`<20 digits>.wal`) nor as a snapshot name, so scans ignore it.
pub(crate) const SPARE_FILE_NAME: &str = "spare.wal.tmp";

/// Bytes of zeros written per `write` call while filling a file.
pub(crate) const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;

/// Most bytes a segment file is preallocated to; a larger `segment_bytes_max` grows past this
/// by appending.
pub const PREALLOCATE_BYTES_MAX: u64 = 1 << 30;

/// A spare segment being prepared by its helper thread.
#[derive(Debug)]
pub(crate) struct Spare {
    path: PathBuf,
    /// Set to make the thread stop between chunks.
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<Result<File, WalError>>,
}

impl Spare {
    /// Starts a thread that creates `dir/`[`SPARE_FILE_NAME`] with `len` zero bytes and fsyncs
    /// it and the directory.
    ///
    /// # Errors
    /// The OS could not start the thread.
    pub(crate) fn start(dir: &Path, len: u64) -> std::io::Result<Spare> {
        let path = dir.join(SPARE_FILE_NAME);
        let cancel = Arc::new(AtomicBool::new(false));
        let thread = {
            let path = path.clone();
            let cancel = Arc::clone(&cancel);
            std::thread::Builder::new()
                .name("replikv-wal-spare".to_string())
                .spawn(move || zero_filled_file_create(&path, len, &cancel))?
        };
        Ok(Spare {
            path,
            cancel,
            thread,
        })
    }

    /// Waits for the thread and returns the complete, fsynced file (positioned at its end).
    ///
    /// # Errors
    /// The thread failed (the error names the step) or panicked.
    pub(crate) fn finish(self) -> Result<File, WalError> {
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(WalError::io(
                "preallocate segment",
                &self.path,
                std::io::Error::other("the spare segment thread panicked"),
            )),
        }
    }

    /// Stops the thread at its next chunk, waits for it and removes the file.
    pub(crate) fn cancel(self) {
        self.cancel.store(true, Ordering::Relaxed);
        let path = self.path.clone();
        // A cancelled or failed spare is not needed; the log never reads it.
        let _result = self.finish();
        if let Err(error) = std::fs::remove_file(&path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                // Left behind it costs disk space only: the next `Wal::open` removes it.
                tracing::warn!(file = %path.display(), %error, "cannot remove the spare segment");
            }
        }
    }
}

/// Creates (or truncates) `path`, writes `len` zero bytes to it in chunks of
/// [`ZERO_FILL_CHUNK_BYTES`], fsyncs it and then its directory. Stops early with an
/// `Interrupted` error once `cancel` is set. The file is returned positioned at its end.
///
/// # Errors
/// An I/O step failed; the file is then incomplete and must not be used.
pub(crate) fn zero_filled_file_create(
    path: &Path,
    len: u64,
    cancel: &AtomicBool,
) -> Result<File, WalError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| WalError::io("create spare segment", path, e))?;
    let zeros = vec![0u8; ZERO_FILL_CHUNK_BYTES];
    let mut left = len;
    while left > 0 {
        if cancel.load(Ordering::Relaxed) {
            let cancelled = std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled");
            return Err(WalError::io("zero-fill spare segment", path, cancelled));
        }
        let n = usize::try_from(left).map_or(ZERO_FILL_CHUNK_BYTES, |l| l.min(zeros.len()));
        file.write_all(&zeros[..n])
            .map_err(|e| WalError::io("zero-fill spare segment", path, e))?;
        left -= n as u64;
    }
    file.sync_all()
        .map_err(|e| WalError::io("fsync spare segment", path, e))?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(file)
}

/// Removes a spare left behind by a process that stopped before installing it.
///
/// # Errors
/// Removing it failed for another reason than its absence.
pub(crate) fn spare_remove_stale(dir: &Path) -> Result<(), WalError> {
    let path = dir.join(SPARE_FILE_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::io("remove spare segment", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_is_zero_filled_to_its_length_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let len = ZERO_FILL_CHUNK_BYTES as u64 + 123;
        let file = Spare::start(dir.path(), len).unwrap().finish().unwrap();
        assert_eq!(file.metadata().unwrap().len(), len);
        let bytes = std::fs::read(dir.path().join(SPARE_FILE_NAME)).unwrap();
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn cancelled_spare_is_removed_and_a_stale_one_too() {
        let dir = tempfile::tempdir().unwrap();
        Spare::start(dir.path(), 64 << 20).unwrap().cancel();
        assert!(!dir.path().join(SPARE_FILE_NAME).exists());

        std::fs::write(dir.path().join(SPARE_FILE_NAME), b"left by a crash").unwrap();
        spare_remove_stale(dir.path()).unwrap();
        assert!(!dir.path().join(SPARE_FILE_NAME).exists());
        spare_remove_stale(dir.path()).unwrap();
    }
}
