//! Running every checker at once: [`Options`] and [`check_all`].

use super::availability::availability;
use super::linearizability::linearizability;
use super::lost_writes::lost_writes;
use super::monotonic_reads::monotonic_reads;
use super::read_your_writes::read_your_writes;
use super::stale_reads::stale_reads;
use super::verdict::{Status, Verdict};
use crate::history::History;
use std::time::Duration;

/// How [`check_all`] runs the checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The time the linearizability search may take over all keys together.
    pub linearizability_budget: Duration,
    /// Unavailability windows this long or shorter are not reported.
    pub min_unavailability: Duration,
    /// Whether every read went to the leader, so reads promise fresh data and a stale read is
    /// a failure. The caller filters the history to the reads it means.
    pub leader_reads_only: bool,
}

impl Default for Options {
    /// A 10 s linearizability budget, windows over 1 s, reads not promised fresh.
    fn default() -> Options {
        Options {
            linearizability_budget: Duration::from_secs(10),
            min_unavailability: Duration::from_secs(1),
            leader_reads_only: false,
        }
    }
}

/// Runs every checker on `h`, in this order: [`lost_writes`], [`linearizability`],
/// [`read_your_writes`], [`monotonic_reads`], [`stale_reads`], [`availability`].
///
/// The stale-read verdict fails when there are stale reads and `o.leader_reads_only`
/// promised fresh ones; otherwise the measuring checkers (stale reads, availability) pass and
/// report their counts.
#[must_use]
pub fn check_all(h: &History, o: &Options) -> Vec<Verdict> {
    let (mut stale, _) = stale_reads(h);
    if o.leader_reads_only && stale.violations > 0 {
        stale.status = Status::Fail;
    }
    vec![
        lost_writes(h),
        linearizability(h, o.linearizability_budget),
        read_your_writes(h),
        monotonic_reads(h),
        stale,
        availability(h, o.min_unavailability).0,
    ]
}
