//! Tests for [`Controller`]: the founding map, lease grants only after a confirmed read-index
//! round, detection no earlier than lease plus margin after the last grant (or the controller's
//! own start), and elections that keep the mode's promise.

use super::controller::{Action, ControlMsg, Controller, ControllerConfig, Local};
use super::map::{ClusterMap, MapCommand};
use crate::position::{Epoch, LogPosition, Lsn};
use crate::replication::AckMode;
use std::collections::BTreeSet;

const LEASE: u64 = 400;
const MARGIN: u64 = 100;

fn config(mode: AckMode) -> ControllerConfig {
    ControllerConfig {
        lease_ms: LEASE,
        margin_ms: MARGIN,
        renew_ms: 100,
        report_wait_ms: 300,
        propose_wait_ms: 2_000,
        mode,
        cluster_size: 3,
        founders: ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), format!("127.0.0.1:{}", 7000 + i)))
            .collect(),
    }
}

fn pos(epoch: u64, lsn: u64) -> LogPosition {
    LogPosition {
        epoch: Epoch(epoch),
        lsn: Lsn(lsn),
    }
}

fn local(epoch: u64, lsn: u64) -> Local {
    Local {
        durable: pos(epoch, lsn),
        epoch: Epoch(epoch),
        in_sync: BTreeSet::new(),
        leads: true,
    }
}

/// A map with members a, b, c and `leader` elected in `epoch`.
fn map_led_by(leader: &str, epoch: u64) -> ClusterMap {
    let mut map = ClusterMap::default();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        map.apply(&MapCommand::AddMember {
            id: id.to_string(),
            addr: format!("127.0.0.1:{}", 7000 + i),
            voter: true,
        })
        .unwrap();
    }
    map.apply(&MapCommand::Elect {
        id: leader.into(),
        epoch: Epoch(epoch),
    })
    .unwrap();
    map
}

fn proposals(actions: &[Action]) -> Vec<MapCommand> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Propose(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn queries(actions: &[Action]) -> Vec<(String, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                msg: ControlMsg::Query { round },
            } => Some((to.clone(), *round)),
            _ => None,
        })
        .collect()
}

fn report(c: &mut Controller, map: &ClusterMap, from: &str, round: u64, at: LogPosition, now: u64) {
    let msg = ControlMsg::Report {
        round,
        durable: at,
        epoch: at.epoch,
    };
    assert!(c.on_message(from, msg, map, local(0, 0), now).is_empty());
}

#[test]
fn the_first_controller_founds_the_map_and_elects_the_most_up_to_date_of_a_majority() {
    let mut c = Controller::new("a", config(AckMode::Quorum));
    c.became_controller(0);
    let mut map = ClusterMap::default();
    let founding = proposals(&c.on_tick(&map, local(0, 0), 0));
    assert_eq!(founding.len(), 3);
    for cmd in &founding {
        map.apply(cmd).unwrap();
    }
    let asked = queries(&c.on_tick(&map, local(0, 0), 50));
    assert_eq!(asked.len(), 3, "every member, this one too: {asked:?}");
    let round = asked[0].1;
    report(&mut c, &map, "a", round, pos(0, 0), 60);
    report(&mut c, &map, "c", round, pos(3, 9), 60);
    // Two of three is a majority, but the third may still answer: wait for it a while.
    assert!(proposals(&c.on_tick(&map, local(0, 0), 100)).is_empty());
    let elect = proposals(&c.on_tick(&map, local(0, 0), 350));
    // The epoch passes every reported one (a node restarted from an older map's epochs).
    assert_eq!(
        elect,
        vec![MapCommand::Elect {
            id: "c".into(),
            epoch: Epoch(4)
        }]
    );
}

#[test]
fn a_lease_is_granted_only_after_a_confirmed_read_index_round_and_runs_from_the_request() {
    let map = map_led_by("b", 2);
    let mut leader = Controller::new("b", config(AckMode::Quorum));
    let mut ctl = Controller::new("a", config(AckMode::Quorum));
    ctl.became_controller(0);
    leader.set_controller(Some("a".into()));
    let sent = leader.on_tick(&map, local(2, 5), 1_000);
    let [Action::Send { to, msg }] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(to, "a");
    let rounds = ctl.on_message("b", msg.clone(), &map, local(2, 5), 1_010);
    let [Action::ReadIndex(ctx)] = rounds.as_slice() else {
        panic!("{rounds:?}")
    };
    let granted = ctl.on_read_confirmed(ctx, &map, 1_020);
    let [Action::Send { to, msg }] = granted.as_slice() else {
        panic!("{granted:?}")
    };
    assert_eq!(to, "b");
    let lease = leader.on_message("a", msg.clone(), &map, local(2, 5), 1_030);
    assert_eq!(
        lease,
        vec![Action::Lease {
            epoch: Epoch(2),
            until_ms: 1_000 + LEASE
        }]
    );
    // A request from a node the map does not name as leader, or from an older epoch, starts
    // no round.
    let stale = ControlMsg::LeaseRequest {
        epoch: Epoch(1),
        seq: 9,
    };
    assert!(ctl
        .on_message("b", stale, &map, local(2, 5), 1_040)
        .is_empty());
    let other = ControlMsg::LeaseRequest {
        epoch: Epoch(2),
        seq: 9,
    };
    assert!(ctl
        .on_message("c", other, &map, local(2, 5), 1_040)
        .is_empty());
}

#[test]
fn the_leader_is_declared_lost_only_lease_plus_margin_after_the_last_grant() {
    let map = map_led_by("b", 2);
    let mut ctl = Controller::new("a", config(AckMode::Quorum));
    ctl.became_controller(0);
    assert!(queries(&ctl.on_tick(&map, local(2, 5), 10)).is_empty());
    // A grant at 300.
    let req = ControlMsg::LeaseRequest {
        epoch: Epoch(2),
        seq: 1,
    };
    let rounds = ctl.on_message("b", req, &map, local(2, 5), 290);
    let [Action::ReadIndex(ctx)] = rounds.as_slice() else {
        panic!("{rounds:?}")
    };
    assert_eq!(ctl.on_read_confirmed(ctx, &map, 300).len(), 1);
    assert!(queries(&ctl.on_tick(&map, local(2, 5), 300 + LEASE + MARGIN - 1)).is_empty());
    let asked = queries(&ctl.on_tick(&map, local(2, 5), 300 + LEASE + MARGIN));
    let mut to: Vec<&str> = asked.iter().map(|(t, _)| t.as_str()).collect();
    to.sort_unstable();
    // The lost leader is asked too: its report is the last resort of an election.
    assert_eq!(to, ["a", "b", "c"]);
    // A renewal confirmed during the election is not granted.
    let req = ControlMsg::LeaseRequest {
        epoch: Epoch(2),
        seq: 2,
    };
    assert!(ctl.on_message("b", req, &map, local(2, 5), 820).is_empty());
}

#[test]
fn a_new_controller_waits_a_whole_lease_and_margin_before_electing() {
    let map = map_led_by("b", 2);
    let mut ctl = Controller::new("a", config(AckMode::Quorum));
    ctl.became_controller(5_000);
    assert!(queries(&ctl.on_tick(&map, local(2, 5), 5_000 + LEASE)).is_empty());
    assert_eq!(
        queries(&ctl.on_tick(&map, local(2, 5), 5_000 + LEASE + MARGIN)).len(),
        3
    );
}

#[test]
fn a_quorum_election_without_enough_reports_elects_nobody_and_tries_again_later() {
    let mut map = map_led_by("b", 2);
    let mut ctl = Controller::new("a", config(AckMode::SemiSync(1)));
    ctl.became_controller(0);
    let asked = queries(&ctl.on_tick(&map, local(2, 5), 1_000));
    let round = asked[0].1;
    report(&mut ctl, &map, "a", round, pos(2, 5), 1_010);
    // semi-sync:1 with two replicas: both must report (either may hold a write the other lacks).
    let acts = ctl.on_tick(&map, local(2, 5), 1_300);
    assert!(proposals(&acts).is_empty());
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Event {
            kind: "election-failed",
            ..
        }
    )));
    assert!(queries(&ctl.on_tick(&map, local(2, 5), 1_400)).is_empty());
    let asked = queries(&ctl.on_tick(&map, local(2, 5), 1_600));
    let round = asked[0].1;
    report(&mut ctl, &map, "a", round, pos(2, 5), 1_610);
    report(&mut ctl, &map, "c", round, pos(2, 7), 1_610);
    let elect = proposals(&ctl.on_tick(&map, local(2, 5), 1_620));
    assert_eq!(
        elect,
        vec![MapCommand::Elect {
            id: "c".into(),
            epoch: Epoch(3)
        }]
    );
    // Once applied, the new leader has a lease and margin to ask for its first lease.
    map.apply(&elect[0]).unwrap();
    assert!(queries(&ctl.on_tick(&map, local(2, 5), 1_700)).is_empty());
    assert!(queries(&ctl.on_tick(&map, local(2, 5), 1_700 + LEASE + MARGIN - 1)).is_empty());
    assert_eq!(
        queries(&ctl.on_tick(&map, local(2, 5), 1_700 + LEASE + MARGIN)).len(),
        3
    );
}

/// What controller `a` proposes once `map`'s leader is lost and `reports` come in.
fn election(mode: AckMode, map: &ClusterMap, reports: &[(&str, LogPosition)]) -> Vec<MapCommand> {
    let mut ctl = Controller::new("a", config(mode));
    ctl.became_controller(0);
    let asked = queries(&ctl.on_tick(map, local(2, 5), 1_000));
    let round = asked[0].1;
    for (from, at) in reports {
        report(&mut ctl, map, from, round, *at, 1_010);
    }
    proposals(&ctl.on_tick(map, local(2, 5), 1_050))
}

fn elect(id: &str, epoch: u64) -> Vec<MapCommand> {
    vec![MapCommand::Elect {
        id: id.into(),
        epoch: Epoch(epoch),
    }]
}

#[test]
fn of_equally_up_to_date_replicas_one_other_than_the_controller_is_elected() {
    let map = map_led_by("c", 2);
    let reports = [("a", pos(2, 5)), ("b", pos(2, 5))];
    assert_eq!(election(AckMode::Quorum, &map, &reports), elect("b", 3));
}

#[test]
fn the_leader_asks_for_its_in_sync_set_and_only_the_current_leader_is_heard() {
    let mut map = map_led_by("b", 2);
    let mut leader = Controller::new("b", config(AckMode::Sync));
    let mut ctl = Controller::new("a", config(AckMode::Sync));
    ctl.became_controller(0);
    leader.set_controller(Some("a".into()));
    let mut mine = local(2, 5);
    mine.in_sync = ["a".to_string(), "c".to_string(), "stranger".to_string()].into();
    let sent = leader.on_tick(&map, mine.clone(), 100);
    let ask = sent
        .iter()
        .find_map(|a| match a {
            Action::Send {
                msg: m @ ControlMsg::SetInSync { .. },
                ..
            } => Some(m.clone()),
            _ => None,
        })
        .expect("asked for its set");
    let wanted: BTreeSet<String> = ["a".to_string(), "c".to_string()].into();
    assert_eq!(
        ask,
        ControlMsg::SetInSync {
            epoch: Epoch(2),
            replicas: wanted.clone()
        },
        "members only"
    );
    let proposed = proposals(&ctl.on_message("b", ask.clone(), &map, local(2, 5), 110));
    assert_eq!(
        proposed,
        vec![MapCommand::SetInSync {
            epoch: Epoch(2),
            replicas: wanted.clone()
        }]
    );
    assert!(ctl.on_message("c", ask, &map, local(2, 5), 110).is_empty());
    map.apply(&proposed[0]).unwrap();
    // Once the map agrees, the leader stops asking.
    let sent = leader.on_tick(&map, mine, 300);
    assert!(!sent.iter().any(|a| matches!(
        a,
        Action::Send {
            msg: ControlMsg::SetInSync { .. },
            ..
        }
    )));
}

#[test]
fn a_sync_election_with_an_empty_in_sync_set_elects_the_old_leader_if_it_reports() {
    // The leader restarted in an epoch it led: it does not lead in it again, and no replica
    // is in the map's set. Its report makes it eligible in a new epoch; the election does not
    // wait for it when it is silent.
    let map = map_led_by("b", 2);
    let reports = [("a", pos(2, 5)), ("c", pos(2, 5)), ("b", pos(2, 9))];
    assert_eq!(election(AckMode::Sync, &map, &reports), elect("b", 3));
}

#[test]
fn the_first_leader_gets_a_whole_lease_and_margin_from_its_election() {
    // Finding G of the simulator: a controller that saw no leader at first dated the first
    // one from its own start, and declared it lost at once unless a grant came first.
    let mut map = map_led_by("b", 2);
    map.leader = None;
    let mut ctl = Controller::new("a", config(AckMode::Quorum));
    ctl.became_controller(0);
    let _ = ctl.on_tick(&map, local(2, 5), 10);
    map.leader = Some("b".into());
    map.epoch = Epoch(3);
    let _ = ctl.on_tick(&map, local(2, 5), 2_000);
    assert!(queries(&ctl.on_tick(&map, local(2, 5), 2_000 + LEASE + MARGIN - 1)).is_empty());
    assert_eq!(
        queries(&ctl.on_tick(&map, local(2, 5), 2_000 + LEASE + MARGIN)).len(),
        3
    );
}
