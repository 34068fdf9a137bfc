//! The control plane's consensus group: one Raft member (tikv's raft-rs) per voter, carrying
//! [`MapCommand`]s, each node applying the committed ones to its [`ClusterMap`].
//!
//! A [`Group`] is sans-IO like the rest of core: the caller ticks it, hands it the messages
//! that arrive ([`Group::step`]), proposes commands on the controller (the Raft leader), and
//! after each call collects what to send and what was applied with [`Group::drain`]. Raft-rs
//! draws election timeouts from the thread's random generator; the group overrides every draw
//! with one from its own seeded generator, so a simulator replays an election exactly.
//!
//! The Raft log is kept in memory ([`MemStorage`]) for now; the server will give it a durable
//! store.

use super::map::{ClusterMap, MapCommand, MapError};
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};

/// Settings of a [`Group`] member.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// This member's Raft id (not 0).
    pub id: u64,
    /// The founding voters' Raft ids, the same on every founding member.
    pub voters: Vec<u64>,
    /// Ticks without hearing from a controller before a voter stands for election; the actual
    /// timeout is drawn in `[election_tick, 2 * election_tick)` at every reset.
    pub election_tick: usize,
    /// Ticks between the controller's heartbeats.
    pub heartbeat_tick: usize,
    /// Seed of the election-timeout draws.
    pub seed: u64,
}

/// A message for another member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The member's Raft id.
    pub to: u64,
    /// The encoded Raft message, for [`Group::step`] on the other side.
    pub bytes: Vec<u8>,
}

/// Something that happened in the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEvent {
    /// A committed command was applied to the map (or refused by it, the same way on every
    /// member); `version` is the map's after it.
    Applied {
        /// The command.
        cmd: MapCommand,
        /// Whether the map took it.
        result: Result<(), MapError>,
        /// The map's version afterwards.
        version: u64,
    },
    /// This member became the controller in `term`.
    BecameController {
        /// The Raft term.
        term: u64,
    },
    /// This member stopped being the controller.
    LostController {
        /// The Raft term it now sees.
        term: u64,
    },
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Only the controller takes proposals.
    #[error("this member is not the controller; the controller is {controller:?}")]
    NotController {
        /// The controller's Raft id, when known.
        controller: Option<u64>,
    },
    /// Bytes that are not a Raft message, or a committed entry that is not a command.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// Raft refused.
    #[error("raft: {0}")]
    Raft(String),
}

/// One member of the control plane's consensus group.
pub struct Group {
    raw: RawNode<MemStorage>,
    map: ClusterMap,
    election_tick: usize,
    rng: u64,
    was_controller: bool,
    outbox: Vec<Outgoing>,
    events: Vec<GroupEvent>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.raw.raft.id)
            .field("term", &self.raw.raft.term)
            .field("role", &self.raw.raft.state)
            .field("map_version", &self.map.version)
            .finish_non_exhaustive()
    }
}

impl Group {
    /// A founding member: every founding member starts with the same voters and an empty log.
    ///
    /// # Errors
    /// The configuration is invalid (id 0, ticks out of range, this member not a voter).
    pub fn new(config: &GroupConfig) -> Result<Group, GroupError> {
        if !config.voters.contains(&config.id) {
            return Err(GroupError::Raft(format!(
                "member {} is not among the voters {:?}",
                config.id, config.voters
            )));
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        let storage = MemStorage::new_with_conf_state((config.voters.clone(), Vec::new()));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, storage, &logger)
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        Ok(Group {
            raw,
            map: ClusterMap::default(),
            election_tick: config.election_tick,
            rng: config.seed ^ config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            was_controller: false,
            outbox: Vec::new(),
            events: Vec::new(),
        })
    }

    /// The map as this member has applied it.
    #[must_use]
    pub fn map(&self) -> &ClusterMap {
        &self.map
    }

    /// This member's Raft id.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// The Raft term this member is in.
    #[must_use]
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Whether this member believes it is the controller. Being the Raft leader is not proof
    /// of a quorum (a leader cut off keeps the role for up to two election timeouts): a lease
    /// must be confirmed by a quorum round, not by this.
    #[must_use]
    pub fn is_controller(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The controller this member knows of.
    #[must_use]
    pub fn controller(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }

    /// One tick of the Raft clock.
    pub fn tick(&mut self) {
        // Raft-rs redraws its election timeout (from the thread's generator) only where it
        // also zeroes the elapsed count, and reads it only while ticking: replacing the draw
        // whenever the count is zero, before each tick, makes every draw the seed's.
        if self.raw.raft.election_elapsed == 0 {
            let spread = self.next_random() % self.election_tick as u64;
            self.raw
                .raft
                .set_randomized_election_timeout(self.election_tick + spread as usize);
        }
        self.raw.tick();
        self.process();
    }

    /// A message from another member.
    ///
    /// # Errors
    /// The bytes are not a Raft message (nothing changes); a message Raft refuses (a stray
    /// peer) is dropped without an error.
    pub fn step(&mut self, bytes: &[u8]) -> Result<(), GroupError> {
        let msg =
            Message::parse_from_bytes(bytes).map_err(|e| GroupError::Decode(e.to_string()))?;
        // Raft refuses messages from unknown peers and the like: they are dropped, as a
        // network would.
        let _ = self.raw.step(msg);
        self.process();
        Ok(())
    }

    /// Proposes `cmd` (controller only). It is applied, on every member, once committed.
    ///
    /// # Errors
    /// This member is not the controller, or Raft dropped the proposal.
    pub fn propose(&mut self, cmd: &MapCommand) -> Result<(), GroupError> {
        if !self.is_controller() {
            return Err(GroupError::NotController {
                controller: self.controller(),
            });
        }
        let data = postcard::to_allocvec(cmd).map_err(|e| GroupError::Decode(e.to_string()))?;
        self.raw
            .propose(Vec::new(), data)
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        self.process();
        Ok(())
    }

    /// What to send and what happened since the last call.
    pub fn drain(&mut self) -> (Vec<Outgoing>, Vec<GroupEvent>) {
        (
            std::mem::take(&mut self.outbox),
            std::mem::take(&mut self.events),
        )
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Runs Raft's ready loop until it has nothing more: persists entries and hard state,
    /// applies committed commands, queues messages (those that need persistence first only
    /// after it).
    fn process(&mut self) {
        while self.raw.has_ready() {
            let store = self.raw.store().clone();
            let mut rd = self.raw.ready();
            self.queue(rd.take_messages());
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                match postcard::from_bytes::<ClusterMap>(&snap.data) {
                    Ok(map) => self.map = map,
                    Err(_) if snap.data.is_empty() => {}
                    Err(e) => debug_assert!(false, "undecodable map snapshot: {e}"),
                }
                // The snapshot comes from a peer whose log covers it; storing cannot conflict.
                let _ = store.wl().apply_snapshot(snap);
            }
            self.apply(&store, rd.take_committed_entries());
            if !rd.entries().is_empty() {
                let _ = store.wl().append(rd.entries());
            }
            if let Some(hs) = rd.hs() {
                store.wl().set_hardstate(hs.clone());
            }
            self.queue(rd.take_persisted_messages());
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                store.wl().mut_hard_state().set_commit(commit);
            }
            self.queue(light.take_messages());
            self.apply(&store, light.take_committed_entries());
            self.raw.advance_apply();
        }
        let controller = self.is_controller();
        if controller != self.was_controller {
            self.was_controller = controller;
            let term = self.term();
            self.events.push(if controller {
                GroupEvent::BecameController { term }
            } else {
                GroupEvent::LostController { term }
            });
        }
    }

    fn queue(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            match m.write_to_bytes() {
                Ok(bytes) => self.outbox.push(Outgoing { to: m.to, bytes }),
                Err(e) => debug_assert!(false, "cannot encode a raft message: {e}"),
            }
        }
    }

    fn apply(&mut self, store: &MemStorage, entries: Vec<Entry>) {
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal if !e.data.is_empty() => {
                    match postcard::from_bytes::<MapCommand>(&e.data) {
                        Ok(cmd) => {
                            let result = self.map.apply(&cmd);
                            self.events.push(GroupEvent::Applied {
                                cmd,
                                result,
                                version: self.map.version,
                            });
                        }
                        // Only `propose` writes entries, so every member can decode them.
                        Err(e) => debug_assert!(false, "undecodable committed entry: {e}"),
                    }
                }
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange => {
                    if let Ok(cc) = ConfChange::parse_from_bytes(&e.data) {
                        if let Ok(cs) = self.raw.apply_conf_change(&cc) {
                            store.wl().set_conf_state(cs);
                        }
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    if let Ok(cc) = ConfChangeV2::parse_from_bytes(&e.data) {
                        if let Ok(cs) = self.raw.apply_conf_change(&cc) {
                            store.wl().set_conf_state(cs);
                        }
                    }
                }
            }
        }
    }
}
