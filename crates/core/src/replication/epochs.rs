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

/// The last position two logs share when their tables may start past LSN 1 (a log kept from a
/// snapshot on knows its epochs from the snapshot's position on): the highest `L`, up to both
/// logs' ends, at which both know the entry's epoch and agree on it. Epochs are unique, so the
/// logs then agree on everything up to `L`. `None` when they agree nowhere both know.
#[must_use]
pub fn last_shared(
    a: &EpochTable,
    a_last: Lsn,
    b: &EpochTable,
    b_last: Lsn,
) -> Option<LogPosition> {
    // Each table's segments: (epoch, first LSN, last LSN).
    let segments = |t: &EpochTable, last: Lsn| -> Vec<(Epoch, Lsn, Lsn)> {
        t.starts
            .iter()
            .enumerate()
            .map(|(i, &(epoch, start))| {
                let end = t
                    .starts
                    .get(i + 1)
                    .map_or(last, |&(_, next)| Lsn(next.0 - 1));
                (epoch, start, end)
            })
            .filter(|(_, start, end)| start <= end)
            .collect()
    };
    let ours = segments(a, a_last);
    let mut best: Option<LogPosition> = None;
    for (epoch, start, end) in segments(b, b_last) {
        for &(e, s, t) in &ours {
            if e != epoch {
                continue;
            }
            let (from, to) = (start.max(s), end.min(t));
            if from <= to && to > Lsn::ZERO && best.is_none_or(|p| to > p.lsn) {
                best = Some(LogPosition { epoch, lsn: to });
            }
        }
    }
    best
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

#[cfg(test)]
mod last_shared_tests {
    use super::*;

    fn table(starts: &[(u64, u64)]) -> EpochTable {
        let pairs: Vec<(Epoch, Lsn)> = starts.iter().map(|&(e, l)| (Epoch(e), Lsn(l))).collect();
        EpochTable::from_starts(&pairs).unwrap()
    }

    fn at(e: u64, l: u64) -> Option<LogPosition> {
        Some(LogPosition {
            epoch: Epoch(e),
            lsn: Lsn(l),
        })
    }

    #[test]
    fn a_deposed_leaders_tail_is_cut_where_the_new_leaders_epoch_starts() {
        // The old leader wrote epoch 2 up to 150; the new one holds epoch 2 up to 140, then
        // its own epoch 3.
        let old = table(&[(1, 1), (2, 50)]);
        let new = table(&[(1, 1), (2, 50), (3, 141)]);
        assert_eq!(last_shared(&new, Lsn(200), &old, Lsn(150)), at(2, 140));
        // Full tables: the same answer as the entry-by-entry rule.
        assert_eq!(
            Some(shared_prefix(&new, Lsn(200), &old, Lsn(150))),
            last_shared(&new, Lsn(200), &old, Lsn(150))
        );
    }

    #[test]
    fn tables_that_start_at_a_snapshot_compare_where_both_know() {
        // The follower knows its epochs from its snapshot at 2:120 on.
        let follower = table(&[(2, 120)]);
        let leader = table(&[(1, 1), (2, 50), (3, 141)]);
        assert_eq!(
            last_shared(&leader, Lsn(200), &follower, Lsn(150)),
            at(2, 140)
        );
        // A follower that is a plain prefix shares its whole log.
        assert_eq!(
            last_shared(&leader, Lsn(200), &follower, Lsn(130)),
            at(2, 130)
        );
        // Nothing in common where both know: no answer (a snapshot is needed).
        let other = table(&[(4, 120)]);
        assert_eq!(last_shared(&leader, Lsn(200), &other, Lsn(150)), None);
        assert_eq!(
            last_shared(&leader, Lsn(200), &EpochTable::default(), Lsn(0)),
            None
        );
    }
}
