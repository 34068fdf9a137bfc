//! Epoch boundaries of a log, and the last entry two logs share.
//!
//! Epochs are unique (the control plane hands them out, and within a history only one leader
//! writes), so two logs that hold an entry of the same epoch at the same LSN hold the same
//! entry, and agree on everything before it. An [`EpochTable`] records where each epoch starts
//! in a log, from LSN 1, across snapshots (it is a handful of pairs: one per change of leader).
//! [`shared_prefix`] compares two tables and finds where the logs part: a returning old leader
//! truncates its log there and follows, instead of being sent a whole snapshot.

use crate::position::{Epoch, LogPosition, Lsn};
use serde::{Deserialize, Serialize};

/// Where each epoch starts in a log: `(epoch, first LSN)` pairs, both strictly increasing.
/// The log's entries from a pair's LSN up to the next pair's are of that pair's epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochTable {
    starts: Vec<(Epoch, Lsn)>,
}

/// An appended position that does not continue the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("position {pos} goes back from epoch {last_epoch} starting at {last_start}")]
pub struct EpochOrderError {
    /// The position noted.
    pub pos: LogPosition,
    /// The table's last epoch.
    pub last_epoch: Epoch,
    /// Where it starts.
    pub last_start: Lsn,
}

impl EpochTable {
    /// The pairs, in order.
    #[must_use]
    pub fn starts(&self) -> &[(Epoch, Lsn)] {
        &self.starts
    }

    /// A table from pairs, which must be strictly increasing in both.
    ///
    /// # Errors
    /// The first pair out of order.
    pub fn from_starts(starts: &[(Epoch, Lsn)]) -> Result<EpochTable, EpochOrderError> {
        let mut t = EpochTable::default();
        for &(epoch, lsn) in starts {
            let pos = LogPosition { epoch, lsn };
            if let Some(&(last_epoch, last_start)) = t.starts.last() {
                if epoch <= last_epoch || lsn <= last_start {
                    return Err(EpochOrderError {
                        pos,
                        last_epoch,
                        last_start,
                    });
                }
            }
            t.starts.push((epoch, lsn));
        }
        Ok(t)
    }

    /// Notes an entry appended at `pos` (entries come in LSN order). Returns whether it
    /// started a new epoch.
    ///
    /// # Errors
    /// `pos` has an older epoch than the table's last, or starts a new epoch at or before
    /// the last epoch's start (nothing changes).
    pub fn note(&mut self, pos: LogPosition) -> Result<bool, EpochOrderError> {
        match self.starts.last() {
            Some(&(epoch, _)) if epoch == pos.epoch => Ok(false),
            Some(&(last_epoch, last_start)) if pos.epoch < last_epoch || pos.lsn <= last_start => {
                Err(EpochOrderError {
                    pos,
                    last_epoch,
                    last_start,
                })
            }
            _ => {
                self.starts.push((pos.epoch, pos.lsn));
                Ok(true)
            }
        }
    }

    /// The epoch of the entry at `lsn` (`None` before the first pair, or for LSN 0).
    #[must_use]
    pub fn epoch_at(&self, lsn: Lsn) -> Option<Epoch> {
        let i = self.starts.partition_point(|&(_, start)| start <= lsn);
        i.checked_sub(1).map(|i| self.starts[i].0)
    }

    /// Forgets the epochs of entries past `lsn` (the log was truncated to `lsn`).
    pub fn truncate_after(&mut self, lsn: Lsn) {
        self.starts.retain(|&(_, start)| start <= lsn);
    }
}

/// The last position two logs share: the highest `L` up to both logs' ends such that every
/// entry up to `L` has the same epoch in both (LSN 0 when they share nothing). `a` ends at
/// `a_last`, `b` at `b_last`.
#[must_use]
pub fn shared_prefix(a: &EpochTable, a_last: Lsn, b: &EpochTable, b_last: Lsn) -> LogPosition {
    let end = a_last.min(b_last);
    // The epochs of both logs change only at their tables' starts: compare them there.
    let mut points: Vec<Lsn> = a
        .starts
        .iter()
        .chain(&b.starts)
        .map(|&(_, lsn)| lsn)
        .filter(|lsn| *lsn <= end)
        .collect();
    points.push(Lsn(1).min(end));
    points.sort_unstable();
    points.dedup();
    let mut shared = Lsn::ZERO;
    for (i, &from) in points.iter().enumerate() {
        if from == Lsn::ZERO {
            continue;
        }
        let (ea, eb) = (a.epoch_at(from), b.epoch_at(from));
        if ea.is_none() || ea != eb {
            break;
        }
        // The segment runs to the next point, or to the end.
        shared = points.get(i + 1).map_or(end, |next| Lsn(next.0 - 1));
    }
    LogPosition {
        epoch: a.epoch_at(shared).unwrap_or_default(),
        lsn: shared,
    }
}
