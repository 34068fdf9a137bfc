//! A node's simulated disk: its log (with the part an fsync has covered), the snapshot the
//! log continues from, and the metadata file.

use replikv_core::replication::{EpochTable, LogSink};
use replikv_core::{Command, Epoch, LogPosition, Lsn, Store};

/// A simulated log. Entries past `synced_len` are lost by a crash; an fsync covers everything
/// appended before it started (group commit).
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The state the log continues from (a snapshot installed from an upstream, or empty).
    pub base_store: Store,
    /// The position of `base_store`; `entries[i]` has LSN `base.lsn + 1 + i`.
    pub base: LogPosition,
    /// Where each epoch began in the log `base_store` reflects: `(epoch, first LSN)`,
    /// ascending. The simulator's oracle (the real snapshot does not carry it): it lets the
    /// checks tell which entries a snapshot covers.
    pub base_epochs: Vec<(Epoch, Lsn)>,
    /// The log after `base`.
    pub entries: Vec<(LogPosition, Command)>,
    /// How many of `entries` an fsync has covered.
    pub synced_len: usize,
    /// Bumped at every reset, so an fsync started before one is not taken for after it.
    pub generation: u64,
}

impl LogSink for Disk {
    fn append(&mut self, pos: LogPosition, cmd: &Command) {
        assert_eq!(
            pos.lsn,
            self.last().lsn.next(),
            "an append continues the log"
        );
        self.entries.push((pos, cmd.clone()));
    }
}

impl Disk {
    /// The last position held, synced or not.
    #[must_use]
    pub fn last(&self) -> LogPosition {
        self.entries.last().map_or(self.base, |(p, _)| *p)
    }

    /// The last position an fsync has covered.
    #[must_use]
    pub fn synced_last(&self) -> LogPosition {
        match self.synced_len.checked_sub(1) {
            Some(i) => self.entries.get(i).map_or(self.base, |(p, _)| *p),
            None => self.base,
        }
    }

    /// The index in `entries` of LSN `lsn`, if held.
    fn index_of(&self, lsn: Lsn) -> Option<usize> {
        let i = lsn.0.checked_sub(self.base.lsn.0)?.checked_sub(1)?;
        let i = usize::try_from(i).ok()?;
        (i < self.entries.len()).then_some(i)
    }

    /// The entry at `lsn`, synced or not.
    #[must_use]
    pub fn entry(&self, lsn: Lsn) -> Option<&(LogPosition, Command)> {
        self.index_of(lsn).and_then(|i| self.entries.get(i))
    }

    /// The epoch of the position at `lsn` (an entry, or the base), synced or not; `None` when
    /// the log does not hold it.
    #[must_use]
    pub fn epoch_at(&self, lsn: Lsn) -> Option<Epoch> {
        if lsn == Lsn::ZERO {
            return None;
        }
        if lsn == self.base.lsn {
            return Some(self.base.epoch);
        }
        self.entry(lsn).map(|(p, _)| p.epoch)
    }

    /// The position at `lsn`: an entry's or the base's.
    #[must_use]
    pub fn position_at(&self, lsn: Lsn) -> Option<LogPosition> {
        if lsn == self.base.lsn {
            return Some(self.base);
        }
        self.entry(lsn).map(|(p, _)| *p)
    }

    /// The epoch of the entry at `lsn` if an fsync covered it (or it is in the base).
    #[must_use]
    pub fn durable_epoch_at(&self, lsn: Lsn) -> Option<Epoch> {
        if lsn <= self.base.lsn {
            return self.base_epoch_at(lsn);
        }
        let i = self.index_of(lsn)?;
        (i < self.synced_len).then(|| self.entries.get(i).map(|(p, _)| p.epoch))?
    }

    /// The epoch of the entry at `lsn` in the log the base reflects.
    fn base_epoch_at(&self, lsn: Lsn) -> Option<Epoch> {
        if lsn == Lsn::ZERO || lsn > self.base.lsn {
            return None;
        }
        self.base_epochs
            .iter()
            .rev()
            .find(|(_, first)| *first <= lsn)
            .map(|(e, _)| *e)
    }

    /// Where each epoch began in this log, base and entries (synced or not) together.
    #[must_use]
    pub fn epochs(&self) -> Vec<(Epoch, Lsn)> {
        let mut out = self.base_epochs.clone();
        for (p, _) in &self.entries {
            if out.last().is_none_or(|(e, _)| *e != p.epoch) {
                out.push((p.epoch, p.lsn));
            }
        }
        out
    }

    /// An fsync that started when the log held `len` entries of `generation` completed.
    /// Returns the LSN now durable, or `None` when the log was reset since.
    pub fn on_fsync_done(&mut self, generation: u64, len: usize) -> Option<Lsn> {
        if generation != self.generation {
            return None;
        }
        self.synced_len = self.synced_len.max(len.min(self.entries.len()));
        Some(self.synced_last().lsn)
    }

    /// The epoch table of this log, as the node rebuilds it replaying its snapshot and log:
    /// the base position, then every entry held.
    #[must_use]
    pub fn epoch_table(&self) -> EpochTable {
        let mut t = EpochTable::default();
        if self.base.lsn > Lsn::ZERO {
            let _ = t.note(self.base);
        }
        for (p, _) in &self.entries {
            let _ = t.note(*p);
        }
        t
    }

    /// Cuts the log back to `to.lsn` (at or past the base): the entries after it are gone,
    /// and an fsync under way no longer counts (it covered the old entries). Returns how many
    /// entries were discarded and the state the base and the kept entries make.
    pub fn truncate_after(&mut self, lsn: Lsn) -> (usize, Store) {
        let keep = usize::try_from(lsn.0.saturating_sub(self.base.lsn.0))
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        let discarded = self.entries.len() - keep;
        self.entries.truncate(keep);
        self.synced_len = self.synced_len.min(keep);
        self.generation += 1;
        let mut store = self.base_store.clone();
        for (_, cmd) in &self.entries {
            store.apply(cmd);
        }
        (discarded, store)
    }

    /// A crash: what no fsync covered is gone.
    pub fn crash(&mut self) {
        self.entries.truncate(self.synced_len);
        self.generation += 1;
    }

    /// Replaces the log with a snapshot at `pos`, durable at once (the real node writes the
    /// snapshot file and resets its log before it records the new history).
    pub fn reset(&mut self, store: Store, pos: LogPosition, epochs: Vec<(Epoch, Lsn)>) {
        self.base_store = store;
        self.base_epochs = epochs;
        self.base = pos;
        self.entries.clear();
        self.synced_len = 0;
        self.generation += 1;
    }

    /// The state and last position a restart recovers: the base with the synced entries
    /// replayed.
    #[must_use]
    pub fn recover(&self) -> (Store, LogPosition) {
        let mut store = self.base_store.clone();
        for (_, cmd) in self.entries.iter().take(self.synced_len) {
            store.apply(cmd);
        }
        (store, self.synced_last())
    }

    /// Asserts the disk's own invariants.
    ///
    /// # Panics
    /// When one is broken: a bug in the simulator.
    pub fn check_invariants(&self) {
        assert!(
            self.synced_len <= self.entries.len(),
            "synced {} <= entries {}",
            self.synced_len,
            self.entries.len()
        );
    }
}

/// The durable metadata file: the highest epoch seen and the history id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Highest epoch this node has seen or written in.
    pub epoch: u64,
    /// The log's history id; 0 before the node has one.
    pub history: u64,
    /// Whether this node leads `history` (it started it).
    pub leads: bool,
}
