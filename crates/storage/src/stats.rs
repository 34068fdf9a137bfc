//! Counters the server exports as metrics ("fsyncs per write").

/// Work done by one [`Wal`](crate::Wal) since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records handed to the OS.
    pub records_written: u64,
    /// Record bytes handed to the OS (segment headers excluded).
    pub bytes_written: u64,
    /// `write` calls that handed them over (one per flush of the write buffer).
    pub writes: u64,
    /// fsyncs of segment files (directory fsyncs are not counted).
    pub fsyncs: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Of those, segments whose zero-filled file a helper thread prepared before the roll
    /// needed it (with `preallocate` on; the others were zero-filled by the roll itself).
    pub segments_from_spare: u64,
    /// Segment files removed by compaction.
    pub segments_removed: u64,
}

/// Work done by a [`GroupCommit`](crate::GroupCommit) writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Calls to [`GroupCommit::submit`](crate::GroupCommit::submit).
    pub batches_submitted: u64,
    /// Submitted batches the writer has taken from the queue and written.
    pub batches_written: u64,
    /// Records written.
    pub records_written: u64,
    /// Rounds of the writer loop that wrote something: each drains the queue and writes every
    /// batch it found together.
    pub group_writes: u64,
    /// fsyncs of segment files. `fsyncs / batches_written` is the fsyncs-per-write metric.
    pub fsyncs: u64,
}
