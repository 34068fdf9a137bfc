//! Log positions: epochs and LSNs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A leadership term. Grows by one at every change of leader and is the fencing token:
/// a node never accepts replication from an epoch lower than the highest it has seen.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

/// Log sequence number: the index of an entry in the log. The first entry has LSN 1;
/// LSN 0 means "nothing yet".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The position before any entry.
    pub const ZERO: Lsn = Lsn(0);

    /// The LSN that follows this one.
    #[must_use]
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

/// Where an entry sits in the log: `(epoch, lsn)`. Ordered by epoch first, then LSN, which is
/// the order failover uses to pick the most up-to-date replica.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// The epoch in which the entry was written.
    pub epoch: Epoch,
    /// The entry's sequence number.
    pub lsn: Lsn,
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch.0, self.lsn.0)
    }
}
