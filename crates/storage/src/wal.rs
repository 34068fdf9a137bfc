//! [`Wal`]: the segmented, checksummed write-ahead log.

use crate::error::WalError;
use crate::fs_util::{ensure_dir, fsync_dir};
use crate::record::{
    encode_record, read_u32, read_u64, LogRecord, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX,
};
use crate::recovery::{scan_dir, Recovery};
use crate::segment::{
    encode_segment_header, list_segment_files, scan_segment, segment_file_name, Segment,
    SEGMENT_HEADER_BYTES,
};
use crate::spare::{
    spare_remove_stale, zero_filled_file_create, Spare, PREALLOCATE_BYTES_MAX, SPARE_FILE_NAME,
};
use crate::stats::WalStats;
use replikv_core::{Epoch, LogPosition, Lsn};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Appended bytes the log buffers before it writes them to the OS on its own.
pub const WRITE_BUFFER_BYTES_MAX: usize = 4 << 20;

/// Where and how the log is kept.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Directory holding the segment files.
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes_max: u64,
    /// Bytes of log kept even when a snapshot covers them (for replicas that need them later).
    /// Counted as logical bytes (headers and records), not the zero fill of preallocated
    /// segments.
    pub retention_bytes: u64,
    /// Create each segment at its full size, `segment_bytes_max` (at most
    /// [`PREALLOCATE_BYTES_MAX`]), filled with zeros that are written and fsynced, so appends
    /// overwrite allocated blocks and each `fdatasync` has no file-size or block-map metadata
    /// to journal. The next segment is prepared by a helper thread once the active one is half
    /// full. `false` creates segments with only their header and appends to grow them (as
    /// before preallocation). Either way the log reads segments written both ways.
    /// [`WalOptions::new`] sets it to `true`.
    pub preallocate: bool,
}

impl WalOptions {
    /// Options for a log in `dir` with segments of `segment_bytes_max` bytes, keeping
    /// `retention_bytes` of log past snapshots, with [`preallocate`](WalOptions::preallocate)
    /// on.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>, segment_bytes_max: u64, retention_bytes: u64) -> Self {
        WalOptions {
            dir: dir.into(),
            segment_bytes_max,
            retention_bytes,
            preallocate: true,
        }
    }
}

/// The segmented, checksummed write-ahead log. Synchronous; one owner. (With
/// [`WalOptions::preallocate`], a helper thread zero-fills the next segment's file; it never
/// touches the log's segments.)
///
/// Records go through three stages: [`append`](Wal::append) checks and buffers them,
/// [`flush`](Wal::flush) hands them to the OS ([`written_lsn`](Wal::written_lsn)), and
/// [`sync`](Wal::sync) fsyncs them ([`synced_lsn`](Wal::synced_lsn)). After any failed write
/// or fsync the log is poisoned: every later call returns [`WalError::Poisoned`], because
/// after a failed fsync the kernel may have dropped the dirty pages and a retry would lie.
pub struct Wal {
    opts: WalOptions,
    /// Segment files, oldest first; the last one is the active segment, written through
    /// `active`. Invariant: `segments.is_empty() == active.is_none()`.
    segments: Vec<Segment>,
    /// The active segment's file, positioned at its logical end (where the next record goes;
    /// a preallocated file holds zeros from there on).
    active: Option<File>,
    /// The next segment's file being zero-filled ahead of time, with `preallocate` on. Started
    /// once the active segment is half full, installed at the next roll.
    spare: Option<Spare>,
    /// Encoded records of the active segment not yet written. At most
    /// [`WRITE_BUFFER_BYTES_MAX`] plus one record.
    buf: Vec<u8>,
    /// Records in `buf`.
    buf_records: u64,
    /// The last record in the log, written or buffered; `None` when the log holds none.
    last: Option<LogPosition>,
    /// The LSN the next appended record must have: one past `last`, or past the snapshot the
    /// log was opened after when that is newer.
    next_lsn: Lsn,
    /// Last LSN handed to the OS (or covered by the snapshot at open).
    written: Lsn,
    /// Last LSN fsynced (or covered by the snapshot at open). `synced <= written`.
    synced: Lsn,
    poisoned: bool,
    /// Resets and truncations since the log was opened: tells a [`SyncHandle`] taken before
    /// records were discarded apart.
    resets: u64,
    stats: WalStats,
    #[cfg(test)]
    pub(crate) faults: FaultPlan,
}

/// Test-only fault injection: make the n-th write or fsync fail.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    /// Fail the write call when this many more have succeeded.
    pub write_fails_after: Option<u64>,
    /// Fail the segment fsync when this many more have succeeded.
    pub fsync_fails_after: Option<u64>,
    /// Report every spare segment prepared ahead as failed when a roll takes it.
    pub spare_fails: bool,
    /// Stop a truncation, as a crash would, once this many more of its durable steps are
    /// done: it returns an error and poisons the log, leaving the disk as that step left it.
    pub truncate_crash_after: Option<u64>,
}

/// A duplicate handle of the active segment taken by [`Wal::sync_handle`], to fdatasync without
/// holding the log.
#[derive(Debug)]
pub(crate) struct SyncHandle {
    file: File,
    path: PathBuf,
    /// The last LSN written to the OS when the handle was taken.
    pub(crate) written: Lsn,
    /// The log's count of resets and truncations when the handle was taken.
    resets: u64,
    /// The failure the test plan injects into this fsync.
    #[cfg(test)]
    injected: std::io::Result<()>,
}

impl SyncHandle {
    /// fdatasyncs the segment. Call it without holding the log.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        std::mem::replace(&mut self.injected, Ok(()))?;
        self.file.sync_data()
    }
}

#[derive(Clone, Copy, Debug)]
enum IoPoint {
    Write,
    Fsync,
}

impl Wal {
    /// Opens (creating if needed) the log in `opts.dir`, zeroing a torn tail, and returns the
    /// records after `after` (the LSN the loaded snapshot covers).
    ///
    /// The next record appended must have LSN `max(after, last record) + 1`. Everything found
    /// on disk is fsynced before this returns, so it counts as durable. A spare segment left
    /// by a crash is removed; with [`preallocate`](WalOptions::preallocate), when the log has
    /// no segment yet or its last is half full, preparing the next one starts right away.
    ///
    /// # Errors
    /// I/O failure, or corruption anywhere but the tail (the error names file and offset),
    /// including entries missing between `after` and the first segment or between segments.
    pub fn open(opts: WalOptions, after: Lsn) -> Result<(Wal, Recovery), WalError> {
        ensure_dir(&opts.dir)?;
        // A spare is complete only once installed under a segment name; one left here is not.
        spare_remove_stale(&opts.dir)?;
        let scanned = scan_dir(&opts.dir, after)?;
        // A segment created just before a crash may have a directory entry that is not durable.
        fsync_dir(&opts.dir)?;
        let active = match scanned.segments.last() {
            None => None,
            Some(seg) => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(|e| WalError::io("open segment", &seg.path, e))?;
                file.seek(SeekFrom::Start(seg.bytes))
                    .map_err(|e| WalError::io("seek segment", &seg.path, e))?;
                // Bytes found may sit only in the page cache (the process crashed, not the
                // machine); make them durable before anyone treats them as such.
                file.sync_all()
                    .map_err(|e| WalError::io("fsync segment", &seg.path, e))?;
                Some(file)
            }
        };
        let disk_lsn = scanned.last_on_disk.map_or(Lsn::ZERO, |p| p.lsn);
        let durable = disk_lsn.max(after);
        let last = LogPosition {
            epoch: scanned.last_on_disk.map(|p| p.epoch).unwrap_or_default(),
            lsn: durable,
        };
        let mut wal = Wal {
            opts,
            segments: scanned.segments,
            active,
            spare: None,
            buf: Vec::new(),
            buf_records: 0,
            last: scanned.last_on_disk,
            next_lsn: durable.next(),
            written: durable,
            synced: durable,
            poisoned: false,
            resets: 0,
            stats: WalStats::default(),
            #[cfg(test)]
            faults: FaultPlan::default(),
        };
        wal.spare_start_if_due();
        wal.check_invariants();
        let recovery = Recovery {
            records: scanned.records,
            last,
            torn_tail: scanned.torn_tail,
        };
        Ok((wal, recovery))
    }

    /// Checks and buffers `records`. They must continue the log: the first has LSN
    /// [`next_lsn`](Wal::next_lsn), each next one the LSN after, and epochs never go down.
    /// Starts a new segment when the active one would pass `segment_bytes_max` (fsyncing the
    /// full one and the directory), and writes to the OS once [`WRITE_BUFFER_BYTES_MAX`] bytes
    /// are buffered. With `preallocate`, starts preparing the next segment in a helper thread
    /// once the active one is half full.
    ///
    /// # Errors
    /// [`WalError::OutOfOrder`] or [`WalError::TooLarge`] (nothing is buffered, the log is
    /// unchanged); an I/O failure while rolling or writing (the log is poisoned);
    /// [`WalError::Poisoned`].
    pub fn append(&mut self, records: &[LogRecord]) -> Result<(), WalError> {
        self.check_usable()?;
        self.append_check(records)?;
        for record in records {
            self.append_prepare_segment(record)?;
            encode_record(record, &mut self.buf);
            self.buf_records += 1;
            self.last = Some(record.pos);
            self.next_lsn = record.pos.lsn.next();
            if let Some(seg) = self.segments.last_mut() {
                seg.last = Some(record.pos);
            }
            if self.buf.len() >= WRITE_BUFFER_BYTES_MAX {
                self.flush()?;
            }
        }
        self.spare_start_if_due();
        self.check_invariants();
        Ok(())
    }

    /// Starts zero-filling the next segment's file in a helper thread when `preallocate` is on,
    /// none is under way, and the active segment (records buffered included) is half full or
    /// there is none. Failing to start the thread only costs speed: the next roll then
    /// preallocates the segment itself.
    fn spare_start_if_due(&mut self) {
        if !self.opts.preallocate || self.spare.is_some() || self.poisoned {
            return;
        }
        let half = self.opts.segment_bytes_max / 2;
        let due = self
            .segments
            .last()
            .is_none_or(|seg| seg.bytes + self.buf.len() as u64 >= half);
        if !due {
            return;
        }
        match Spare::start(&self.opts.dir, self.preallocate_bytes()) {
            Ok(spare) => self.spare = Some(spare),
            Err(error) => tracing::warn!(
                %error,
                "cannot start the spare segment thread; the next roll will preallocate"
            ),
        }
    }

    /// Bytes a new segment file is preallocated to.
    fn preallocate_bytes(&self) -> u64 {
        self.opts
            .segment_bytes_max
            .clamp(SEGMENT_HEADER_BYTES as u64, PREALLOCATE_BYTES_MAX)
    }

    /// Validates a whole batch before any of it is buffered.
    fn append_check(&self, records: &[LogRecord]) -> Result<(), WalError> {
        let mut last = self.last;
        let mut expected_lsn = self.next_lsn;
        for record in records {
            let epoch_min = last.map(|p| p.epoch).unwrap_or_default();
            if record.pos.lsn != expected_lsn || record.pos.epoch < epoch_min {
                return Err(WalError::OutOfOrder {
                    last: last.unwrap_or_default(),
                    expected_lsn,
                    found: record.pos,
                });
            }
            if record.payload.len() > RECORD_PAYLOAD_BYTES_MAX {
                return Err(WalError::TooLarge {
                    what: "record payload",
                    len: record.payload.len() as u64,
                    max: RECORD_PAYLOAD_BYTES_MAX as u64,
                });
            }
            last = Some(record.pos);
            expected_lsn = expected_lsn.next();
        }
        Ok(())
    }

    /// Makes the active segment one that `record` may be appended to: rolls to a new segment
    /// when the active one is full or the record does not follow its last (a snapshot covers
    /// the gap), and replaces an empty active segment named for another LSN.
    fn append_prepare_segment(&mut self, record: &LogRecord) -> Result<(), WalError> {
        let lsn = record.pos.lsn;
        let Some(seg) = self.segments.last() else {
            return self.segment_create(lsn);
        };
        match seg.last {
            None if seg.first_lsn == lsn => Ok(()),
            None => {
                // Only a header: nothing to keep. Remove it so names stay "first LSN inside".
                let path = seg.path.clone();
                self.active = None;
                self.segments.pop();
                std::fs::remove_file(&path)
                    .map_err(|e| self.poison(WalError::io("remove segment", &path, e)))?;
                self.segment_create(lsn)
            }
            Some(seg_last) => {
                let size = seg.bytes + self.buf.len() as u64 + record.encoded_len() as u64;
                if seg_last.lsn.next() == lsn && size <= self.opts.segment_bytes_max {
                    return Ok(());
                }
                self.flush()?;
                self.sync()?;
                self.segment_create(lsn)
            }
        }
    }

    /// Creates the segment whose first record is `first_lsn`, with a durable header before
    /// its name exists or before any record is written to it (so a segment on disk always has
    /// a durable header), and fsyncs the directory. The file is left positioned after the
    /// header.
    fn segment_create(&mut self, first_lsn: Lsn) -> Result<(), WalError> {
        debug_assert!(
            self.buf.is_empty(),
            "buffered bytes belong to the old segment"
        );
        let path = self.opts.dir.join(segment_file_name(first_lsn));
        let result = if self.opts.preallocate {
            self.segment_create_preallocated(first_lsn, &path)
        } else {
            self.segment_create_plain(first_lsn, &path)
        };
        let file = result.map_err(|e| self.poison(e))?;
        self.active = Some(file);
        self.segments.push(Segment {
            path,
            first_lsn,
            last: None,
            bytes: SEGMENT_HEADER_BYTES as u64,
        });
        self.stats.segments_created += 1;
        Ok(())
    }

    /// Takes the spare (waiting for its thread when it is still zero-filling), or zero-fills
    /// one now when there is none or it failed; writes the header into it and fdatasyncs it,
    /// renames it to the segment's name and fsyncs the directory.
    fn segment_create_preallocated(
        &mut self,
        first_lsn: Lsn,
        path: &Path,
    ) -> Result<File, WalError> {
        let spare_path = self.opts.dir.join(SPARE_FILE_NAME);
        let finished = self.spare.take().map(Spare::finish);
        #[cfg(test)]
        let finished = finished.map(|result| match result {
            Ok(_) if self.faults.spare_fails => Err(WalError::io(
                "zero-fill spare segment",
                &spare_path,
                std::io::Error::other("injected spare failure"),
            )),
            other => other,
        });
        let prepared = match finished {
            Some(Ok(file)) => Some(file),
            Some(Err(error)) => {
                // The spare holds no log data; a failed one is only discarded (never used, so
                // a failed fsync of it cannot hide lost data).
                tracing::warn!(%error, "the spare segment failed; preallocating the segment now");
                None
            }
            None => None,
        };
        let from_spare = prepared.is_some();
        let mut file = match prepared {
            Some(file) => file,
            None => zero_filled_file_create(
                &spare_path,
                self.preallocate_bytes(),
                &AtomicBool::new(false),
            )?,
        };
        file.seek(SeekFrom::Start(0))
            .map_err(|e| WalError::io("seek segment", &spare_path, e))?;
        self.fault(IoPoint::Write)
            .and_then(|()| file.write_all(&encode_segment_header(first_lsn)))
            .map_err(|e| WalError::io("write segment header", &spare_path, e))?;
        self.fault(IoPoint::Fsync)
            .and_then(|()| file.sync_data())
            .map_err(|e| WalError::io("fsync segment", &spare_path, e))?;
        std::fs::rename(&spare_path, path)
            .map_err(|e| WalError::io("rename spare to segment", path, e))?;
        fsync_dir(&self.opts.dir)?;
        if from_spare {
            self.stats.segments_from_spare += 1;
        }
        Ok(file)
    }

    /// Creates the segment file with only its header, fsyncs it and the directory.
    fn segment_create_plain(&mut self, first_lsn: Lsn, path: &Path) -> Result<File, WalError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| WalError::io("create segment", path, e))?;
        self.fault(IoPoint::Write)
            .and_then(|()| file.write_all(&encode_segment_header(first_lsn)))
            .map_err(|e| WalError::io("write segment header", path, e))?;
        self.fault(IoPoint::Fsync)
            .and_then(|()| file.sync_all())
            .map_err(|e| WalError::io("fsync segment", path, e))?;
        fsync_dir(&self.opts.dir)?;
        Ok(file)
    }

    /// Writes buffered records to the OS. After it returns, [`written_lsn`](Wal::written_lsn)
    /// is the last appended LSN.
    ///
    /// # Errors
    /// The write failed (the log is poisoned); [`WalError::Poisoned`].
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let (Some(file), Some(seg)) = (self.active.as_mut(), self.segments.last_mut()) else {
            unreachable!("buffered records without an active segment");
        };
        #[cfg(test)]
        let injected = self.faults.fire(IoPoint::Write);
        #[cfg(not(test))]
        let injected = Ok(());
        if let Err(e) = injected.and_then(|()| file.write_all(&self.buf)) {
            let path = seg.path.clone();
            return Err(self.poison(WalError::io("write segment", &path, e)));
        }
        seg.bytes += self.buf.len() as u64;
        self.stats.records_written += self.buf_records;
        self.stats.bytes_written += self.buf.len() as u64;
        self.stats.writes += 1;
        self.buf.clear();
        self.buf_records = 0;
        if let Some(last) = self.last {
            self.written = self.written.max(last.lsn);
        }
        self.check_invariants();
        Ok(())
    }

    /// Writes buffered records and fsyncs the active segment. After it returns,
    /// [`synced_lsn`](Wal::synced_lsn) is the last appended LSN. Does nothing when everything
    /// is already synced.
    ///
    /// # Errors
    /// The write or fsync failed (the log is poisoned; an fsync is never retried);
    /// [`WalError::Poisoned`].
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.flush()?;
        if self.synced == self.written {
            return Ok(());
        }
        let (Some(file), Some(seg)) = (self.active.as_ref(), self.segments.last()) else {
            unreachable!("written records without an active segment");
        };
        #[cfg(test)]
        let injected = self.faults.fire(IoPoint::Fsync);
        #[cfg(not(test))]
        let injected = Ok(());
        if let Err(e) = injected.and_then(|()| file.sync_data()) {
            let path = seg.path.clone();
            return Err(self.poison(WalError::io("fsync segment", &path, e)));
        }
        self.stats.fsyncs += 1;
        self.synced = self.written;
        self.check_invariants();
        Ok(())
    }

    /// For an fsync made without holding the log (see [`InlineWal`](crate::InlineWal)): a
    /// duplicate handle of the active segment and the last LSN written through it, or `None`
    /// when everything written is already synced. Every record up to that LSN is in this file
    /// or in an older segment, and older segments were fsynced when the log rolled past them, so
    /// fdatasyncing the handle makes the whole prefix durable; report it with
    /// [`sync_handle_done`](Wal::sync_handle_done). Buffered records are not written first.
    ///
    /// # Errors
    /// Duplicating the handle failed (the log is poisoned: it could no longer be synced);
    /// [`WalError::Poisoned`].
    pub(crate) fn sync_handle(&mut self) -> Result<Option<SyncHandle>, WalError> {
        self.check_usable()?;
        if self.synced == self.written {
            return Ok(None);
        }
        let (Some(file), Some(seg)) = (self.active.as_ref(), self.segments.last()) else {
            unreachable!("written records without an active segment");
        };
        let file = match file.try_clone() {
            Ok(file) => file,
            Err(e) => {
                let path = seg.path.clone();
                return Err(self.poison(WalError::io("duplicate segment handle", &path, e)));
            }
        };
        #[cfg(test)]
        let injected = self.faults.fire(IoPoint::Fsync);
        Ok(Some(SyncHandle {
            file,
            path: seg.path.clone(),
            written: self.written,
            resets: self.resets,
            #[cfg(test)]
            injected,
        }))
    }

    /// Records the outcome of fdatasyncing a [`SyncHandle`]: on success `synced` advances to
    /// the handle's LSN (never backwards: a roll may have synced further meanwhile); on
    /// failure the log is poisoned.
    ///
    /// # Errors
    /// The fsync failed (the log is now poisoned); [`WalError::Poisoned`] when the log failed
    /// meanwhile (the fsync's success then changes nothing).
    pub(crate) fn sync_handle_done(
        &mut self,
        handle: &SyncHandle,
        result: std::io::Result<()>,
    ) -> Result<(), WalError> {
        self.check_usable()?;
        assert_eq!(
            handle.resets, self.resets,
            "a sync handle taken before a reset or truncation is reported after it"
        );
        if let Err(e) = result {
            return Err(self.poison(WalError::io("fsync segment", &handle.path, e)));
        }
        self.stats.fsyncs += 1;
        debug_assert!(handle.written <= self.written, "written never goes back");
        self.synced = self.synced.max(handle.written);
        self.check_invariants();
        Ok(())
    }

    /// Removes the oldest segments whose every record is at or below `snapshot_lsn`, as long as
    /// the segments left total at least `retention_bytes`. The active segment is never removed.
    /// Call it only once a snapshot at `snapshot_lsn` is durable: [`Wal::open`] needs a snapshot
    /// covering everything before the first segment. Returns how many segments were removed.
    ///
    /// # Errors
    /// Removing a file failed (the log stays usable; the segments list matches the disk) or the
    /// directory fsync failed (the log is poisoned); [`WalError::Poisoned`].
    pub fn compact(&mut self, snapshot_lsn: Lsn) -> Result<usize, WalError> {
        self.check_usable()?;
        let mut total: u64 = self.segments.iter().map(|s| s.bytes).sum();
        let mut removed = 0;
        while self.segments.len() > 1 {
            let seg = &self.segments[0];
            let covered = seg.last.is_none_or(|p| p.lsn <= snapshot_lsn);
            let kept_after = total - seg.bytes;
            if !covered || kept_after < self.opts.retention_bytes {
                break;
            }
            std::fs::remove_file(&seg.path)
                .map_err(|e| WalError::io("remove segment", &seg.path, e))?;
            total = kept_after;
            self.segments.remove(0);
            self.stats.segments_removed += 1;
            removed += 1;
        }
        if removed > 0 {
            fsync_dir(&self.opts.dir).map_err(|e| self.poison(e))?;
        }
        self.check_invariants();
        Ok(removed)
    }

    /// Discards the whole log and continues after `after`, the position of a snapshot that
    /// replaces it (a follower bootstrapped from its leader's snapshot). Removes every segment
    /// file and the spare, and fsyncs the directory. Afterwards the log holds no record, the
    /// next record appended must have LSN `after.lsn + 1`, and [`written_lsn`](Wal::written_lsn)
    /// and [`synced_lsn`](Wal::synced_lsn) are `after.lsn`, which may be lower than before
    /// (a diverged follower reset back). Records buffered and not written are dropped.
    ///
    /// Call it only once the snapshot at `after` is durable: [`Wal::open`] then continues the
    /// same way with `after.lsn`. The epoch of `after` is not kept (the log holds no record
    /// to carry it, and `open` would not know it either).
    ///
    /// Crash safety: the segment that may hold `after.lsn + 1` is removed and the removal
    /// made durable before the others are removed, so a crash in between never leaves records
    /// past `after` that `open(after.lsn)` would replay; it may leave segments past a gap,
    /// which `open` refuses as [`WalError::Corrupt`] (missing entries) until they are removed.
    ///
    /// The spare segment being prepared is cancelled (its thread stopped and its file removed)
    /// before the directory is emptied, so no thread writes or renames a file there meanwhile;
    /// a new one is started for the first segment of the reset log.
    ///
    /// # Errors
    /// Listing the directory failed (the log is unchanged); removing a file or fsyncing the
    /// directory failed (the log is poisoned: the directory is between two logs);
    /// [`WalError::Poisoned`].
    pub fn reset(&mut self, after: LogPosition) -> Result<(), WalError> {
        self.check_usable()?;
        let dir = self.opts.dir.clone();
        let mut files =
            list_segment_files(&dir).map_err(|e| WalError::io("list directory", &dir, e))?;
        if let Some(spare) = self.spare.take() {
            spare.cancel();
        }
        self.active = None;
        self.segments.clear();
        self.buf.clear();
        self.buf_records = 0;
        // The last segment named at or before `after + 1` is the one that may hold it; every
        // later one holds only records past `after`.
        let holds_next = files
            .partition_point(|(first, _)| first.0 <= after.lsn.0.saturating_add(1))
            .checked_sub(1);
        if let Some(index) = holds_next {
            let (_, path) = files.remove(index);
            segment_remove(&path).map_err(|e| self.poison(e))?;
            if !files.is_empty() {
                fsync_dir(&dir).map_err(|e| self.poison(e))?;
            }
        }
        for (_, path) in &files {
            segment_remove(path).map_err(|e| self.poison(e))?;
        }
        fsync_dir(&dir).map_err(|e| self.poison(e))?;
        tracing::info!(
            dir = %dir.display(),
            after = %after,
            previous_next_lsn = %self.next_lsn,
            "log reset"
        );
        self.last = None;
        self.next_lsn = after.lsn.next();
        self.written = after.lsn;
        self.synced = after.lsn;
        self.resets += 1;
        self.spare_start_if_due();
        self.check_invariants();
        Ok(())
    }

    /// Removes every record after `lsn` and keeps every record at or before it, durably;
    /// returns how many records were removed (written or buffered). A node that led, was
    /// deposed and comes back holds records the new leader never had: it truncates its log
    /// after the last record the two share and follows from there, instead of being sent a
    /// whole snapshot. `lsn` at or past the last record: nothing to do, `Ok(0)`.
    ///
    /// Afterwards the next record appended must have LSN `lsn + 1` (in an epoch at least that
    /// of the record at `lsn`); [`last_position`](Wal::last_position) is the record at `lsn`
    /// (or the last one before a gap a snapshot covers, or LSN 0); and
    /// [`written_lsn`](Wal::written_lsn) and [`synced_lsn`](Wal::synced_lsn) are at most `lsn`,
    /// which may be lower than before. When a written record was removed both are exactly
    /// `lsn`: the cut segment is fsynced, and older segments were fsynced when the log rolled
    /// past them. [`Wal::open`] then finds exactly the records up to `lsn`.
    ///
    /// Call it only with `lsn` at or past the LSN of the node's snapshot: records a snapshot
    /// covers were applied and cannot be taken back. The log refuses what it can see (a record
    /// after `lsn` compacted away or in a gap a snapshot covers), not a snapshot covering
    /// records it still holds for retention.
    ///
    /// Steps, in this order:
    /// 1. Find where record `lsn + 1` starts, reading the segment that holds it when it was
    ///    written. Nothing has changed yet.
    /// 2. When `lsn + 1` is buffered, drop it and every record after it from the buffer. No
    ///    I/O: nothing on disk holds them, and every buffered record comes after every written
    ///    one.
    /// 3. Otherwise every buffered record comes after `lsn + 1` and is dropped, and on disk:
    ///    a. remove the segments after the one holding `lsn + 1`, newest first, fsyncing the
    ///    directory after each removal;
    ///    b. cut the segment holding `lsn + 1` at that record's offset (`set_len`, then an
    ///    fsync of the file), or, when `lsn + 1` is its first record, remove it and fsync the
    ///    directory. The segment before it then takes the appends, at its logical end.
    ///
    /// Crash safety: after every step the disk holds a prefix of the old log at least as long
    /// as the truncated one, so `open` after a crash finds the old log, the truncated one or a
    /// log between the two; never a gap, and never a record past `lsn` once this returned.
    /// Newest first is what keeps it a prefix: cutting the segment before its successors are
    /// gone, or removing one before a newer one, would leave segments past a gap, which `open`
    /// refuses as [`WalError::Corrupt`] (entries missing). Each removal is made durable before
    /// the next because a file system may persist unlinks in one directory in any order. The
    /// cut is one `set_len`, whose new size is either durable or not; cutting by writing zeros
    /// instead (keeping a preallocated file's length) could persist some zeroed blocks and not
    /// others, leaving records after zeros that `open` takes for corruption. So a cut segment
    /// ends at its last record, without zero fill, and grows by appending until the log rolls
    /// (the log reads segments written both ways). A crash before this returns may leave
    /// records past `lsn`; run it again after `open`.
    ///
    /// The spare segment is kept: it holds no log data and names no LSN. A
    /// [`LogCursor`](crate::LogCursor) that read records past `lsn` must be dropped: records
    /// appended afterwards take their place in the same file and it cannot tell.
    ///
    /// # Errors
    /// [`WalError::TruncateCompacted`] (the log is unchanged); I/O failure or corruption
    /// reading the segment holding `lsn + 1` (the log is unchanged); a failed removal,
    /// `set_len` or fsync (the log is poisoned: the disk holds a prefix of the old log at
    /// least as long as the truncated one); [`WalError::Poisoned`].
    pub fn truncate_after(&mut self, lsn: Lsn) -> Result<usize, WalError> {
        self.check_usable()?;
        if lsn.next() >= self.next_lsn {
            return Ok(0);
        }
        let lsn_min = self.truncate_lsn_min();
        if lsn < lsn_min {
            return Err(WalError::TruncateCompacted { lsn, lsn_min });
        }
        // Every record from `lsn_min + 1` to the end is held, so these are the records removed.
        let removed = self.next_lsn.0 - lsn.0 - 1;
        let cut = self.truncate_locate(lsn)?;
        let seg = &self.segments[cut.index];
        let prev_in_segment = cut.prev.filter(|p| p.lsn >= seg.first_lsn);
        if cut.offset >= seg.bytes {
            // Step 2: `lsn + 1` is buffered; the buffer holds the active segment's bytes after
            // `seg.bytes`, so the offset into it fits in usize.
            let keep = usize::try_from(cut.offset - seg.bytes).unwrap_or(usize::MAX);
            assert_eq!(
                cut.index + 1,
                self.segments.len(),
                "a buffered record outside the active segment"
            );
            assert!(
                keep <= self.buf.len(),
                "cut at {keep} past the {} buffered bytes",
                self.buf.len()
            );
            assert!(
                removed <= self.buf_records,
                "{removed} records to remove, {} buffered",
                self.buf_records
            );
            self.buf.truncate(keep);
            self.buf_records -= removed;
            self.segments[cut.index].last = prev_in_segment;
        } else {
            assert!(
                self.written > lsn,
                "record {} is written but written is {}",
                lsn.next(),
                self.written
            );
            self.truncate_disk(&cut, prev_in_segment)?;
            self.buf.clear();
            self.buf_records = 0;
            // Written past `lsn` before, so everything up to `lsn` was written, and is durable
            // now (see the doc comment).
            self.written = lsn;
            self.synced = lsn;
        }
        tracing::info!(
            dir = %self.opts.dir.display(),
            after = %lsn,
            records_removed = removed,
            previous_next_lsn = %self.next_lsn,
            "log truncated"
        );
        self.last = cut.prev;
        self.next_lsn = lsn.next();
        self.written = self.written.min(lsn);
        self.synced = self.synced.min(lsn);
        self.resets += 1;
        self.spare_start_if_due();
        self.check_invariants();
        assert!(
            self.last.is_none_or(|p| p.lsn <= lsn),
            "last {:?} past the truncation at {lsn}",
            self.last
        );
        assert!(
            self.segments
                .last()
                .and_then(|s| s.last)
                .is_none_or(|p| p.lsn <= lsn),
            "the active segment ends past the truncation at {lsn}"
        );
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    /// The lowest LSN [`truncate_after`](Wal::truncate_after) may cut back to: one before the
    /// first record of the run of records that ends the log without a gap (`next_lsn - 1` when
    /// a snapshot the log was opened after is newer than its last record).
    fn truncate_lsn_min(&self) -> Lsn {
        let mut run_first = self.next_lsn;
        for seg in self.segments.iter().rev() {
            // A segment with only its header holds no record to break the run.
            let Some(last) = seg.last else { continue };
            if last.lsn.next() != run_first {
                break;
            }
            run_first = seg.first_lsn;
        }
        Lsn(run_first.0 - 1)
    }

    /// Step 1 of [`truncate_after`](Wal::truncate_after): where record `lsn + 1` starts and
    /// the record before it. Reads the segment holding it only when the record before it may
    /// be written there. `lsn + 1` must be held (see [`Wal::truncate_lsn_min`]).
    ///
    /// # Errors
    /// Reading the segment failed, or it is corrupt before `lsn + 1` or does not hold it.
    fn truncate_locate(&self, lsn: Lsn) -> Result<TruncateCut, WalError> {
        let target = lsn.next();
        let index = self
            .segments
            .partition_point(|s| s.first_lsn <= target)
            .checked_sub(1);
        let Some(index) = index else {
            unreachable!("lsn {target} is held but no segment starts at or before it");
        };
        let seg = &self.segments[index];
        assert!(
            seg.last.is_some_and(|p| p.lsn >= target),
            "segment {} does not hold lsn {target}: last {:?}",
            seg.first_lsn,
            seg.last
        );
        let prev_segment_last = index.checked_sub(1).and_then(|i| self.segments[i].last);
        if target == seg.first_lsn {
            return Ok(TruncateCut {
                index,
                offset: SEGMENT_HEADER_BYTES as u64,
                prev: prev_segment_last,
            });
        }
        let is_active = index + 1 == self.segments.len();
        let buf_first = Lsn(self.next_lsn.0 - self.buf_records);
        if is_active && self.buf_records > 0 && target > buf_first {
            let (at, prev) = self.truncate_locate_buffered(target);
            return Ok(TruncateCut {
                index,
                offset: seg.bytes + at as u64,
                prev: Some(prev),
            });
        }
        // The record before `lsn + 1` is written in this segment: find it in the file.
        let data = read_prefix(&seg.path, seg.bytes)?;
        let mut at = SEGMENT_HEADER_BYTES as u64;
        let mut found = false;
        let mut prev = prev_segment_last;
        let scan = scan_segment(&data, seg.first_lsn, prev_segment_last, |record| {
            if found || record.pos.lsn >= target {
                found = true;
                return;
            }
            at += record.encoded_len() as u64;
            prev = Some(record.pos);
        });
        // A bad record after `lsn + 1` would be cut off anyway; one before it is corruption.
        if let Some(bad) = scan.bad.filter(|_| !found) {
            return Err(WalError::corrupt(&seg.path, bad.offset, bad.reason));
        }
        let buffered = is_active && self.buf_records > 0 && target == buf_first;
        let expected_at = if buffered { seg.bytes } else { at };
        if found == buffered || at != expected_at || prev.is_none_or(|p| p.lsn.next() != target) {
            return Err(WalError::corrupt(
                &seg.path,
                at,
                format!(
                    "record {target} not where the log wrote it: the file's records end at \
                     offset {} with {:?}, the log expects {} bytes",
                    scan.valid_end, scan.last, seg.bytes
                ),
            ));
        }
        Ok(TruncateCut {
            index,
            offset: at,
            prev,
        })
    }

    /// Offset in the write buffer of buffered record `target`, which is not the first one
    /// buffered, and the position of the record before it.
    fn truncate_locate_buffered(&self, target: Lsn) -> (usize, LogPosition) {
        let mut at = 0;
        let mut prev = None;
        while at < self.buf.len() {
            let pos = LogPosition {
                epoch: Epoch(read_u64(&self.buf, at + 8)),
                lsn: Lsn(read_u64(&self.buf, at + 16)),
            };
            if pos.lsn == target {
                let Some(prev) = prev else {
                    unreachable!("lsn {target} is the first buffered record");
                };
                return (at, prev);
            }
            prev = Some(pos);
            // A length this log encoded: at most RECORD_PAYLOAD_BYTES_MAX, fits in usize.
            at += RECORD_HEADER_BYTES + read_u32(&self.buf, at) as usize;
        }
        unreachable!("lsn {target} is not in the write buffer");
    }

    /// Step 3 of [`truncate_after`](Wal::truncate_after): removes the segments after the one
    /// holding `lsn + 1`, newest first, then cuts that one at `cut.offset` or removes it. Keeps
    /// `segments` matching the disk and leaves `active` alone until the end, so that on a
    /// failure (which poisons the log) the invariants still hold. `prev_in_segment` is the
    /// cut segment's last record afterwards.
    fn truncate_disk(
        &mut self,
        cut: &TruncateCut,
        prev_in_segment: Option<LogPosition>,
    ) -> Result<(), WalError> {
        let dir = self.opts.dir.clone();
        while self.segments.len() > cut.index + 1 {
            let Some(seg) = self.segments.last() else {
                unreachable!("more segments than the index of one of them");
            };
            let path = seg.path.clone();
            segment_remove(&path).map_err(|e| self.poison(e))?;
            fsync_dir(&dir).map_err(|e| self.poison(e))?;
            self.segments.pop();
            self.truncate_crash_point()?;
        }
        let path = self.segments[cut.index].path.clone();
        if cut.offset == SEGMENT_HEADER_BYTES as u64 {
            segment_remove(&path).map_err(|e| self.poison(e))?;
            fsync_dir(&dir).map_err(|e| self.poison(e))?;
            self.segments.pop();
            self.truncate_crash_point()?;
            self.active = match self.segments.last() {
                None => None,
                Some(seg) => {
                    let (path, bytes) = (seg.path.clone(), seg.bytes);
                    let file = segment_open_at(&path, bytes).map_err(|e| self.poison(e))?;
                    Some(file)
                }
            };
            return Ok(());
        }
        let file = truncate_cut_segment(&path, cut.offset).map_err(|e| self.poison(e))?;
        self.stats.fsyncs += 1;
        self.active = Some(file);
        let seg = &mut self.segments[cut.index];
        seg.bytes = cut.offset;
        seg.last = prev_in_segment;
        Ok(())
    }

    /// Ends a truncation here, as a crash would, when the test plan calls for it.
    #[cfg_attr(not(test), allow(clippy::unused_self, clippy::unnecessary_wraps))]
    fn truncate_crash_point(&mut self) -> Result<(), WalError> {
        #[cfg(test)]
        match self.faults.truncate_crash_after {
            Some(0) => {
                self.faults.truncate_crash_after = None;
                let crash = std::io::Error::other("injected crash during truncation");
                let error = WalError::io("truncate log", &self.opts.dir, crash);
                return Err(self.poison(error));
            }
            Some(n) => self.faults.truncate_crash_after = Some(n - 1),
            None => {}
        }
        Ok(())
    }

    /// Reads written records with LSN `from` and later, in order, stopping once their payloads
    /// total `bytes_max` (at least one record is returned when any exists). Records appended but
    /// not yet flushed are not seen. An empty result means `from` is past the written log.
    ///
    /// # Errors
    /// [`WalError::Compacted`] when `from` is before the first record kept (or falls in a gap
    /// a snapshot covers); I/O failure or corruption reading a segment; [`WalError::Poisoned`].
    pub fn read_from(&self, from: Lsn, bytes_max: u64) -> Result<Vec<LogRecord>, WalError> {
        self.check_usable()?;
        let from = from.max(Lsn(1));
        let mut out = Vec::new();
        if from > self.written {
            return Ok(out);
        }
        let start = self.segments.partition_point(|s| s.first_lsn <= from);
        let in_segment = start
            .checked_sub(1)
            .filter(|&i| self.segments[i].last.is_some_and(|p| p.lsn >= from));
        let Some(start) = in_segment else {
            let first = self
                .segments
                .get(start)
                .map_or(self.next_lsn, |s| s.first_lsn);
            return Err(WalError::Compacted {
                requested: from,
                first,
            });
        };
        let mut payload_bytes: u64 = 0;
        let mut prev = None;
        for seg in &self.segments[start..] {
            // Only the bytes this log has written count: not the zero fill after them.
            let data = read_prefix(&seg.path, seg.bytes)?;
            let mut done = false;
            let scan = scan_segment(&data, seg.first_lsn, prev, |record| {
                if done || record.pos.lsn < from || record.pos.lsn > self.written {
                    return;
                }
                payload_bytes += record.payload.len() as u64;
                out.push(record);
                done = payload_bytes >= bytes_max;
            });
            if let Some(bad) = scan.bad {
                return Err(WalError::corrupt(&seg.path, bad.offset, bad.reason));
            }
            prev = scan.last.or(prev);
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// The last record in the log (written or buffered); `LogPosition::default()` (LSN 0)
    /// when it holds none. Unlike [`Recovery::last`] this never reports a snapshot's LSN.
    #[must_use]
    pub fn last_position(&self) -> LogPosition {
        self.last.unwrap_or_default()
    }

    /// The LSN the next appended record must have.
    #[must_use]
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The first LSN the log still holds ([`next_lsn`](Wal::next_lsn) when it holds none).
    #[must_use]
    pub fn first_lsn(&self) -> Lsn {
        self.segments
            .iter()
            .find(|s| s.last.is_some())
            .map_or(self.next_lsn, |s| s.first_lsn)
    }

    /// Last LSN handed to the OS (or covered by the snapshot the log was opened after).
    #[must_use]
    pub fn written_lsn(&self) -> Lsn {
        self.written
    }

    /// Last LSN fsynced (or covered by the snapshot the log was opened after).
    #[must_use]
    pub fn synced_lsn(&self) -> Lsn {
        self.synced
    }

    /// Segment files the log has.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes of log in all segment files: headers and records written, buffered bytes excluded.
    /// The logical size: the zero fill of preallocated segments (and the spare) is not
    /// counted, so the disk space used is up to one segment per file more.
    #[must_use]
    pub fn bytes_on_disk(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Counters since the log was opened.
    #[must_use]
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// Whether a spare segment is being prepared (or is ready and not installed yet).
    #[cfg(test)]
    pub(crate) fn spare_active(&self) -> bool {
        self.spare.is_some()
    }

    /// Whether an earlier failure poisoned the log.
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The options the log was opened with.
    #[must_use]
    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// The directory of the log.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// Checks the log's invariants.
    ///
    /// # Panics
    /// When one does not hold: a bug in this crate.
    pub fn check_invariants(&self) {
        assert!(
            self.synced <= self.written,
            "synced {} past written {}",
            self.synced,
            self.written
        );
        assert!(
            self.written < self.next_lsn,
            "written {} not before next {}",
            self.written,
            self.next_lsn
        );
        assert_eq!(
            self.segments.is_empty(),
            self.active.is_none(),
            "an active file exists exactly when a segment does"
        );
        assert_eq!(
            self.buf.is_empty(),
            self.buf_records == 0,
            "buffer bytes and record count agree"
        );
        if let Some(last) = self.last {
            assert!(
                last.lsn < self.next_lsn,
                "last {last} not before next {}",
                self.next_lsn
            );
        }
        debug_assert!(
            self.segments
                .windows(2)
                .all(|w| w[0].last.map_or(w[0].first_lsn, |p| p.lsn.next()) <= w[1].first_lsn),
            "segments are ordered and do not overlap"
        );
    }

    fn check_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        Ok(())
    }

    /// Marks the log poisoned and passes the error through.
    fn poison(&mut self, error: WalError) -> WalError {
        tracing::error!(%error, "write-ahead log poisoned");
        self.poisoned = true;
        error
    }

    /// The injected failure for `point`, if the test plan calls for one now.
    #[cfg_attr(not(test), allow(clippy::unused_self))]
    fn fault(&mut self, point: IoPoint) -> std::io::Result<()> {
        #[cfg(test)]
        return self.faults.fire(point);
        #[cfg(not(test))]
        {
            let _ = point;
            Ok(())
        }
    }
}

impl Drop for Wal {
    /// Stops a spare segment being prepared and removes its file.
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.cancel();
        }
    }
}

/// Removes a segment file for [`Wal::reset`] or [`Wal::truncate_after`]; one already gone is
/// fine.
fn segment_remove(path: &Path) -> Result<(), WalError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::io("remove segment", path, e)),
    }
}

/// Where [`Wal::truncate_after`] cuts: record `lsn + 1` and the record before it.
#[derive(Debug)]
struct TruncateCut {
    /// Index in `segments` of the segment holding `lsn + 1`.
    index: usize,
    /// Offset of record `lsn + 1` in that segment, buffered bytes counted after the written
    /// ones: below the segment's `bytes` when the record is written.
    offset: u64,
    /// The record before `lsn + 1` in the log (at `lsn`, or the last before a gap a snapshot
    /// covers); `None` when the log holds none.
    prev: Option<LogPosition>,
}

/// Cuts a segment file at `offset` (`set_len`), fsyncs it and returns it opened for writing,
/// positioned there.
fn truncate_cut_segment(path: &Path, offset: u64) -> Result<File, WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open segment", path, e))?;
    file.set_len(offset)
        .map_err(|e| WalError::io("cut segment", path, e))?;
    // `sync_all`: the new length is metadata.
    file.sync_all()
        .map_err(|e| WalError::io("fsync segment", path, e))?;
    let mut file = file;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| WalError::io("seek segment", path, e))?;
    Ok(file)
}

/// Opens a segment file for writing, positioned at `offset` (its logical end).
fn segment_open_at(path: &Path, offset: u64) -> Result<File, WalError> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open segment", path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| WalError::io("seek segment", path, e))?;
    Ok(file)
}

/// Reads the first `len` bytes of a file (fewer when it is shorter).
fn read_prefix(path: &Path, len: u64) -> Result<Vec<u8>, WalError> {
    let file = File::open(path).map_err(|e| WalError::io("open segment", path, e))?;
    let mut data = Vec::new();
    file.take(len)
        .read_to_end(&mut data)
        .map_err(|e| WalError::io("read segment", path, e))?;
    Ok(data)
}

impl std::fmt::Debug for Wal {
    /// A summary: the write buffer can hold megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.opts.dir)
            .field("segments", &self.segments.len())
            .field("buffered_bytes", &self.buf.len())
            .field("last", &self.last)
            .field("next_lsn", &self.next_lsn)
            .field("written", &self.written)
            .field("synced", &self.synced)
            .field("poisoned", &self.poisoned)
            .field("resets", &self.resets)
            .field("spare", &self.spare.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
impl FaultPlan {
    fn fire(&mut self, point: IoPoint) -> std::io::Result<()> {
        let slot = match point {
            IoPoint::Write => &mut self.write_fails_after,
            IoPoint::Fsync => &mut self.fsync_fails_after,
        };
        match slot {
            Some(0) => {
                *slot = None;
                Err(std::io::Error::other(format!("injected {point:?} failure")))
            }
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}
