//! Tests for [`Group`]'s durable state: members restarted from their last persisted state keep
//! their term, vote and map and go on participating, a restarted member never votes twice in
//! a term, damaged or foreign state and snapshots without a map are refused, and a member cut
//! off past a compaction catches up from the controller's snapshot.

use super::group::{
    decode_state, encode_state, Group, GroupError, GroupEvent, PersistedEntry, PersistedEntryKind,
    COMPACT_ENTRIES_MAX,
};
use super::group_test::{add, config, Net};
use super::map::{ClusterMap, MapCommand};
use protobuf::Message as _;
use raft::prelude::{ConfState, Message, MessageType};

/// Runs `net` until it has a controller and every member applied `cmds`.
fn commit_all(net: &mut Net, cmds: &[MapCommand]) {
    net.run_until("controller", 300, |n| n.controller().is_some());
    let c = net.controller().unwrap();
    let target = net.groups[&c].map().version + cmds.len() as u64;
    for cmd in cmds {
        net.group(c).propose(cmd).unwrap();
    }
    net.settle();
    net.run_until("commands applied everywhere", 100, |n| {
        n.groups.values().all(|g| g.map().version == target)
    });
}

fn vote_request(from: u64, to: u64, term: u64) -> Vec<u8> {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgRequestVote);
    m.from = from;
    m.to = to;
    m.term = term;
    m.write_to_bytes().unwrap()
}

/// The vote answers among `out`: candidate and whether the vote was granted.
fn vote_answers(out: &[super::group::Outgoing]) -> Vec<(u64, bool)> {
    out.iter()
        .map(|o| Message::parse_from_bytes(&o.bytes).unwrap())
        .filter(|m| m.get_msg_type() == MessageType::MsgRequestVoteResponse)
        .map(|m| (m.to, !m.reject))
        .collect()
}

/// Raft figure 2: term, vote and log are persistent state. A follower restarted from its last
/// persisted state has the term, vote and map it had, and catches up on what it missed.
#[test]
fn a_restarted_follower_keeps_its_term_vote_and_map_and_catches_up() {
    let mut net = Net::new(3, 7);
    commit_all(&mut net, &[add("a"), add("b"), add("c")]);
    let c = net.controller().unwrap();
    let f = *net.groups.keys().find(|id| **id != c).unwrap();
    let before = &net.groups[&f];
    let (term, vote, map) = (before.term(), before.vote(), before.map().clone());

    // The follower crashes; what its disk holds gives back the same member.
    net.crash(f);
    let restored = Group::restore(&net.configs[&f], &net.disk[&f]).unwrap();
    assert_eq!(restored.term(), term);
    assert_eq!(restored.vote(), vote);
    assert_eq!(restored.map(), &map);
    assert_eq!(restored.voters(), vec![1, 2, 3]);
    assert!(!restored.is_controller());

    // The other two go on without it.
    net.group(c).propose(&add("d")).unwrap();
    net.group(c).propose(&add("e")).unwrap();
    net.settle();
    net.run_until("two members at version 5", 50, |n| {
        n.groups.values().all(|g| g.map().version == 5)
    });

    // Restarted, it catches up with the commands it missed.
    net.restart(f);
    net.run_until("the restarted follower at version 5", 100, |n| {
        n.groups[&f].map().version == 5
    });
    assert_eq!(net.groups[&f].map(), net.groups[&c].map());
    assert_eq!(net.groups[&f].term(), term);
}

/// The controller crashes: the others elect a new one and commit more; the old controller
/// restarts from its disk as a follower of the new term and ends with the same map.
#[test]
fn a_restarted_controller_rejoins_as_a_follower_with_the_same_map() {
    let mut net = Net::new(3, 11);
    commit_all(&mut net, &[add("a"), add("b")]);
    let old = net.controller().unwrap();
    let old_term = net.groups[&old].term();

    // The controller crashes; the other two elect a new one and commit without it.
    net.crash(old);
    net.run_until("new controller", 300, |n| n.controller().is_some());
    let new = net.controller().unwrap();
    assert!(net.groups[&new].term() > old_term);
    net.group(new).propose(&add("c")).unwrap();
    net.settle();
    net.run_until("two members at version 3", 50, |n| {
        n.groups.values().all(|g| g.map().version == 3)
    });

    // Restarted, the old controller follows the new one.
    net.restart(old);
    assert_eq!(net.groups[&old].map().version, 2);
    net.run_until("every member at version 3", 100, |n| {
        n.groups.len() == 3 && n.groups.values().all(|g| g.map().version == 3)
    });
    assert!(!net.groups[&old].is_controller());
    assert_eq!(net.groups[&old].term(), net.groups[&new].term());
    assert_eq!(net.groups[&old].map(), net.groups[&new].map());
    net.group(new).propose(&add("d")).unwrap();
    net.settle();
    assert_eq!(net.groups[&old].map().version, 4);
}

/// Every member crashes at once (a power cut) and restarts from its disk: each has the map it
/// had, the group elects again and commits, and the same seed replays the same run (the
/// election-timeout draws of restored members come from the seed too).
#[test]
fn after_a_full_restart_the_group_elects_again_and_replays_from_the_seed() {
    let run = |seed| {
        let mut net = Net::new(3, seed);
        commit_all(&mut net, &[add("a"), add("b")]);
        for id in 1..=3 {
            net.crash(id);
        }
        for id in 1..=3 {
            net.restart(id);
            assert_eq!(net.groups[&id].map().version, 2, "member {id}");
        }
        commit_all(&mut net, &[add("c")]);
        (net.controller(), net.ticks, net.digest)
    };
    assert_eq!(run(9), run(9));
}

/// Raft figure 2 (votedFor is persistent): a member that granted its vote in a term and then
/// restarted refuses a second candidate of that term. The same member started without its state
/// (as if the vote had not been persisted) grants the second vote, and two controllers could be
/// elected in one term.
#[test]
fn a_restarted_member_never_votes_twice_in_a_term() {
    let cfg = config(3, 3, 1);
    let mut g = Group::new(&cfg).unwrap();
    let _ = g.drain();

    // It votes for candidate 1 in term 5; the vote is in the state handed out with the answer.
    g.step(&vote_request(1, 3, 5)).unwrap();
    let drained = g.drain();
    assert_eq!(vote_answers(&drained.outgoing), vec![(1, true)]);
    let state = drained.persist.expect("a granted vote is persisted");

    // Restarted from that state, it refuses candidate 2 of the same term, and still grants
    // candidate 1 (a repeated request).
    let mut restored = Group::restore(&cfg, &state).unwrap();
    assert_eq!((restored.term(), restored.vote()), (5, Some(1)));
    restored.step(&vote_request(2, 3, 5)).unwrap();
    assert_eq!(vote_answers(&restored.drain().outgoing), vec![(2, false)]);
    restored.step(&vote_request(1, 3, 5)).unwrap();
    assert_eq!(vote_answers(&restored.drain().outgoing), vec![(1, true)]);

    // Without its state, the member would vote again.
    let mut forgetful = Group::new(&cfg).unwrap();
    forgetful.step(&vote_request(2, 3, 5)).unwrap();
    assert_eq!(vote_answers(&forgetful.drain().outgoing), vec![(2, true)]);
}

/// Persisted state that is garbage, damaged anywhere, of another version or member, or
/// inconsistent is refused with a decode error rather than started from.
#[test]
fn damaged_foreign_or_inconsistent_state_is_refused() {
    let mut net = Net::new(3, 7);
    commit_all(&mut net, &[add("a")]);
    let cfg = net.configs[&1].clone();
    let good = net.disk[&1].clone();
    assert!(Group::restore(&cfg, &good).is_ok());
    let refused = |bytes: &[u8]| matches!(Group::restore(&cfg, bytes), Err(GroupError::Decode(_)));

    // Garbage, and every single flipped bit of good state.
    assert!(refused(b""));
    assert!(refused(b"garbage garbage garbage"));
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            assert!(refused(&bad), "byte {i} bit {bit} flipped was accepted");
        }
    }
    assert!(refused(&good[..good.len() - 1]));

    // Another member's state.
    assert!(matches!(
        Group::restore(&net.configs[&2], &good),
        Err(GroupError::Decode(_))
    ));

    // Well-formed but inconsistent: a snapshot whose data is not a map, a gap in the log, a
    // commit past the log, a term behind the log, a voter listed twice.
    let state = decode_state(&good).unwrap();
    let mut no_map = state.clone();
    no_map.snapshot.map = vec![0xff; 3];
    let mut gap = state.clone();
    let last = gap.entries.last().unwrap().clone();
    gap.entries.push(PersistedEntry {
        index: last.index + 2,
        kind: PersistedEntryKind::Normal,
        data: Vec::new(),
        ..last.clone()
    });
    let mut commit_past = state.clone();
    commit_past.commit = last.index + 1;
    let mut term_behind = state.clone();
    term_behind.term = last.term - 1;
    let mut voter_twice = state.clone();
    voter_twice.snapshot.conf.voters.push(1);
    let mut not_a_command = state.clone();
    not_a_command.entries.last_mut().unwrap().data = vec![0xff; 3];
    for (what, bad) in [
        ("no map", no_map),
        ("gap", gap),
        ("commit past the log", commit_past),
        ("term behind the log", term_behind),
        ("voter twice", voter_twice),
        ("not a command", not_a_command),
    ] {
        assert!(refused(&encode_state(&bad)), "{what} was accepted");
    }
}

/// A snapshot whose data is not a map is refused before Raft sees it: term, map and state stay
/// as they were. The same snapshot holding a map is installed and replaces the map.
#[test]
fn a_snapshot_without_a_map_is_refused_and_changes_nothing() {
    let mut net = Net::new(3, 7);
    commit_all(&mut net, &[add("a")]);
    let c = net.controller().unwrap();
    let f = *net.groups.keys().find(|id| **id != c).unwrap();
    let term = net.groups[&f].term();
    let map = net.groups[&f].map().clone();

    let snapshot_msg = |data: Vec<u8>| {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgSnapshot);
        m.from = c;
        m.to = f;
        m.term = term;
        let snap = m.mut_snapshot();
        snap.mut_metadata().index = 100;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        });
        snap.data = data.into();
        m.write_to_bytes().unwrap()
    };

    // Garbage data: refused, nothing changes.
    let g = net.group(f);
    assert!(matches!(
        g.step(&snapshot_msg(vec![0xff; 3])),
        Err(GroupError::Decode(_))
    ));
    assert_eq!(g.term(), term);
    assert_eq!(g.map(), &map);
    let drained = g.drain();
    assert_eq!(drained.persist, None);
    assert!(drained.outgoing.is_empty() && drained.events.is_empty());
    g.check_invariants();

    // The same snapshot with a map is taken.
    let other = ClusterMap {
        version: 42,
        ..ClusterMap::default()
    };
    g.step(&snapshot_msg(postcard::to_allocvec(&other).unwrap()))
        .unwrap();
    assert_eq!(g.map(), &other);
    let drained = g.drain();
    assert!(drained.persist.is_some());
    assert_eq!(
        drained.events,
        vec![GroupEvent::SnapshotInstalled {
            index: 100,
            version: 42
        }]
    );
    g.check_invariants();
}

/// Proposals and read-index traffic never travel between members of this group (both start
/// on the controller itself), so a peer's are refused: a forged proposal cannot reach the log.
#[test]
fn proposals_and_read_index_messages_from_a_peer_are_refused() {
    let mut net = Net::new(3, 7);
    commit_all(&mut net, &[add("a")]);
    let c = net.controller().unwrap();
    for t in [
        MessageType::MsgPropose,
        MessageType::MsgReadIndex,
        MessageType::MsgReadIndexResp,
    ] {
        let mut m = Message::default();
        m.set_msg_type(t);
        m.from = 2;
        m.to = c;
        m.mut_entries().push(raft::prelude::Entry::default());
        assert!(
            matches!(
                net.group(c).step(&m.write_to_bytes().unwrap()),
                Err(GroupError::Decode(_))
            ),
            "{t:?} accepted"
        );
    }
}

/// A member cut off while more than `COMPACT_ENTRIES_MAX` commands commit finds the entries it
/// lacks compacted away, catches up from the controller's snapshot (raft-rs `MsgSnapshot`) and
/// ends with the same map; the persisted log stays within the bound throughout.
#[test]
fn a_member_cut_off_past_compaction_catches_up_from_a_snapshot() {
    let mut net = Net::new(3, 7);
    commit_all(&mut net, &[add("a")]);
    let c = net.controller().unwrap();
    let f = *net.groups.keys().find(|id| **id != c).unwrap();

    // Cut off, the follower misses more commands than the log keeps.
    net.isolated.insert(f);
    let count = COMPACT_ENTRIES_MAX + 44;
    for i in 0..count {
        net.group(c)
            .propose(&MapCommand::SetUncleanFailover(i % 2 == 0))
            .unwrap();
        if i % 16 == 15 {
            net.settle();
        }
    }
    net.settle();
    let version = 1 + count;
    net.run_until("the majority at the last version", 50, |n| {
        n.groups
            .iter()
            .filter(|(id, _)| **id != f)
            .all(|(_, g)| g.map().version == version)
    });
    assert_eq!(net.groups[&f].map().version, 1);
    for (id, bytes) in &net.disk {
        let state = decode_state(bytes).unwrap();
        assert!(
            state.entries.len() as u64 <= COMPACT_ENTRIES_MAX + 1,
            "member {id} persisted {} entries",
            state.entries.len()
        );
    }
    let leader_state = decode_state(&net.disk[&c]).unwrap();
    assert!(leader_state.snapshot.index > COMPACT_ENTRIES_MAX);

    // Healed, it receives the snapshot and the entries after it.
    net.isolated.clear();
    net.run_until("the follower at the last version", 100, |n| {
        n.groups[&f].map().version == version
    });
    assert_eq!(net.groups[&f].map(), net.groups[&c].map());
    assert!(net
        .delivered
        .iter()
        .any(|(from, to, t)| (*from, *to, *t) == (c, f, MessageType::MsgSnapshot)));
    assert!(net
        .events
        .iter()
        .any(|(id, e)| *id == f && matches!(e, GroupEvent::SnapshotInstalled { .. })));

    // What it persisted holds the snapshot: restarted, it has the same map.
    let state = decode_state(&net.disk[&f]).unwrap();
    assert!(state.snapshot.index >= leader_state.snapshot.index);
    net.crash(f);
    net.restart(f);
    assert_eq!(net.groups[&f].map(), net.groups[&c].map());
    net.group(c)
        .propose(&MapCommand::SetUncleanFailover(true))
        .unwrap();
    net.settle();
    assert!(net.groups.values().all(|g| g.map().version == version + 1));
}
