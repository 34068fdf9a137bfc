//! The node task: the single owner of the key-value state and the log position.
//!
//! Connections send batches of data commands here over a bounded channel. For each command the
//! node plans it against the [`Store`], appends the resulting log commands with their
//! `(epoch, lsn)` to the group-commit writer, applies them, and holds the batch's replies until
//! the log is durable up to the last LSN the batch could have observed (written to the OS under
//! `fsync = interval`, fsynced under `fsync = always`). So no client is ever told of, or shown,
//! a write that a crash could still lose under the chosen durability.

use crate::config::{Config, FsyncMode};
use crate::log_writer::LogWriter;
use crate::stats::Stats;
use bytes::{Bytes, BytesMut};
use replikv_core::{Command, Epoch, Execution, LogPosition, Lsn, Reply, Store};
use replikv_storage::{
    FsyncPolicy, GroupCommit, InlineWal, LogRecord, SnapshotMeta, SnapshotReader, SnapshotWriter,
    Wal, WalOptions, WalProgress,
};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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

/// A request to the node.
#[derive(Debug)]
pub enum NodeMsg {
    /// Data commands from one connection, executed in order; the replies come back together.
    Batch {
        /// Each command's arguments, name first.
        cmds: Vec<Vec<Bytes>>,
        /// Where the replies go once releasable.
        done: oneshot::Sender<Vec<Reply>>,
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
    pub async fn batch(&self, cmds: Vec<Vec<Bytes>>) -> Option<oneshot::Receiver<Vec<Reply>>> {
        let (done, rx) = oneshot::channel();
        if self.send(NodeMsg::Batch { cmds, done }).await {
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

/// Replies held until the log is durable up to `lsn`.
struct Held {
    lsn: Lsn,
    done: oneshot::Sender<Vec<Reply>>,
    replies: Vec<Reply>,
}

/// The node's state, owned by its task.
pub struct Node {
    store: Store,
    epoch: Epoch,
    /// Last LSN appended to the log and applied to the store.
    applied: Lsn,
    /// Last LSN the durability mode lets us acknowledge.
    acked: Lsn,
    fsync: FsyncMode,
    unsubmitted: Vec<LogRecord>,
    payload_arena: BytesMut,
    held: VecDeque<Held>,
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
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Loads the newest snapshot, replays the log after it, and starts the log writer.
    ///
    /// # Errors
    /// [`Fatal::Recovery`] when the snapshot or log is unreadable or corrupt (the message names
    /// the file and offset).
    pub fn open(config: &Config, stats: Arc<Stats>) -> Result<Node, Fatal> {
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
            preallocate: true,
        };
        let (wal, recovery) =
            Wal::open(opts, snapshot_pos.lsn).map_err(|e| Fatal::Recovery(e.to_string()))?;
        if let Some(torn) = &recovery.torn_tail {
            warn!(file = %torn.file.display(), offset = torn.offset, bytes = torn.bytes_dropped,
                "repaired a torn record at the end of the log (zeroed)");
            Stats::add(&stats.torn_tails_truncated, 1);
        }
        let replayed = recovery.records.len() as u64;
        for record in &recovery.records {
            let cmd = Command::decode(&record.payload).map_err(|e| {
                Fatal::Recovery(format!("log record at {} does not decode: {e}", record.pos))
            })?;
            store.apply(&cmd);
        }
        let last = recovery.last.max(snapshot_pos);
        let epoch = Epoch(last.epoch.0.max(1));
        info!(snapshot = %snapshot_pos, replayed, last = %last, keys = store.stats().keys,
            "recovered");
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
        Ok(Node {
            store,
            epoch,
            applied: last.lsn,
            acked: last.lsn,
            fsync: config.fsync,
            unsubmitted: Vec::new(),
            payload_arena: BytesMut::new(),
            held: VecDeque::new(),
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
        })
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
            self.acked = self.acked.max(synced);
            Ok(())
        });
        match &result {
            Ok(()) => self.release(),
            Err(fatal) => {
                error!(%fatal, "node stopping; writes not yet durable are failed");
                if let Ok(mut f) = self.stats.fatal.lock() {
                    *f = Some(fatal.to_string());
                }
                for held in self.held.drain(..) {
                    let n = held.replies.len();
                    // A client that went away does not need its error.
                    let _ = held
                        .done
                        .send(vec![Reply::error(format!("ERR {fatal}")); n]);
                }
            }
        }
        result
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
            NodeMsg::Batch { cmds, done } => self.on_batch(&cmds, done),
            NodeMsg::Save { background, done } => self.on_save(background, done),
            NodeMsg::SnapshotDone(result) => self.on_snapshot_done(result),
        }
    }

    fn on_batch(&mut self, cmds: &[Vec<Bytes>], done: oneshot::Sender<Vec<Reply>>) {
        let now = now_ms();
        let mut replies = Vec::with_capacity(cmds.len());
        for args in cmds {
            let reply = match self.store.execute(args, now) {
                Execution::Read(reply) => reply,
                Execution::Write { commands, reply } => {
                    // A record the log cannot hold would stop the node: refuse the command
                    // before anything of it is applied.
                    if commands
                        .iter()
                        .any(|c| c.encoded_len_bound() > LOG_PAYLOAD_BYTES_MAX)
                    {
                        Reply::error("ERR command too large for the write-ahead log")
                    } else {
                        for cmd in &commands {
                            self.append(cmd);
                        }
                        reply
                    }
                }
            };
            if matches!(reply, Reply::Error(_)) {
                Stats::add(&self.stats.total_error_replies, 1);
            }
            replies.push(reply);
        }
        Stats::add(&self.stats.total_commands_processed, cmds.len() as u64);
        // Every reply in the batch may reflect state up to `applied`: hold it until that is
        // durable, so no client sees a write a crash could lose.
        if self.applied <= self.acked {
            // The connection may have gone away; nothing to do then.
            let _ = done.send(replies);
        } else {
            self.held.push_back(Held {
                lsn: self.applied,
                done,
                replies,
            });
        }
    }

    fn append(&mut self, cmd: &Command) {
        let lsn = self.applied.next();
        // Payloads are carved out of one growing buffer: one allocation per many records.
        if self.payload_arena.capacity() - self.payload_arena.len() < PAYLOAD_ARENA_MIN_SPARE {
            self.payload_arena.reserve(PAYLOAD_ARENA_BYTES);
        }
        cmd.encode_into(&mut self.payload_arena);
        self.unsubmitted.push(LogRecord {
            pos: LogPosition {
                epoch: self.epoch,
                lsn,
            },
            payload: self.payload_arena.split().freeze(),
        });
        self.store.apply(cmd);
        self.applied = lsn;
        self.entries_since_snapshot += 1;
    }

    /// Hands the records appended so far to the log writer. When it writes them at once
    /// (`fsync = interval`), the replies waiting for them are released here, in the same round.
    fn flush_records(&mut self) {
        if self.unsubmitted.is_empty() {
            return;
        }
        match self.wal.submit(std::mem::take(&mut self.unsubmitted)) {
            Ok(Some(written)) => {
                if self.fsync == FsyncMode::Interval {
                    self.acked = self.acked.max(written);
                    Stats::set(&self.stats.written_lsn, written.0);
                    self.release();
                }
            }
            Ok(None) => {}
            Err(e) => self.write_failure = Some(e.to_string()),
        }
    }

    /// The node's positions and held replies are consistent: nothing is acknowledged past what
    /// was applied, and held replies wait in LSN order for LSNs not yet acknowledged.
    fn check_invariants(&self) {
        assert!(
            self.acked <= self.applied,
            "acked {} <= applied {}",
            self.acked,
            self.applied
        );
        if let Some(front) = self.held.front() {
            assert!(
                front.lsn > self.acked,
                "held {} is past acked {}",
                front.lsn,
                self.acked
            );
        }
        // Walking the held replies costs more than a round: debug builds only.
        debug_assert!(
            self.held
                .iter()
                .zip(self.held.iter().skip(1))
                .all(|(a, b)| a.lsn <= b.lsn),
            "held replies are in LSN order"
        );
    }

    /// End of a round: hand records to the writer, publish figures, and start an automatic
    /// snapshot when one is due.
    fn submit(&mut self) {
        self.flush_records();
        self.check_invariants();
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
        // An inline writer may already have acknowledged past what a later fsync reports.
        self.acked = self.acked.max(reported);
        let written = Stats::get(&self.stats.written_lsn).max(state.progress.written.0);
        Stats::set(&self.stats.written_lsn, written);
        Stats::set(&self.stats.durable_lsn, state.progress.synced.0);
        Stats::set(&self.stats.wal_fsyncs, self.wal.fsync_count());
        Stats::set(&self.stats.wal_records, self.wal.records_written());
        self.release();
        Ok(())
    }

    fn release(&mut self) {
        while self.held.front().is_some_and(|h| h.lsn <= self.acked) {
            if let Some(held) = self.held.pop_front() {
                // The connection may have gone away; its write is durable all the same.
                let _ = held.done.send(held.replies);
            }
        }
    }

    /// Deletes keys whose TTL has passed, through the log like any write, so replicas and a
    /// restart see the same deletions.
    fn on_tick_expire(&mut self) {
        // Like Redis's active expiry: keep going while whole batches expire, within a time
        // budget, so a burst of expiring keys is reclaimed fast without stalling clients.
        let started = std::time::Instant::now();
        let now = now_ms();
        loop {
            let keys = self.store.expired_keys(now, EXPIRE_KEYS_PER_TICK_MAX);
            let full = keys.len() == EXPIRE_KEYS_PER_TICK_MAX;
            if keys.is_empty() {
                return;
            }
            Stats::add(&self.stats.expired_keys, keys.len() as u64);
            self.append(&Command::Del { keys });
            if !full || started.elapsed() >= EXPIRE_TICK_BUDGET {
                return;
            }
        }
    }

    fn publish(&self) {
        let ks = self.store.stats();
        Stats::set(&self.stats.keys, ks.keys);
        Stats::set(&self.stats.expires, ks.expires);
        Stats::set(&self.stats.dataset_bytes, ks.bytes);
        Stats::set(&self.stats.applied_lsn, self.applied.0);
        Stats::set(&self.stats.epoch, self.epoch.0);
        Stats::set(
            &self.stats.changes_since_last_save,
            self.entries_since_snapshot,
        );
        Stats::set(&self.stats.wal_fsyncs, self.wal.fsync_count());
        Stats::set(&self.stats.wal_records, self.wal.records_written());
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
        let pos = LogPosition {
            epoch: self.epoch,
            lsn: self.applied,
        };
        let result = write_snapshot(&self.wal, &self.snapshot_dir, &self.store, pos);
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
        let pos = LogPosition {
            epoch: self.epoch,
            lsn: self.applied,
        };
        let store = self.store.clone();
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
