//! The simulator's events and the peer messages they carry.

use super::digest::Fnv;
use super::world::ConnId;
use crate::history::Outcome;
use replikv_core::control::ControlMsg;
use replikv_core::replication::EpochTable;
use replikv_core::{Command, Epoch, LogPosition, Lsn, Store};
use std::fmt;

/// A snapshot in flight: the upstream's state at `pos`.
pub(super) struct SnapshotMsg {
    pub store: Store,
    pub pos: LogPosition,
    pub history: u64,
    /// Where each epoch began in the log the snapshot reflects (the simulator's oracle).
    pub epochs: Vec<(Epoch, Lsn)>,
}

impl fmt::Debug for SnapshotMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Snapshot{{pos: {}, keys: {}, history: {:x}}}",
            self.pos,
            self.store.stats().keys,
            self.history
        )
    }
}

/// A follower's request to its upstream: send me what follows `from`.
#[derive(Debug)]
pub(super) struct FetchMsg {
    pub from: LogPosition,
    pub epoch: Epoch,
    pub history: u64,
    /// Under automatic failover, the follower's epoch table and the lowest LSN it can cut its
    /// log back to (its snapshot's): the server's `Lineage`, sent after `Fetch`.
    pub lineage: Option<(EpochTable, Lsn)>,
}

/// A message of the peer protocol, as the real link sends it.
#[derive(Debug)]
pub(super) enum PeerMsg {
    /// Follower → upstream: send me what follows `from`.
    Fetch(FetchMsg),
    /// Upstream → follower: cut your log back to `to`, the last entry both logs share; the
    /// entries after it follow.
    Truncate { to: LogPosition },
    /// Either way: the link is refused; the receiver closes it.
    Refuse { reason: String },
    /// Upstream → follower: replace your state.
    Snapshot(Box<SnapshotMsg>),
    /// Upstream → follower: the entries after `prev`.
    Entries {
        epoch: Epoch,
        prev: LogPosition,
        records: Vec<(LogPosition, Command)>,
    },
    /// Upstream → follower: the leader's clock, once everything is shipped.
    Heartbeat { epoch: Epoch, leader_time_ms: u64 },
    /// Follower → upstream: how far it is.
    Ack {
        epoch: Epoch,
        durable: Lsn,
        applied: Lsn,
    },
}

/// A control-plane message in flight. Its trace shows a Raft message by length and hash, not
/// byte by byte.
pub(super) struct CtlMsg(pub ControlMsg);

impl fmt::Debug for CtlMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ControlMsg::Raft(bytes) => {
                let mut h = Fnv::new();
                h.update(bytes);
                write!(f, "Raft({} bytes, {:016x})", bytes.len(), h.value())
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// Something that happens at a virtual time.
#[derive(Debug)]
pub(super) enum Event {
    /// A node's periodic tick (incarnation `inc`).
    Tick { node: usize, inc: u64 },
    /// An fsync of the first `len` entries of disk generation `generation` completed.
    FsyncDone {
        node: usize,
        inc: u64,
        generation: u64,
        len: usize,
    },
    /// A message arrives at one end of a connection.
    Deliver {
        conn: ConnId,
        to_upstream: bool,
        msg: PeerMsg,
    },
    /// A node learns that a connection is closed.
    ConnClosed { conn: ConnId, node: usize, inc: u64 },
    /// A follower (re)connects to its upstream.
    Reconnect { node: usize, inc: u64 },
    /// A client request arrives at a node.
    Request {
        client: usize,
        op: u64,
        node: usize,
        inc: u64,
    },
    /// A reply (or a dropped connection) reaches a client.
    Reply {
        client: usize,
        op: u64,
        outcome: Outcome,
        token: Option<String>,
    },
    /// A client issues its next operation.
    ClientNext { client: usize },
    /// A client gives up waiting.
    ClientTimeout { client: usize, op: u64 },
    /// The nemesis injects its next fault.
    Fault,
    /// A crashed node restarts.
    Restart { node: usize },
    /// A partition ends (the node's messages flow again).
    Heal { node: usize },
    /// The operator looks at whether to promote a replica.
    PromoteCheck,
    /// Faults stop; everything heals; clients finish.
    EndFaults,
    /// A node's control-plane tick (automatic failover).
    ControlTick { node: usize, inc: u64 },
    /// A control-plane message from `from` reaches `to` (incarnation `inc`), sent on the
    /// link generation `generation` of the pair.
    ControlDeliver {
        from: usize,
        to: usize,
        inc: u64,
        generation: u64,
        msg: CtlMsg,
    },
    /// A paused node runs again.
    Resume { node: usize },
}
