//! The control plane's consensus group: one Raft member (tikv's raft-rs) per voter, carrying
//! [`MapCommand`]s, each node applying the committed ones to its [`ClusterMap`].
//!
//! A [`Group`] is sans-IO like the rest of core: the caller ticks it, hands it the messages
//! that arrive ([`Group::step`]), proposes commands on the controller (the Raft leader), and
//! after each call collects what to persist, what to send and what happened with
//! [`Group::drain`]. Raft-rs draws election timeouts from the thread's random generator; the
//! group overrides every draw with one from its own seeded generator, so a simulator replays
//! an election exactly (a restored member draws from the same seed).
//!
//! # Persistence
//!
//! A voter that forgets its vote or its log after a crash breaks Raft's safety, so the group
//! hands out its whole Raft state whenever it changed: [`Drained::persist`]. The caller writes
//! it durably, replacing the previous one, **before** it sends any of [`Drained::outgoing`] or
//! acts on any of [`Drained::events`]: a vote or an appended entry is on disk before anyone
//! learns of it. After a crash, [`Group::restore`] rebuilds the member from the last bytes
//! written; it starts from the snapshot's map and re-applies the committed entries after it
//! (emitting their [`GroupEvent::Applied`] again).
//!
//! Once more than [`COMPACT_ENTRIES_MAX`] entries are applied past the latest snapshot, the
//! member takes a snapshot at its applied index holding the serialized map and drops the log up
//! to it, so the state stays small. A member that lags behind the dropped entries receives the
//! snapshot instead ([`GroupEvent::SnapshotInstalled`]). A snapshot whose data is not a map is
//! refused in [`Group::step`] and never installed; the map is replaced only once the snapshot
//! it comes from is stored.
//!
//! The persisted bytes:
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `RKVG` |
//! | 4 | 1 | format version, 1 |
//! | 5 | n | the body, postcard (varint integers, length-prefixed sequences) |
//! | 5 + n | 8 | xxh3-64 of bytes `0..5 + n`, little-endian |
//!
//! The body, in order: the member's id; the hard state (term, vote, commit index); the latest
//! snapshot (index, term, the conf state at its index: voters, learners, outgoing voters, next
//! learners, auto-leave; the postcard-encoded [`ClusterMap`] at its index); the entries after
//! it (index, term, kind: normal, conf change or conf change v2; data; context).
//!
//! The conf state is kept as of the snapshot: conf changes after it are entries and are
//! applied again on restore, as they were the first time.
//!
//! # Read-index rounds
//!
//! Being the controller is not proof of leading a quorum: a controller cut off keeps the role
//! for up to two election timeouts. [`Group::read_index`] starts a raft-rs `Safe` read-index
//! round: the controller sends a heartbeat carrying the round's context and reports
//! [`GroupEvent::ReadConfirmed`] once a quorum answered it, which proves it still led at some
//! point after the call. A round started on a controller that has not yet committed an entry
//! of its term waits for that commit (raft-rs would drop it). A round on a controller that
//! loses the role never completes.

use super::map::{ClusterMap, MapCommand, MapError};
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot,
};
use raft::{GetEntriesContext, RaftState, RawNode, ReadOnlyOption, StateRole, Storage};
use serde::{Deserialize, Serialize};

/// Entries applied past the latest snapshot before the member takes a new one at its applied
/// index and drops the log up to it.
pub const COMPACT_ENTRIES_MAX: u64 = 256;
/// Largest batch of entries in one Raft message, bytes.
pub const MSG_BYTES_MAX: u64 = 1 << 20;
/// Most Raft messages in flight to one member.
pub const MSGS_IN_FLIGHT_MAX: usize = 256;
/// Bytes of commands the controller holds uncommitted before it refuses proposals; with
/// [`COMPACT_ENTRIES_MAX`] it bounds the persisted log.
pub const UNCOMMITTED_BYTES_MAX: u64 = 4 << 20;
/// Longest context of a read-index round, bytes.
pub const READ_CTX_BYTES_MAX: usize = 64;
/// Most read-index rounds in flight on the controller.
pub const READS_PENDING_MAX: usize = 64;

// Raft-rs refuses a configuration whose uncommitted bound is below the message bound.
const _: () = assert!(UNCOMMITTED_BYTES_MAX >= MSG_BYTES_MAX);

/// The first bytes of persisted group state.
const STATE_MAGIC: [u8; 4] = *b"RKVG";
/// The version of the persisted layout (see the module docs).
const STATE_VERSION: u8 = 1;
/// Magic and version.
const STATE_HEADER_BYTES: usize = 5;
/// The trailing checksum.
const STATE_CHECKSUM_BYTES: usize = 8;

/// Settings of a [`Group`] member.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// This member's Raft id (not 0).
    pub id: u64,
    /// The founding voters' Raft ids, the same on every founding member. A restored member
    /// takes its voters from its persisted state instead.
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

/// What [`Group::drain`] hands out. The caller must write `persist` durably before it sends
/// any of `outgoing` or acts on any of `events`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "the state must be persisted and the messages sent"]
pub struct Drained {
    /// The member's whole Raft state, when it changed since the last drain: it replaces the
    /// state written before, for [`Group::restore`].
    pub persist: Option<Vec<u8>>,
    /// Messages for other members, in order.
    pub outgoing: Vec<Outgoing>,
    /// What happened, in order.
    pub events: Vec<GroupEvent>,
}

/// A change of a member's place in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// It receives the map without voting.
    Learner,
    /// It votes.
    Voter,
    /// It leaves the group.
    Remove,
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
    /// The member was too far behind for the log and took the controller's snapshot: the map
    /// was replaced as a whole (the commands it skipped are not reported one by one).
    SnapshotInstalled {
        /// The Raft index of the snapshot.
        index: u64,
        /// The map's version now.
        version: u64,
    },
    /// A read-index round started with [`Group::read_index`] completed: a quorum confirmed
    /// this member as the controller after the round started.
    ReadConfirmed {
        /// The round's context, as given.
        ctx: Vec<u8>,
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
    /// Only the controller takes proposals and starts read-index rounds.
    #[error("this member is not the controller; the controller is {controller:?}")]
    NotController {
        /// The controller's Raft id, when known.
        controller: Option<u64>,
    },
    /// Bytes that are not a Raft message or a message this group does not exchange, a
    /// snapshot without a map, an entry that is not a command, or persisted state that is
    /// damaged or not this member's.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// Raft refused.
    #[error("raft: {0}")]
    Raft(String),
    /// A read-index context must be 1 to [`READ_CTX_BYTES_MAX`] bytes.
    #[error("read-index context of {bytes} bytes; 1 to {READ_CTX_BYTES_MAX} allowed")]
    ReadContext {
        /// Its length.
        bytes: usize,
    },
    /// [`READS_PENDING_MAX`] read-index rounds are in flight already.
    #[error("{pending} read-index rounds in flight already")]
    TooManyReads {
        /// Rounds in flight.
        pending: usize,
    },
}

/// One member of the control plane's consensus group.
pub struct Group {
    raw: RawNode<GroupStore>,
    map: ClusterMap,
    election_tick: usize,
    rng: u64,
    was_controller: bool,
    /// Whether the store changed since the last drain.
    dirty: bool,
    /// Read-index contexts waiting for the controller's first commit in its term; at most
    /// [`READS_PENDING_MAX`].
    reads_waiting: Vec<Vec<u8>>,
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
    /// Its first [`Group::drain`] hands out its initial state to persist.
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
        let store = GroupStore::founding(&config.voters);
        let mut group = Group::start(config, store, ClusterMap::default(), 0)?;
        group.dirty = true;
        Ok(group)
    }

    /// A member restarted from the state it last persisted ([`Drained::persist`]): same term,
    /// vote, log and snapshot. Its map starts from the snapshot's, and the committed entries
    /// after it are applied again at once.
    ///
    /// # Errors
    /// [`GroupError::Decode`]: the bytes are not persisted group state, are damaged, are
    /// another member's, or hold a snapshot whose data is not a map;
    /// [`GroupError::Raft`]: the configuration is invalid.
    pub fn restore(config: &GroupConfig, bytes: &[u8]) -> Result<Group, GroupError> {
        let state = decode_state(bytes)?;
        if state.id != config.id {
            return Err(GroupError::Decode(format!(
                "the state is member {}'s, not {}'s",
                state.id, config.id
            )));
        }
        let map = postcard::from_bytes::<ClusterMap>(&state.snapshot.map).map_err(|e| {
            GroupError::Decode(format!(
                "the snapshot at {} holds no map: {e}",
                state.snapshot.index
            ))
        })?;
        let store = GroupStore::from_state(&state)?;
        let mut group = Group::start(config, store, map, state.snapshot.index)?;
        group.process();
        Ok(group)
    }

    fn start(
        config: &GroupConfig,
        store: GroupStore,
        map: ClusterMap,
        applied: u64,
    ) -> Result<Group, GroupError> {
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied,
            pre_vote: true,
            check_quorum: true,
            read_only_option: ReadOnlyOption::Safe,
            max_size_per_msg: MSG_BYTES_MAX,
            max_inflight_msgs: MSGS_IN_FLIGHT_MAX,
            max_uncommitted_size: UNCOMMITTED_BYTES_MAX,
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, store, &logger)
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        Ok(Group {
            raw,
            map,
            election_tick: config.election_tick,
            rng: config.seed ^ config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            was_controller: false,
            dirty: false,
            reads_waiting: Vec::new(),
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

    /// The member this one voted for in the current term.
    #[must_use]
    pub fn vote(&self) -> Option<u64> {
        match self.raw.raft.vote {
            0 => None,
            id => Some(id),
        }
    }

    /// Whether this member believes it is the controller. Being the Raft leader is not proof
    /// of a quorum (a leader cut off keeps the role for up to two election timeouts): a lease
    /// must be confirmed by a quorum round ([`Group::read_index`]), not by this.
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

    /// The voters' Raft ids as this member knows them, ascending.
    #[must_use]
    pub fn voters(&self) -> Vec<u64> {
        let mut voters = self.raw.raft.prs().conf().to_conf_state().voters;
        voters.sort_unstable();
        voters
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
    /// [`GroupError::Decode`] (nothing changes): the bytes are not a Raft message, or a
    /// message members of this group never send each other (proposals, read-index requests
    /// and answers), or carry a snapshot whose data is not a map or an entry that is not a
    /// command. A message Raft refuses (a stray peer) is dropped without an error.
    pub fn step(&mut self, bytes: &[u8]) -> Result<(), GroupError> {
        let msg =
            Message::parse_from_bytes(bytes).map_err(|e| GroupError::Decode(e.to_string()))?;
        check_peer_message(&msg)?;
        // Raft refuses messages from unknown peers and the like: they are dropped, as a
        // network would.
        let _ = self.raw.step(msg);
        self.process();
        Ok(())
    }

    /// A member joining a running group: it starts as the founders did (`config.voters` are
    /// the founding voters, which it is not one of) and waits for the controller to add it
    /// ([`Group::propose_membership`]) and catch it up, replaying the group's changes from the
    /// start (or taking a snapshot). Raft refuses a configuration change that leaves no voter,
    /// so a member that started from an empty one could never apply its own addition.
    ///
    /// # Errors
    /// The configuration is invalid (id 0, ticks out of range), or this member is a founder.
    pub fn joining(config: &GroupConfig) -> Result<Group, GroupError> {
        if config.voters.contains(&config.id) {
            return Err(GroupError::Raft(format!(
                "member {} is a founding voter; it does not join",
                config.id
            )));
        }
        let store = GroupStore::founding(&config.voters);
        let mut group = Group::start(config, store, ClusterMap::default(), 0)?;
        group.dirty = true;
        Ok(group)
    }

    /// Proposes a change of the group's membership (controller only): member `raft_id`
    /// becomes a learner (it receives the map, votes on nothing), a voter, or leaves. Raft
    /// applies one change at a time; a second proposed before the first is applied is
    /// refused.
    ///
    /// # Errors
    /// This member is not the controller, or Raft refused the change.
    pub fn propose_membership(
        &mut self,
        raft_id: u64,
        change: Membership,
    ) -> Result<(), GroupError> {
        if !self.is_controller() {
            return Err(GroupError::NotController {
                controller: self.controller(),
            });
        }
        if raft_id == 0 {
            return Err(GroupError::Raft("member id 0".into()));
        }
        let mut cc = ConfChange {
            node_id: raft_id,
            ..Default::default()
        };
        cc.set_change_type(match change {
            Membership::Learner => ConfChangeType::AddLearnerNode,
            Membership::Voter => ConfChangeType::AddNode,
            Membership::Remove => ConfChangeType::RemoveNode,
        });
        self.raw
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| GroupError::Raft(e.to_string()))?;
        self.process();
        Ok(())
    }

    /// The group's learners (members that receive the map without voting).
    #[must_use]
    pub fn learners(&self) -> Vec<u64> {
        let mut l = self.raw.raft.prs().conf().to_conf_state().learners;
        l.sort_unstable();
        l
    }

    /// Proposes `cmd` (controller only). It is applied, on every member, once committed.
    ///
    /// # Errors
    /// This member is not the controller, or Raft dropped the proposal (among others when
    /// [`UNCOMMITTED_BYTES_MAX`] bytes are uncommitted already).
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

    /// Starts a `Safe` read-index round (controller only): [`GroupEvent::ReadConfirmed`] with
    /// `ctx` follows once a quorum has confirmed this member as the controller after this
    /// call. Rounds in flight at once should have distinct contexts (raft-rs merges a round
    /// into one in flight with the same context). A round never completes if the member loses
    /// the role first; the caller gives up on it after a timeout of its own.
    ///
    /// # Errors
    /// [`GroupError::NotController`], [`GroupError::ReadContext`] (empty or longer than
    /// [`READ_CTX_BYTES_MAX`]), [`GroupError::TooManyReads`]. Nothing changes.
    pub fn read_index(&mut self, ctx: Vec<u8>) -> Result<(), GroupError> {
        if !self.is_controller() {
            return Err(GroupError::NotController {
                controller: self.controller(),
            });
        }
        // Raft-rs tells a read-index heartbeat from a plain one by a non-empty context.
        if ctx.is_empty() || ctx.len() > READ_CTX_BYTES_MAX {
            return Err(GroupError::ReadContext { bytes: ctx.len() });
        }
        let pending = self.reads_waiting.len() + self.raw.raft.read_only.pending_read_count();
        if pending >= READS_PENDING_MAX {
            return Err(GroupError::TooManyReads { pending });
        }
        self.reads_waiting.push(ctx);
        self.process();
        Ok(())
    }

    /// What to persist, what to send and what happened since the last call; see [`Drained`]
    /// for the order the caller must keep.
    pub fn drain(&mut self) -> Drained {
        let persist = if self.dirty {
            self.dirty = false;
            Some(encode_state(&self.raw.store().to_state(self.id())))
        } else {
            None
        };
        Drained {
            persist,
            outgoing: std::mem::take(&mut self.outbox),
            events: std::mem::take(&mut self.events),
        }
    }

    /// Asserts the member's invariants: snapshot ≤ applied ≤ commit ≤ last index, the log
    /// within its compaction bound, the stored hard state Raft's own.
    ///
    /// # Panics
    /// An invariant does not hold (a bug).
    pub fn check_invariants(&self) {
        let log = &self.raw.raft.raft_log;
        let store = self.raw.store();
        let snapshot = store.snapshot_index();
        let applied = log.applied();
        assert!(
            snapshot <= applied,
            "snapshot {snapshot} > applied {applied}"
        );
        assert!(
            applied <= log.committed,
            "applied {applied} > commit {}",
            log.committed
        );
        assert!(
            log.committed <= log.last_index(),
            "commit {} > last index {}",
            log.committed,
            log.last_index()
        );
        assert!(
            applied - snapshot <= COMPACT_ENTRIES_MAX,
            "{} entries applied past the snapshot at {snapshot}",
            applied - snapshot
        );
        assert!(
            store.hard == self.raw.raft.hard_state(),
            "stored hard state {:?} is not raft's {:?}",
            store.hard,
            self.raw.raft.hard_state()
        );
        assert!(
            self.reads_waiting.len() <= READS_PENDING_MAX,
            "{} reads waiting",
            self.reads_waiting.len()
        );
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Runs Raft until it has nothing more, starts the read-index rounds that can start,
    /// compacts the log, and reports a change of role.
    fn process(&mut self) {
        loop {
            self.process_ready();
            if !self.process_start_reads() {
                break;
            }
        }
        self.process_compact();
        let controller = self.is_controller();
        if !controller {
            // Raft-rs drops the rounds in flight when the role is lost; these go with them.
            self.reads_waiting.clear();
        }
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

    /// Raft's ready loop: stores the snapshot, entries and hard state, applies committed
    /// entries, reports completed read-index rounds and queues messages. Every message waits
    /// in the outbox for the caller to persist the state first.
    fn process_ready(&mut self) {
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            self.queue(rd.take_messages());
            for rs in rd.take_read_states() {
                self.events.push(GroupEvent::ReadConfirmed {
                    ctx: rs.request_ctx,
                });
            }
            if !rd.snapshot().is_empty() {
                self.process_ready_install(rd.snapshot().clone());
            }
            self.apply(rd.take_committed_entries());
            if !rd.entries().is_empty() {
                self.raw.mut_store().append(rd.entries());
                self.dirty = true;
            }
            if let Some(hs) = rd.hs() {
                self.raw.mut_store().hard = hs.clone();
                self.dirty = true;
            }
            self.queue(rd.take_persisted_messages());
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                self.raw.mut_store().hard.commit = commit;
                self.dirty = true;
            }
            self.queue(light.take_messages());
            self.apply(light.take_committed_entries());
            self.raw.advance_apply();
        }
    }

    /// Stores a snapshot from the controller, then takes its map.
    fn process_ready_install(&mut self, snap: Snapshot) {
        let index = snap.get_metadata().index;
        let map = match postcard::from_bytes::<ClusterMap>(&snap.data) {
            Ok(map) => map,
            // Only `step` lets a snapshot into Raft, and it refuses one without a map.
            Err(e) => panic!("snapshot {index} passed step without a map: {e}"),
        };
        self.raw.mut_store().install(snap);
        self.dirty = true;
        self.map = map;
        self.events.push(GroupEvent::SnapshotInstalled {
            index,
            version: self.map.version,
        });
    }

    /// Hands the waiting read-index rounds to Raft once this controller has committed an
    /// entry of its term (raft-rs drops a round started before). Whether it did.
    fn process_start_reads(&mut self) -> bool {
        if self.reads_waiting.is_empty()
            || !self.is_controller()
            || !self.raw.raft.commit_to_current_term()
        {
            return false;
        }
        for ctx in std::mem::take(&mut self.reads_waiting) {
            self.raw.read_index(ctx);
        }
        true
    }

    /// Takes a snapshot at the applied index once more than [`COMPACT_ENTRIES_MAX`] entries
    /// are applied past the latest one.
    fn process_compact(&mut self) {
        let applied = self.raw.raft.raft_log.applied();
        let snapshot = self.raw.store().snapshot_index();
        if applied - snapshot <= COMPACT_ENTRIES_MAX {
            return;
        }
        let data = encode(&self.map);
        self.raw.mut_store().compact(applied, data);
        self.dirty = true;
    }

    fn queue(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            match m.write_to_bytes() {
                Ok(bytes) => self.outbox.push(Outgoing { to: m.to, bytes }),
                Err(e) => debug_assert!(false, "cannot encode a raft message: {e}"),
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
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
                        // `propose` writes commands and `step` and `restore` refuse entries
                        // that are not, so every member can decode them.
                        Err(e) => debug_assert!(false, "undecodable committed entry: {e}"),
                    }
                }
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange => {
                    if let Ok(cc) = ConfChange::parse_from_bytes(&e.data) {
                        if let Ok(cs) = self.raw.apply_conf_change(&cc) {
                            self.raw.mut_store().conf = cs;
                        }
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    if let Ok(cc) = ConfChangeV2::parse_from_bytes(&e.data) {
                        if let Ok(cs) = self.raw.apply_conf_change(&cc) {
                            self.raw.mut_store().conf = cs;
                        }
                    }
                }
            }
        }
    }
}

/// Refuses what members of this group never send each other, and data Raft would carry to the
/// map undecodable.
fn check_peer_message(msg: &Message) -> Result<(), GroupError> {
    match msg.get_msg_type() {
        // Proposals and read-index rounds start on the controller itself; a follower never
        // forwards them, so a peer's would be forged.
        t @ (MessageType::MsgPropose
        | MessageType::MsgReadIndex
        | MessageType::MsgReadIndexResp) => Err(GroupError::Decode(format!(
            "{t:?} from {} is not exchanged in this group",
            msg.from
        ))),
        MessageType::MsgSnapshot => {
            let snap = msg.get_snapshot();
            postcard::from_bytes::<ClusterMap>(&snap.data)
                .map(drop)
                .map_err(|e| {
                    GroupError::Decode(format!(
                        "snapshot {} from {} holds no map: {e}",
                        snap.get_metadata().index,
                        msg.from
                    ))
                })
        }
        MessageType::MsgAppend => msg.entries.iter().try_for_each(check_entry),
        _ => Ok(()),
    }
}

/// Refuses an entry whose data the member could not apply.
fn check_entry(e: &Entry) -> Result<(), GroupError> {
    let result = match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => Ok(()),
        EntryType::EntryNormal => postcard::from_bytes::<MapCommand>(&e.data)
            .map(drop)
            .map_err(|e| e.to_string()),
        EntryType::EntryConfChange => ConfChange::parse_from_bytes(&e.data)
            .map(drop)
            .map_err(|e| e.to_string()),
        EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data)
            .map(drop)
            .map_err(|e| e.to_string()),
    };
    result.map_err(|why| GroupError::Decode(format!("entry {}: {why}", e.index)))
}

/// Postcard bytes of a value postcard can always encode (integers, strings, sequences of
/// known length).
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    match postcard::to_allocvec(value) {
        Ok(bytes) => bytes,
        // Postcard fails only on sequences of unknown length and on writers that fill up.
        Err(e) => panic!("postcard cannot encode a plain value: {e}"),
    }
}

/// The Raft log and state of a member: what raft-rs reads through [`Storage`], and what
/// [`Drained::persist`] carries.
///
/// Raft-rs's `MemStorage` does not fit: its `snapshot()` builds a snapshot at the commit index
/// (not the applied one) and without data, so a lagging member would receive no map, and it
/// can record a snapshot only by clearing the log after it.
struct GroupStore {
    /// Term, vote and commit index, as last handed over by Raft.
    hard: HardState,
    /// The conf state as of the applied index.
    conf: ConfState,
    /// The latest snapshot: index, term, conf state at that index, and the serialized map at
    /// that index as data. Index 0 (no data): none yet.
    snapshot: Snapshot,
    /// The entries after the snapshot: `entries[k].index == snapshot index + 1 + k`.
    entries: Vec<Entry>,
}

impl GroupStore {
    fn founding(voters: &[u64]) -> GroupStore {
        let conf = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().set_conf_state(conf.clone());
        snapshot.data = encode(&ClusterMap::default()).into();
        GroupStore {
            hard: HardState::default(),
            conf,
            snapshot,
            entries: Vec::new(),
        }
    }

    /// The store persisted as `state`, checked so that raft-rs accepts it.
    fn from_state(state: &PersistedGroup) -> Result<GroupStore, GroupError> {
        let bad = |why: String| Err(GroupError::Decode(why));
        let s = &state.snapshot;
        if (s.index == 0) != (s.term == 0) {
            return bad(format!(
                "snapshot at index {} with term {}",
                s.index, s.term
            ));
        }
        let conf = s.conf.to_conf_state()?;
        let mut entries = Vec::with_capacity(state.entries.len());
        let (mut index, mut term) = (s.index, s.term);
        for e in &state.entries {
            if Some(e.index) != index.checked_add(1) || e.term < term {
                return bad(format!(
                    "entry ({}, term {}) after ({index}, term {term})",
                    e.index, e.term
                ));
            }
            let entry = e.to_entry();
            check_entry(&entry)?;
            entries.push(entry);
            (index, term) = (e.index, e.term);
        }
        if state.term < term {
            return bad(format!(
                "term {} behind the log's last term {term}",
                state.term
            ));
        }
        if state.commit < s.index || state.commit > index {
            return bad(format!(
                "commit {} outside the log [{}, {index}]",
                state.commit, s.index
            ));
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = s.index;
        meta.term = s.term;
        meta.set_conf_state(conf.clone());
        snapshot.data = s.map.clone().into();
        Ok(GroupStore {
            hard: HardState {
                term: state.term,
                vote: state.vote,
                commit: state.commit,
                ..Default::default()
            },
            // Raft starts at the snapshot's index; it applies the conf changes after it again.
            conf,
            snapshot,
            entries,
        })
    }

    fn to_state(&self, id: u64) -> PersistedGroup {
        let meta = self.snapshot.get_metadata();
        PersistedGroup {
            id,
            term: self.hard.term,
            vote: self.hard.vote,
            commit: self.hard.commit,
            snapshot: PersistedSnapshot {
                index: meta.index,
                term: meta.term,
                conf: PersistedConf::from_conf_state(meta.get_conf_state()),
                map: self.snapshot.data.to_vec(),
            },
            entries: self
                .entries
                .iter()
                .map(PersistedEntry::from_entry)
                .collect(),
        }
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last_entry_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// Appends entries from Raft, replacing the tail they conflict with.
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let snapshot = self.snapshot_index();
        assert!(
            first.index > snapshot,
            "append at {} into the snapshot at {snapshot}",
            first.index
        );
        assert!(
            first.index <= self.last_entry_index() + 1,
            "append at {} leaves a gap after {}",
            first.index,
            self.last_entry_index()
        );
        self.entries.truncate((first.index - snapshot - 1) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Replaces the log with a snapshot from the controller.
    fn install(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata();
        assert!(
            meta.index >= self.snapshot_index(),
            "snapshot {} older than ours at {}",
            meta.index,
            self.snapshot_index()
        );
        self.hard.term = self.hard.term.max(meta.term);
        self.hard.commit = meta.index;
        self.conf = meta.get_conf_state().clone();
        self.entries.clear();
        self.snapshot = snap;
    }

    /// Takes a snapshot at `index` (applied, so the conf state is the one at `index`) holding
    /// `map`, and drops the log up to it.
    fn compact(&mut self, index: u64, map: Vec<u8>) {
        let snapshot = self.snapshot_index();
        assert!(
            index > snapshot && index <= self.last_entry_index(),
            "compact to {index} outside ({snapshot}, {}]",
            self.last_entry_index()
        );
        let dropped = (index - snapshot) as usize;
        let term = self.entries[dropped - 1].term;
        self.entries.drain(..dropped);
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf.clone());
        snap.data = map.into();
        self.snapshot = snap;
    }
}

impl Storage for GroupStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let snapshot = self.snapshot_index();
        if low <= snapshot {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_entry_index() + 1 || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let mut entries =
            self.entries[(low - snapshot - 1) as usize..(high - snapshot - 1) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snapshot = self.snapshot_index();
        if idx == snapshot {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < snapshot {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        match self.entries.get((idx - snapshot - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(raft::StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_entry_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.snapshot_index();
        // Raft-rs asks only for what the log no longer holds, so never with none taken.
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

/// A member's Raft state as persisted (layout in the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PersistedGroup {
    /// The member's Raft id.
    pub(super) id: u64,
    /// The current term.
    pub(super) term: u64,
    /// The member voted for in `term`; 0: none.
    pub(super) vote: u64,
    /// The commit index.
    pub(super) commit: u64,
    /// The latest snapshot.
    pub(super) snapshot: PersistedSnapshot,
    /// The entries after the snapshot, at most about [`COMPACT_ENTRIES_MAX`] plus the
    /// uncommitted ones.
    pub(super) entries: Vec<PersistedEntry>,
}

/// A snapshot as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PersistedSnapshot {
    /// Its Raft index; 0: none taken yet.
    pub(super) index: u64,
    /// The term of the entry at `index`.
    pub(super) term: u64,
    /// The conf state as of `index`.
    pub(super) conf: PersistedConf,
    /// The postcard-encoded [`ClusterMap`] as of `index`.
    pub(super) map: Vec<u8>,
}

/// Raft-rs's conf state as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PersistedConf {
    /// The voters (of the incoming configuration, in a joint one).
    pub(super) voters: Vec<u64>,
    /// The learners.
    pub(super) learners: Vec<u64>,
    /// The outgoing configuration's voters, in a joint configuration; empty otherwise.
    pub(super) voters_outgoing: Vec<u64>,
    /// Outgoing voters that become learners when the joint configuration is left.
    pub(super) learners_next: Vec<u64>,
    /// Whether raft-rs leaves the joint configuration by itself.
    pub(super) auto_leave: bool,
}

impl PersistedConf {
    fn from_conf_state(cs: &ConfState) -> PersistedConf {
        PersistedConf {
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        }
    }

    /// The conf state, refused unless raft-rs would restore exactly it (it aborts otherwise).
    fn to_conf_state(&self) -> Result<ConfState, GroupError> {
        let bad = |why: &str| Err(GroupError::Decode(format!("conf state {self:?}: {why}")));
        let lists = [
            &self.voters,
            &self.learners,
            &self.voters_outgoing,
            &self.learners_next,
        ];
        if lists.iter().any(|l| {
            l.iter()
                .enumerate()
                .any(|(i, id)| *id == 0 || l[..i].contains(id))
        }) {
            return bad("an id 0 or repeated");
        }
        if self.voters.is_empty() {
            return bad("no voters");
        }
        let in_voters = |id: &u64| self.voters.contains(id) || self.voters_outgoing.contains(id);
        if self.learners.iter().any(in_voters) {
            return bad("a learner is a voter");
        }
        if self
            .learners_next
            .iter()
            .any(|id| !self.voters_outgoing.contains(id) || self.voters.contains(id))
        {
            return bad("a next learner is not an outgoing voter only");
        }
        if self.voters_outgoing.is_empty() && self.auto_leave {
            return bad("auto-leave outside a joint configuration");
        }
        Ok(ConfState {
            voters: self.voters.clone(),
            learners: self.learners.clone(),
            voters_outgoing: self.voters_outgoing.clone(),
            learners_next: self.learners_next.clone(),
            auto_leave: self.auto_leave,
            ..Default::default()
        })
    }
}

/// A log entry as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PersistedEntry {
    /// Its Raft index.
    pub(super) index: u64,
    /// The term it was proposed in.
    pub(super) term: u64,
    /// What `data` holds.
    pub(super) kind: PersistedEntryKind,
    /// A postcard-encoded [`MapCommand`] (empty: a new controller's entry), or a protobuf
    /// conf change.
    pub(super) data: Vec<u8>,
    /// Raft-rs's entry context (set on conf changes only).
    pub(super) context: Vec<u8>,
}

/// Raft-rs's entry types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum PersistedEntryKind {
    /// A command, or a new controller's empty entry.
    Normal,
    /// A `ConfChange`.
    ConfChange,
    /// A `ConfChangeV2`.
    ConfChangeV2,
}

impl PersistedEntry {
    fn from_entry(e: &Entry) -> PersistedEntry {
        PersistedEntry {
            index: e.index,
            term: e.term,
            kind: match e.get_entry_type() {
                EntryType::EntryNormal => PersistedEntryKind::Normal,
                EntryType::EntryConfChange => PersistedEntryKind::ConfChange,
                EntryType::EntryConfChangeV2 => PersistedEntryKind::ConfChangeV2,
            },
            data: e.data.to_vec(),
            context: e.context.to_vec(),
        }
    }

    fn to_entry(&self) -> Entry {
        let mut e = Entry::default();
        e.set_entry_type(match self.kind {
            PersistedEntryKind::Normal => EntryType::EntryNormal,
            PersistedEntryKind::ConfChange => EntryType::EntryConfChange,
            PersistedEntryKind::ConfChangeV2 => EntryType::EntryConfChangeV2,
        });
        e.index = self.index;
        e.term = self.term;
        e.data = self.data.clone().into();
        e.context = self.context.clone().into();
        e
    }
}

/// The persisted bytes of `state`: header, postcard body, checksum.
pub(super) fn encode_state(state: &PersistedGroup) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&STATE_MAGIC);
    bytes.push(STATE_VERSION);
    bytes.extend_from_slice(&encode(state));
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// The state in persisted bytes, refused unless the header, checksum and body all check.
///
/// # Errors
/// [`GroupError::Decode`]: not group state, another version, or damaged.
pub(super) fn decode_state(bytes: &[u8]) -> Result<PersistedGroup, GroupError> {
    let bad = |why: String| Err(GroupError::Decode(format!("group state: {why}")));
    if bytes.len() < STATE_HEADER_BYTES + STATE_CHECKSUM_BYTES {
        return bad(format!("{} bytes is too short", bytes.len()));
    }
    if bytes[..4] != STATE_MAGIC {
        return bad("no magic".into());
    }
    if bytes[4] != STATE_VERSION {
        return bad(format!("version {}, expected {STATE_VERSION}", bytes[4]));
    }
    let (covered, checksum) = bytes.split_at(bytes.len() - STATE_CHECKSUM_BYTES);
    let mut stored = [0; STATE_CHECKSUM_BYTES];
    stored.copy_from_slice(checksum);
    if xxhash_rust::xxh3::xxh3_64(covered) != u64::from_le_bytes(stored) {
        return bad("checksum mismatch".into());
    }
    match postcard::take_from_bytes::<PersistedGroup>(&covered[STATE_HEADER_BYTES..]) {
        Ok((state, [])) => Ok(state),
        Ok((_, rest)) => bad(format!("{} bytes after the body", rest.len())),
        Err(e) => bad(e.to_string()),
    }
}
