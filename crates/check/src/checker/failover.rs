//! Failover time: how long after a fault on the leader another node acknowledged a write.

use crate::history::{fault_spans, History, OpId};
use serde::{Deserialize, Serialize};

/// The faults that take a leader away: the ones whose failover is measured.
pub const LEADER_FAULT_KINDS: [&str; 3] = ["kill", "pause", "partition"];

/// A kill, pause or partition of the node that led when it started, and what followed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderFault {
    /// `kill`, `pause` or `partition`.
    pub kind: String,
    /// The node that led, by client address.
    pub node: String,
    /// When the fault started, µs since the run started.
    pub start_us: u64,
    /// When it was undone (or the history ended), µs since the run started.
    pub end_us: u64,
    /// The failover time, ms: from the fault's start to the first write another node
    /// acknowledged. `None` when the fault was undone before any other node acknowledged a
    /// write (the old leader came back, or the cluster could not elect another in time).
    pub failover_ms: Option<f64>,
    /// The node that acknowledged that write: the new leader.
    pub new_leader: Option<String>,
    /// That write.
    pub first_write: Option<OpId>,
}

/// The failovers of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failovers {
    /// Leader faults followed by a write another node acknowledged while the fault lasted.
    pub failovers: u64,
    /// Leader faults undone before any other node acknowledged a write.
    pub healed_before_failover: u64,
    /// Median failover time (nearest rank), ms; 0 without failovers.
    pub median_ms: f64,
    /// 99th percentile failover time (nearest rank), ms; 0 without failovers.
    pub p99_ms: f64,
    /// Longest failover time, ms; 0 without failovers.
    pub max_ms: f64,
    /// Every leader fault, in order of start.
    pub leader_faults: Vec<LeaderFault>,
}

/// Measures failover time. For each kill, pause or partition whose start event says its node
/// led then ([`crate::history::FaultEvent::leader`]), the failover time runs from the fault's
/// start to the acknowledgement of the first write (any call but a read, outcome `Ok`) that a
/// different node acknowledged after the start. If the fault was undone (its `restart`,
/// `resume` or `heal`) before that, there was no failover: the old leader came back. A fault
/// never undone lasts until the last operation or event of the history.
#[must_use]
pub fn failovers(h: &History) -> Failovers {
    let end_us = h
        .ops
        .iter()
        .map(|op| op.end_us)
        .chain(h.faults.iter().map(|e| e.at_us))
        .max()
        .unwrap_or(0);
    let mut acks: Vec<(u64, OpId)> = h
        .ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.call.is_write() && op.is_ok())
        .map(|(id, op)| (op.end_us, id))
        .collect();
    acks.sort_unstable();
    let mut leader_faults = Vec::new();
    for span in fault_spans(h, end_us) {
        if !span.leader || !LEADER_FAULT_KINDS.contains(&span.kind.as_str()) {
            continue;
        }
        let after = acks.partition_point(|&(at, _)| at <= span.start_us);
        let first = acks[after..]
            .iter()
            .take_while(|&&(at, _)| at <= span.end_us)
            .find(|&&(_, id)| h.ops[id].node != span.node);
        let (failover_ms, new_leader, first_write) = match first {
            Some(&(at, id)) => (
                Some((at - span.start_us) as f64 / 1000.0),
                Some(h.ops[id].node.clone()),
                Some(id),
            ),
            None => (None, None, None),
        };
        leader_faults.push(LeaderFault {
            kind: span.kind,
            node: span.node,
            start_us: span.start_us,
            end_us: span.end_us,
            failover_ms,
            new_leader,
            first_write,
        });
    }
    let mut times: Vec<f64> = leader_faults.iter().filter_map(|f| f.failover_ms).collect();
    times.sort_by(f64::total_cmp);
    let failovers = times.len() as u64;
    Failovers {
        failovers,
        healed_before_failover: leader_faults.len() as u64 - failovers,
        median_ms: nearest_rank(&times, 50),
        p99_ms: nearest_rank(&times, 99),
        max_ms: times.last().copied().unwrap_or(0.0),
        leader_faults,
    }
}

/// Nearest-rank percentile `p` (1 to 100) of sorted values; 0 for none.
fn nearest_rank(sorted: &[f64], p: usize) -> f64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}
