//! [`LogCursor`]: a sequential reader of the log directory, for shipping records to replicas
//! without going through the writer.
//!
//! The cursor opens segment files itself, read-only, and shares no lock or queue with the
//! [`Wal`](crate::Wal), so the writer never waits for it. It keeps the segment it reads open
//! with the offset of the next record, so each [`next_batch`](LogCursor::next_batch) reads on
//! from where the last one stopped and a segment is never read again from its start.
//!
//! Why reading beside the writer is safe: the caller passes `upto`, an LSN the writer has
//! reported written (its `write` returned). Every record up to it is complete in the file and
//! visible to any `read` issued afterwards, and the cursor never looks at the bytes of a record
//! past `upto`, which may be half written. A record at or below `upto` is either at the cursor's
//! offset, or, when the cursor finds zeros there (the zero fill of a preallocated segment) or
//! the end of the file (a segment that is not preallocated), in the segment named by its LSN:
//! the writer starts a segment only for its first record, and writes the segment's header
//! before that record.
//!
//! When the segment being read, or the one that should come next, is gone (removed by
//! [`Wal::compact`](crate::Wal::compact) or [`Wal::reset`](crate::Wal::reset)), or the next
//! segment starts past the LSN wanted (a gap a snapshot covers), the cursor answers
//! [`WalError::Compacted`]: the replica needs a snapshot, or (after a reset) a new cursor.

use crate::error::WalError;
use crate::record::{
    decode_record, read_u32, LogRecord, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX,
};
use crate::segment::{
    decode_segment_header, list_segment_files, segment_file_name, SEGMENT_HEADER_BYTES,
};
use replikv_core::{Epoch, LogPosition, Lsn};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most records one [`LogCursor::next_batch`] returns. `bytes_max` bounds the payload bytes;
/// this bounds a batch of records with empty or tiny payloads too.
pub const LOG_CURSOR_BATCH_RECORDS_MAX: usize = 1 << 16;

/// Bytes the first `read` of a call asks for (more when one record is larger). Small, so that a
/// cursor polled after every write copies little past the few records it returns.
const READ_AHEAD_BYTES_MIN: usize = 4 << 10;

/// Bytes a `read` asks for at most (more when one record is larger): each `read` of a call
/// asks for twice the one before, up to this.
const READ_AHEAD_BYTES_MAX: usize = 256 << 10;

/// Capacity of the read buffer kept between calls; a larger one, grown for a large record, is
/// freed.
const BUFFER_KEPT_BYTES_MAX: usize = 2 * READ_AHEAD_BYTES_MAX;

const _: () = assert!(READ_AHEAD_BYTES_MIN >= SEGMENT_HEADER_BYTES);
const _: () = assert!(READ_AHEAD_BYTES_MIN <= READ_AHEAD_BYTES_MAX);

/// A sequential reader of the log directory: returns the records from some LSN on, in order,
/// batch by batch, while the writer appends. See the [module docs](self) for why that is safe.
///
/// ```
/// use bytes::Bytes;
/// use replikv_core::{Epoch, LogPosition, Lsn};
/// use replikv_storage::{LogCursor, LogRecord, Wal, WalOptions};
///
/// let dir = tempfile::tempdir()?;
/// let (mut wal, _) = Wal::open(WalOptions::new(dir.path(), 1 << 20, 0), Lsn::ZERO)?;
/// let mut cursor = LogCursor::open(dir.path(), Lsn(1))?;
/// assert!(cursor.next_batch(wal.written_lsn(), 1 << 20)?.is_empty());
///
/// let record = LogRecord {
///     pos: LogPosition { epoch: Epoch(1), lsn: Lsn(1) },
///     payload: Bytes::from_static(b"SET k v"),
/// };
/// wal.append(std::slice::from_ref(&record))?;
/// wal.flush()?;
/// assert_eq!(cursor.next_batch(wal.written_lsn(), 1 << 20)?, vec![record]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct LogCursor {
    /// The log directory.
    dir: PathBuf,
    /// LSN of the next record to return; at least 1.
    next_lsn: Lsn,
    /// The last record read (returned, or passed over on the way to the first one returned),
    /// for the epoch continuity check.
    prev: Option<LogPosition>,
    /// The segment being read; `None` while the directory held no segment when the cursor
    /// was opened (the next call looks again).
    segment: Option<SegmentReader>,
}

/// One open segment file and the cursor's place in it.
struct SegmentReader {
    path: PathBuf,
    file: File,
    /// LSN in the file name.
    first_lsn: Lsn,
    /// Offset of the next record to read; 0 while the header is not checked yet.
    offset: u64,
    /// The LSN the record at `offset` must have. Never past the cursor's `next_lsn`; before
    /// it while walking to the first record to return.
    offset_lsn: Lsn,
    /// Bytes of the file read ahead during one call, from `offset - buf_pos` on. Emptied when
    /// the call ends: bytes past `upto` may change.
    buf: Vec<u8>,
    /// Index in `buf` of the byte at `offset`.
    buf_pos: usize,
    /// Bytes the next `read` asks for at least: [`READ_AHEAD_BYTES_MIN`] at the start of a
    /// call, doubling up to [`READ_AHEAD_BYTES_MAX`].
    read_ahead: usize,
}

impl std::fmt::Debug for SegmentReader {
    /// Without the read buffer, which can hold a large record.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader")
            .field("path", &self.path)
            .field("first_lsn", &self.first_lsn)
            .field("offset", &self.offset)
            .field("offset_lsn", &self.offset_lsn)
            .field("buffered_bytes", &(self.buf.len() - self.buf_pos))
            .finish_non_exhaustive()
    }
}

/// What reading at a segment's offset found.
enum Step {
    Record(LogRecord),
    /// Zeros or the end of the file: the next record is in the next segment.
    End,
}

/// Where [`LogCursor::locate`] found the cursor's LSN.
enum Located {
    Segment(SegmentReader),
    /// The directory holds no segment.
    Empty,
}

impl LogCursor {
    /// A cursor whose first record returned will be the one with LSN `from` (0 is taken as 1).
    /// Lists the segment files and opens the one that holds `from` or will (the last one
    /// named at or before it); nothing is read yet. `from` may be past the written log: the
    /// cursor then returns records once they exist. With no segment in `dir`, the cursor
    /// looks again at its first [`next_batch`](LogCursor::next_batch).
    ///
    /// # Errors
    /// [`WalError::Compacted`] when `from` is before the oldest segment (compacted away);
    /// I/O failure listing the directory or opening the segment.
    pub fn open(dir: &Path, from: Lsn) -> Result<LogCursor, WalError> {
        let mut cursor = LogCursor {
            dir: dir.to_path_buf(),
            next_lsn: from.max(Lsn(1)),
            prev: None,
            segment: None,
        };
        cursor.segment = match cursor.locate(None)? {
            Located::Segment(segment) => Some(segment),
            Located::Empty => None,
        };
        Ok(cursor)
    }

    /// The LSN of the next record [`next_batch`](LogCursor::next_batch) returns.
    #[must_use]
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Returns the next records in LSN order, every one at or below `upto`, stopping once their
    /// payloads total `bytes_max` or more (at least one record is returned when one is
    /// available) or at [`LOG_CURSOR_BATCH_RECORDS_MAX`] records. Empty when the next record
    /// is past `upto`.
    ///
    /// `upto` must be an LSN the writer has reported written (`written_lsn`, or a
    /// [`WalProgress`](crate::WalProgress)); records past it are never read, so the writer
    /// may be appending them meanwhile. Blocking file I/O: run it off an async executor.
    ///
    /// When a failure comes after some records of the batch, those are returned and the next
    /// call meets the failure again (the cursor stops right before it).
    ///
    /// # Errors
    /// [`WalError::Compacted`] when the segment being read or the next one was removed, or
    /// the next one starts past the LSN wanted: `first` is then the first LSN of the oldest
    /// segment past `requested`; when `first <= requested` the log was reset under the cursor
    /// (open a new one). [`WalError::Corrupt`] (file and offset) for a record at or below
    /// `upto` that fails its checksum, is incomplete, or does not continue the log. I/O
    /// failure.
    pub fn next_batch(&mut self, upto: Lsn, bytes_max: u64) -> Result<Vec<LogRecord>, WalError> {
        let mut out = Vec::new();
        if self.next_lsn > upto {
            return Ok(out);
        }
        let result = self.next_batch_read(upto, bytes_max, &mut out);
        if let Some(segment) = &mut self.segment {
            segment.buf_forget();
        }
        match result {
            Ok(()) => Ok(out),
            // Deferred, not ignored: the cursor stopped right before the failure, so the next
            // call meets it again.
            Err(error) if !out.is_empty() => {
                tracing::debug!(%error, records = out.len(), "log cursor stopped early");
                Ok(out)
            }
            Err(error) => Err(error),
        }
    }

    /// The body of [`next_batch`](LogCursor::next_batch): pushes records to `out` until a
    /// bound is reached; the cursor's position always follows the last record pushed.
    fn next_batch_read(
        &mut self,
        upto: Lsn,
        bytes_max: u64,
        out: &mut Vec<LogRecord>,
    ) -> Result<(), WalError> {
        match &self.segment {
            None => match self.locate(Some(upto))? {
                Located::Segment(segment) => self.segment = Some(segment),
                // Records up to `upto` were written, yet no segment holds them.
                Located::Empty => return Err(self.compacted(upto)),
            },
            Some(segment) => {
                if segment.is_removed()? {
                    return Err(self.compacted(upto));
                }
            }
        }
        let mut payload_bytes: u64 = 0;
        while self.next_lsn <= upto
            && out.len() < LOG_CURSOR_BATCH_RECORDS_MAX
            && (out.is_empty() || payload_bytes < bytes_max)
        {
            let Some(segment) = self.segment.as_mut() else {
                unreachable!("the cursor was placed in a segment above");
            };
            assert!(
                segment.offset_lsn <= self.next_lsn,
                "segment offset at lsn {} past the cursor's next lsn {}",
                segment.offset_lsn,
                self.next_lsn
            );
            let epoch_min = self.prev.map(|p| p.epoch).unwrap_or_default();
            match segment.read_record(epoch_min)? {
                Step::Record(record) => {
                    self.prev = Some(record.pos);
                    if record.pos.lsn < self.next_lsn {
                        // Walking from the segment's start to the first record to return.
                        continue;
                    }
                    self.next_lsn = record.pos.lsn.next();
                    payload_bytes += record.payload.len() as u64;
                    out.push(record);
                }
                Step::End => {
                    let next = self.next_segment_open(upto)?;
                    self.segment = Some(next);
                }
            }
        }
        Ok(())
    }

    /// Opens the segment that follows the current one, which ended (zeros or end of file) at
    /// its `offset_lsn`: the record with that LSN, at or below `upto`, was written, so it is
    /// the first record of the segment named by it.
    fn next_segment_open(&mut self, upto: Lsn) -> Result<SegmentReader, WalError> {
        let Some(segment) = self.segment.as_mut() else {
            unreachable!("a segment ended, so there is one");
        };
        let lsn = segment.offset_lsn;
        if lsn == segment.first_lsn {
            // The segment named for this LSN does not hold it: it was replaced or removed.
            return Err(self.compacted(upto));
        }
        let path = self.dir.join(segment_file_name(lsn));
        match File::open(&path) {
            Ok(file) => {
                let mut next = SegmentReader::new(path, file, lsn);
                // The read buffer is empty between segments; keep its capacity.
                std::mem::swap(&mut next.buf, &mut segment.buf);
                next.buf_forget();
                Ok(next)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.compacted(upto)),
            Err(e) => Err(WalError::io("open segment", &path, e)),
        }
    }

    /// Lists the segment files and opens the last one named at or before `next_lsn`. `upto`,
    /// when known, is where the log was written to (for the error when a file vanished).
    fn locate(&self, upto: Option<Lsn>) -> Result<Located, WalError> {
        let files = list_segment_files(&self.dir)
            .map_err(|e| WalError::io("list directory", &self.dir, e))?;
        let after = files.partition_point(|(first, _)| *first <= self.next_lsn);
        let Some(at) = after.checked_sub(1) else {
            return match files.first() {
                None => Ok(Located::Empty),
                Some(&(first, _)) => Err(WalError::Compacted {
                    requested: self.next_lsn,
                    first,
                }),
            };
        };
        let (first_lsn, path) = &files[at];
        match File::open(path) {
            Ok(file) => Ok(Located::Segment(SegmentReader::new(
                path.clone(),
                file,
                *first_lsn,
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(self.compacted(upto.unwrap_or(Lsn::ZERO)))
            }
            Err(e) => Err(WalError::io("open segment", path, e)),
        }
    }

    /// The error for a `next_lsn` the directory no longer holds. `first` is the first LSN of
    /// the oldest segment named past `next_lsn`; when there is none, that of the oldest
    /// segment (the log was reset back under the cursor); when there is no segment at all,
    /// the LSN after `upto` (nothing up to it is kept).
    fn compacted(&self, upto: Lsn) -> WalError {
        let requested = self.next_lsn;
        let files = match list_segment_files(&self.dir) {
            Ok(files) => files,
            Err(e) => return WalError::io("list directory", &self.dir, e),
        };
        let first = files
            .iter()
            .map(|(first, _)| *first)
            .find(|first| *first > requested)
            .or_else(|| files.first().map(|(first, _)| *first))
            .unwrap_or(upto.next());
        WalError::Compacted { requested, first }
    }
}

impl SegmentReader {
    /// A reader placed before the header of the segment named `first_lsn`.
    fn new(path: PathBuf, file: File, first_lsn: Lsn) -> SegmentReader {
        SegmentReader {
            path,
            file,
            first_lsn,
            offset: 0,
            offset_lsn: first_lsn,
            buf: Vec::new(),
            buf_pos: 0,
            read_ahead: READ_AHEAD_BYTES_MIN,
        }
    }

    /// Reads the record at `offset` (checking the header first when not done yet), which
    /// must have LSN `offset_lsn` and an epoch of at least `epoch_min`, and moves past it.
    /// Returns [`Step::End`] when up to a record header's worth of bytes there are all zeros,
    /// or the file ends there. The caller knows the record at `offset_lsn` was written.
    fn read_record(&mut self, epoch_min: Epoch) -> Result<Step, WalError> {
        if self.offset == 0 {
            self.header_check()?;
        }
        let head = self.fill(RECORD_HEADER_BYTES)?;
        let head = &head[..head.len().min(RECORD_HEADER_BYTES)];
        if head.iter().all(|&b| b == 0) {
            return Ok(Step::End);
        }
        if head.len() == RECORD_HEADER_BYTES {
            let len = read_u32(head, 0) as usize;
            // A length past the maximum is not read: `decode_record` rejects it below.
            if len <= RECORD_PAYLOAD_BYTES_MAX {
                self.fill(RECORD_HEADER_BYTES + len)?;
            }
        }
        let bytes = &self.buf[self.buf_pos..];
        let (record, used) = match decode_record(bytes) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => {
                let reason = format!("incomplete record: {} bytes left in the file", bytes.len());
                return Err(WalError::corrupt(&self.path, self.offset, reason));
            }
            Err(e) => return Err(WalError::corrupt(&self.path, self.offset, e.to_string())),
        };
        if record.pos.lsn != self.offset_lsn || record.pos.epoch < epoch_min {
            let reason = format!(
                "record {} does not continue the log: expected lsn {} at epoch >= {}",
                record.pos, self.offset_lsn, epoch_min
            );
            return Err(WalError::corrupt(&self.path, self.offset, reason));
        }
        self.advance(used);
        self.offset_lsn = self.offset_lsn.next();
        Ok(Step::Record(record))
    }

    /// Checks the segment header against the file name and moves past it.
    fn header_check(&mut self) -> Result<(), WalError> {
        let bytes = self.fill(SEGMENT_HEADER_BYTES)?;
        let lsn = decode_segment_header(bytes).map_err(|r| WalError::corrupt(&self.path, 0, r))?;
        if lsn != self.first_lsn {
            let reason = format!(
                "segment header names lsn {lsn}, the file name {}",
                self.first_lsn
            );
            return Err(WalError::corrupt(&self.path, 0, reason));
        }
        self.advance(SEGMENT_HEADER_BYTES);
        Ok(())
    }

    /// The buffered bytes from `offset` on, after reading more when fewer than `need` are
    /// buffered; fewer than `need` only where the file ends.
    fn fill(&mut self, need: usize) -> Result<&[u8], WalError> {
        if self.buf.len() - self.buf_pos < need {
            self.buf.drain(..self.buf_pos);
            self.buf_pos = 0;
            let have = self.buf.len();
            let want = need.max(self.read_ahead) - have;
            self.read_ahead = (self.read_ahead * 2).min(READ_AHEAD_BYTES_MAX);
            let read_at = self.offset + have as u64;
            self.file
                .seek(SeekFrom::Start(read_at))
                .map_err(|e| WalError::io("seek segment", &self.path, e))?;
            (&self.file)
                .take(want as u64)
                .read_to_end(&mut self.buf)
                .map_err(|e| WalError::io("read segment", &self.path, e))?;
        }
        Ok(&self.buf[self.buf_pos..])
    }

    /// Moves `offset` past `n` buffered bytes.
    fn advance(&mut self, n: usize) {
        debug_assert!(
            self.buf_pos + n <= self.buf.len(),
            "advance past the buffer"
        );
        self.buf_pos += n;
        self.offset += n as u64;
    }

    /// Drops the bytes read ahead (they may change once the writer goes on), keeping a
    /// small buffer's capacity.
    fn buf_forget(&mut self) {
        self.buf.clear();
        self.buf_pos = 0;
        self.read_ahead = READ_AHEAD_BYTES_MIN;
        if self.buf.capacity() > BUFFER_KEPT_BYTES_MAX {
            self.buf = Vec::new();
        }
    }

    /// Whether the file was removed from the directory since it was opened (compaction or a
    /// reset; a file by the same name created since is another file).
    fn is_removed(&self) -> Result<bool, WalError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = self
                .file
                .metadata()
                .map_err(|e| WalError::io("stat segment", &self.path, e))?;
            Ok(meta.nlink() == 0)
        }
        #[cfg(not(unix))]
        {
            // No link count: a file removed and created again by the same name goes unseen.
            Ok(!self.path.exists())
        }
    }
}
