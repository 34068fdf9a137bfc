//! Tests for [`Group`]: three members in a deterministic in-memory network elect a
//! controller, apply the same commands in the same order, replace a controller cut off by a
//! partition (whose own proposals are never applied), converge after healing, and replay an
//! election exactly from the same seed.

use super::group::{Group, GroupConfig, GroupError, GroupEvent};
use super::map::MapCommand;
use crate::position::Epoch;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Members 1..=n in a network that delivers in order and drops what crosses the partition.
struct Net {
    groups: BTreeMap<u64, Group>,
    queue: VecDeque<(u64, Vec<u8>)>,
    isolated: BTreeSet<u64>,
    /// FNV-1a over every delivered message, for replay checks.
    digest: u64,
    /// Every event, with the member it happened on.
    events: Vec<(u64, GroupEvent)>,
    ticks: u64,
}

const ELECTION_TICK: usize = 10;

impl Net {
    fn new(n: u64, seed: u64) -> Net {
        let voters: Vec<u64> = (1..=n).collect();
        let groups = voters
            .iter()
            .map(|&id| {
                let config = GroupConfig {
                    id,
                    voters: voters.clone(),
                    election_tick: ELECTION_TICK,
                    heartbeat_tick: 2,
                    seed,
                };
                (id, Group::new(&config).unwrap())
            })
            .collect();
        Net {
            groups,
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            digest: 0xcbf2_9ce4_8422_2325,
            events: Vec::new(),
            ticks: 0,
        }
    }

    fn collect(&mut self) {
        for g in self.groups.values_mut() {
            let (out, events) = g.drain();
            for o in out {
                self.queue.push_back((o.to, o.bytes));
            }
            let id = g.id();
            self.events.extend(events.into_iter().map(|e| (id, e)));
        }
    }

    fn settle(&mut self) {
        self.collect();
        while let Some((to, bytes)) = self.queue.pop_front() {
            // The sender is in the message; a member is cut off from everyone else.
            let Some(g) = self.groups.get_mut(&to) else {
                continue;
            };
            let from = sender(&bytes);
            if self.isolated.contains(&from) != self.isolated.contains(&to) {
                continue;
            }
            for b in &bytes {
                self.digest = (self.digest ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
            g.step(&bytes).unwrap();
            self.collect();
        }
    }

    fn tick(&mut self) {
        self.ticks += 1;
        for g in self.groups.values_mut() {
            g.tick();
        }
        self.settle();
    }

    /// The controller among the members that are not cut off.
    fn controller(&self) -> Option<u64> {
        let c: Vec<u64> = self
            .groups
            .iter()
            .filter(|(id, g)| g.is_controller() && !self.isolated.contains(id))
            .map(|(id, _)| *id)
            .collect();
        assert!(c.len() <= 1, "two controllers on one side: {c:?}");
        c.first().copied()
    }

    fn run_until(&mut self, what: &str, ticks: u64, f: impl Fn(&Net) -> bool) {
        for _ in 0..ticks {
            if f(self) {
                return;
            }
            self.tick();
        }
        panic!("no {what} within {ticks} ticks");
    }
}

fn sender(bytes: &[u8]) -> u64 {
    use protobuf::Message as _;
    raft::prelude::Message::parse_from_bytes(bytes)
        .unwrap()
        .from
}

fn add(id: &str) -> MapCommand {
    MapCommand::AddMember {
        id: id.to_string(),
        addr: format!("{id}:7000"),
        voter: true,
    }
}

#[test]
fn members_elect_a_controller_and_apply_the_same_commands_in_order() {
    let mut net = Net::new(3, 7);
    net.run_until("controller", 200, |n| n.controller().is_some());
    let c = net.controller().unwrap();
    for id in ["a", "b", "c"] {
        net.groups.get_mut(&c).unwrap().propose(&add(id)).unwrap();
    }
    let elect = MapCommand::Elect {
        id: "a".into(),
        epoch: Epoch(1),
    };
    net.groups.get_mut(&c).unwrap().propose(&elect).unwrap();
    net.settle();
    net.run_until("map applied everywhere", 50, |n| {
        n.groups.values().all(|g| g.map().version == 4)
    });
    let maps: Vec<_> = net.groups.values().map(|g| g.map().clone()).collect();
    assert!(maps.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(maps[0].leader.as_deref(), Some("a"));
    // A follower refuses proposals and names the controller.
    let follower = *net.groups.keys().find(|id| **id != c).unwrap();
    assert_eq!(
        net.groups.get_mut(&follower).unwrap().propose(&add("d")),
        Err(GroupError::NotController {
            controller: Some(c)
        })
    );
}

#[test]
fn a_cut_off_controller_is_replaced_and_its_proposals_are_never_applied() {
    let mut net = Net::new(3, 11);
    net.run_until("controller", 200, |n| n.controller().is_some());
    let old = net.controller().unwrap();
    let old_term = net.groups[&old].term();
    net.groups
        .get_mut(&old)
        .unwrap()
        .propose(&add("a"))
        .unwrap();
    net.settle();
    net.run_until("first command everywhere", 50, |n| {
        n.groups.values().all(|g| g.map().version == 1)
    });

    net.isolated.insert(old);
    // Cut off, it still believes it leads for a while and takes a proposal that cannot commit.
    net.groups
        .get_mut(&old)
        .unwrap()
        .propose(&add("lost"))
        .unwrap();
    net.settle();
    net.run_until("new controller", 300, |n| {
        n.controller().is_some_and(|c| c != old)
    });
    let new = net.controller().unwrap();
    assert!(net.groups[&new].term() > old_term);
    net.groups
        .get_mut(&new)
        .unwrap()
        .propose(&add("b"))
        .unwrap();
    net.settle();
    net.run_until("check_quorum deposes the old controller", 100, |n| {
        !n.groups[&old].is_controller()
    });

    net.isolated.clear();
    net.run_until("all members at version 2", 200, |n| {
        n.groups.values().all(|g| g.map().version == 2)
    });
    for g in net.groups.values() {
        assert!(g.map().members.contains_key("b"));
        assert!(
            !g.map().members.contains_key("lost"),
            "member {} applied the cut-off controller's proposal",
            g.id()
        );
    }
}

#[test]
fn the_same_seed_replays_the_same_election() {
    let run = |seed| {
        let mut net = Net::new(3, seed);
        net.run_until("controller", 200, |n| n.controller().is_some());
        (net.controller(), net.ticks, net.digest)
    };
    assert_eq!(run(5), run(5));
    let runs: BTreeSet<_> = (0..8).map(run).collect();
    assert!(runs.len() > 1, "different seeds should not all elect alike");
}

#[test]
fn becoming_and_losing_the_controller_role_are_events() {
    let mut net = Net::new(3, 3);
    let became = |n: &Net| -> Vec<(u64, u64)> {
        n.events
            .iter()
            .filter_map(|(id, e)| match e {
                GroupEvent::BecameController { term } => Some((*id, *term)),
                _ => None,
            })
            .collect()
    };
    net.run_until("a controller", 200, |n| !became(n).is_empty());
    assert_eq!(became(&net).len(), 1, "{:?}", net.events);
}

#[test]
fn garbage_is_refused_and_a_member_must_be_a_voter() {
    let mut net = Net::new(3, 1);
    let g = net.groups.get_mut(&1).unwrap();
    assert!(matches!(
        g.step(b"\xff\xff\xff"),
        Err(GroupError::Decode(_))
    ));
    let bad = GroupConfig {
        id: 9,
        voters: vec![1, 2, 3],
        election_tick: 10,
        heartbeat_tick: 2,
        seed: 0,
    };
    assert!(matches!(Group::new(&bad), Err(GroupError::Raft(_))));
}
