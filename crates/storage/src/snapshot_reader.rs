//! [`SnapshotReader`]: reads the newest complete snapshot, verifying every checksum.

use crate::error::WalError;
use crate::record::{read_u32, read_u64};
use crate::snapshot_meta::{
    chunk_crc, decode_snapshot_header, parse_snapshot_file_name, SnapshotFileKind, SnapshotMeta,
    SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_CHUNK_HEADER_BYTES, SNAPSHOT_END_MARKER,
    SNAPSHOT_FOOTER_BYTES, SNAPSHOT_FOOTER_MAGIC, SNAPSHOT_HEADER_BYTES,
};
use replikv_core::Lsn;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Reads the newest complete snapshot in a directory, chunk by chunk, checking every checksum.
///
/// The snapshot is known complete only when [`next_chunk`](SnapshotReader::next_chunk) has
/// returned `Ok(None)` (the footer checked out): apply chunks to a fresh state and keep it only
/// then.
#[derive(Debug)]
pub struct SnapshotReader {
    path: PathBuf,
    meta: SnapshotMeta,
    input: BufReader<File>,
    /// Length of the file when opened; no read goes past it.
    file_len: u64,
    /// Offset of the next byte to read.
    offset: u64,
    /// Chunks read so far.
    chunk_index: u64,
    /// CRC32C of every byte read so far.
    file_crc: u32,
    /// The footer has been verified.
    done: bool,
    /// The first error found; returned again by every later call.
    failure: Option<(u64, String)>,
}

impl SnapshotReader {
    /// Opens the newest snapshot in `dir`, or `None` when there is none (or `dir` does not
    /// exist). Unfinished `.tmp` files are ignored.
    ///
    /// # Errors
    /// I/O failure or a corrupt header (naming the file).
    pub fn open_latest(dir: &Path) -> Result<Option<SnapshotReader>, WalError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(WalError::io("list directory", dir, e)),
        };
        let mut newest: Option<(Lsn, PathBuf)> = None;
        for entry in entries {
            let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
            let name = entry.file_name();
            if let Some(SnapshotFileKind::Complete(lsn)) =
                name.to_str().and_then(parse_snapshot_file_name)
            {
                if newest.as_ref().is_none_or(|(best, _)| lsn > *best) {
                    newest = Some((lsn, entry.path()));
                }
            }
        }
        let Some((name_lsn, path)) = newest else {
            return Ok(None);
        };
        SnapshotReader::open(&path, name_lsn).map(Some)
    }

    /// Opens one snapshot file and checks its header against the LSN its name gives.
    fn open(path: &Path, name_lsn: Lsn) -> Result<SnapshotReader, WalError> {
        let file = File::open(path).map_err(|e| WalError::io("open snapshot", path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| WalError::io("stat snapshot", path, e))?
            .len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
        if file_len < SNAPSHOT_HEADER_BYTES as u64 {
            return Err(WalError::snapshot_corrupt(
                path,
                0,
                format!("file of {file_len} bytes is shorter than the header"),
            ));
        }
        input
            .read_exact(&mut header)
            .map_err(|e| WalError::io("read snapshot", path, e))?;
        let meta = decode_snapshot_header(&header)
            .map_err(|reason| WalError::snapshot_corrupt(path, 0, reason))?;
        if meta.pos.lsn != name_lsn {
            return Err(WalError::snapshot_corrupt(
                path,
                0,
                format!(
                    "header names lsn {}, the file name {name_lsn}",
                    meta.pos.lsn
                ),
            ));
        }
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            meta,
            input,
            file_len,
            offset: SNAPSHOT_HEADER_BYTES as u64,
            chunk_index: 0,
            file_crc: crc32c::crc32c(&header),
            done: false,
            failure: None,
        })
    }

    /// The snapshot's identity.
    #[must_use]
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// The file being read.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next chunk, or `None` at the (verified) end.
    ///
    /// # Errors
    /// I/O failure or a corrupt chunk (naming file and offset). After a corrupt chunk every
    /// later call returns the same error.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, WalError> {
        if let Some((offset, reason)) = &self.failure {
            return Err(WalError::snapshot_corrupt(
                &self.path,
                *offset,
                reason.clone(),
            ));
        }
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        match self.read_item() {
            Ok(item) => Ok(item),
            Err(Bad::Io(e)) => Err(WalError::io("read snapshot", &self.path, e)),
            Err(Bad::Corrupt(reason)) => {
                self.failure = Some((at, reason.clone()));
                Err(WalError::snapshot_corrupt(&self.path, at, reason))
            }
        }
    }

    /// Reads the chunk or footer at `self.offset`.
    fn read_item(&mut self) -> Result<Option<Vec<u8>>, Bad> {
        let mut head = [0u8; SNAPSHOT_CHUNK_HEADER_BYTES];
        self.take(&mut head, "chunk header or footer")?;
        let len = read_u32(&head, 0);
        if len == SNAPSHOT_END_MARKER {
            return self.read_item_footer(&head).map(|()| None);
        }
        let len = len as usize;
        if len > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(Bad::Corrupt(format!(
                "chunk length {len} exceeds the maximum {SNAPSHOT_CHUNK_BYTES_MAX}"
            )));
        }
        // Checked against the file length first, so a bogus length never allocates.
        self.ensure_left(len as u64, "chunk")?;
        let mut data = vec![0u8; len];
        self.take(&mut data, "chunk")?;
        let stored = read_u32(&head, 4);
        let computed = chunk_crc(self.chunk_index, &data);
        if stored != computed {
            return Err(Bad::Corrupt(format!(
                "chunk {} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}",
                self.chunk_index
            )));
        }
        self.chunk_index += 1;
        Ok(Some(data))
    }

    /// Checks the footer, whose first 8 bytes are in `head`.
    fn read_item_footer(&mut self, head: &[u8; SNAPSHOT_CHUNK_HEADER_BYTES]) -> Result<(), Bad> {
        if read_u32(head, 4) != 0 {
            return Err(Bad::Corrupt(
                "footer reserved field is not zero".to_string(),
            ));
        }
        let mut count = [0u8; 8];
        self.take(&mut count, "footer")?;
        let expected_crc = self.file_crc;
        let mut tail = [0u8; SNAPSHOT_FOOTER_BYTES - 16];
        self.take(&mut tail, "footer")?;
        let count = read_u64(&count, 0);
        if count != self.chunk_index {
            return Err(Bad::Corrupt(format!(
                "footer counts {count} chunks, the file holds {}",
                self.chunk_index
            )));
        }
        let stored = read_u32(&tail, 0);
        if stored != expected_crc {
            return Err(Bad::Corrupt(format!(
                "file checksum mismatch: stored {stored:#010x}, computed {expected_crc:#010x}"
            )));
        }
        if tail[4..8] != SNAPSHOT_FOOTER_MAGIC {
            return Err(Bad::Corrupt("bad footer magic".to_string()));
        }
        if self.offset != self.file_len {
            return Err(Bad::Corrupt(format!(
                "{} bytes after the footer",
                self.file_len - self.offset
            )));
        }
        self.done = true;
        Ok(())
    }

    /// Fails with "truncated" unless `n` more bytes are in the file.
    fn ensure_left(&self, n: u64, what: &str) -> Result<(), Bad> {
        let left = self.file_len.saturating_sub(self.offset);
        if n > left {
            return Err(Bad::Corrupt(format!(
                "truncated {what}: needs {n} bytes, {left} left in the file"
            )));
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes, folding them into the file CRC.
    fn take(&mut self, buf: &mut [u8], what: &str) -> Result<(), Bad> {
        self.ensure_left(buf.len() as u64, what)?;
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Bad::Corrupt(format!("truncated {what} (file shrank while read)"))
            } else {
                Bad::Io(e)
            }
        })?;
        self.offset += buf.len() as u64;
        self.file_crc = crc32c::crc32c_append(self.file_crc, buf);
        Ok(())
    }
}

/// Why reading an item failed.
enum Bad {
    Io(std::io::Error),
    Corrupt(String),
}
