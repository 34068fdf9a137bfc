//! What a follower checks in what its upstream sends, and what an upstream sends a follower
//! that asks for entries.

use crate::position::{Epoch, LogPosition, Lsn};

/// Why a batch of entries (or a heartbeat) was refused. The link is closed with this reason;
/// the follower reconnects and asks again from its own last position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntriesRefusal {
    /// The sender's epoch is lower than one this node has seen: it is a deposed leader (or
    /// fed by one) and must not be followed.
    #[error("stale epoch {got}: this node has seen epoch {known}")]
    StaleEpoch {
        /// The sender's epoch.
        got: Epoch,
        /// The highest this node has seen.
        known: Epoch,
    },
    /// The batch does not continue this node's log.
    #[error("entries after {prev} do not continue the log, which ends at {last}")]
    Gap {
        /// The position the batch says comes before it.
        prev: LogPosition,
        /// This node's last position.
        last: LogPosition,
    },
    /// The records are not consecutive, or their epochs go back or past the sender's.
    #[error("record {pos} is out of order after {after}")]
    Disorder {
        /// The offending record.
        pos: LogPosition,
        /// The position before it.
        after: LogPosition,
    },
}

/// Checks an epoch a message carries against the highest this node has seen.
///
/// # Errors
/// [`EntriesRefusal::StaleEpoch`] when it is lower.
pub fn check_epoch(got: Epoch, known: Epoch) -> Result<(), EntriesRefusal> {
    if got < known {
        Err(EntriesRefusal::StaleEpoch { got, known })
    } else {
        Ok(())
    }
}

/// Checks an `Entries` batch: the sender's epoch is not stale, the batch continues the log at
/// `last`, and its records are consecutive with epochs that never go back nor exceed the
/// sender's. An empty batch only needs a current epoch.
///
/// # Errors
/// The first rule broken.
pub fn check_entries(
    last: LogPosition,
    known: Epoch,
    epoch: Epoch,
    prev: LogPosition,
    records: impl IntoIterator<Item = LogPosition>,
) -> Result<(), EntriesRefusal> {
    check_epoch(epoch, known)?;
    let mut records = records.into_iter().peekable();
    if records.peek().is_none() {
        return Ok(());
    }
    if prev != last {
        return Err(EntriesRefusal::Gap { prev, last });
    }
    let mut after = prev;
    for pos in records {
        let consecutive = pos.lsn == after.lsn.next();
        if !consecutive || pos.epoch < after.epoch || pos.epoch > epoch {
            return Err(EntriesRefusal::Disorder { pos, after });
        }
        after = pos;
    }
    Ok(())
}

/// What an upstream sends a follower that asked for the entries after `from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchPlan {
    /// Stream the log from `first` on: the follower's log is a prefix of ours.
    Stream {
        /// The first LSN to send.
        first: Lsn,
    },
    /// Send a snapshot: the follower is empty, from another history, ahead of or diverged
    /// from our log, or behind what we retain.
    Snapshot {
        /// Why, for the log.
        reason: &'static str,
    },
}

/// Decides between streaming and a snapshot for a follower at `from` in `history`.
///
/// `ours` is the upstream's history id and `last` its last position; `epoch_at_from` is the
/// epoch of the upstream's own record at `from.lsn`, or `None` when it no longer holds that
/// record (compacted). The follower's log is a prefix of ours exactly when both logs hold the
/// same entry at `from` (same history, same epoch), as epochs never repeat within a history.
#[must_use]
pub fn plan_fetch(
    from: LogPosition,
    history: u64,
    ours: u64,
    last: LogPosition,
    epoch_at_from: Option<Epoch>,
) -> FetchPlan {
    if from.lsn == Lsn::ZERO || history == 0 {
        return FetchPlan::Snapshot {
            reason: "the follower has no log yet",
        };
    }
    if history != ours {
        return FetchPlan::Snapshot {
            reason: "the follower's log belongs to another history",
        };
    }
    if from.lsn > last.lsn {
        return FetchPlan::Snapshot {
            reason: "the follower is ahead of this log (it holds entries this node lost)",
        };
    }
    match epoch_at_from {
        None => FetchPlan::Snapshot {
            reason: "the follower is behind the retained log",
        },
        Some(e) if e != from.epoch => FetchPlan::Snapshot {
            reason: "the follower's log diverges from this one",
        },
        Some(_) => FetchPlan::Stream {
            first: from.lsn.next(),
        },
    }
}

/// Where a follower of our history whose log parted from ours (it holds entries we never had)
/// can cut its log back to and go on from, instead of receiving a snapshot: the last entry
/// both logs share, found from the epoch tables (`theirs` up to `from`, `ours` up to
/// `our_last`), if the follower can cut back that far (not below `truncatable_from`, its
/// snapshot) and the cut removes something. The upstream must still hold the entry at the
/// point returned (to check the follower's continuity) or end there; that is for the caller
/// to check against its log.
#[must_use]
pub fn plan_cut(
    from: LogPosition,
    history: u64,
    history_ours: u64,
    theirs: &super::epochs::EpochTable,
    truncatable_from: Lsn,
    ours: &super::epochs::EpochTable,
    our_last: Lsn,
) -> Option<LogPosition> {
    if history == 0 || history != history_ours || from.lsn == Lsn::ZERO {
        return None;
    }
    let to = super::epochs::last_shared(ours, our_last, theirs, from.lsn)?;
    (to.lsn >= truncatable_from && to.lsn < from.lsn).then_some(to)
}
