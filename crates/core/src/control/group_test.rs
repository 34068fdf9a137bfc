//! Tests for [`Group`]: three members in a deterministic in-memory network elect a
//! controller, apply the same commands in the same order, replace a controller cut off by a
//! partition (whose own proposals are never applied), converge after healing, replay an
//! election exactly from the same seed, and confirm the controller through read-index rounds
//! only while it leads a quorum. The network keeps each member's last persisted state as its
//! disk, for the restart tests in `group_persist_test.rs`.

use super::group::{decode_state, Group, GroupConfig, GroupError, GroupEvent};
use super::map::MapCommand;
use crate::position::Epoch;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Members 1..=n in a network that delivers in order and drops what crosses the partition or
/// goes to a crashed member.
pub(super) struct Net {
    pub(super) groups: BTreeMap<u64, Group>,
    pub(super) configs: BTreeMap<u64, GroupConfig>,
    queue: VecDeque<(u64, Vec<u8>)>,
    pub(super) isolated: BTreeSet<u64>,
    /// The state each member persisted last: what its disk holds after a crash.
    pub(super) disk: BTreeMap<u64, Vec<u8>>,
    /// FNV-1a over every delivered message, for replay checks.
    pub(super) digest: u64,
    /// Every event, with the member it happened on.
    pub(super) events: Vec<(u64, GroupEvent)>,
    /// Every delivered message: sender, receiver, type.
    pub(super) delivered: Vec<(u64, u64, MessageType)>,
    pub(super) ticks: u64,
}

pub(super) const ELECTION_TICK: usize = 10;

pub(super) fn config(id: u64, n: u64, seed: u64) -> GroupConfig {
    GroupConfig {
        id,
        voters: (1..=n).collect(),
        election_tick: ELECTION_TICK,
        heartbeat_tick: 2,
        seed,
    }
}

impl Net {
    pub(super) fn new(n: u64, seed: u64) -> Net {
        let configs: BTreeMap<u64, GroupConfig> =
            (1..=n).map(|id| (id, config(id, n, seed))).collect();
        let groups = configs
            .iter()
            .map(|(&id, c)| (id, Group::new(c).unwrap()))
            .collect();
        let mut net = Net {
            groups,
            configs,
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            disk: BTreeMap::new(),
            digest: 0xcbf2_9ce4_8422_2325,
            events: Vec::new(),
            delivered: Vec::new(),
            ticks: 0,
        };
        net.collect();
        net
    }

    /// Takes every member's output: the state goes to its disk before its messages leave.
    pub(super) fn collect(&mut self) {
        for g in self.groups.values_mut() {
            g.check_invariants();
            let drained = g.drain();
            let id = g.id();
            if let Some(state) = drained.persist {
                self.disk.insert(id, state);
            }
            for o in drained.outgoing {
                check_sent_after_persisted(&self.disk, &o.bytes);
                self.queue.push_back((o.to, o.bytes));
            }
            self.events
                .extend(drained.events.into_iter().map(|e| (id, e)));
        }
    }

    /// Delivers one queued message; whether there was one.
    pub(super) fn deliver_one(&mut self) -> bool {
        let Some((to, bytes)) = self.queue.pop_front() else {
            return false;
        };
        let msg = Message::parse_from_bytes(&bytes).unwrap();
        // The sender is in the message; a member is cut off from everyone else.
        let from = msg.from;
        if self.isolated.contains(&from) != self.isolated.contains(&to) {
            return true;
        }
        let Some(g) = self.groups.get_mut(&to) else {
            return true;
        };
        for b in &bytes {
            self.digest = (self.digest ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        self.delivered.push((from, to, msg.get_msg_type()));
        g.step(&bytes).unwrap();
        self.collect();
        true
    }

    pub(super) fn settle(&mut self) {
        self.collect();
        while self.deliver_one() {}
    }

    pub(super) fn tick(&mut self) {
        self.ticks += 1;
        for g in self.groups.values_mut() {
            g.tick();
        }
        self.settle();
    }

    /// Member `id` stops; its disk keeps what it persisted last.
    pub(super) fn crash(&mut self, id: u64) {
        self.groups.remove(&id).unwrap();
    }

    /// Member `id` starts again from its disk.
    pub(super) fn restart(&mut self, id: u64) {
        let g = Group::restore(&self.configs[&id], &self.disk[&id]).unwrap();
        self.groups.insert(id, g);
        self.collect();
    }

    pub(super) fn group(&mut self, id: u64) -> &mut Group {
        self.groups.get_mut(&id).unwrap()
    }

    /// The controller among the members that are not cut off.
    pub(super) fn controller(&self) -> Option<u64> {
        let c: Vec<u64> = self
            .groups
            .iter()
            .filter(|(id, g)| g.is_controller() && !self.isolated.contains(id))
            .map(|(id, _)| *id)
            .collect();
        assert!(c.len() <= 1, "two controllers on one side: {c:?}");
        c.first().copied()
    }

    pub(super) fn run_until(&mut self, what: &str, ticks: u64, f: impl Fn(&Net) -> bool) {
        for _ in 0..ticks {
            if f(self) {
                return;
            }
            self.tick();
        }
        panic!("no {what} within {ticks} ticks");
    }

    /// The contexts of the read-index rounds member `id` confirmed.
    pub(super) fn reads_confirmed(&self, id: u64) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter(|(at, _)| *at == id)
            .filter_map(|(_, e)| match e {
                GroupEvent::ReadConfirmed { ctx } => Some(ctx.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A granted vote or an acknowledged append is on the sender's disk before the message
/// leaves (Raft section 5.1: persistent state is updated before responding).
fn check_sent_after_persisted(disk: &BTreeMap<u64, Vec<u8>>, bytes: &[u8]) {
    let msg = Message::parse_from_bytes(bytes).unwrap();
    let ack = match msg.get_msg_type() {
        MessageType::MsgRequestVoteResponse | MessageType::MsgAppendResponse => !msg.reject,
        _ => false,
    };
    if !ack {
        return;
    }
    let state = decode_state(&disk[&msg.from]).unwrap();
    if msg.get_msg_type() == MessageType::MsgRequestVoteResponse {
        assert_eq!(
            (state.term, state.vote),
            (msg.term, msg.to),
            "member {} granted a vote it has not persisted",
            msg.from
        );
    } else {
        let last = state.snapshot.index + state.entries.len() as u64;
        assert!(
            last >= msg.index,
            "member {} acknowledged entry {} but persisted up to {last}",
            msg.from,
            msg.index
        );
    }
}

pub(super) fn add(id: &str) -> MapCommand {
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

/// Raft thesis 6.4: a read-index round completes once a quorum answered the controller's
/// heartbeat carrying it; each round needs answers of its own.
#[test]
fn a_read_index_round_completes_on_a_healthy_group() {
    let mut net = Net::new(3, 7);
    net.run_until("controller", 200, |n| n.controller().is_some());
    let c = net.controller().unwrap();
    assert_eq!(net.groups[&c].voters(), vec![1, 2, 3]);

    // The round goes out with the heartbeats; nothing is confirmed before an answer.
    net.group(c).read_index(b"lease-1".to_vec()).unwrap();
    net.collect();
    assert!(net.reads_confirmed(c).is_empty());
    net.settle();
    assert_eq!(net.reads_confirmed(c), vec![b"lease-1".to_vec()]);

    // A second round is confirmed by answers of its own.
    net.group(c).read_index(b"lease-2".to_vec()).unwrap();
    net.collect();
    assert_eq!(net.reads_confirmed(c).len(), 1);
    net.settle();
    assert_eq!(
        net.reads_confirmed(c),
        vec![b"lease-1".to_vec(), b"lease-2".to_vec()]
    );
}

/// A `Safe` round started after the controller was cut off never completes, though the member
/// goes on believing it is the controller for a while (check_quorum deposes it only after an
/// election timeout); the majority elects a new controller meanwhile. This is why a lease is
/// granted on a round, not on the role (docs/design/failover.md).
#[test]
fn a_cut_off_controller_never_confirms_a_read_started_after_the_cut() {
    let mut net = Net::new(3, 11);
    net.run_until("controller", 200, |n| n.controller().is_some());
    let old = net.controller().unwrap();

    // Cut off, the controller starts a round at every tick for as long as it keeps the role.
    net.isolated.insert(old);
    let mut rounds = 0;
    while net.groups[&old].is_controller() {
        net.group(old)
            .read_index(format!("cut-{rounds}").into_bytes())
            .unwrap();
        rounds += 1;
        net.tick();
        assert!(
            net.reads_confirmed(old).is_empty(),
            "a cut-off controller confirmed {:?}",
            net.reads_confirmed(old)
        );
        assert!(rounds < 100, "the cut-off controller never stepped down");
    }
    assert!(
        rounds >= ELECTION_TICK,
        "kept the role for {rounds} ticks only"
    );

    // The majority side elects a new controller, whose rounds complete.
    net.run_until("new controller", 300, |n| {
        n.controller().is_some_and(|c| c != old)
    });
    let new = net.controller().unwrap();
    net.group(new).read_index(b"new".to_vec()).unwrap();
    net.settle();
    assert_eq!(net.reads_confirmed(new), vec![b"new".to_vec()]);

    // Healing does not revive the old rounds.
    net.isolated.clear();
    for _ in 0..50 {
        net.tick();
    }
    assert!(net.reads_confirmed(old).is_empty());
}

/// Raft-rs answers a read-index round at once in a group of one; the event comes all the same.
#[test]
fn a_single_member_group_confirms_a_read_at_once() {
    let mut net = Net::new(1, 5);
    net.run_until("controller", 100, |n| n.controller().is_some());
    net.group(1).read_index(b"solo".to_vec()).unwrap();
    net.collect();
    assert_eq!(net.reads_confirmed(1), vec![b"solo".to_vec()]);
}

/// Raft-rs drops a read-index request on a leader that has not committed an entry of its term
/// (Raft thesis 6.4, step 1); the group holds the round until that commit instead.
#[test]
fn a_read_started_before_the_controllers_first_commit_waits_for_it() {
    let mut net = Net::new(3, 7);
    // Deliver one message at a time, to catch the controller right after its election, before
    // any member acknowledged its first entry.
    let c = 'elected: loop {
        assert!(net.ticks < 200, "no controller");
        net.ticks += 1;
        for g in net.groups.values_mut() {
            g.tick();
        }
        net.collect();
        loop {
            if let Some(c) = net.controller() {
                break 'elected c;
            }
            if !net.deliver_one() {
                break;
            }
        }
    };
    net.group(c).read_index(b"early".to_vec()).unwrap();
    net.collect();
    assert!(net.reads_confirmed(c).is_empty());
    net.settle();
    assert_eq!(net.reads_confirmed(c), vec![b"early".to_vec()]);
}

/// Refused rounds change nothing: only the controller starts one, its context is 1 to
/// `READ_CTX_BYTES_MAX` bytes, and at most `READS_PENDING_MAX` are in flight.
#[test]
fn read_index_is_refused_off_the_controller_with_a_bad_context_and_past_the_bound() {
    use super::group::{READS_PENDING_MAX, READ_CTX_BYTES_MAX};
    let mut net = Net::new(3, 3);
    net.run_until("controller", 200, |n| n.controller().is_some());
    let c = net.controller().unwrap();
    let follower = *net.groups.keys().find(|id| **id != c).unwrap();
    assert_eq!(
        net.group(follower).read_index(b"x".to_vec()),
        Err(GroupError::NotController {
            controller: Some(c)
        })
    );
    assert_eq!(
        net.group(c).read_index(Vec::new()),
        Err(GroupError::ReadContext { bytes: 0 })
    );
    assert_eq!(
        net.group(c).read_index(vec![7; READ_CTX_BYTES_MAX + 1]),
        Err(GroupError::ReadContext {
            bytes: READ_CTX_BYTES_MAX + 1
        })
    );
    let ctxs: Vec<Vec<u8>> = (0..READS_PENDING_MAX)
        .map(|i| format!("r{i}").into_bytes())
        .collect();
    for ctx in &ctxs {
        net.group(c).read_index(ctx.clone()).unwrap();
    }
    assert_eq!(
        net.group(c).read_index(b"one too many".to_vec()),
        Err(GroupError::TooManyReads {
            pending: READS_PENDING_MAX
        })
    );
    net.settle();
    assert_eq!(net.reads_confirmed(c), ctxs);
    assert!(net.reads_confirmed(follower).is_empty());
}

/// A member joins a running group as a learner, catches up on the map, is promoted to voter,
/// and a founder leaves: online, one change at a time, through the controller.
#[test]
fn a_member_joins_as_a_learner_becomes_a_voter_and_a_founder_leaves() {
    use super::group::Membership;
    let mut net = Net::new(3, 11);
    net.run_until("controller", 200, |n| n.controller().is_some());
    let c = net.controller().unwrap();
    for id in ["a", "b", "c"] {
        net.group(c).propose(&add(id)).unwrap();
    }
    net.settle();
    let joiner = config(4, 3, 11);
    net.groups.insert(4, Group::joining(&joiner).unwrap());
    net.configs.insert(4, joiner);
    net.collect();
    // Until it is added, nobody sends it anything and it stands for nothing.
    for _ in 0..40 {
        net.tick();
    }
    assert_eq!(net.group(4).map().version, 0);
    assert!(!net.group(4).is_controller());

    net.group(c)
        .propose_membership(4, Membership::Learner)
        .unwrap();
    net.run_until("the learner has the map", 50, |n| {
        n.groups[&4].map().version == 3 && n.groups[&4].learners() == vec![4]
    });
    assert_eq!(net.group(c).voters(), vec![1, 2, 3]);
    net.group(c).propose(&add("d")).unwrap();
    net.run_until("the learner follows new commands", 50, |n| {
        n.groups[&4].map().version == 4
    });

    net.group(c)
        .propose_membership(4, Membership::Voter)
        .unwrap();
    net.run_until("four voters everywhere", 50, |n| {
        n.groups.values().all(|g| g.voters() == vec![1, 2, 3, 4])
    });
    let leaving = *net.groups.keys().find(|id| **id != c && **id != 4).unwrap();
    net.group(c)
        .propose_membership(leaving, Membership::Remove)
        .unwrap();
    net.run_until("the founder left", 50, |n| {
        n.groups
            .iter()
            .filter(|(id, _)| **id != leaving)
            .all(|(_, g)| !g.voters().contains(&leaving))
    });
    // The three remaining voters still elect and commit without it.
    net.crash(leaving);
    net.isolated.insert(c);
    net.run_until("a new controller among the rest", 400, |n| {
        n.controller().is_some_and(|x| x != c)
    });
    let c2 = net.controller().unwrap();
    net.group(c2).propose(&add("e")).unwrap();
    net.run_until("committed by two of three", 50, |n| {
        n.groups[&c2].map().version == 5
    });
    // A restarted learner-turned-voter keeps its place.
    net.crash(4);
    net.restart(4);
    assert!(net.group(4).voters().contains(&4));
}
