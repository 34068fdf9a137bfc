//! Tests for [`ClusterMap`]: membership, elections that only move the epoch forward, in-sync
//! sets only from the current leader, upstream trees without loops, and refused commands that
//! change nothing.

use super::map::{ClusterMap, MapCommand, MapError, MEMBERS_MAX};
use crate::position::Epoch;
use std::collections::BTreeSet;

fn add(id: &str, port: u16) -> MapCommand {
    MapCommand::AddMember {
        id: id.to_string(),
        addr: format!("127.0.0.1:{port}"),
        voter: true,
    }
}

fn elect(id: &str, epoch: u64) -> MapCommand {
    MapCommand::Elect {
        id: id.to_string(),
        epoch: Epoch(epoch),
    }
}

fn in_sync(epoch: u64, ids: &[&str]) -> MapCommand {
    MapCommand::SetInSync {
        epoch: Epoch(epoch),
        replicas: ids.iter().map(|s| s.to_string()).collect(),
    }
}

fn upstream(id: &str, up: Option<&str>) -> MapCommand {
    MapCommand::SetUpstream {
        id: id.to_string(),
        upstream: up.map(str::to_string),
    }
}

/// Three voters, `a` leading in epoch 1 with `b` and `c` in sync.
fn three() -> ClusterMap {
    let mut m = ClusterMap::default();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        m.apply(&add(id, 7000 + i as u16)).unwrap();
    }
    m.apply(&elect("a", 1)).unwrap();
    m.apply(&in_sync(1, &["b", "c"])).unwrap();
    m
}

/// Applies `cmd`, expecting `err`, and checks nothing changed.
fn refused(m: &mut ClusterMap, cmd: &MapCommand, err: MapError) {
    let before = m.clone();
    assert_eq!(m.apply(cmd), Err(err), "{cmd:?}");
    assert_eq!(*m, before, "a refused {cmd:?} changed the map");
}

#[test]
fn every_applied_command_bumps_the_version() {
    let m = three();
    assert_eq!(m.version, 5);
    assert_eq!(m.leader.as_deref(), Some("a"));
    assert_eq!(m.epoch, Epoch(1));
    assert_eq!(m.voters().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(m.replicas().collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(m.upstream_of("b"), Some("a"));
    assert_eq!(m.upstream_of("a"), None);
}

#[test]
fn members_are_unique_by_id_and_by_address_and_bounded() {
    let mut m = three();
    refused(
        &mut m,
        &add("a", 9999),
        MapError::Exists("a".into(), "127.0.0.1:7000".into()),
    );
    refused(
        &mut m,
        &add("d", 7001),
        MapError::AddrTaken {
            addr: "127.0.0.1:7001".into(),
            id: "b".into(),
        },
    );
    refused(&mut m, &add("", 7100), MapError::BadName(String::new()));
    let long = "x".repeat(300);
    assert!(matches!(
        m.apply(&add(&long, 7101)),
        Err(MapError::BadName(_))
    ));
    for i in 3..MEMBERS_MAX {
        m.apply(&add(&format!("n{i}"), 8000 + i as u16)).unwrap();
    }
    refused(&mut m, &add("one-more", 9000), MapError::Full);
}

#[test]
fn an_election_moves_the_epoch_forward_only() {
    let mut m = three();
    refused(
        &mut m,
        &elect("b", 1),
        MapError::EpochNotNewer {
            got: Epoch(1),
            current: Epoch(1),
        },
    );
    refused(&mut m, &elect("z", 5), MapError::NoMember("z".into()));
    m.apply(&elect("b", 2)).unwrap();
    assert_eq!(m.leader.as_deref(), Some("b"));
    assert_eq!(m.epoch, Epoch(2));
    assert_eq!(
        m.in_sync,
        BTreeSet::from(["c".to_string()]),
        "the new leader leaves the set; the other in-sync replica stays"
    );
    assert_eq!(
        m.upstream_of("a"),
        Some("b"),
        "the old leader follows the new one"
    );
}

#[test]
fn only_the_current_leader_sets_the_in_sync_set() {
    let mut m = three();
    m.apply(&elect("b", 2)).unwrap();
    refused(
        &mut m,
        &in_sync(1, &[]),
        MapError::StaleEpoch {
            got: Epoch(1),
            current: Epoch(2),
        },
    );
    refused(&mut m, &in_sync(2, &["b"]), MapError::IsLeader("b".into()));
    refused(&mut m, &in_sync(2, &["z"]), MapError::NoMember("z".into()));
    m.apply(&in_sync(2, &["a", "c"])).unwrap();
    assert_eq!(m.in_sync.len(), 2);
}

#[test]
fn the_leader_cannot_be_removed_and_a_removed_member_leaves_every_set() {
    let mut m = three();
    refused(
        &mut m,
        &MapCommand::RemoveMember { id: "a".into() },
        MapError::RemoveLeader("a".into()),
    );
    m.apply(&upstream("c", Some("b"))).unwrap();
    assert_eq!(m.upstream_of("c"), Some("b"));
    m.apply(&MapCommand::RemoveMember { id: "b".into() })
        .unwrap();
    assert!(!m.members.contains_key("b"));
    assert!(!m.in_sync.contains("b"));
    assert_eq!(
        m.upstream_of("c"),
        Some("a"),
        "b's replica replicates from the leader"
    );
}

#[test]
fn upstream_trees_never_loop_and_never_include_the_leader_as_a_replica() {
    let mut m = three();
    m.apply(&add("d", 7003)).unwrap();
    m.apply(&upstream("c", Some("b"))).unwrap();
    m.apply(&upstream("d", Some("c"))).unwrap();
    refused(
        &mut m,
        &upstream("b", Some("d")),
        MapError::Loop {
            id: "b".into(),
            upstream: "d".into(),
        },
    );
    refused(
        &mut m,
        &upstream("b", Some("b")),
        MapError::Loop {
            id: "b".into(),
            upstream: "b".into(),
        },
    );
    refused(
        &mut m,
        &upstream("a", Some("b")),
        MapError::IsLeader("a".into()),
    );
    m.apply(&upstream("d", None)).unwrap();
    assert_eq!(m.upstream_of("d"), Some("a"));
}

#[test]
fn voters_and_unclean_failover_are_settings() {
    let mut m = three();
    m.apply(&MapCommand::SetVoter {
        id: "c".into(),
        voter: false,
    })
    .unwrap();
    assert_eq!(m.voters().collect::<Vec<_>>(), ["a", "b"]);
    refused(
        &mut m,
        &MapCommand::SetVoter {
            id: "z".into(),
            voter: true,
        },
        MapError::NoMember("z".into()),
    );
    assert!(!m.unclean_failover);
    m.apply(&MapCommand::SetUncleanFailover(true)).unwrap();
    assert!(m.unclean_failover);
}

#[test]
fn the_map_round_trips_through_postcard() {
    let m = three();
    let bytes = postcard::to_allocvec(&m).unwrap();
    let back: ClusterMap = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, m);
    let cmd = in_sync(1, &["b"]);
    let bytes = postcard::to_allocvec(&cmd).unwrap();
    assert_eq!(postcard::from_bytes::<MapCommand>(&bytes).unwrap(), cmd);
}
