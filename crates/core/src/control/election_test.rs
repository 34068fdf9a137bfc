//! Tests for [`choose_leader`]: each mode's rule, unclean failover, ignored reports, and a
//! property test that whatever reports arrive, a clean choice holds every write the mode
//! acknowledged.

use super::election::{choose_leader, ElectionError, Report};
use super::map::{ClusterMap, MapCommand};
use crate::position::{Epoch, LogPosition, Lsn};
use crate::replication::AckMode;
use proptest::prelude::*;

/// `n` members `n0..`, `n0` leading in epoch 3, `in_sync` replicas in sync.
fn cluster(n: usize, in_sync: &[&str]) -> ClusterMap {
    let mut m = ClusterMap::default();
    for i in 0..n {
        m.apply(&MapCommand::AddMember {
            id: format!("n{i}"),
            addr: format!("127.0.0.1:{}", 7000 + i),
            voter: true,
        })
        .unwrap();
    }
    m.apply(&MapCommand::Elect {
        id: "n0".into(),
        epoch: Epoch(3),
    })
    .unwrap();
    m.apply(&MapCommand::SetInSync {
        epoch: Epoch(3),
        replicas: in_sync.iter().map(|s| s.to_string()).collect(),
    })
    .unwrap();
    m
}

fn at(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

fn report(id: &str, epoch: u64, lsn: u64) -> Report {
    Report {
        id: id.to_string(),
        durable: at(epoch, lsn),
    }
}

#[test]
fn sync_promotes_the_most_up_to_date_in_sync_replica_only() {
    let m = cluster(3, &["n1"]);
    let reports = [report("n1", 3, 10), report("n2", 3, 50)];
    let c = choose_leader(&m, AckMode::Sync, &reports).unwrap();
    assert_eq!((c.id.as_str(), c.epoch, c.clean), ("n1", Epoch(4), true));
    assert_eq!(c.durable, at(3, 10));
    let err = choose_leader(&m, AckMode::Sync, &[report("n2", 3, 50)]).unwrap_err();
    assert!(matches!(err, ElectionError::NoCandidate { .. }), "{err}");
}

#[test]
fn quorum_needs_reports_that_meet_every_acknowledging_group() {
    // 5 nodes: a write was acknowledged with 2 replicas; 4 replicas; 3 reports meet every pair.
    let m = cluster(5, &[]);
    let two = [report("n1", 3, 9), report("n2", 3, 7)];
    let err = choose_leader(&m, AckMode::Quorum, &two).unwrap_err();
    assert_eq!(
        err,
        ElectionError::TooFewReports {
            mode: AckMode::Quorum,
            have: 2,
            need: 3,
            replicas: 4
        }
    );
    let three = [report("n1", 3, 9), report("n2", 3, 7), report("n4", 2, 40)];
    let c = choose_leader(&m, AckMode::Quorum, &three).unwrap();
    assert_eq!(c.id, "n1", "a higher epoch beats a longer log");
    // 3 nodes, semi-sync:1: both replicas must report.
    let m = cluster(3, &[]);
    assert!(choose_leader(&m, AckMode::SemiSync(1), &[report("n1", 3, 9)]).is_err());
    let c = choose_leader(
        &m,
        AckMode::SemiSync(1),
        &[report("n1", 3, 9), report("n2", 3, 12)],
    )
    .unwrap();
    assert_eq!(c.id, "n2");
}

#[test]
fn async_promotes_the_most_up_to_date_report_ties_to_the_smallest_id() {
    let m = cluster(3, &[]);
    let c = choose_leader(
        &m,
        AckMode::Async,
        &[report("n2", 3, 9), report("n1", 3, 9)],
    )
    .unwrap();
    assert_eq!((c.id.as_str(), c.clean), ("n1", true));
    assert!(choose_leader(&m, AckMode::Async, &[]).is_err());
}

#[test]
fn unclean_failover_promotes_anyway_and_says_so() {
    let mut m = cluster(3, &["n1"]);
    m.apply(&MapCommand::SetUncleanFailover(true)).unwrap();
    let c = choose_leader(&m, AckMode::Sync, &[report("n2", 3, 50)]).unwrap();
    assert_eq!((c.id.as_str(), c.clean), ("n2", false));
    let c = choose_leader(
        &m,
        AckMode::Sync,
        &[report("n1", 3, 10), report("n2", 3, 50)],
    )
    .unwrap();
    assert_eq!(
        (c.id.as_str(), c.clean),
        ("n1", true),
        "a clean choice is preferred when there is one"
    );
}

#[test]
fn reports_from_strangers_repeats_and_the_old_leader_when_the_rule_is_met_are_ignored() {
    let m = cluster(3, &["n1", "n2"]);
    let reports = [
        report("n0", 3, 99),
        report("zz", 3, 99),
        report("n1", 3, 5),
        report("n1", 3, 98),
        report("n2", 3, 6),
    ];
    let c = choose_leader(&m, AckMode::Sync, &reports).unwrap();
    assert_eq!((c.id.as_str(), c.durable), ("n2", at(3, 6)));
}

#[test]
fn the_old_leader_that_reports_is_elected_again_when_the_rule_cannot_be_met_otherwise() {
    // Sync with an empty in-sync set: no replica is known to hold every acknowledged write,
    // but the old leader (restarted, or back after its lease ran out) holds them all.
    let m = cluster(3, &[]);
    let reports = [report("n0", 3, 7), report("n1", 3, 5)];
    let c = choose_leader(&m, AckMode::Sync, &reports).unwrap();
    assert_eq!((c.id.as_str(), c.epoch, c.clean), ("n0", Epoch(4), true));
    // A replica at least as far along is preferred: it holds the old leader's log.
    let reports = [report("n0", 3, 7), report("n1", 3, 7), report("n2", 3, 9)];
    let c = choose_leader(&m, AckMode::Sync, &reports).unwrap();
    assert_eq!((c.id.as_str(), c.durable), ("n2", at(3, 9)));
    // Quorum with too few replicas reporting.
    let m = cluster(5, &[]);
    let reports = [report("n1", 3, 9), report("n0", 3, 8)];
    let c = choose_leader(&m, AckMode::Quorum, &reports).unwrap();
    assert_eq!((c.id.as_str(), c.clean), ("n1", true));
    let reports = [report("n1", 3, 4), report("n0", 3, 8)];
    let c = choose_leader(&m, AckMode::Quorum, &reports).unwrap();
    assert_eq!(c.id, "n0");
    // Without the old leader's report, nobody.
    assert!(choose_leader(&m, AckMode::Quorum, &[report("n1", 3, 9)]).is_err());
}

proptest! {
    /// A single-epoch history: replicas' durable LSNs; the leader acknowledged up to what the
    /// mode committed; any set of reports the rule accepts yields a replica holding it.
    #[test]
    fn a_clean_choice_holds_every_acknowledged_write(
        durable in proptest::collection::vec(0u64..20, 2..7),
        k in 1u32..4,
        mode_pick in 0u8..3,
        reporting in proptest::collection::vec(any::<bool>(), 7),
        in_sync_pick in proptest::collection::vec(any::<bool>(), 7),
        leader_reports in any::<bool>(),
        leader_ahead in 0u64..5,
    ) {
        let n = durable.len() + 1;
        let ids: Vec<String> = (1..n).map(|i| format!("n{i}")).collect();
        let in_sync: Vec<&str> = ids
            .iter()
            .zip(&in_sync_pick)
            .filter(|(_, s)| **s)
            .map(|(id, _)| id.as_str())
            .collect();
        let m = cluster(n, &in_sync);
        let mode = match mode_pick {
            0 => AckMode::Sync,
            1 => AckMode::Quorum,
            _ => AckMode::SemiSync(k.min(durable.len() as u32)),
        };
        // What the mode acknowledged: the commit LSN over the replicas' durable LSNs.
        let mut sorted = durable.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let acked = match mode {
            AckMode::Sync => ids
                .iter()
                .zip(&durable)
                .filter(|(id, _)| in_sync.contains(&id.as_str()))
                .map(|(_, d)| *d)
                .min()
                .unwrap_or(0),
            _ => {
                let k = mode.replicas_needed(n as u32) as usize;
                if k == 0 { u64::MAX } else { sorted.get(k - 1).copied().unwrap_or(0) }
            }
        };
        let reports: Vec<Report> = ids
            .iter()
            .zip(&durable)
            .zip(&reporting)
            .filter(|(_, r)| **r)
            .map(|((id, d), _)| report(id, 3, *d))
            .collect();
        // The old leader's log holds every write it acknowledged (and maybe more).
        let mut reports = reports;
        if leader_reports {
            let top = durable.iter().copied().max().unwrap_or(0);
            let own = if acked == u64::MAX { top } else { acked + leader_ahead };
            reports.push(report("n0", 3, own));
        }
        if let Ok(c) = choose_leader(&m, mode, &reports) {
            prop_assert!(c.clean);
            if acked != u64::MAX {
                prop_assert!(
                    c.durable.lsn.0 >= acked,
                    "{} chosen at {} but {} was acknowledged under {}",
                    c.id, c.durable, acked, mode
                );
            }
        }
    }
}
