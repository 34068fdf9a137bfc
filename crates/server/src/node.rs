//! The node task: the single owner of the key-value state and the log position.
//!
//! Connections send batches of data commands here over a bounded channel. For each command the
//! node plans it against the [`Store`], appends the resulting log commands with their
//! `(epoch, lsn)` to the group-commit writer, applies them, and holds the batch's replies until
//! the log is durable up to the last LSN the batch could have observed (written to the OS under
//! `fsync = interval`, fsynced under `fsync = always`). So no client is ever told of, or shown,
//! a write that a crash could still lose under the chosen durability.

use crate::config::{Config, FsyncMode, Upstream};
use crate::feed::FeedState;
use crate::log_writer::LogWriter;
use crate::meta::{self, NodeMeta};
use crate::repl_state::{Positions, ReplShared, ReplStatus, ReplicaView};
use crate::stats::Stats;
use crate::{mono_ms, now_ms};
use bytes::{Bytes, BytesMut};
use replikv_core::control::ClusterMap;
use replikv_core::replication::{
    Answer, EpochTable, IsrChange, LogSink, Machine, MachineConfig, MachineStats, MapLead, Now,
    Replicas,
};
use replikv_core::{AckMode, Command, Epoch, LogPosition, Lsn, Reply, Store};
use replikv_proto::{DownstreamReplica, PeerRecord};
use replikv_storage::{
    FsyncPolicy, GroupCommit, InlineWal, LogRecord, SnapshotMeta, SnapshotReader, SnapshotWriter,
    Wal, WalOptions, WalProgress,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

/// Most messages the node takes from its channel before handing the log records they produced
/// to the writer; bounds the latency one busy round adds.
const DRAIN_MESSAGES_MAX: usize = 512;
/// Size of each buffer log payloads are encoded into, and the spare room below which a new one
/// is started.
const PAYLOAD_ARENA_BYTES: usize = 64 * 1024;
const PAYLOAD_ARENA_MIN_SPARE: usize = 1024;
/// Capacity of the node's request channel.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Largest log payload the node produces; the storage limit, less room for framing.
const LOG_PAYLOAD_BYTES_MAX: usize = replikv_storage::RECORD_PAYLOAD_BYTES_MAX - 4096;
/// Entries per snapshot chunk.
const SNAPSHOT_CHUNK_ENTRIES: usize = 4096;
/// Most keys deleted by one active-expiry tick.
const EXPIRE_KEYS_PER_TICK_MAX: usize = 256;
/// Period of the active-expiry tick.
const EXPIRE_TICK: Duration = Duration::from_millis(100);
/// Time one active-expiry tick may spend.
const EXPIRE_TICK_BUDGET: Duration = Duration::from_millis(5);
/// Period of the replication tick: in-sync set, timeouts, status.
const REPLICATION_TICK: Duration = Duration::from_millis(50);

pub use replikv_core::replication::BatchReply;

/// Bytes of log read at a time while rebuilding the state for a cut.
const TRUNCATE_READ_BYTES: u64 = 16 << 20;

/// The answer to `REPLICAOF` when the control plane decides who leads.
const CONTROLLED: &str =
    "ERR the control plane (control_peers) decides who leads here; use FAILOVER to hand leadership over";

/// A step of removing a member ([`NodeMsg::Removal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalStep {
    /// Stop counting it for acknowledgements, and say whether it may leave.
    Begin,
    /// Say whether it may leave.
    Check,
    /// Count it again: the removal is given up.
    Cancel,
}

/// A request to the node.
#[derive(Debug)]
pub enum NodeMsg {
    /// Data commands from one connection, executed in order; the replies come back together.
    Batch {
        /// Each command's arguments, name first.
        cmds: Vec<Vec<Bytes>>,
        /// What the batch's writes wait for.
        mode: AckMode,
        /// Where the replies go once releasable.
        done: oneshot::Sender<BatchReply>,
    },
    /// `SAVE` (foreground) or `BGSAVE`.
    Save {
        /// Run in the background and reply at once.
        background: bool,
        /// The reply (status text or error).
        done: oneshot::Sender<Reply>,
    },
    /// A background snapshot finished.
    SnapshotDone(Result<LogPosition, String>),
    /// `WAIT numreplicas timeout`: answer how many followers have `lsn` durable, once
    /// `numreplicas` do or the timeout passes.
    Wait {
        /// Followers wanted.
        numreplicas: u32,
        /// The LSN to wait for; `None`: the node's last entry (the connection wrote).
        lsn: Option<Lsn>,
        /// 0 = no timeout.
        timeout_ms: u64,
        /// The count.
        done: oneshot::Sender<Reply>,
    },
    /// `REPLICAOF`: follow `upstream`, or lead when `None`.
    SetUpstream {
        /// The new upstream.
        upstream: Option<Upstream>,
        /// `+OK` or an error.
        done: oneshot::Sender<Reply>,
    },
    /// `REPLIKV MEMBER REMOVE`, on the leader: a step of removing a replica safely.
    Removal {
        /// The member to remove.
        id: String,
        /// What to do.
        step: RemovalStep,
        /// `Some(epoch)`: the other replicas hold every acknowledged write, and the member may
        /// leave, as this leader of `epoch` says; `None`: not yet. An error: not the leader.
        done: oneshot::Sender<Result<Option<Epoch>, String>>,
    },
    /// A follower's link came up (downstream side).
    FollowerUp {
        /// Its node id.
        id: String,
        /// Its client address.
        addr: String,
        /// The link's number, unique in this process.
        link: u64,
    },
    /// A follower reported progress.
    FollowerAck {
        /// Its node id.
        id: String,
        /// The link it came on.
        link: u64,
        /// Durable LSN.
        durable: Lsn,
        /// Applied LSN.
        applied: Lsn,
    },
    /// A follower reported the followers below it.
    Downstream {
        /// The follower that reports.
        via: String,
        /// What it reports.
        replicas: Vec<DownstreamReplica>,
    },
    /// A follower's link went down.
    FollowerDown {
        /// Its node id.
        id: String,
        /// The link that went down.
        link: u64,
    },
    /// A link needs a snapshot to bootstrap a follower: the store as of a log position.
    SnapshotForFollower {
        /// The store, its position, the history id and the log's generation (bumped when a
        /// snapshot from the upstream replaces the log).
        done: oneshot::Sender<(Store, LogPosition, u64, u64)>,
    },
    /// Entries (or a heartbeat, with no records) from the upstream.
    Replicate {
        /// The sender's epoch.
        epoch: Epoch,
        /// The position before the first record.
        prev: LogPosition,
        /// The records.
        records: Vec<PeerRecord>,
        /// With a heartbeat: the leader's time up to which the upstream is current.
        leader_time_ms: Option<u64>,
        /// `Err(reason)` to refuse the batch and close the link.
        done: oneshot::Sender<Result<(), String>>,
    },
    /// A snapshot from the upstream was received in full: replace the state and the log.
    InstallSnapshot(Box<Install>),
    /// `FAILOVER [TO host port] [TIMEOUT ms]` on the leader: pause writes, wait until the
    /// target replica holds every entry durably, hand leadership over, follow it.
    Failover {
        /// The replica to hand over to; `None`: the most up-to-date in-sync one.
        target: Option<Upstream>,
        /// How long the target may take to catch up before the switchover is given up.
        timeout_ms: u64,
        /// `+OK` once the target leads, or why not.
        done: oneshot::Sender<Reply>,
    },
    /// The target of a switchover answered (or did not).
    FailoverDone(Result<(), crate::forward::TakeoverError>),
    /// `FAILOVER ABORT`: give up a switchover still waiting for its target, or resume writes
    /// left paused by one whose outcome is unknown.
    FailoverAbort {
        /// `+OK` or why not.
        done: oneshot::Sender<Reply>,
    },
    /// `REPLIKV TAKEOVER epoch node last` on a replica, from the leader it replicates from,
    /// handing over with every entry up to `last` here: lead, continuing the history, in an
    /// epoch past `epoch`.
    Takeover {
        /// The handing-over leader's epoch.
        epoch: Epoch,
        /// Its node id: it must be this node's upstream.
        from: String,
        /// Its last entry: this node must hold exactly that, durably.
        last: LogPosition,
        /// `+OK` or an error.
        done: oneshot::Sender<Reply>,
    },
    /// The upstream says this replica's log holds entries it never had: cut the log back to
    /// `to`, the last entry both share, and go on from there.
    Truncate {
        /// The last position both logs share.
        to: LogPosition,
        /// Done, or why not (the link then asks for a snapshot next time).
        done: oneshot::Sender<Result<(), String>>,
    },
    /// The control plane applied a new cluster map: lead when it names this node, follow the
    /// leader (or the upstream it names) otherwise.
    Map(Arc<ClusterMap>),
    /// The controller granted this leader its lease, in `epoch`, up to `until_ms` (monotonic).
    Lease {
        /// The epoch it was granted in.
        epoch: Epoch,
        /// The end of the lease.
        until_ms: u64,
    },
    /// The upstream link went up or down.
    UpstreamLink {
        /// Up or down.
        up: bool,
        /// The upstream's node id, when up.
        upstream_id: Option<String>,
        /// A snapshot is being received.
        syncing: bool,
    },
}

/// A snapshot received from the upstream, ready to install.
#[derive(Debug)]
pub struct Install {
    /// The state it holds.
    pub store: Store,
    /// The position it covers.
    pub pos: LogPosition,
    /// The history it belongs to.
    pub history: u64,
    /// The file it was written to, not yet in place.
    pub writer: SnapshotWriter,
    /// `Err(reason)` when it could not be installed.
    pub done: oneshot::Sender<Result<(), String>>,
}

/// Handle used by connections to reach the node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<NodeMsg>,
}

/// The node stopped because something it cannot work around failed.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// Loading the snapshot or log failed.
    #[error("recovery failed: {0}")]
    Recovery(String),
    /// The log failed while running.
    #[error("write-ahead log failed: {0}")]
    Wal(String),
}

impl NodeHandle {
    /// Sends a message; `false` if the node has stopped.
    pub async fn send(&self, msg: NodeMsg) -> bool {
        self.tx.send(msg).await.is_ok()
    }

    /// Runs data commands and waits for their replies.
    pub async fn batch(
        &self,
        cmds: Vec<Vec<Bytes>>,
        mode: AckMode,
    ) -> Option<oneshot::Receiver<BatchReply>> {
        let (done, rx) = oneshot::channel();
        if self.send(NodeMsg::Batch { cmds, mode, done }).await {
            Some(rx)
        } else {
            None
        }
    }
}

/// Log state the group-commit thread reports.
#[derive(Clone, Debug)]
struct WalState {
    progress: WalProgress,
    failed: Option<String>,
}

/// Who waits for an answer from the replication state machine.
#[derive(Debug)]
enum Done {
    /// A batch's replies.
    Batch(oneshot::Sender<BatchReply>),
    /// A `WAIT`'s count.
    Wait(oneshot::Sender<Reply>),
}

/// Log records appended this round and not yet handed to the writer; their payloads are
/// carved out of one growing buffer, one allocation per many records.
#[derive(Debug, Default)]
struct Outbox {
    records: Vec<LogRecord>,
    arena: BytesMut,
}

impl LogSink for Outbox {
    fn append(&mut self, pos: LogPosition, cmd: &Command) {
        if self.arena.capacity() - self.arena.len() < PAYLOAD_ARENA_MIN_SPARE {
            self.arena.reserve(PAYLOAD_ARENA_BYTES);
        }
        cmd.encode_into(&mut self.arena);
        self.records.push(LogRecord {
            pos,
            payload: self.arena.split().freeze(),
        });
    }
}

/// The node's state, owned by its task.
pub struct Node {
    /// The store, log position, epoch, followers and held replies: every replication
    /// decision is made there.
    machine: Machine<Done>,
    fsync: FsyncMode,
    out: Outbox,
    /// The machine's counters already added to the shared figures.
    counted: MachineStats,
    /// Reports from followers about the followers below them, by reporting follower.
    downstream: BTreeMap<String, Vec<DownstreamReplica>>,
    /// This node's upstream; `None` when it leads.
    upstream: Option<Upstream>,
    upstream_id: Option<String>,
    link_up: bool,
    syncing: bool,
    last_upstream_io_ms: u64,
    meta: NodeMeta,
    data_dir: PathBuf,
    feed_generation: u64,
    repl: Arc<ReplShared>,
    wal: Arc<LogWriter>,
    /// Set when an inline write failed; the node stops at the end of the round.
    write_failure: Option<String>,
    wal_state: watch::Receiver<WalState>,
    stats: Arc<Stats>,
    snapshot_dir: PathBuf,
    snapshot_every_entries: u64,
    entries_since_snapshot: u64,
    snapshot_running: bool,
    /// `entries_since_snapshot` when the running background snapshot started, restored if it
    /// fails so the next automatic one comes soon.
    snapshot_started_after: u64,
    /// Lets a background snapshot report back without keeping the node's channel open.
    self_tx: Option<mpsc::WeakSender<NodeMsg>>,
    /// Foreground `SAVE`s waiting for a running background snapshot to finish first.
    save_waiters: Vec<oneshot::Sender<Reply>>,
    /// A switchover in progress.
    failover: Option<Switchover>,
    /// The password clients give (a switchover authenticates to its target with it).
    requirepass: Option<String>,
    /// Whether the control plane decides who leads (and this node follows its map).
    control_plane: bool,
}

/// A `FAILOVER` in progress.
#[derive(Debug)]
struct Switchover {
    target_id: String,
    target: Upstream,
    /// Monotonic ms past which the target has not caught up: the switchover is given up.
    deadline_ms: u64,
    /// The target was told to take over; its answer is awaited.
    handing_over: bool,
    done: oneshot::Sender<Reply>,
}

/// The identity and replication facts a node starts with, and the shared state built on them.
pub fn open_meta(config: &Config) -> Result<NodeMeta, Fatal> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Fatal::Recovery(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let mut meta = meta::load(&config.data_dir).map_err(Fatal::Recovery)?;
    if let Some(id) = &config.node_id {
        meta.node_id.clone_from(id);
    }
    Ok(meta)
}

impl Node {
    /// Loads the newest snapshot, replays the log after it, and starts the log writer.
    ///
    /// # Errors
    /// [`Fatal::Recovery`] when the snapshot or log is unreadable or corrupt (the message names
    /// the file and offset).
    pub fn open(
        config: &Config,
        stats: Arc<Stats>,
        mut meta: NodeMeta,
        repl: Arc<ReplShared>,
    ) -> Result<Node, Fatal> {
        let snapshot_dir = config.data_dir.join("snapshots");
        let wal_dir = config.data_dir.join("wal");
        for dir in [&snapshot_dir, &wal_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Fatal::Recovery(format!("cannot create {}: {e}", dir.display())))?;
        }
        let (mut store, snapshot_pos) = load_snapshot(&snapshot_dir)?;
        let opts = WalOptions {
            dir: wal_dir,
            segment_bytes_max: config.segment_bytes_max,
            retention_bytes: config.wal_retention_bytes,
            // Zero-filled segments spare `fdatasync` a metadata journal write; without an
            // fsync per write they would only double what is written to disk.
            preallocate: config.fsync == FsyncMode::Always,
        };
        let (wal, recovery) =
            Wal::open(opts, snapshot_pos.lsn).map_err(|e| Fatal::Recovery(e.to_string()))?;
        if let Some(torn) = &recovery.torn_tail {
            warn!(file = %torn.file.display(), offset = torn.offset, bytes = torn.bytes_dropped,
                "repaired a torn record at the end of the log (zeroed)");
            Stats::add(&stats.torn_tails_truncated, 1);
        }
        let replayed = recovery.records.len() as u64;
        let mut epochs = EpochTable::default();
        if snapshot_pos.lsn > Lsn::ZERO {
            let _ = epochs.note(snapshot_pos);
        }
        for record in &recovery.records {
            let cmd = Command::decode_shared(&record.payload).map_err(|e| {
                Fatal::Recovery(format!("log record at {} does not decode: {e}", record.pos))
            })?;
            store.apply(&cmd);
            let _ = epochs.note(record.pos);
        }
        let last = recovery.last.max(snapshot_pos);
        // A leader starts a new epoch at every start: followers may hold entries of the old
        // one that this node lost (written to them before its own fsync), and the new epoch
        // makes such entries tell apart from the ones it writes now.
        let seen = meta.epoch.max(last.epoch.0);
        // Under the control plane a node leads only once the map names it, in the map's epoch.
        let standalone_leader = config.replicaof.is_none() && !config.control_plane();
        let epoch = if standalone_leader {
            seen + 1
        } else {
            seen.max(1)
        };
        let mut meta_changed = epoch != meta.epoch;
        meta.epoch = epoch;
        // A node that leads continues its own history; one that starts leading a history it
        // did not lead (a replica started without an upstream) starts a new one.
        let leads = standalone_leader;
        if leads && (meta.history == 0 || !meta.leads) {
            if meta.history != 0 {
                info!(old = format!("{:016x}", meta.history),
                    "leading a history this node did not lead: starting a new one (replicas get a full resync)");
            }
            meta.history = meta::random_u64()
                .map_err(|e| Fatal::Recovery(format!("cannot draw a history id: {e}")))?;
            meta_changed = true;
        }
        if meta.leads != leads {
            meta.leads = leads;
            meta_changed = true;
        }
        if meta_changed {
            meta::store(&config.data_dir, &meta).map_err(Fatal::Recovery)?;
        }
        let epoch = Epoch(epoch);
        info!(snapshot = %snapshot_pos, replayed, last = %last, keys = store.stats().keys,
            %epoch, node_id = %meta.node_id, "recovered");
        if config.control_plane() {
            repl.record(
                "waiting",
                epoch,
                format!("started at {last}; waiting for the control plane's map"),
            );
        } else if standalone_leader {
            repl.record("leading", epoch, format!("started leading at {last}"));
        } else {
            repl.record(
                "following",
                epoch,
                format!("started as a replica at {last}"),
            );
        }
        Stats::set(&stats.recovered_records, replayed);
        Stats::set(&stats.epoch, epoch.0);
        Stats::set(&stats.last_snapshot_lsn, snapshot_pos.lsn.0);
        stats
            .last_save_ok
            .store(true, std::sync::atomic::Ordering::Relaxed);

        let initial = WalState {
            progress: WalProgress {
                written: last.lsn,
                synced: last.lsn,
            },
            failed: None,
        };
        let (state_tx, wal_state) = watch::channel(initial);
        let on_progress: Box<dyn Fn(Result<WalProgress, String>) + Send> =
            Box::new(move |report| {
                state_tx.send_modify(|s| match report {
                    Ok(p) => s.progress = p,
                    Err(e) => s.failed = Some(e),
                });
            });
        let wal = match config.fsync {
            FsyncMode::Always => {
                LogWriter::Group(GroupCommit::start(wal, FsyncPolicy::Always, on_progress))
            }
            FsyncMode::Interval => {
                LogWriter::Inline(InlineWal::start(wal, config.fsync_interval_ms, on_progress))
            }
        };
        let now = now_ms();
        let mut machine = Machine::new(
            store,
            last,
            epoch,
            standalone_leader,
            MachineConfig {
                default_ack: config.ack,
                write_ack_timeout_ms: config.write_ack_timeout_ms,
                replica_lag_max_ms: config.replica_lag_max_ms,
                cluster_size: config.cluster_size,
                payload_bytes_max: LOG_PAYLOAD_BYTES_MAX,
                commit_rule: Replicas::commit_lsn,
            },
        );
        if config.control_plane() {
            machine.require_lease();
        }
        machine.set_epochs(epochs);
        let node = Node {
            machine,
            fsync: config.fsync,
            out: Outbox::default(),
            counted: MachineStats::default(),
            downstream: BTreeMap::new(),
            upstream: config.replicaof.clone(),
            upstream_id: None,
            link_up: false,
            syncing: false,
            last_upstream_io_ms: 0,
            meta,
            data_dir: config.data_dir.clone(),
            feed_generation: 0,
            repl,
            wal: Arc::new(wal),
            write_failure: None,
            wal_state,
            stats,
            snapshot_dir,
            snapshot_every_entries: config.snapshot_every_entries,
            entries_since_snapshot: replayed,
            snapshot_running: false,
            snapshot_started_after: 0,
            self_tx: None,
            save_waiters: Vec::new(),
            failover: None,
            requirepass: config.requirepass.clone(),
            control_plane: config.control_plane(),
        };
        node.publish_replication(now);
        Ok(node)
    }

    /// Starts the node task; returns its handle and the task's completion.
    pub fn spawn(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> (NodeHandle, tokio::task::JoinHandle<Result<(), Fatal>>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let handle = NodeHandle { tx: tx.clone() };
        let mut node = self;
        node.self_tx = Some(tx.downgrade());
        let task = tokio::spawn(node.run(rx, shutdown));
        (handle, task)
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<NodeMsg>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Fatal> {
        let mut expire_tick = tokio::time::interval(EXPIRE_TICK);
        expire_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut repl_tick = tokio::time::interval(REPLICATION_TICK);
        repl_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                changed = self.wal_state.changed() => {
                    if changed.is_err() {
                        break Err(Fatal::Wal("log writer stopped".into()));
                    }
                    if let Err(fatal) = self.on_wal_progress() {
                        break Err(fatal);
                    }
                }
                _ = shutdown.changed() => break Ok(()),
                msg = rx.recv() => {
                    let Some(msg) = msg else { break Ok(()) };
                    self.on_msg(msg);
                    for _ in 1..DRAIN_MESSAGES_MAX {
                        match rx.try_recv() {
                            Ok(msg) => self.on_msg(msg),
                            Err(_) => break,
                        }
                    }
                    self.submit();
                }
                _ = expire_tick.tick() => {
                    self.on_tick_expire();
                    self.submit();
                }
                _ = repl_tick.tick() => {
                    self.on_tick_replication();
                    self.submit();
                }
            }
            if let Some(e) = self.write_failure.take() {
                break Err(Fatal::Wal(e));
            }
        };
        self.stop(result)
    }

    /// Final steps: on a clean stop, sync the log so every reply still held can be released;
    /// on a fatal one, fail every held reply (their writes may not be durable).
    fn stop(mut self, result: Result<(), Fatal>) -> Result<(), Fatal> {
        self.flush_records();
        let result = match self.write_failure.take() {
            Some(e) => result.and(Err(Fatal::Wal(e))),
            None => result,
        };
        let result = result.and_then(|()| {
            let synced = self.wal.sync_now().map_err(|e| Fatal::Wal(e.to_string()))?;
            self.machine.log_durable(synced, mono_ms());
            Ok(())
        });
        let why = match &result {
            Ok(()) => "ERR server is shutting down; the write is durable here but was not acknowledged by the replicas its mode needs".to_string(),
            Err(fatal) => {
                error!(%fatal, "node stopping; writes not yet durable are failed");
                if let Ok(mut f) = self.stats.fatal.lock() {
                    *f = Some(fatal.to_string());
                }
                format!("ERR {fatal}")
            }
        };
        self.machine.fail_all(&why);
        self.deliver();
        result
    }

    /// Hands the answers the machine released to whoever waits for them.
    fn deliver(&mut self) {
        for (done, answer) in self.machine.answers() {
            // A client that went away does not need its answer; its write stands all the same.
            match (done, answer) {
                (Done::Batch(tx), Answer::Batch(reply)) => {
                    let _ = tx.send(reply);
                }
                (Done::Wait(tx), Answer::Wait(n)) => {
                    let _ = tx.send(Reply::Integer(i64::from(n)));
                }
                (_, answer) => error!(?answer, "an answer of the wrong kind was dropped"),
            }
        }
    }

    /// Adds what the machine counted since the last call to the shared figures.
    fn count(&mut self) {
        let now = self.machine.stats();
        let was = std::mem::replace(&mut self.counted, now);
        Stats::add(
            &self.stats.total_commands_processed,
            now.commands - was.commands,
        );
        Stats::add(
            &self.stats.total_error_replies,
            now.error_replies - was.error_replies,
        );
        self.entries_since_snapshot += now.entries - was.entries;
    }

    /// Shuts down the log writer, after the node task has stopped.
    ///
    /// # Errors
    /// The final sync failed.
    pub fn close_wal(wal: Arc<LogWriter>) -> Result<(), Fatal> {
        match Arc::try_unwrap(wal) {
            Ok(wal) => wal.shutdown().map_err(|e| Fatal::Wal(e.to_string())),
            Err(shared) => shared
                .sync_now()
                .map(|_| ())
                .map_err(|e| Fatal::Wal(e.to_string())),
        }
    }

    fn on_msg(&mut self, msg: NodeMsg) {
        match msg {
            NodeMsg::Batch { cmds, mode, done } => {
                self.machine
                    .batch(cmds, mode, now(), Done::Batch(done), &mut self.out);
            }
            NodeMsg::Save { background, done } => self.on_save(background, done),
            NodeMsg::SnapshotDone(result) => self.on_snapshot_done(result),
            NodeMsg::Failover {
                target,
                timeout_ms,
                done,
            } => self.on_failover(target, timeout_ms, done),
            NodeMsg::FailoverDone(result) => self.on_failover_done(result),
            NodeMsg::FailoverAbort { done } => {
                let reply = self.on_failover_abort();
                let _ = done.send(reply);
            }
            NodeMsg::Takeover {
                epoch,
                from,
                last,
                done,
            } => {
                let reply = self.on_takeover(epoch, &from, last);
                let _ = done.send(reply);
            }
            NodeMsg::Wait {
                numreplicas,
                lsn,
                timeout_ms,
                done,
            } => self
                .machine
                .wait(numreplicas, lsn, timeout_ms, mono_ms(), Done::Wait(done)),
            NodeMsg::SetUpstream { upstream, done } => {
                let reply = if self.control_plane {
                    Reply::error(CONTROLLED)
                } else {
                    self.on_set_upstream(upstream)
                };
                let _ = done.send(reply);
            }
            NodeMsg::Removal { id, step, done } => {
                let answer = match step {
                    RemovalStep::Begin => self.machine.begin_removal(&id),
                    RemovalStep::Check => Ok(()),
                    RemovalStep::Cancel => {
                        self.machine.cancel_removal(&id);
                        Ok(())
                    }
                }
                .map(|()| {
                    (step != RemovalStep::Cancel && self.machine.removal_ready(&id))
                        .then(|| self.machine.epoch())
                });
                if step == RemovalStep::Begin && answer.is_ok() {
                    info!(member = %id, "removing a member: it no longer counts for acknowledgements");
                }
                let _ = done.send(answer);
            }
            NodeMsg::FollowerUp { id, addr, link } => {
                info!(follower = %id, %addr, link, "follower connected");
                self.machine.follower_up(&id, &addr, link, mono_ms());
            }
            NodeMsg::FollowerAck {
                id,
                link,
                durable,
                applied,
            } => {
                self.machine
                    .follower_ack(&id, link, durable, applied, mono_ms());
            }
            NodeMsg::Downstream { via, replicas } => {
                if replicas.is_empty() {
                    self.downstream.remove(&via);
                } else {
                    self.downstream.insert(via, replicas);
                }
            }
            NodeMsg::FollowerDown { id, link } => {
                // A link that ends after its follower's newer one came up changes nothing.
                if self.machine.follower_down(&id, link, mono_ms()) {
                    info!(follower = %id, link, "follower disconnected");
                    self.downstream.remove(&id);
                }
            }
            NodeMsg::SnapshotForFollower { done } => {
                self.flush_records();
                let _ = done.send((
                    self.machine.store().clone(),
                    self.machine.last(),
                    self.meta.history,
                    self.feed_generation,
                ));
            }
            NodeMsg::Replicate {
                epoch,
                prev,
                records,
                leader_time_ms,
                done,
            } => {
                let result = self.on_replicate(epoch, prev, records, leader_time_ms);
                let _ = done.send(result);
            }
            NodeMsg::InstallSnapshot(install) => {
                let install = *install;
                let done = install.done;
                let result = self.on_install_snapshot(
                    install.store,
                    install.pos,
                    install.history,
                    install.writer,
                );
                let _ = done.send(result);
            }
            NodeMsg::Map(map) => self.on_map(&map),
            NodeMsg::Truncate { to, done } => {
                let result = self.on_truncate(to);
                if let Err(e) = &result {
                    warn!(to = %to, error = %e, "cannot cut the log back; asking for a snapshot");
                }
                let _ = done.send(result);
            }
            NodeMsg::Lease { epoch, until_ms } => {
                if self.is_leader() && self.machine.epoch() == epoch {
                    self.machine.grant_lease(until_ms, now(), &mut self.out);
                }
            }
            NodeMsg::UpstreamLink {
                up,
                upstream_id,
                syncing,
            } => {
                self.link_up = up;
                self.syncing = syncing;
                if upstream_id.is_some() {
                    self.upstream_id = upstream_id;
                }
                if up {
                    self.last_upstream_io_ms = now_ms();
                }
                self.publish_replication(now_ms());
            }
        }
        self.deliver();
    }

    fn is_leader(&self) -> bool {
        self.machine.is_leader()
    }

    /// Hands the records appended so far to the feed and the log writer. When the writer
    /// writes them at once (`fsync = interval`), the replies waiting for them are released
    /// here, in the same round.
    fn flush_records(&mut self) {
        if self.out.records.is_empty() {
            return;
        }
        self.repl.feed.push(&self.out.records);
        self.machine.note_shipped(mono_ms());
        match self.wal.submit(std::mem::take(&mut self.out.records)) {
            Ok(Some(written)) => {
                if self.fsync == FsyncMode::Interval {
                    Stats::set(&self.stats.written_lsn, written.0);
                    self.machine.log_durable(written, mono_ms());
                    self.deliver();
                }
            }
            Ok(None) => {}
            Err(e) => self.write_failure = Some(e.to_string()),
        }
    }

    /// End of a round: hand records to the writer, publish figures, and start an automatic
    /// snapshot when one is due.
    fn submit(&mut self) {
        self.flush_records();
        self.machine.check_invariants();
        self.count();
        self.publish();
        if self.snapshot_every_entries > 0
            && self.entries_since_snapshot >= self.snapshot_every_entries
            && !self.snapshot_running
        {
            self.start_background_snapshot();
        }
    }

    fn on_wal_progress(&mut self) -> Result<(), Fatal> {
        let state = self.wal_state.borrow_and_update().clone();
        if let Some(e) = state.failed {
            return Err(Fatal::Wal(e));
        }
        let reported = match self.fsync {
            FsyncMode::Always => state.progress.synced,
            FsyncMode::Interval => state.progress.written,
        };
        // An inline writer may already have acknowledged past what a later fsync reports; a
        // report from before a log reset may be past what is applied now.
        self.machine.log_durable(reported, mono_ms());
        self.deliver();
        let written = Stats::get(&self.stats.written_lsn).max(state.progress.written.0);
        Stats::set(&self.stats.written_lsn, written);
        Stats::set(&self.stats.durable_lsn, state.progress.synced.0);
        Stats::set(&self.stats.wal_fsyncs, self.wal.fsync_count());
        Stats::set(&self.stats.wal_records, self.wal.records_written());
        self.publish_positions();
        Ok(())
    }

    /// Every tick: re-evaluate the in-sync set, start parked writes that now may, fail the
    /// ones and the held replies past their deadline, answer timed-out `WAIT`s, and publish
    /// the status.
    fn on_tick_replication(&mut self) {
        let now = now();
        for change in self.machine.tick(now, &mut self.out) {
            match change {
                IsrChange::Joined { id } => info!(replica = %id, "replica joined the in-sync set"),
                IsrChange::Left { id, lag_ms } => {
                    warn!(replica = %id, lag_ms, "replica left the in-sync set");
                }
            }
        }
        self.deliver();
        self.advance_failover();
        self.publish_replication(now.wall_ms);
    }

    /// Changes `node.meta` with `change`, on disk first: in memory only once it is stored.
    fn update_meta(&mut self, change: impl FnOnce(&mut NodeMeta)) -> Result<(), String> {
        let mut meta = self.meta.clone();
        change(&mut meta);
        meta::store(&self.data_dir, &meta)?;
        self.meta = meta;
        Ok(())
    }

    /// `FAILOVER`: pauses writes and picks the target; [`Node::advance_failover`] does the
    /// rest on every tick.
    fn on_failover(
        &mut self,
        target: Option<Upstream>,
        timeout_ms: u64,
        done: oneshot::Sender<Reply>,
    ) {
        if !self.is_leader() {
            let _ = done.send(Reply::error(
                "ERR FAILOVER is not valid when server is a replica.",
            ));
            return;
        }
        if self.failover.is_some() {
            let _ = done.send(Reply::error("ERR FAILOVER already in progress."));
            return;
        }
        let wanted = match &target {
            Some(t) => {
                let host = t.host.trim_start_matches('[').trim_end_matches(']');
                match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(std::net::SocketAddr::new(ip, t.port)),
                    Err(_) => {
                        let _ = done.send(Reply::error(
                            "ERR FAILOVER target HOST must be an IP address, as the replica is listed",
                        ));
                        return;
                    }
                }
            }
            None => None,
        };
        let chosen = self.machine.switchover_target(wanted);
        let Some(r) = chosen else {
            let _ = done.send(Reply::error(match target {
                Some(_) => "ERR FAILOVER target HOST and PORT is not a replica.",
                None => "ERR FAILOVER requires connected replicas.",
            }));
            return;
        };
        let Ok(addr) = r.addr.parse::<std::net::SocketAddr>() else {
            let _ = done.send(Reply::error("ERR FAILOVER target has no usable address."));
            return;
        };
        info!(target = %r.id, addr = %r.addr, "switchover: writes paused until the target has every entry");
        self.failover = Some(Switchover {
            target_id: r.id.clone(),
            target: Upstream {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            deadline_ms: mono_ms().saturating_add(timeout_ms),
            handing_over: false,
            done,
        });
        self.machine.pause_writes();
        self.advance_failover();
        self.publish_replication(now_ms());
    }

    /// Hands leadership over once the target holds every entry durably (and this node does);
    /// gives up at the deadline, resuming writes.
    fn advance_failover(&mut self) {
        if !self.is_leader() {
            return;
        }
        let Some(f) = &self.failover else {
            return;
        };
        if f.handing_over {
            return;
        }
        let last = self.machine.last();
        let caught_up = self.machine.switchover_ready(&f.target_id);
        let (target, deadline_ms) = (f.target.clone(), f.deadline_ms);
        if caught_up && self.control_plane {
            // The control plane hands over: this node gives its lease up (it answers nothing
            // from now on), then asks the controller to elect the target. The map's next
            // version settles the outcome.
            let target_id = f.target_id.clone();
            self.machine.surrender_lease();
            if let Some(f) = self.failover.as_mut() {
                f.handing_over = true;
            }
            info!(%target, at = %last, "switchover: the target has every entry; asking the control plane to elect it");
            let msg = replikv_core::control::ControlMsg::Handover {
                epoch: self.machine.epoch(),
                to: target_id,
            };
            let me = self.repl.node_id.clone();
            if let Some(inbox) = self.repl.control_in.get() {
                let _ = inbox.try_send((me, msg));
            }
        } else if caught_up {
            // Recorded before the target is asked: if this node restarts not knowing the
            // outcome, it does not lead this history again (it would start a new one).
            if let Err(e) = self.update_meta(|m| m.leads = false) {
                self.abort_failover(&format!("ERR FAILOVER cannot record the hand-over: {e}"));
                return;
            }
            let remaining = deadline_ms.saturating_sub(mono_ms()).max(1_000);
            let request = crate::forward::Takeover {
                epoch: self.machine.epoch(),
                from: self.repl.node_id.clone(),
                last,
            };
            let password = self.requirepass.clone();
            let tx = self.self_tx.clone();
            if let Some(f) = self.failover.as_mut() {
                f.handing_over = true;
            }
            info!(%target, at = %last, "switchover: the target has every entry; handing over");
            tokio::spawn(async move {
                let result = match tokio::time::timeout(
                    Duration::from_millis(remaining),
                    crate::forward::takeover(&target, password.as_deref(), &request),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(crate::forward::TakeoverError::Unknown(
                        "no answer within the FAILOVER timeout".into(),
                    )),
                };
                if let Some(tx) = tx.and_then(|tx| tx.upgrade()) {
                    let _ = tx.send(NodeMsg::FailoverDone(result)).await;
                }
            });
        } else if mono_ms() >= deadline_ms {
            self.abort_failover(
                "ERR FAILOVER target replica did not catch up in time; writes resumed",
            );
        }
    }

    fn abort_failover(&mut self, why: &str) {
        if let Some(f) = self.failover.take() {
            warn!(reason = why, "switchover given up");
            self.repl.record(
                "switchover_given_up",
                self.machine.epoch(),
                format!("to {}: {why}", f.target),
            );
            self.machine.resume_writes(now(), &mut self.out);
            self.deliver();
            let _ = f.done.send(Reply::error(why.to_string()));
        }
    }

    fn on_failover_abort(&mut self) -> Reply {
        match &self.failover {
            Some(f) if f.handing_over => {
                Reply::error("ERR FAILOVER is handing over; it cannot be aborted now")
            }
            Some(_) => {
                self.abort_failover("ERR FAILOVER aborted; writes resumed");
                Reply::Ok
            }
            None if self.is_leader() && self.machine.writes_paused() => {
                warn!("writes resumed by FAILOVER ABORT after a switchover of unknown outcome");
                if let Err(e) = self.update_meta(|m| m.leads = true) {
                    return Reply::error(format!("ERR {e}"));
                }
                self.repl.record(
                    "switchover_aborted",
                    self.machine.epoch(),
                    "writes resumed by FAILOVER ABORT after a switchover of unknown outcome".into(),
                );
                self.machine.resume_writes(now(), &mut self.out);
                self.deliver();
                Reply::Ok
            }
            None => Reply::error("ERR No failover in progress."),
        }
    }

    fn on_failover_done(&mut self, result: Result<(), crate::forward::TakeoverError>) {
        if self.failover.is_none() || !self.is_leader() {
            return;
        }
        match result {
            Ok(()) => {
                let Some(f) = self.failover.take() else {
                    return;
                };
                info!(target = %f.target, "switchover: the target leads; following it");
                self.repl.record(
                    "switchover",
                    self.machine.epoch(),
                    format!(
                        "handed leadership over to {} at {}",
                        f.target,
                        self.machine.last()
                    ),
                );
                // The other direct replicas follow the new leader too (best effort: one that
                // misses it keeps following this node, which relays the new leader's log).
                let others: Vec<Upstream> = self
                    .machine
                    .replicas()
                    .iter()
                    .filter(|r| r.connected && r.id != f.target_id)
                    .filter_map(|r| r.addr.parse::<std::net::SocketAddr>().ok())
                    .map(|a| Upstream {
                        host: a.ip().to_string(),
                        port: a.port(),
                    })
                    .collect();
                for node in others {
                    let target = f.target.clone();
                    let password = self.requirepass.clone();
                    tokio::spawn(async move {
                        match crate::forward::repoint(&node, password.as_deref(), &target).await {
                            Ok(()) => {
                                info!(replica = %node, new_leader = %target, "repointed a replica at the new leader")
                            }
                            Err(e) => {
                                warn!(replica = %node, error = %e, "could not repoint a replica at the new leader; it keeps following this node")
                            }
                        }
                    });
                }
                self.machine.fail_all(&format!(
                    "READONLY the leader moved to {} during a switchover; retry there",
                    f.target
                ));
                self.deliver();
                let reply = self.on_set_upstream(Some(f.target));
                let _ = f.done.send(reply);
            }
            Err(crate::forward::TakeoverError::Refused(e)) => {
                // The target does not lead: this node goes on leading its history.
                match self.update_meta(|m| m.leads = true) {
                    Ok(()) => {
                        self.abort_failover(&format!("ERR FAILOVER the target refused: {e}"));
                    }
                    Err(store) => {
                        error!(error = %store, "cannot record leading again; writes stay paused");
                        if let Some(f) = self.failover.take() {
                            let _ = f.done.send(Reply::error(format!(
                                "ERR FAILOVER the target refused ({e}) and this node cannot record that it leads again ({store}); writes stay paused"
                            )));
                        }
                    }
                }
            }
            // The target may lead now: resuming writes here could make two leaders. Writes
            // stay paused until someone looks (ROLE on the target) and either points this
            // node at it or runs FAILOVER ABORT.
            Err(crate::forward::TakeoverError::Unknown(e)) => {
                if let Some(f) = self.failover.take() {
                    error!(target = %f.target, error = %e, "switchover outcome unknown; writes stay paused");
                    self.repl.record(
                        "switchover_unknown",
                        self.machine.epoch(),
                        format!("to {}: {e}; writes paused", f.target),
                    );
                    let _ = f.done.send(Reply::error(format!(
                        "ERR FAILOVER the target {} did not answer ({e}); it may lead now. Writes stay paused: check ROLE there, then REPLICAOF it, or FAILOVER ABORT to resume",
                        f.target
                    )));
                }
            }
        }
    }

    /// `REPLIKV TAKEOVER`: a leader hands over after making sure this replica holds every
    /// entry: lead in an epoch past its own, continuing the history (it writes no more).
    fn on_takeover(&mut self, handing_over_epoch: Epoch, from: &str, last: LogPosition) -> Reply {
        if self.is_leader() {
            return Reply::error("ERR this node already leads");
        }
        if self.upstream_id.as_deref() != Some(from) {
            return Reply::error(format!(
                "ERR this node does not replicate from {from}; it will not take over from it"
            ));
        }
        if let Err(why) = self.machine.takeover_check(last) {
            return Reply::error(format!("ERR {why}"));
        }
        let epoch = Epoch(
            self.meta
                .epoch
                .max(self.machine.epoch().0)
                .max(handing_over_epoch.0)
                + 1,
        );
        if let Err(e) = self.update_meta(|m| {
            m.epoch = epoch.0;
            m.leads = true;
        }) {
            return Reply::error(format!("ERR {e}"));
        }
        self.machine.become_leader(epoch);
        info!(%epoch, "leading: leadership handed over by the previous leader");
        self.repl.record(
            "takeover",
            epoch,
            format!("took leadership over at {}", self.machine.last()),
        );
        self.link_up = false;
        self.upstream_id = None;
        self.upstream = None;
        self.repl.upstream.send_replace(None);
        self.publish_replication(now_ms());
        Reply::Ok
    }

    /// A map from the control plane: lead when it names this node (in its epoch, continuing
    /// the history), follow the node it says to otherwise.
    fn on_map(&mut self, map: &ClusterMap) {
        let me = self.repl.node_id.clone();
        self.machine.pin_in_sync(&map.in_sync, &me, mono_ms());
        self.machine
            .pin_members(map.members.keys().cloned().collect());
        let Some(leader) = map.leader.clone() else {
            return;
        };
        if leader == me {
            match self.machine.lead_from_map(map.epoch) {
                MapLead::Leading => return,
                MapLead::EpochSeen => {
                    warn!(map_epoch = %map.epoch, epoch = %self.machine.epoch(),
                        "the map names this node leader in an epoch it has already seen; not leading in it again");
                    return;
                }
                MapLead::Lead => {}
            }
            let history = if self.meta.history == 0 {
                match meta::random_u64() {
                    Ok(h) => h,
                    Err(e) => {
                        warn!(error = %e, "cannot draw a history id; not leading");
                        return;
                    }
                }
            } else {
                self.meta.history
            };
            if let Err(e) = self.update_meta(|m| {
                m.epoch = map.epoch.0;
                m.leads = true;
                m.history = history;
            }) {
                warn!(error = %e, "cannot record leadership; not leading");
                return;
            }
            if self.failover.is_some() {
                self.abort_failover("ERR FAILOVER aborted: the control plane elected a leader");
            }
            self.machine.elected(map.epoch, mono_ms(), &mut self.out);
            info!(epoch = %map.epoch, at = %self.machine.last(), "leading: elected by the control plane");
            self.repl.record(
                "elected",
                map.epoch,
                format!("leads from {}", self.machine.last()),
            );
            self.link_up = false;
            self.upstream_id = None;
            self.upstream = None;
            self.repl.upstream.send_replace(None);
            self.publish_replication(now_ms());
            return;
        }
        // Fencing: nothing from an older epoch is taken from now on.
        if let Err(e) = self.raise_epoch(map.epoch) {
            warn!(error = %e, "cannot record the map's epoch");
        }
        let Some(up) = map
            .upstream_of(&me)
            .and_then(|id| crate::control::member_addr(map, id))
        else {
            return;
        };
        if self.is_leader() || self.upstream.as_ref() != Some(&up) {
            let was_leader = self.is_leader();
            if let Some(f) = self.failover.take() {
                // The map moved on: a switchover (waiting or handing over) is over.
                let reply = if f.target_id == leader {
                    info!(target = %f.target, "switchover: the target leads; following it");
                    self.repl.record(
                        "switchover",
                        map.epoch,
                        format!(
                            "handed leadership over to {leader} at {}",
                            self.machine.last()
                        ),
                    );
                    Reply::Ok
                } else {
                    Reply::error(format!(
                        "ERR FAILOVER superseded: the control plane elected {leader} in epoch {}",
                        map.epoch
                    ))
                };
                self.machine.fail_all(&format!(
                    "READONLY the leader moved to {leader}; retry there"
                ));
                self.deliver();
                let _ = f.done.send(reply);
            }
            let reply = self.on_set_upstream(Some(up.clone()));
            if was_leader {
                info!(leader = %leader, epoch = %map.epoch, "stepped down: the control plane elected another leader");
                self.repl.record(
                    "stepped_down",
                    map.epoch,
                    format!("{leader} leads in epoch {}", map.epoch),
                );
            }
            if let Reply::Error(e) = reply {
                warn!(error = %e, "cannot follow the map's leader");
            }
        }
    }

    /// `REPLICAOF`: a leader that becomes a replica fails the writes still waiting (its log
    /// may be replaced); a replica that becomes the leader starts a new epoch.
    fn on_set_upstream(&mut self, upstream: Option<Upstream>) -> Reply {
        if upstream == self.upstream {
            return Reply::Ok;
        }
        match &self.failover {
            Some(f) if f.handing_over => {
                return Reply::error(
                    "ERR a FAILOVER is handing leadership over; wait for its outcome",
                )
            }
            Some(_) => self.abort_failover("ERR FAILOVER aborted by REPLICAOF"),
            None => {}
        }
        match &upstream {
            Some(up) => {
                if self.meta.leads {
                    if let Err(e) = self.update_meta(|m| m.leads = false) {
                        return Reply::error(format!("ERR {e}"));
                    }
                }
                info!(upstream = %up, "following a new upstream");
                self.repl.record(
                    "following",
                    self.machine.epoch(),
                    format!("follows {up} from {}", self.machine.last()),
                );
                self.machine.become_replica();
                self.deliver();
            }
            None => {
                // A promoted replica starts a new history: the old one has one leader, which
                // may still write in it, in epochs this node has not seen and could repeat.
                // Its followers get a full resync.
                let epoch = Epoch(self.meta.epoch.max(self.machine.epoch().0) + 1);
                let history = match meta::random_u64() {
                    Ok(h) => h,
                    Err(e) => return Reply::error(format!("ERR cannot draw a history id: {e}")),
                };
                if let Err(e) = self.update_meta(|m| {
                    m.history = history;
                    m.epoch = epoch.0;
                    m.leads = true;
                }) {
                    return Reply::error(format!("ERR {e}"));
                }
                self.machine.become_leader(epoch);
                info!(%epoch, "leading");
                self.repl.record(
                    "leading",
                    epoch,
                    format!(
                        "promoted (REPLICAOF NO ONE) at {}; new history {history:016x}",
                        self.machine.last()
                    ),
                );
                self.link_up = false;
                self.upstream_id = None;
            }
        }
        self.upstream = upstream.clone();
        self.repl.upstream.send_replace(upstream);
        self.publish_replication(now_ms());
        Reply::Ok
    }

    fn raise_epoch(&mut self, epoch: Epoch) -> Result<(), String> {
        if epoch.0 > self.meta.epoch {
            self.meta.epoch = epoch.0;
            meta::store(&self.data_dir, &self.meta)?;
        }
        self.machine.raise_epoch(epoch);
        Ok(())
    }

    /// Entries from the upstream: checked (epoch, continuity, order, decoding) before any is
    /// applied, then logged, applied and fed to this node's own followers.
    fn on_replicate(
        &mut self,
        epoch: Epoch,
        prev: LogPosition,
        records: Vec<PeerRecord>,
        leader_time_ms: Option<u64>,
    ) -> Result<(), String> {
        self.machine
            .check_entries(epoch, prev, records.iter().map(|r| r.pos))?;
        let mut commands = Vec::with_capacity(records.len());
        for r in &records {
            let cmd = Command::decode_shared(&r.payload)
                .map_err(|e| format!("entry {} does not decode: {e}", r.pos))?;
            commands.push(cmd);
        }
        self.raise_epoch(epoch)?;
        self.machine.apply_entries(
            epoch,
            records.iter().map(|r| r.pos).zip(&commands),
            leader_time_ms,
        );
        self.out
            .records
            .extend(records.into_iter().map(|r| LogRecord {
                pos: r.pos,
                payload: r.payload,
            }));
        self.last_upstream_io_ms = now_ms();
        Ok(())
    }

    /// A snapshot from the upstream replaces the state and the log: the log is emptied to
    /// continue after the snapshot, the snapshot file is put in place and older ones removed,
    /// and only then is the new history recorded (a crash in between leaves the old history,
    /// which makes the next link start with a snapshot again).
    fn on_install_snapshot(
        &mut self,
        store: Store,
        pos: LogPosition,
        history: u64,
        writer: SnapshotWriter,
    ) -> Result<(), String> {
        if self.is_leader() {
            return Err("this node leads; it takes no snapshot".into());
        }
        if self.snapshot_running {
            return Err("a local snapshot is being written; retry later".into());
        }
        self.flush_records();
        self.wal.reset(pos).map_err(|e| e.to_string())?;
        let path = writer.finish().map_err(|e| e.to_string())?;
        remove_other_snapshots(&self.snapshot_dir, &path);
        self.meta.history = history;
        self.raise_epoch(pos.epoch)?;
        meta::store(&self.data_dir, &self.meta)?;
        let keys = store.stats().keys;
        self.count();
        self.machine.install_snapshot(store, pos);
        self.deliver();
        self.entries_since_snapshot = 0;
        self.repl.feed.clear();
        self.feed_generation += 1;
        Stats::set(&self.stats.last_snapshot_lsn, pos.lsn.0);
        info!(at = %pos, keys, history = format!("{history:016x}"),
            "installed a snapshot from the upstream");
        self.repl.record(
            "snapshot_installed",
            pos.epoch,
            format!("full resync at {pos}, {keys} keys, history {history:016x}"),
        );
        self.publish_positions();
        Ok(())
    }

    /// Cuts this replica's log back to `to` (the last entry it shares with its upstream): the
    /// state is rebuilt from the local snapshot and the log up to `to`, then the log after
    /// `to` is removed. What was discarded is counted and logged: under a lossless mode these
    /// can only be entries no client was told were written.
    fn on_truncate(&mut self, to: LogPosition) -> Result<(), String> {
        if self.is_leader() {
            return Err("this node leads; it cuts nothing".into());
        }
        if self.snapshot_running {
            return Err("a local snapshot is being written".into());
        }
        self.flush_records();
        let old_last = self.machine.last();
        if to.lsn >= old_last.lsn {
            return Ok(());
        }
        let (mut store, snap_pos) = load_snapshot(&self.snapshot_dir).map_err(|e| e.to_string())?;
        if snap_pos.lsn > to.lsn {
            return Err(format!(
                "the local snapshot at {snap_pos} is past {to}; a full resync is needed"
            ));
        }
        let mut epochs = EpochTable::default();
        if snap_pos.lsn > Lsn::ZERO {
            let _ = epochs.note(snap_pos);
        }
        let mut next = snap_pos.lsn.next();
        let mut reached = snap_pos;
        while next <= to.lsn {
            let records = self
                .wal
                .read_from(next, TRUNCATE_READ_BYTES)
                .map_err(|e| e.to_string())?;
            if records.is_empty() {
                break;
            }
            for r in records {
                if r.pos.lsn > to.lsn {
                    break;
                }
                let cmd = Command::decode_shared(&r.payload)
                    .map_err(|e| format!("log record at {} does not decode: {e}", r.pos))?;
                store.apply(&cmd);
                let _ = epochs.note(r.pos);
                reached = r.pos;
                next = r.pos.lsn.next();
            }
        }
        if reached != to {
            return Err(format!("the log holds {reached}, not {to}"));
        }
        let removed = self.wal.truncate_after(to.lsn).map_err(|e| e.to_string())?;
        self.count();
        self.machine.truncate_to(store, to);
        self.machine.set_epochs(epochs);
        self.deliver();
        self.repl.feed.clear();
        self.feed_generation += 1;
        let discarded = old_last.lsn.0 - to.lsn.0;
        Stats::add(&self.stats.entries_truncated, discarded);
        warn!(to = %to, discarded, removed, old_last = %old_last,
            "cut the log back to the last entry shared with the upstream");
        self.repl.record(
            "truncated",
            self.machine.epoch(),
            format!(
                "discarded {discarded} entries after {to} (up to {old_last}) that the leader never had; {}",
                if self.machine.config().default_ack == AckMode::Async {
                    "under async some may have been acknowledged, and are lost"
                } else {
                    "the cluster's lossless mode acknowledged none of them"
                }
            ),
        );
        self.publish_positions();
        Ok(())
    }

    /// Deletes keys whose TTL has passed, through the log like any write, so replicas and a
    /// restart see the same deletions. Replicas wait for their leader's deletions.
    fn on_tick_expire(&mut self) {
        if !self.is_leader() || self.machine.writes_paused() {
            return;
        }
        // Like Redis's active expiry: keep going while whole batches expire, within a time
        // budget, so a burst of expiring keys is reclaimed fast without stalling clients.
        let started = std::time::Instant::now();
        let now = now_ms();
        loop {
            let keys = self
                .machine
                .store()
                .expired_keys(now, EXPIRE_KEYS_PER_TICK_MAX);
            let full = keys.len() == EXPIRE_KEYS_PER_TICK_MAX;
            if keys.is_empty() {
                return;
            }
            Stats::add(&self.stats.expired_keys, keys.len() as u64);
            self.machine.write(&Command::Del { keys }, &mut self.out);
            if !full || started.elapsed() >= EXPIRE_TICK_BUDGET {
                return;
            }
        }
    }

    fn publish(&self) {
        let ks = self.machine.store().stats();
        Stats::set(&self.stats.keys, ks.keys);
        Stats::set(&self.stats.expires, ks.expires);
        Stats::set(&self.stats.dataset_bytes, ks.bytes);
        Stats::set(&self.stats.applied_lsn, self.machine.applied().0);
        Stats::set(&self.stats.epoch, self.machine.epoch().0);
        Stats::set(
            &self.stats.changes_since_last_save,
            self.entries_since_snapshot,
        );
        Stats::set(&self.stats.wal_fsyncs, self.wal.fsync_count());
        Stats::set(&self.stats.wal_records, self.wal.records_written());
        self.publish_positions();
    }

    /// Publishes positions for reads that wait and for links.
    fn publish_positions(&self) {
        let leader = self.is_leader();
        let m = &self.machine;
        let positions = Positions {
            applied: m.last(),
            durable: m.durable(),
            current_as_of_ms: if leader {
                Some(now_ms())
            } else {
                m.current_as_of_ms()
            },
            leader,
            epoch: m.epoch(),
            durable_pos: m.durable_position(),
        };
        self.repl.positions.send_if_modified(|p| {
            // The clock alone changing is not news.
            let changed = p.applied != positions.applied
                || p.durable != positions.durable
                || p.leader != positions.leader
                || p.epoch != positions.epoch
                || p.durable_pos != positions.durable_pos
                || (!leader && p.current_as_of_ms != positions.current_as_of_ms);
            *p = positions;
            changed
        });
        if let Ok(mut table) = self.repl.epochs.lock() {
            if table.starts() != m.epochs().starts() {
                table.clone_from(m.epochs());
            }
        }
        self.repl.feed.publish(FeedState {
            last: m.last(),
            written: Lsn(Stats::get(&self.stats.written_lsn)).min(m.applied()),
            commit: m.durable(),
            epoch: m.epoch(),
            generation: self.feed_generation,
        });
    }

    /// Refreshes the status `INFO replication`, `ROLE` and the admin API show.
    fn publish_replication(&self, now: u64) {
        let m = &self.machine;
        let map = self.repl.map.borrow().clone();
        // A replica a new leader took from the map's in-sync set has no link yet: the map
        // has its address.
        let addr_of = |r: &replikv_core::replication::ReplicaProgress| {
            if r.addr.is_empty() {
                map.as_ref()
                    .and_then(|m| m.members.get(&r.id))
                    .map_or_else(String::new, |mem| mem.addr.clone())
            } else {
                r.addr.clone()
            }
        };
        let mut replicas: Vec<ReplicaView> = m
            .replicas()
            .iter()
            .map(|r| ReplicaView {
                id: r.id.clone(),
                addr: addr_of(r),
                durable: r.durable,
                applied: r.applied,
                lag_entries: m.replicas().lag_entries(r),
                lag_ms: m.replicas().lag_ms(r, mono_ms()),
                connected: r.connected,
                in_sync: r.in_sync,
                via: None,
            })
            .collect();
        for (via, reports) in &self.downstream {
            for d in reports {
                replicas.push(ReplicaView {
                    id: d.node_id.clone(),
                    addr: d.addr.clone(),
                    durable: d.durable,
                    applied: d.applied,
                    lag_entries: m.applied().0.saturating_sub(d.durable.0),
                    lag_ms: d.lag_ms,
                    connected: true,
                    in_sync: false,
                    via: Some(if d.via.is_empty() {
                        via.clone()
                    } else {
                        d.via.clone()
                    }),
                });
            }
        }
        let status = ReplStatus {
            upstream: self.upstream.clone(),
            upstream_id: self.upstream_id.clone(),
            link_up: self.link_up,
            last_upstream_io_ms: self.last_upstream_io_ms,
            syncing: self.syncing,
            epoch: m.epoch(),
            history: self.meta.history,
            applied: m.last(),
            durable: m.durable(),
            commit: m.commit_lsn(m.config().default_ack),
            staleness_ms: if m.is_leader() {
                Some(0)
            } else {
                m.current_as_of_ms().map(|t| now.saturating_sub(t))
            },
            ack: Some(m.config().default_ack),
            replicas,
            parked_writes: m.parked_len() as u64,
            writes_failed_no_replicas: m.stats().writes_failed_no_replicas,
            failover_state: match &self.failover {
                None if m.is_leader() && m.writes_paused() => "paused",
                None => "no-failover",
                Some(f) if f.handing_over => "failover-in-progress",
                Some(_) => "waiting-for-sync",
            },
        };
        if let Ok(mut s) = self.repl.status.lock() {
            *s = status;
        }
        self.publish_positions();
    }

    fn on_save(&mut self, background: bool, done: oneshot::Sender<Reply>) {
        // A client that went away does not need its reply.
        if background {
            let reply = if self.snapshot_running {
                Reply::error("ERR Background save already in progress")
            } else {
                self.start_background_snapshot();
                Reply::Status("Background saving started")
            };
            let _ = done.send(reply);
        } else if self.snapshot_running {
            // A foreground SAVE while a background one runs waits for it, then saves.
            self.save_waiters.push(done);
        } else {
            let _ = done.send(save_reply(&self.snapshot_now()));
        }
    }

    /// Foreground snapshot: blocks the node, as Redis's `SAVE` does.
    fn snapshot_now(&mut self) -> Result<LogPosition, String> {
        assert!(!self.snapshot_running, "one snapshot at a time");
        self.flush_records();
        self.count();
        let pos = self.machine.last();
        let result = write_snapshot(&self.wal, &self.snapshot_dir, self.machine.store(), pos);
        if result.is_ok() {
            self.entries_since_snapshot = 0;
        }
        finish_snapshot_stats(&self.stats, &result);
        self.publish();
        result
    }

    fn start_background_snapshot(&mut self) {
        assert!(!self.snapshot_running, "one snapshot at a time");
        // Records must reach the writer before the clone so that syncing the writer in the
        // snapshot task covers every entry the snapshot reflects.
        self.flush_records();
        self.count();
        let pos = self.machine.last();
        let store = self.machine.store().clone();
        let wal = Arc::clone(&self.wal);
        let dir = self.snapshot_dir.clone();
        self.snapshot_running = true;
        self.stats
            .bgsave_in_progress
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.snapshot_started_after = self.entries_since_snapshot;
        self.entries_since_snapshot = 0;
        let tx = self.self_tx.clone();
        let stats = Arc::clone(&self.stats);
        tokio::task::spawn_blocking(move || {
            let result = write_snapshot(&wal, &dir, &store, pos);
            match tx.and_then(|tx| tx.upgrade()) {
                Some(tx) => {
                    if let Err(unsent) = tx.blocking_send(NodeMsg::SnapshotDone(result)) {
                        // The node stopped meanwhile: record the outcome for the figures only.
                        if let NodeMsg::SnapshotDone(result) = unsent.0 {
                            finish_snapshot_stats(&stats, &result);
                        }
                    }
                }
                None => finish_snapshot_stats(&stats, &result),
            }
        });
    }

    fn on_snapshot_done(&mut self, result: Result<LogPosition, String>) {
        assert!(
            self.snapshot_running,
            "a snapshot finished while none was running"
        );
        self.snapshot_running = false;
        finish_snapshot_stats(&self.stats, &result);
        if result.is_err() {
            self.entries_since_snapshot += self.snapshot_started_after;
        }
        let waiters = std::mem::take(&mut self.save_waiters);
        if !waiters.is_empty() {
            let reply = save_reply(&self.snapshot_now());
            for w in waiters {
                // A client that went away does not need its reply.
                let _ = w.send(reply.clone());
            }
        }
    }

    /// The log writer, shared with snapshot tasks; kept for shutdown.
    pub fn wal(&self) -> Arc<LogWriter> {
        Arc::clone(&self.wal)
    }
}

/// The time for the replication state machine: wall clock and monotonic clock.
fn now() -> Now {
    Now {
        wall_ms: now_ms(),
        mono_ms: mono_ms(),
    }
}

/// Removes every complete snapshot file in `dir` but `keep` (after installing one from the
/// upstream, older ones belong to a log that no longer exists). Failures are logged only: a
/// leftover file is older than `keep` unless the log it belongs to was diverged, and then
/// the history recorded afterwards makes the next link resynchronize.
fn remove_other_snapshots(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep && path.extension().is_some_and(|e| e == "snap") {
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(file = %path.display(), error = %e, "cannot remove an old snapshot");
            }
        }
    }
}

fn save_reply(result: &Result<LogPosition, String>) -> Reply {
    match result {
        Ok(_) => Reply::Ok,
        Err(e) => Reply::error(format!("ERR {e}")),
    }
}

fn finish_snapshot_stats(stats: &Stats, result: &Result<LogPosition, String>) {
    use std::sync::atomic::Ordering::Relaxed;
    stats.bgsave_in_progress.store(false, Relaxed);
    match result {
        Ok(pos) => {
            stats.last_save_ok.store(true, Relaxed);
            Stats::set(&stats.last_save_unix, now_ms() / 1000);
            Stats::set(&stats.last_snapshot_lsn, pos.lsn.0);
            Stats::add(&stats.snapshots_total, 1);
            info!(at = %pos, "snapshot written");
        }
        Err(e) => {
            stats.last_save_ok.store(false, Relaxed);
            warn!(error = %e, "snapshot failed");
        }
    }
}

/// Writes a snapshot of `store` (consistent at `pos`) and then drops the log it covers.
/// The log is synced first, so it never ends before a snapshot that exists on disk.
fn write_snapshot(
    wal: &LogWriter,
    dir: &Path,
    store: &Store,
    pos: LogPosition,
) -> Result<LogPosition, String> {
    wal.sync_now().map_err(|e| e.to_string())?;
    let meta = SnapshotMeta {
        pos,
        created_unix_ms: now_ms(),
    };
    let mut writer = SnapshotWriter::create(dir, meta).map_err(|e| e.to_string())?;
    for chunk in store.snapshot_chunks(SNAPSHOT_CHUNK_ENTRIES) {
        writer.write_chunk(&chunk).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    let removed = wal.compact(pos.lsn).map_err(|e| e.to_string())?;
    if removed > 0 {
        info!(removed, "removed log segments covered by the snapshot");
    }
    Ok(pos)
}

fn load_snapshot(dir: &Path) -> Result<(Store, LogPosition), Fatal> {
    let Some(mut reader) =
        SnapshotReader::open_latest(dir).map_err(|e| Fatal::Recovery(e.to_string()))?
    else {
        return Ok((Store::new(), LogPosition::default()));
    };
    let meta = reader.meta();
    let mut store = Store::new();
    while let Some(chunk) = reader
        .next_chunk()
        .map_err(|e| Fatal::Recovery(e.to_string()))?
    {
        store.load_snapshot_chunk(&chunk).map_err(|e| {
            Fatal::Recovery(format!("snapshot at {} has a bad chunk: {e}", meta.pos))
        })?;
    }
    Ok((store, meta.pos))
}
