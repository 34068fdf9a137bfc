//! Small file-system helpers shared by the log and snapshots.

use crate::error::WalError;
use std::fs::File;
use std::path::Path;

/// fsyncs a directory so that entries created, renamed or removed in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    let handle = File::open(dir).map_err(|e| WalError::io("open directory", dir, e))?;
    handle
        .sync_all()
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

/// Creates `dir` (and its parents) when missing; when it was created, fsyncs its parent so the
/// new entry is durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsync_dir(parent),
        _ => Ok(()),
    }
}
