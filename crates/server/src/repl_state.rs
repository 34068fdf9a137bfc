//! Replication state shared between the node task, its links, its connections and the admin
//! API: the feed, the applied position clients wait on, the upstream setting, and the status
//! `INFO replication`, `ROLE`, `/status` and `/metrics` report.

use crate::config::Upstream;
use crate::faults::Faults;
use crate::feed::Feed;
use replikv_core::control::{ClusterMap, ControlMsg};
use replikv_core::{AckMode, Epoch, LogPosition, Lsn};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, watch};

/// Payload bytes the feed keeps in memory for links.
pub const FEED_BYTES_MAX: usize = 64 << 20;

/// Positions published after every round, for reads that wait and for the upstream link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Positions {
    /// The last entry applied.
    pub applied: LogPosition,
    /// The last LSN durable under the node's fsync setting.
    pub durable: Lsn,
    /// The leader's clock time up to which this node's data is current (now, on a leader);
    /// `None` on a replica that has not heard from its upstream yet.
    pub current_as_of_ms: Option<u64>,
    /// Whether the node leads (takes writes).
    pub leader: bool,
    /// The highest epoch seen.
    pub epoch: Epoch,
    /// The last entry durable in this node's log (what an election compares).
    pub durable_pos: LogPosition,
}

/// One follower as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    /// Node id.
    pub id: String,
    /// Client address `ip:port`.
    pub addr: String,
    /// Durable LSN it reported.
    pub durable: Lsn,
    /// Applied LSN it reported.
    pub applied: Lsn,
    /// Entries behind this node's log.
    pub lag_entries: u64,
    /// Age of the oldest entry it lacks.
    pub lag_ms: u64,
    /// Link up.
    pub connected: bool,
    /// In the in-sync set.
    pub in_sync: bool,
    /// `None` for a direct follower; the node it replicates from, for one further down.
    pub via: Option<String>,
}

/// The replication status.
#[derive(Clone, Debug, Default)]
pub struct ReplStatus {
    /// This node's upstream; `None` on a leader.
    pub upstream: Option<Upstream>,
    /// The upstream's node id once a link has been made.
    pub upstream_id: Option<String>,
    /// Whether the link to the upstream is up.
    pub link_up: bool,
    /// Unix milliseconds of the last message from the upstream.
    pub last_upstream_io_ms: u64,
    /// Whether a snapshot from the upstream is being received.
    pub syncing: bool,
    /// Epoch (highest seen).
    pub epoch: Epoch,
    /// History id.
    pub history: u64,
    /// Last applied position.
    pub applied: LogPosition,
    /// Durable LSN.
    pub durable: Lsn,
    /// Commit LSN under the default acknowledgement mode (leader).
    pub commit: Lsn,
    /// Staleness relative to the leader, ms; `None` when unknown.
    pub staleness_ms: Option<u64>,
    /// Default acknowledgement mode.
    pub ack: Option<AckMode>,
    /// Followers, direct and further down.
    pub replicas: Vec<ReplicaView>,
    /// Writes waiting for replicas before they may start (not enough in sync).
    pub parked_writes: u64,
    /// Writes that failed for want of replicas.
    pub writes_failed_no_replicas: u64,
    /// `FAILOVER` state as `INFO` shows it (Redis's names; empty: none).
    pub failover_state: &'static str,
}

/// What the node, links, connections and admin API share about replication.
pub struct ReplShared {
    /// This node's id on peer links.
    pub node_id: String,
    /// The log directory (links read older records from it).
    pub wal_dir: PathBuf,
    /// The in-memory tail of the log.
    pub feed: Feed,
    /// Positions, updated every round.
    pub positions: watch::Sender<Positions>,
    /// The upstream the follower link should use; `None` on a leader.
    pub upstream: watch::Sender<Option<Upstream>>,
    /// The status, refreshed by the node.
    pub status: Mutex<ReplStatus>,
    /// Injected link faults (tests only; inert unless `fault_injection` is on).
    pub faults: Arc<Faults>,
    /// Role changes, epochs, resyncs and switchovers, newest last, and counts by kind.
    pub events: Mutex<Events>,
    /// The cluster map as this node applied it last (control plane only).
    pub map: watch::Sender<Option<Arc<ClusterMap>>>,
    /// Where each epoch starts in this node's log (from its snapshot on), for `Lineage` and
    /// for a returning follower's cut.
    pub epochs: Mutex<replikv_core::replication::EpochTable>,
    /// Set when cutting this node's log back failed: the next link asks for a snapshot.
    pub full_resync_next: std::sync::atomic::AtomicBool,
    /// Where control links deliver what they receive (set once the control task runs).
    pub control_in: OnceLock<mpsc::Sender<(String, ControlMsg)>>,
}

/// Most events kept for `/status`.
pub const EVENTS_KEPT_MAX: usize = 256;

/// A replication event: a role change, a new epoch, a full resync, a switchover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Unix ms.
    pub at_ms: u64,
    /// What happened: `leading`, `following`, `snapshot_installed`, `switchover`,
    /// `switchover_given_up`, `takeover`.
    pub kind: &'static str,
    /// The node's epoch when it happened (for a node that took over or was promoted, the
    /// new one).
    pub epoch: Epoch,
    /// Details for people.
    pub detail: String,
}

/// The newest events and the count of each kind ever.
#[derive(Debug, Default)]
pub struct Events {
    /// Newest last, at most [`EVENTS_KEPT_MAX`].
    pub recent: std::collections::VecDeque<Event>,
    /// Count by kind since the start.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
}

impl std::fmt::Debug for ReplShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplShared")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ReplShared {
    /// Records an event (and logs nothing: the caller logs it).
    pub fn record(&self, kind: &'static str, epoch: Epoch, detail: String) {
        if let Ok(mut e) = self.events.lock() {
            *e.counts.entry(kind).or_default() += 1;
            if e.recent.len() >= EVENTS_KEPT_MAX {
                e.recent.pop_front();
            }
            e.recent.push_back(Event {
                at_ms: crate::now_ms(),
                kind,
                epoch,
                detail,
            });
        }
    }

    /// A copy of the status.
    pub fn status(&self) -> ReplStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Current positions.
    pub fn positions(&self) -> Positions {
        *self.positions.borrow()
    }
}
