//! The messages nodes exchange on a peer link.

use bytes::Bytes;
use replikv_core::{Epoch, LogPosition, Lsn};
use serde::{Deserialize, Serialize};

use super::peer_message_kind::PeerMessageKind;

/// Length of the handshake nonces in [`PeerMessage::Hello`] and [`PeerMessage::Challenge`].
pub const PEER_NONCE_BYTES: usize = 32;

/// Length of the HMAC-SHA256 tag in [`PeerMessage::Auth`].
pub const PEER_MAC_BYTES: usize = 32;

/// One log entry in an [`PeerMessage::Entries`] batch: its position and its encoded command,
/// opaque to this crate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Where the entry sits in the leader's log.
    pub pos: LogPosition,
    /// The entry's command as the log stores it. Decoded frames share one allocation with
    /// the frame body, so holding a payload holds the whole frame's bytes.
    pub payload: Bytes,
}

/// One replica in a [`PeerMessage::Downstream`] report: a node that replicates from the
/// reporting node, or from a node below it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownstreamReplica {
    /// The replica's node id.
    pub node_id: String,
    /// The replica's client address as `ip:port` (an IPv6 address in brackets), the IP as its
    /// upstream sees the link and the port from its [`PeerMessage::Fetch`]'s `listen_port`.
    pub addr: String,
    /// The last LSN the replica has made durable, from its latest `Ack`.
    pub durable: Lsn,
    /// The last LSN the replica has applied, from its latest `Ack`.
    pub applied: Lsn,
    /// How far the replica is behind, in milliseconds, as its upstream measures it; for
    /// status reports only, never for ordering or leases.
    pub lag_ms: u64,
    /// The id of the node the replica fetches from, so that a report relayed up more than one
    /// level keeps the shape of the tree.
    pub via: String,
}

/// A message on a node-to-node link, carried in one peer frame.
///
/// A link opens with the handshake: the connecting node (client) sends [`Hello`], the
/// accepting node (server) answers [`Challenge`], then each side sends [`Auth`], the client
/// first; either side may send [`Refuse`] and close instead. After the handshake a follower
/// sends [`Fetch`] and [`Ack`] (and [`Downstream`] when others replicate from it), and its
/// upstream sends [`Entries`], [`Heartbeat`] and, when it cannot continue the follower's log,
/// [`SnapshotBegin`], [`SnapshotChunk`]s and [`SnapshotEnd`]. See
/// `docs/design/peer-protocol.md`.
///
/// [`Hello`]: PeerMessage::Hello
/// [`Challenge`]: PeerMessage::Challenge
/// [`Auth`]: PeerMessage::Auth
/// [`Refuse`]: PeerMessage::Refuse
/// [`Fetch`]: PeerMessage::Fetch
/// [`Ack`]: PeerMessage::Ack
/// [`Downstream`]: PeerMessage::Downstream
/// [`Entries`]: PeerMessage::Entries
/// [`Heartbeat`]: PeerMessage::Heartbeat
/// [`SnapshotBegin`]: PeerMessage::SnapshotBegin
/// [`SnapshotChunk`]: PeerMessage::SnapshotChunk
/// [`SnapshotEnd`]: PeerMessage::SnapshotEnd
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerMessage {
    /// Client side of the handshake, the first frame on a link.
    Hello {
        /// The newest peer protocol version the client speaks (bound into the MAC, so a
        /// downgrade by a third party fails authentication).
        protocol_version: u16,
        /// The cluster the client believes it joins; a mismatch is refused.
        cluster_name: String,
        /// The client node's id.
        node_id: String,
        /// Fresh random bytes from the client, never reused.
        nonce: [u8; PEER_NONCE_BYTES],
    },
    /// Server side of the handshake, the answer to `Hello`.
    Challenge {
        /// Fresh random bytes from the server, never reused.
        nonce: [u8; PEER_NONCE_BYTES],
        /// The server node's id.
        node_id: String,
    },
    /// Proof of the cluster secret: [`auth_mac`](crate::auth_mac) over the handshake
    /// [`Transcript`](crate::Transcript) with the sender as prover. Sent by both sides.
    Auth {
        /// HMAC-SHA256 tag.
        mac: [u8; PEER_MAC_BYTES],
    },
    /// A follower asks for the entries after `from`.
    Fetch {
        /// The follower's last log position; the answer starts after it.
        from: LogPosition,
        /// The highest epoch the follower has seen, for fencing.
        epoch: Epoch,
        /// The id of the log history the follower's log belongs to, 0 when it has none (empty
        /// log). The upstream continues the log only within the same history and otherwise
        /// sends a snapshot.
        history: u64,
        /// The follower's client port, which its upstream lists with the link's peer IP (as
        /// Redis's `INFO replication` lists a replica's ip and port).
        listen_port: u16,
    },
    /// A batch of log entries from the upstream.
    Entries {
        /// The sender's epoch.
        epoch: Epoch,
        /// The position just before the first record, for the follower's continuity check.
        prev: LogPosition,
        /// The leader's commit LSN.
        commit: Lsn,
        /// The entries, in log order; their number and size are bounded by the sender.
        records: Vec<PeerRecord>,
    },
    /// A follower reports its progress.
    Ack {
        /// The highest epoch the follower has seen.
        epoch: Epoch,
        /// The last LSN the follower has made durable.
        durable: Lsn,
        /// The last LSN the follower has applied.
        applied: Lsn,
    },
    /// A follower reports the replicas that fetch from it, directly or further down, so that
    /// their lag is visible up the tree. Sent with its `Ack`s, only when it has any.
    Downstream {
        /// The replicas, in no particular order. The sender bounds the list so that the body
        /// fits a control frame ([`PEER_CONTROL_BODY_BYTES_MAX`]); `encode_frame` refuses a
        /// larger one.
        ///
        /// [`PEER_CONTROL_BODY_BYTES_MAX`]: crate::PEER_CONTROL_BODY_BYTES_MAX
        replicas: Vec<DownstreamReplica>,
    },
    /// The upstream is alive and has nothing new to send.
    Heartbeat {
        /// The sender's epoch.
        epoch: Epoch,
        /// The leader's commit LSN.
        commit: Lsn,
        /// The leader's clock reading in milliseconds, for lag reports only (never for
        /// ordering or leases).
        leader_time_ms: u64,
    },
    /// A snapshot transfer starts; `SnapshotChunk`s and one `SnapshotEnd` follow.
    SnapshotBegin {
        /// The last log position the snapshot covers.
        pos: LogPosition,
        /// The size of all chunks' data together.
        total_bytes: u64,
        /// The id of the log history the snapshot belongs to; the follower adopts it.
        history: u64,
    },
    /// One piece of a snapshot.
    SnapshotChunk {
        /// The chunk's index, from 0, without gaps.
        index: u64,
        /// The chunk's bytes, opaque to this crate.
        data: Bytes,
    },
    /// A snapshot transfer ends. The upstream goes straight on with `Entries` from the
    /// snapshot's `pos`, without waiting for a new `Fetch`.
    SnapshotEnd {
        /// How many chunks were sent.
        chunks: u64,
    },
    /// Sent by a follower just before its `Fetch`: where each epoch starts in its log (as far
    /// as it knows, from its snapshot on), so that an upstream whose log parted from it can
    /// tell it where to cut ([`PeerMessage::Truncate`]) instead of sending a snapshot.
    Lineage {
        /// `(epoch, first LSN)` pairs, both increasing; at most a few thousand.
        epochs: Vec<(Epoch, Lsn)>,
        /// The lowest LSN the follower can cut its log back to (its snapshot's).
        truncatable_from: Lsn,
    },
    /// The upstream's answer to a `Fetch` from a follower whose log holds entries past the
    /// last one both logs share: cut the log back to `to`, then take the `Entries` that
    /// follow from there (no new `Fetch`).
    Truncate {
        /// The last position both logs share.
        to: LogPosition,
    },
    /// A control-plane message (Raft, leases, election queries), opaque to this crate. A link
    /// whose first frame after the handshake is `Control` is a control link: it carries only
    /// these, in both directions.
    Control {
        /// The encoded message.
        body: Bytes,
    },
    /// The sender will not go on (lower epoch, bad auth, wrong cluster...) and closes the
    /// link after this frame.
    Refuse {
        /// Why, for the other side's log. At most a few hundred bytes in practice; the
        /// control-body limit bounds it.
        reason: String,
    },
}

impl PeerMessage {
    /// The kind code this message's frame carries.
    #[must_use]
    pub fn kind(&self) -> PeerMessageKind {
        match self {
            PeerMessage::Hello { .. } => PeerMessageKind::Hello,
            PeerMessage::Challenge { .. } => PeerMessageKind::Challenge,
            PeerMessage::Auth { .. } => PeerMessageKind::Auth,
            PeerMessage::Fetch { .. } => PeerMessageKind::Fetch,
            PeerMessage::Entries { .. } => PeerMessageKind::Entries,
            PeerMessage::Ack { .. } => PeerMessageKind::Ack,
            PeerMessage::Downstream { .. } => PeerMessageKind::Downstream,
            PeerMessage::Heartbeat { .. } => PeerMessageKind::Heartbeat,
            PeerMessage::SnapshotBegin { .. } => PeerMessageKind::SnapshotBegin,
            PeerMessage::SnapshotChunk { .. } => PeerMessageKind::SnapshotChunk,
            PeerMessage::SnapshotEnd { .. } => PeerMessageKind::SnapshotEnd,
            PeerMessage::Refuse { .. } => PeerMessageKind::Refuse,
            PeerMessage::Control { .. } => PeerMessageKind::Control,
            PeerMessage::Lineage { .. } => PeerMessageKind::Lineage,
            PeerMessage::Truncate { .. } => PeerMessageKind::Truncate,
        }
    }
}
