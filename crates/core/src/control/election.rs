//! Which replica to promote when the leader is lost.
//!
//! The control plane asks the live replicas for their last durable log position and calls
//! [`choose_leader`] with the answers. The rule keeps every write the cluster's mode
//! acknowledged:
//!
//! - `sync`: a write was acknowledged once every replica of the in-sync set (as the map
//!   records it) had it durably, so any member of that set holds them all: one report from
//!   the set suffices, and only its members are eligible.
//! - `semi-sync:K` and `quorum` (K = half the cluster): a write was acknowledged once K
//!   replicas, any of them, had it durably. Reports from `R - K + 1` of the `R` replicas meet
//!   every such group of K, and the most up-to-date report then holds every acknowledged
//!   write (logs that end at a higher `(epoch, lsn)` contain every entry committed before
//!   them, as in Raft's election rule).
//! - `async`: nothing was promised beyond the leader; the most up-to-date report wins.
//!
//! When the rule cannot be met (too few reports, an empty in-sync set) but the leader being
//! replaced reported (it restarted, or came back from a pause or a partition after its lease
//! ran out), it is elected again in a new epoch, or a replica whose log is at least as far
//! along: every acknowledged write is in the old leader's durable log (a leader acknowledges
//! nothing before its own log holds it, and was elected holding what its predecessors
//! acknowledged), and a log ending at a higher position holds all of it too. Otherwise
//! nobody is promoted, unless the map allows unclean failover: then the most up-to-date
//! report wins all the same, and the choice says it was unclean (writes acknowledged by the
//! old leader may be lost).

use super::map::ClusterMap;
use crate::position::{Epoch, LogPosition};
use crate::replication::AckMode;
use std::collections::BTreeMap;

/// What a live replica reported during an election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The replica's node id.
    pub id: String,
    /// Its last durable log position.
    pub durable: LogPosition,
}

/// The replica to promote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Its node id.
    pub id: String,
    /// The epoch it will write in: one past the map's.
    pub epoch: Epoch,
    /// Its last durable position (where the other replicas will be truncated to, at most).
    pub durable: LogPosition,
    /// Whether the mode's rule was met; `false`: an unclean failover, which may lose writes
    /// the old leader acknowledged.
    pub clean: bool,
}

/// Why nobody can be promoted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    /// No eligible replica reported.
    #[error("no eligible replica reported (mode {mode}; in-sync set {in_sync:?})")]
    NoCandidate {
        /// The cluster's mode.
        mode: AckMode,
        /// The map's in-sync set.
        in_sync: Vec<String>,
    },
    /// Too few replicas reported to be sure of holding every acknowledged write.
    #[error("{have} of {replicas} replicas reported; mode {mode} needs {need} to keep every acknowledged write")]
    TooFewReports {
        /// The cluster's mode.
        mode: AckMode,
        /// Reports from replicas.
        have: usize,
        /// Reports needed.
        need: usize,
        /// Replicas in the map.
        replicas: usize,
    },
}

/// Chooses the replica to promote, by the rule of `mode` (the cluster's acknowledgement mode),
/// from `reports`. Reports from non-members are ignored, and the map's leader's (the one
/// being replaced) counts only when the rule cannot be met without it (see the module's
/// documentation); of several reports from one replica, the first counts.
///
/// # Errors
/// Nobody can be promoted without risking acknowledged writes, and the map does not allow
/// unclean failover.
pub fn choose_leader(
    map: &ClusterMap,
    mode: AckMode,
    reports: &[Report],
) -> Result<Choice, ElectionError> {
    let cluster = u32::try_from(map.members.len()).unwrap_or(u32::MAX);
    choose_leader_sized(map, mode, cluster, reports)
}

/// [`choose_leader`] with the cluster size the leader's commit rule counted `quorum` against
/// (`--cluster-size`): K must be the one acknowledged writes were counted with, even when the
/// map has more members (a member added later may hold none of them).
///
/// # Errors
/// As [`choose_leader`].
pub fn choose_leader_sized(
    map: &ClusterMap,
    mode: AckMode,
    cluster: u32,
    reports: &[Report],
) -> Result<Choice, ElectionError> {
    let mut valid: BTreeMap<&str, LogPosition> = BTreeMap::new();
    let mut old_leader: Option<(&str, LogPosition)> = None;
    for r in reports {
        let member = map.members.contains_key(&r.id);
        let leader = map.leader.as_deref() == Some(r.id.as_str());
        if member && !leader {
            valid.entry(r.id.as_str()).or_insert(r.durable);
        } else if member && old_leader.is_none() {
            old_leader = Some((r.id.as_str(), r.durable));
        }
    }
    let replicas = map.replicas().count();
    let clean = match mode {
        AckMode::Async => best(&valid, |_| true),
        AckMode::Sync => {
            best(&valid, |id| map.in_sync.contains(id)).map_err(|_| ElectionError::NoCandidate {
                mode,
                in_sync: map.in_sync.iter().cloned().collect(),
            })
        }
        AckMode::SemiSync(_) | AckMode::Quorum => {
            let k = mode.replicas_needed(cluster) as usize;
            let need = (replicas + 1).saturating_sub(k).max(1);
            if valid.len() >= need {
                best(&valid, |_| true)
            } else {
                Err(ElectionError::TooFewReports {
                    mode,
                    have: valid.len(),
                    need,
                    replicas,
                })
            }
        }
    };
    let choose = |(id, durable): (&str, LogPosition), clean: bool| Choice {
        id: id.to_string(),
        epoch: Epoch(map.epoch.0 + 1),
        durable,
        clean,
    };
    // The old leader holds every acknowledged write: it, or a replica at least as far along
    // (another node rather than it, of equal ones), keeps them all.
    let clean = clean.or_else(|e| match old_leader {
        Some((id, durable)) => Ok(valid
            .iter()
            .filter(|(_, pos)| **pos >= durable)
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map_or((id, durable), |(id, pos)| (*id, *pos))),
        None => Err(e),
    });
    match clean {
        Ok(found) => Ok(choose(found, true)),
        Err(e) if map.unclean_failover => match best(&valid, |_| true) {
            Ok(found) => Ok(choose(found, false)),
            Err(_) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// The eligible report with the highest position (ties: the smallest id).
fn best<'a>(
    valid: &BTreeMap<&'a str, LogPosition>,
    eligible: impl Fn(&str) -> bool,
) -> Result<(&'a str, LogPosition), ElectionError> {
    let mut found: Option<(&'a str, LogPosition)> = None;
    for (id, pos) in valid {
        if eligible(id) && found.is_none_or(|(_, p)| *pos > p) {
            found = Some((id, *pos));
        }
    }
    found.ok_or(ElectionError::NoCandidate {
        mode: AckMode::Async,
        in_sync: Vec::new(),
    })
}
