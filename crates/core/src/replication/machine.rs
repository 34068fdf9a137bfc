//! A node's replication state machine: the key-value state, its log position and epoch, the
//! followers that replicate from it, and the replies held until their acknowledgement mode
//! commits them.
//!
//! The server's node task and the deterministic simulator drive the same [`Machine`]: they
//! turn requests, follower reports, durability reports and timer ticks into calls, append what
//! it hands to their [`LogSink`] to their log, and deliver the [`Answer`]s it releases. Time
//! comes in as milliseconds ([`Now`]: wall time for key expiry, a monotonic clock for every
//! wait and lag); nothing here does I/O.
//!
//! The rules it keeps:
//! - a batch's replies are released only once the log covers every LSN they could reflect:
//!   on a leader, once the batch's mode has committed them (durable here under `async`, and
//!   on the replicas the mode needs otherwise), for reads as for writes, so that no client
//!   sees state a failover to the most up-to-date replica could lose; on a replica, once they
//!   are durable here;
//! - a follower counts for nothing on a new link until it acknowledges on that link, and
//!   reports from a link that is no longer its current one are ignored;
//! - a write in a mode that needs replicas starts only once enough are in sync, in order
//!   behind the writes already waiting, and fails with `NOREPLICAS` after the timeout;
//! - a replica takes no client writes, only entries its upstream sends that pass
//!   [`check_entries`].

use super::ack::AckMode;
use super::epochs::EpochTable;
use super::follower::{check_entries, EntriesRefusal};
use super::pending::Pending;
use super::replicas::{IsrChange, Replicas};
use crate::command::Command;
use crate::position::{Epoch, LogPosition, Lsn};
use crate::reply::Reply;
use crate::store::{Execution, Store};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// The time, twice: the wall clock, which key expiry is measured against (it is in the log, so
/// every replica agrees), and a monotonic clock, which every wait, timeout and lag is measured
/// with, so that a clock step (NTP, an operator, a skew fault) neither fails writes early nor
/// drops replicas from the in-sync set. `From<u64>` gives both the same value (tests, the
/// simulator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Unix time, ms.
    pub wall_ms: u64,
    /// A monotonic clock, ms (any origin).
    pub mono_ms: u64,
}

impl From<u64> for Now {
    fn from(ms: u64) -> Now {
        Now {
            wall_ms: ms,
            mono_ms: ms,
        }
    }
}

/// The error a replica gives a write.
pub const READONLY: &str = "READONLY You can't write against a read only replica.";
/// The error a write gets when too few replicas were in sync for its mode to start.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";
/// A write that could not start because this leader holds no lease (another node may lead
/// by now); nothing of it was applied.
pub const NO_LEASE: &str =
    "TRYAGAIN this node holds no leader lease (it may have been replaced); the write was not applied";

/// Where a [`Machine`] puts the entries it writes, in order. The server encodes them into its
/// write-ahead log; the simulator into its simulated disk.
pub trait LogSink {
    /// Appends the entry at `pos`.
    fn append(&mut self, pos: LogPosition, cmd: &Command);
}

/// The commit rule: the highest LSN `mode` considers committed, given the followers and the
/// node's own durable LSN. [`Replicas::commit_lsn`] is the rule; tests replace it with broken
/// ones to show the simulator catches them.
pub type CommitRule = fn(&Replicas, AckMode, Lsn) -> Lsn;

/// A batch's replies and the log position they reflect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchReply {
    /// One reply per command, in order.
    pub replies: Vec<Reply>,
    /// The node's last position when the batch ran: a read-your-writes token covering it.
    pub pos: LogPosition,
    /// The last position the batch wrote, if it wrote.
    pub wrote: Option<LogPosition>,
}

impl BatchReply {
    fn failed(why: &str, n: usize, pos: LogPosition, wrote: Option<LogPosition>) -> BatchReply {
        BatchReply {
            replies: vec![Reply::error(why.to_string()); n],
            pos,
            wrote,
        }
    }
}

/// What the machine releases to a waiting client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A batch's replies.
    Batch(BatchReply),
    /// `WAIT`: the followers holding the awaited LSN durably.
    Wait(u32),
}

/// Settings of a [`Machine`].
#[derive(Clone, Copy, Debug)]
pub struct MachineConfig {
    /// The mode `status` reports commits under (the node's default).
    pub default_ack: AckMode,
    /// How long a write waits for replicas, to start and to be acknowledged.
    pub write_ack_timeout_ms: u64,
    /// Lag past which a follower leaves the in-sync set.
    pub replica_lag_max_ms: u64,
    /// Cluster size for `quorum` (leader included); 0 = the leader plus the known followers.
    pub cluster_size: u32,
    /// Largest encoded log command; bigger ones are refused before anything is applied.
    pub payload_bytes_max: usize,
    /// The commit rule.
    pub commit_rule: CommitRule,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            default_ack: AckMode::Async,
            write_ack_timeout_ms: 10_000,
            replica_lag_max_ms: 5_000,
            cluster_size: 0,
            payload_bytes_max: usize::MAX,
            commit_rule: Replicas::commit_lsn,
        }
    }
}

/// Counters a [`Machine`] keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineStats {
    /// Commands run, reads and writes.
    pub commands: u64,
    /// Replies that were errors, from commands run.
    pub error_replies: u64,
    /// Writes failed with `NOREPLICAS`, before starting or after.
    pub writes_failed_no_replicas: u64,
    /// Entries appended or applied from the upstream, ever.
    pub entries: u64,
}

#[derive(Debug)]
struct Held<T> {
    done: T,
    reply: BatchReply,
}

#[derive(Debug)]
struct Waiter<T> {
    lsn: Lsn,
    numreplicas: u32,
    deadline_ms: u64,
    done: T,
}

#[derive(Debug)]
struct Parked<T> {
    cmds: Vec<Vec<Bytes>>,
    /// Whether the batch writes: only a write waits for in-sync replicas to start; a read
    /// waits only for the batches parked before it.
    writes: bool,
    mode: AckMode,
    deadline_ms: u64,
    done: T,
}

/// What a cluster map naming this node leader asks of it: see [`Machine::lead_from_map`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapLead {
    /// It leads in the map's epoch already: nothing to do.
    Leading,
    /// It has seen the map's epoch without leading in it now: it must not lead in it.
    EpochSeen,
    /// It leads from now on, in the map's epoch ([`Machine::elected`]).
    Lead,
}

/// A node's replication state machine; `T` identifies whoever waits for an answer (a reply
/// channel in the server, a client id in the simulator).
#[derive(Debug)]
pub struct Machine<T> {
    store: Store,
    /// The epoch this node writes in (leader) or the highest it has seen (replica).
    epoch: Epoch,
    /// Last entry appended and applied.
    last: LogPosition,
    /// Last LSN durable in this node's own log.
    durable: Lsn,
    leader: bool,
    pending: Pending<Held<T>>,
    waiters: Vec<Waiter<T>>,
    parked: VecDeque<Parked<T>>,
    replicas: Replicas,
    /// Each follower's current link: reports from older links are ignored.
    links: BTreeMap<String, u64>,
    /// The highest LSN each mode has committed in this term: being committed is permanent,
    /// even when a follower that held an entry reconnects and has not acknowledged yet.
    committed: BTreeMap<AckMode, Lsn>,
    /// Members being removed: what each mode had acknowledged when the removal began.
    removals: BTreeMap<String, Vec<(AckMode, Lsn)>>,
    /// The leader's time up to which this replica is current.
    current_as_of_ms: Option<u64>,
    /// Writes are paused (a switchover is handing leadership over): they park until resumed.
    paused: bool,
    /// Whether leading needs a lease from the control plane (see [`Machine::grant_lease`]).
    lease_required: bool,
    /// The monotonic time the lease runs to (exclusive).
    lease_until_ms: u64,
    /// The latest monotonic time any call brought.
    clock_ms: u64,
    /// Elected, and the no-op of the new epoch is still to be written (at the first lease).
    noop_pending: bool,
    /// The lease was given up (a switchover): grants are ignored until the role changes.
    lease_surrendered: bool,
    /// Where each epoch starts in this node's log, as far as it knows it (from its snapshot
    /// on): what a returning node compares with its new upstream's to find where to cut.
    epochs: EpochTable,
    /// Where each epoch's entries start, from the last one at or before `durable` on (the
    /// entries before this machine started are all durable): for [`Machine::durable_position`].
    epoch_starts: VecDeque<LogPosition>,
    config: MachineConfig,
    stats: MachineStats,
    answers: Vec<(T, Answer)>,
}

impl<T> Machine<T> {
    /// A machine holding `store`, whose log ends (durably) at `last`, writing in `epoch` when
    /// it leads.
    #[must_use]
    pub fn new(
        store: Store,
        last: LogPosition,
        epoch: Epoch,
        leader: bool,
        config: MachineConfig,
    ) -> Machine<T> {
        Machine {
            store,
            epoch,
            last,
            durable: last.lsn,
            leader,
            pending: Pending::default(),
            waiters: Vec::new(),
            parked: VecDeque::new(),
            replicas: Replicas::new(last.lsn, config.replica_lag_max_ms, config.cluster_size),
            links: BTreeMap::new(),
            committed: BTreeMap::new(),
            removals: BTreeMap::new(),
            current_as_of_ms: None,
            paused: false,
            lease_required: false,
            lease_until_ms: 0,
            clock_ms: 0,
            noop_pending: false,
            lease_surrendered: false,
            epochs: EpochTable::default(),
            epoch_starts: VecDeque::from([last]),
            config,
            stats: MachineStats::default(),
            answers: Vec::new(),
        }
    }

    /// The key-value state.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The epoch this node writes in, or the highest it has seen.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The last entry appended and applied.
    #[must_use]
    pub fn last(&self) -> LogPosition {
        self.last
    }

    /// The last LSN appended and applied.
    #[must_use]
    pub fn applied(&self) -> Lsn {
        self.last.lsn
    }

    /// The last LSN durable in this node's own log.
    #[must_use]
    pub fn durable(&self) -> Lsn {
        self.durable
    }

    /// Whether this node leads (takes writes).
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The followers that replicate from this node.
    #[must_use]
    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// The leader's time up to which this replica is current (`None` on a leader, or before
    /// the first entry or heartbeat).
    #[must_use]
    pub fn current_as_of_ms(&self) -> Option<u64> {
        self.current_as_of_ms
    }

    /// Writes waiting for enough in-sync replicas to start.
    #[must_use]
    pub fn parked_len(&self) -> usize {
        self.parked.len()
    }

    /// Replies held for their mode's commit.
    #[must_use]
    pub fn held_len(&self) -> usize {
        self.pending.len()
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> MachineStats {
        self.stats
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// The highest LSN `mode` has committed.
    #[must_use]
    pub fn commit_lsn(&self, mode: AckMode) -> Lsn {
        let now = (self.config.commit_rule)(&self.replicas, mode, self.durable);
        now.max(self.committed.get(&mode).copied().unwrap_or(Lsn::ZERO))
    }

    /// [`Machine::commit_lsn`], remembered as committed.
    fn commit(&mut self, mode: AckMode) -> Lsn {
        let lsn = self.commit_lsn(mode);
        self.committed.insert(mode, lsn);
        lsn
    }

    /// The answers released since the last call, in release order.
    pub fn answers(&mut self) -> std::vec::Drain<'_, (T, Answer)> {
        self.answers.drain(..)
    }

    /// Runs a client batch in `mode`. A batch that writes on a leader waits (parked) while its
    /// mode has too few in-sync replicas; otherwise it runs now and its answer is released
    /// once its mode commits everything it could reflect.
    pub fn batch(
        &mut self,
        cmds: Vec<Vec<Bytes>>,
        mode: AckMode,
        now: impl Into<Now>,
        done: T,
        log: &mut impl LogSink,
    ) {
        let now = now.into();
        self.note_time(now.mono_ms);
        let writes = cmds.iter().any(|args| {
            args.first()
                .and_then(|n| Store::command_spec(n))
                .is_some_and(|s| s.write)
        });
        // Writes in a mode that needs replicas start only once enough are in sync; they fail
        // after the timeout rather than run with less than the mode promises. Every batch,
        // reads too, waits behind the batches already parked: a connection's read must not
        // overtake its own earlier write.
        // A new leader runs nothing, reads included, before its own epoch's no-op: a read of
        // older entries must not be released by counting replicas (Raft's rule).
        let must_wait = self.noop_pending
            || (writes && (self.paused || !self.lease_ok() || !self.replicas.can_start(mode)));
        if self.leader && (!self.parked.is_empty() || must_wait) {
            self.parked.push_back(Parked {
                cmds,
                writes,
                mode,
                deadline_ms: now.mono_ms.saturating_add(self.config.write_ack_timeout_ms),
                done,
            });
            return;
        }
        self.run_batch(&cmds, mode, now, done, log);
    }

    fn run_batch(
        &mut self,
        cmds: &[Vec<Bytes>],
        mode: AckMode,
        now: Now,
        done: T,
        log: &mut impl LogSink,
    ) {
        let before = self.last.lsn;
        let mut replies = Vec::with_capacity(cmds.len());
        for args in cmds {
            // A replica takes no writes, even one that would change nothing.
            let refused = !self.leader
                && args
                    .first()
                    .and_then(|n| Store::command_spec(n))
                    .is_some_and(|s| s.write);
            let reply = if refused {
                Reply::error(READONLY)
            } else {
                match self.store.execute(args, now.wall_ms) {
                    Execution::Read(reply) => reply,
                    // A replica answers reads from its state as it is, and leaves expired keys
                    // for its leader's deletions to remove.
                    Execution::Write { reply, .. } if !self.leader => reply,
                    Execution::Write { commands, reply } => {
                        // A record the log cannot hold would stop the node: refuse the command
                        // before anything of it is applied.
                        if commands
                            .iter()
                            .any(|c| c.encoded_len_bound() > self.config.payload_bytes_max)
                        {
                            Reply::error("ERR command too large for the write-ahead log")
                        } else {
                            for cmd in &commands {
                                self.append(cmd, log);
                            }
                            reply
                        }
                    }
                }
            };
            if matches!(reply, Reply::Error(_)) {
                self.stats.error_replies += 1;
            }
            replies.push(reply);
        }
        self.stats.commands += cmds.len() as u64;
        let wrote = (self.last.lsn > before).then_some(self.last);
        let reply = BatchReply {
            replies,
            pos: self.last,
            wrote,
        };
        // Every reply in the batch may reflect state up to `applied`: hold it until the mode
        // has committed that, so no client sees a write a crash, or a failover to the most
        // up-to-date replica, could lose. A replica's own followers do not count for that:
        // its replies wait for its own log only.
        let mode = if self.leader { mode } else { AckMode::Async };
        let committed = self.commit(mode);
        if self.last.lsn <= committed && (!self.leader || self.lease_ok()) {
            self.answers.push((done, Answer::Batch(reply)));
        } else {
            // Under a lease even an `async` reply may wait (for a renewal), so it gets the
            // write timeout too.
            let deadline = if self.lease_required {
                now.mono_ms.saturating_add(self.config.write_ack_timeout_ms)
            } else {
                mode.deadline_ms(now.mono_ms, self.config.write_ack_timeout_ms)
            };
            self.pending
                .hold(mode, self.last.lsn, deadline, Held { done, reply });
        }
    }

    /// Appends and applies `cmd` as the leader's next entry.
    fn append(&mut self, cmd: &Command, log: &mut impl LogSink) {
        let pos = LogPosition {
            epoch: self.epoch,
            lsn: self.last.lsn.next(),
        };
        log.append(pos, cmd);
        self.store.apply(cmd);
        self.note_entry(pos);
        self.last = pos;
        self.stats.entries += 1;
    }

    /// Writes `cmd` on the leader's own account (active expiry), through the log like any
    /// write. Returns `false`, writing nothing, on a replica.
    pub fn write(&mut self, cmd: &Command, log: &mut impl LogSink) -> bool {
        if !self.leader || self.paused || !self.lease_ok() {
            return false;
        }
        self.append(cmd, log);
        true
    }

    /// The entries handed to the log so far have reached the followers' feed at `mono_ms`
    /// (the monotonic clock, as for every wait and lag below): lag is measured from here.
    pub fn note_shipped(&mut self, mono_ms: u64) {
        self.note_time(mono_ms);
        self.replicas.on_append(self.last.lsn, mono_ms);
    }

    /// This node's own log is durable up to `lsn` (capped at what is applied: a report from
    /// before a log reset may be past it), as learned at `mono_ms`. Releases what that
    /// commits, if the lease (when one is needed) still runs at `mono_ms`: a report handled
    /// after a pause must not release replies on the clock from before it.
    pub fn log_durable(&mut self, lsn: Lsn, mono_ms: u64) {
        self.note_time(mono_ms);
        self.durable = self.durable.max(lsn).min(self.last.lsn);
        while self.epoch_starts.len() > 1 && self.epoch_starts[1].lsn <= self.durable {
            self.epoch_starts.pop_front();
        }
        self.release();
    }

    /// A follower connected on `link` (a number no other link of this node had). It counts
    /// as holding nothing until it acknowledges on this link: where it starts is not yet on
    /// its disk (a snapshot still to be sent, entries it applied but may not have synced), and
    /// what it reported on an earlier link may belong to a log the new link replaces.
    pub fn follower_up(&mut self, id: &str, addr: &str, link: u64, mono_ms: u64) {
        self.note_time(mono_ms);
        self.links.insert(id.to_string(), link);
        self.replicas.start_link(id, addr, mono_ms);
    }

    /// A follower reported its durable and applied LSNs on `link`. Releases what that
    /// commits; a report from a link that is not the follower's current one is ignored.
    pub fn follower_ack(&mut self, id: &str, link: u64, durable: Lsn, applied: Lsn, mono_ms: u64) {
        self.note_time(mono_ms);
        if self.links.get(id) != Some(&link) {
            return;
        }
        self.replicas.on_ack(id, durable, applied, mono_ms);
        self.release();
    }

    /// A follower's `link` went down; the end of a link that is no longer the follower's
    /// current one changes nothing. Returns whether it was the current one.
    pub fn follower_down(&mut self, id: &str, link: u64, mono_ms: u64) -> bool {
        self.note_time(mono_ms);
        if self.links.get(id) != Some(&link) {
            return false;
        }
        self.links.remove(id);
        self.replicas.disconnect(id, mono_ms);
        true
    }

    /// `WAIT numreplicas timeout`: answered once that many followers hold `lsn` (default: the
    /// last applied) durably, or at the timeout (0: none) with how many do.
    pub fn wait(
        &mut self,
        numreplicas: u32,
        lsn: Option<Lsn>,
        timeout_ms: u64,
        mono_ms: u64,
        done: T,
    ) {
        let lsn = lsn.unwrap_or(self.last.lsn);
        let have = self.replicas.durable_count(lsn);
        if have >= numreplicas {
            self.answers.push((done, Answer::Wait(have)));
            return;
        }
        let deadline_ms = if timeout_ms == 0 {
            u64::MAX
        } else {
            mono_ms.saturating_add(timeout_ms)
        };
        self.waiters.push(Waiter {
            lsn,
            numreplicas,
            deadline_ms,
            done,
        });
    }

    /// Releases what the commit rules now allow, and answers the `WAIT`s that are satisfied.
    fn release(&mut self) {
        self.replicas.note_sync_commit(self.durable);
        // A leader without a lease may have been replaced already: it releases nothing (the
        // held replies wait for a renewal, or fail at their deadline).
        if self.leader && !self.lease_ok() {
            return;
        }
        let durable = self.durable;
        let replicas = &self.replicas;
        let rule = self.config.commit_rule;
        let committed = &mut self.committed;
        let released = self.pending.release(|mode| {
            let high = committed.entry(mode).or_default();
            *high = (*high).max(rule(replicas, mode, durable));
            *high
        });
        for held in released {
            self.answers.push((held.done, Answer::Batch(held.reply)));
        }
        if !self.waiters.is_empty() {
            let replicas = &self.replicas;
            let (ready, waiting): (Vec<Waiter<T>>, Vec<Waiter<T>>) =
                std::mem::take(&mut self.waiters)
                    .into_iter()
                    .partition(|w| replicas.durable_count(w.lsn) >= w.numreplicas);
            self.waiters = waiting;
            for w in ready {
                let n = self.replicas.durable_count(w.lsn);
                self.answers.push((w.done, Answer::Wait(n)));
            }
        }
    }

    /// The periodic tick: re-evaluates the in-sync set, starts parked writes that now may,
    /// fails the ones and the held replies past their deadline, and answers timed-out
    /// `WAIT`s. Returns the in-sync set's changes.
    pub fn tick(&mut self, now: impl Into<Now>, log: &mut impl LogSink) -> Vec<IsrChange> {
        let now = now.into();
        let now_ms = now.mono_ms;
        self.note_time(now_ms);
        let changes = self.replicas.evaluate(now_ms);
        self.release();
        self.start_parked(now, log);
        for (lsn, held) in self.pending.expire(now_ms) {
            let reply = held.reply;
            let lease_lost = self.leader && !self.lease_ok();
            let why = match reply.wrote {
                Some(wrote) if lease_lost => format!(
                    "TRYAGAIN the write at {} was applied here, but this leader's lease ran out before it was acknowledged; it may or may not survive a failover",
                    LogPosition { epoch: wrote.epoch, lsn }
                ),
                None if lease_lost => format!(
                    "TRYAGAIN this leader's lease ran out before the state this read saw, up to {}, could be confirmed",
                    reply.pos
                ),
                Some(wrote) => {
                    self.stats.writes_failed_no_replicas += 1;
                    format!(
                        "NOREPLICAS the write at {} was applied and made durable on the leader, but not on enough replicas within {} ms; it may not survive a failover",
                        LogPosition { epoch: wrote.epoch, lsn },
                        self.config.write_ack_timeout_ms
                    )
                }
                None => format!(
                    "NOREPLICAS the state this read saw, up to {}, was not on enough replicas within {} ms for its mode; it may not survive a failover",
                    reply.pos, self.config.write_ack_timeout_ms
                ),
            };
            let n = reply.replies.len();
            self.answers.push((
                held.done,
                Answer::Batch(BatchReply::failed(&why, n, reply.pos, reply.wrote)),
            ));
        }
        if !self.waiters.is_empty() {
            let (expired, waiting): (Vec<Waiter<T>>, Vec<Waiter<T>>) =
                std::mem::take(&mut self.waiters)
                    .into_iter()
                    .partition(|w| w.deadline_ms <= now_ms);
            self.waiters = waiting;
            for w in expired {
                let n = self.replicas.durable_count(w.lsn);
                self.answers.push((w.done, Answer::Wait(n)));
            }
        }
        changes
    }

    fn start_parked(&mut self, now: Now, log: &mut impl LogSink) {
        let now_ms = now.mono_ms;
        while let Some(front) = self.parked.front() {
            if !self.leader {
                break;
            }
            let may_write = !self.paused && self.lease_ok() && self.replicas.can_start(front.mode);
            if !self.noop_pending && (!front.writes || may_write) {
                if let Some(p) = self.parked.pop_front() {
                    self.run_batch(&p.cmds, p.mode, now, p.done, log);
                }
            } else if front.deadline_ms <= now_ms {
                if let Some(p) = self.parked.pop_front() {
                    let why = if self.lease_ok() {
                        self.stats.writes_failed_no_replicas += 1;
                        NOREPLICAS
                    } else {
                        NO_LEASE
                    };
                    let reply = BatchReply::failed(why, p.cmds.len(), self.last, None);
                    self.answers.push((p.done, Answer::Batch(reply)));
                }
            } else {
                break;
            }
        }
        if !self.leader {
            for p in self.parked.drain(..) {
                let reply = BatchReply::failed(READONLY, p.cmds.len(), self.last, None);
                self.answers.push((p.done, Answer::Batch(reply)));
            }
        }
    }

    /// Fails every held reply and waiting write with `why`.
    pub fn fail_all(&mut self, why: &str) {
        for (_, held) in self.pending.drain() {
            let n = held.reply.replies.len();
            let reply = BatchReply::failed(why, n, held.reply.pos, held.reply.wrote);
            self.answers.push((held.done, Answer::Batch(reply)));
        }
        for p in self.parked.drain(..) {
            let reply = BatchReply::failed(why, p.cmds.len(), self.last, None);
            self.answers.push((p.done, Answer::Batch(reply)));
        }
    }

    /// Pauses writes (a switchover): from now on every write parks, and reads behind it,
    /// until [`Machine::resume_writes`] or the node stops leading. Parked writes still fail at
    /// their deadline.
    pub fn pause_writes(&mut self) {
        self.paused = true;
    }

    /// Resumes paused writes: the parked batches start, in order, as their modes allow.
    pub fn resume_writes(&mut self, now: impl Into<Now>, log: &mut impl LogSink) {
        self.paused = false;
        self.start_parked(now.into(), log);
    }

    /// Whether writes are paused.
    #[must_use]
    pub fn writes_paused(&self) -> bool {
        self.paused
    }

    /// From now on, leading needs a lease (the control plane is on): without a valid one the
    /// leader starts no write and releases no reply, read or write, since another node may
    /// lead already. Writes park meanwhile and fail at their deadline.
    pub fn require_lease(&mut self) {
        self.lease_required = true;
    }

    /// The control plane granted this leader its lease up to `until_ms` on the monotonic
    /// clock. Releases what waited for it and starts the parked writes.
    pub fn grant_lease(&mut self, until_ms: u64, now: impl Into<Now>, log: &mut impl LogSink) {
        let now = now.into();
        self.note_time(now.mono_ms);
        if self.lease_surrendered {
            return;
        }
        self.lease_until_ms = self.lease_until_ms.max(until_ms);
        if self.leader && self.noop_pending && self.lease_ok() {
            self.noop_pending = false;
            self.append(&Command::Noop, log);
        }
        self.release();
        self.start_parked(now, log);
    }

    /// The control plane's map lists `set` as the in-sync replicas: `sync` waits for each of
    /// them (but `me`, this node: a replica the map still lists when it is elected) as well as
    /// for those this node counts in sync (see [`Replicas::pin_in_sync`]). Like every input
    /// that may release replies, it brings the time (`mono_ms`).
    pub fn pin_in_sync(
        &mut self,
        set: &std::collections::BTreeSet<String>,
        me: &str,
        mono_ms: u64,
    ) {
        self.note_time(mono_ms);
        let others = set.iter().filter(|id| *id != me).cloned().collect();
        self.replicas.pin_in_sync(Some(others));
        self.release();
    }

    /// The control plane's members: a follower that is not one counts for nothing (see
    /// [`Replicas::pin_members`]). A removal begun here ([`Machine::begin_removal`]) is over
    /// once the map no longer lists the member (added again later, it counts again).
    pub fn pin_members(&mut self, members: std::collections::BTreeSet<String>) {
        let pending: Vec<String> = self.removals.keys().cloned().collect();
        for id in pending {
            if !members.contains(&id) {
                // Removed: nothing more to wait for; it no longer counts as a non-member.
                self.removals.remove(&id);
                self.replicas.exclude(&id, false);
            }
        }
        self.replicas.pin_members(Some(members));
    }

    /// Starts removing replica `id` from the cluster (the leader only): from now on no commit
    /// rule counts it, and [`Machine::removal_ready`] tells when the other replicas hold every
    /// write acknowledged so far, under every mode something was acknowledged in: then the
    /// member may leave without any acknowledged write depending on it.
    ///
    /// # Errors
    /// This node does not lead.
    pub fn begin_removal(&mut self, id: &str) -> Result<(), String> {
        if !self.leader {
            return Err("this node does not lead".to_string());
        }
        let mut marks: Vec<(AckMode, Lsn)> = self.committed.iter().map(|(m, l)| (*m, *l)).collect();
        let default = self.config.default_ack;
        marks.push((default, self.commit_lsn(default)));
        self.replicas.exclude(id, true);
        self.removals.insert(id.to_string(), marks);
        Ok(())
    }

    /// Whether the removal of `id` begun here may go ahead: see [`Machine::begin_removal`].
    #[must_use]
    pub fn removal_ready(&self, id: &str) -> bool {
        let rule = self.config.commit_rule;
        self.leader
            && self.removals.get(id).is_some_and(|marks| {
                marks
                    .iter()
                    .all(|(mode, mark)| rule(&self.replicas, *mode, self.durable) >= *mark)
            })
    }

    /// Gives up removing `id`: it counts again.
    pub fn cancel_removal(&mut self, id: &str) {
        if self.removals.remove(id).is_some() {
            self.replicas.exclude(id, false);
        }
    }

    /// Gives the lease up (a switchover hands leadership over through the control plane):
    /// from now on this leader releases nothing and starts nothing, and takes no grant,
    /// until it stops leading. The new leader may then start at once.
    pub fn surrender_lease(&mut self) {
        self.lease_until_ms = 0;
        self.lease_surrendered = true;
    }

    /// Whether this node may act as the leader now: it needs no lease, or holds one.
    #[must_use]
    pub fn lease_ok(&self) -> bool {
        !self.lease_required || self.clock_ms < self.lease_until_ms
    }

    /// The monotonic time the lease runs to (0: none).
    #[must_use]
    pub fn lease_until_ms(&self) -> u64 {
        self.lease_until_ms
    }

    /// The position of the last entry durable in this node's own log: what an election
    /// compares (a log ending at a higher position holds every entry committed before it).
    #[must_use]
    pub fn durable_position(&self) -> LogPosition {
        let epoch = self
            .epoch_starts
            .iter()
            .take_while(|p| p.lsn <= self.durable)
            .last()
            .map_or(self.last.epoch, |p| p.epoch);
        LogPosition {
            epoch,
            lsn: self.durable,
        }
    }

    /// The epoch table of this node's log.
    #[must_use]
    pub fn epochs(&self) -> &EpochTable {
        &self.epochs
    }

    /// Sets the epoch table of the log this machine starts from (built while replaying it).
    pub fn set_epochs(&mut self, epochs: EpochTable) {
        self.epochs = epochs;
    }

    /// This replica's log was cut back to `to` (it held entries its new upstream never had):
    /// `store` is its state at `to`, rebuilt from its own snapshot and log. Held replies fail
    /// (their state is gone), as with a snapshot.
    pub fn truncate_to(&mut self, store: Store, to: LogPosition) {
        let mut epochs = std::mem::take(&mut self.epochs);
        epochs.truncate_after(to.lsn);
        // Unlike a snapshot, the kept entries are only as durable as they were: an fsync of
        // them may still be under way.
        let durable = self.durable.min(to.lsn);
        self.install_snapshot(store, to);
        self.durable = durable;
        self.epochs = epochs;
    }

    fn note_entry(&mut self, pos: LogPosition) {
        if self.epochs.note(pos).is_err() {
            // Cannot happen for a log that only grows; start over from what is certain.
            self.epochs = EpochTable::default();
            let _ = self.epochs.note(pos);
        }
        if self
            .epoch_starts
            .back()
            .is_none_or(|p| p.epoch != pos.epoch)
        {
            self.epoch_starts.push_back(pos);
        }
    }

    fn note_time(&mut self, mono_ms: u64) {
        self.clock_ms = self.clock_ms.max(mono_ms);
    }

    /// The replica a switchover hands leadership to: the connected follower `wanted` names
    /// (by its client address, as `ip:port`), or without one the most up-to-date in-sync
    /// follower.
    #[must_use]
    pub fn switchover_target(
        &self,
        wanted: Option<std::net::SocketAddr>,
    ) -> Option<&super::replicas::ReplicaProgress> {
        let canonical = |a: std::net::SocketAddr| (a.ip().to_canonical(), a.port());
        match wanted {
            Some(w) => self.replicas.iter().find(|r| {
                r.connected
                    && r.addr
                        .parse::<std::net::SocketAddr>()
                        .is_ok_and(|a| canonical(a) == canonical(w))
            }),
            None => self
                .replicas
                .iter()
                .filter(|r| r.connected && r.in_sync)
                .max_by_key(|r| r.durable),
        }
    }

    /// Whether this replica may take leadership over from its upstream, which paused at `last`:
    /// only when it holds exactly that position, durably (anything less would lose writes the
    /// upstream acknowledged).
    ///
    /// # Errors
    /// Why not.
    pub fn takeover_check(&self, last: LogPosition) -> Result<(), String> {
        if self.leader {
            return Err("this node already leads".into());
        }
        if self.last != last || self.durable < last.lsn {
            return Err(format!(
                "this node is at {} (durable {}), not at {last}: it would lose writes",
                self.last, self.durable
            ));
        }
        Ok(())
    }

    /// Whether a switchover to `target` may hand over now: writes are paused, every entry is
    /// durable here and on the target, and no reply is still held for its mode (a held write
    /// was applied; failing it as "moved" would invite a second apply elsewhere).
    #[must_use]
    pub fn switchover_ready(&self, target: &str) -> bool {
        let last = self.last.lsn;
        self.leader
            && self.paused
            && self.durable >= last
            && self.pending.is_empty()
            && self
                .replicas
                .get(target)
                .is_some_and(|r| r.connected && r.durable >= last)
    }

    /// This node stops leading: the writes still waiting fail (its log may be replaced).
    pub fn become_replica(&mut self) {
        if self.leader {
            self.fail_all(
                "ERR this node became a replica; the write was not acknowledged and may be lost",
            );
        }
        self.leader = false;
        self.paused = false;
        self.noop_pending = false;
        self.lease_surrendered = false;
        self.committed.clear();
        for id in std::mem::take(&mut self.removals).into_keys() {
            self.replicas.exclude(&id, false);
        }
    }

    /// This node leads from now on, writing in `epoch` (higher than any it has seen).
    pub fn become_leader(&mut self, epoch: Epoch) {
        self.leader = true;
        self.epoch = self.epoch.max(epoch);
        self.current_as_of_ms = None;
        self.committed.clear();
        // A lease granted to an earlier term of this node is not this term's.
        self.lease_until_ms = 0;
        self.lease_surrendered = false;
    }

    /// This node was elected through the control plane to lead in `epoch`: it leads, and
    /// writes a no-op entry of its own epoch first. Every reply it releases reflects that
    /// entry, so nothing of an older epoch counts as committed until an entry of this one does
    /// (Raft's rule: otherwise an older entry that reached enough replicas could still be
    /// replaced by a later election, after a reader saw it).
    ///
    /// Under a lease the no-op waits for the first grant: a node that takes a stale map for
    /// current (just restarted, say) gets no lease, and so writes nothing its real leader's
    /// log would have to overwrite.
    ///
    /// The in-sync set last pinned ([`Machine::pin_in_sync`]: the map's) is where its own
    /// starts, at `mono_ms`: see [`Replicas::on_elected`].
    pub fn elected(&mut self, epoch: Epoch, mono_ms: u64, log: &mut impl LogSink) {
        self.note_time(mono_ms);
        self.become_leader(epoch);
        let pinned = self.replicas.pinned().cloned().unwrap_or_default();
        self.replicas.on_elected(&pinned, self.last.lsn, mono_ms);
        if self.lease_required {
            self.noop_pending = true;
        } else {
            self.append(&Command::Noop, log);
        }
    }

    /// What a cluster map naming this node leader in `map_epoch` asks of it.
    ///
    /// A node leads only in an epoch it has not seen yet. One that has seen `map_epoch` and
    /// does not lead in it now restarted since it led in it, and may have lost the unsynced
    /// tail of its log there, which followers hold: writing in that epoch again would put
    /// other commands at the same positions. It waits for the controller to elect anew
    /// (perhaps this node, in a fresh epoch).
    #[must_use]
    pub fn lead_from_map(&self, map_epoch: Epoch) -> MapLead {
        if self.leader && self.epoch == map_epoch {
            MapLead::Leading
        } else if self.epoch >= map_epoch {
            MapLead::EpochSeen
        } else {
            MapLead::Lead
        }
    }

    /// Records an epoch seen from the upstream (fencing: lower ones are refused from now on).
    pub fn raise_epoch(&mut self, epoch: Epoch) {
        self.epoch = self.epoch.max(epoch);
    }

    /// Checks an `Entries` batch from the upstream before anything of it is applied: see
    /// [`check_entries`]. A leader takes none.
    ///
    /// # Errors
    /// Why the batch is refused.
    pub fn check_entries(
        &self,
        epoch: Epoch,
        prev: LogPosition,
        positions: impl IntoIterator<Item = LogPosition>,
    ) -> Result<(), String> {
        if self.leader {
            return Err("this node leads; it takes no entries".into());
        }
        check_entries(self.last, self.epoch, epoch, prev, positions)
            .map_err(|e: EntriesRefusal| e.to_string())
    }

    /// Applies entries from the upstream that [`Machine::check_entries`] accepted, sent in
    /// `epoch`; `leader_time_ms` is the leader's clock when it sent them.
    pub fn apply_entries<'a>(
        &mut self,
        epoch: Epoch,
        entries: impl IntoIterator<Item = (LogPosition, &'a Command)>,
        leader_time_ms: Option<u64>,
    ) {
        self.raise_epoch(epoch);
        for (pos, cmd) in entries {
            debug_assert_eq!(pos.lsn, self.last.lsn.next(), "entries continue the log");
            self.store.apply(cmd);
            self.note_entry(pos);
            self.last = pos;
            self.stats.entries += 1;
        }
        self.note_upstream_time(leader_time_ms);
    }

    /// A heartbeat or entries from the upstream carried the leader's clock.
    pub fn note_upstream_time(&mut self, leader_time_ms: Option<u64>) {
        if let Some(t) = leader_time_ms {
            self.current_as_of_ms = Some(self.current_as_of_ms.map_or(t, |c| c.max(t)));
        }
    }

    /// Replaces the state with a snapshot from the upstream, consistent at `pos`; the log now
    /// continues after `pos`, which is durable (the caller made it so).
    ///
    /// Replies still held saw state of the replaced log, which may never become durable here
    /// (the new log may be shorter): they fail, to be retried. This node's own followers
    /// replicated the replaced log: what they reported no longer counts, and reports from
    /// their current links are ignored (the links are closed; they reconnect).
    pub fn install_snapshot(&mut self, store: Store, pos: LogPosition) {
        self.fail_all(
            "TRYAGAIN this replica's state was replaced by a snapshot from its upstream; retry",
        );
        self.raise_epoch(pos.epoch);
        self.store = store;
        self.last = pos;
        self.durable = pos.lsn;
        self.epoch_starts = VecDeque::from([pos]);
        self.epochs = EpochTable::default();
        if pos.lsn > Lsn::ZERO {
            let _ = self.epochs.note(pos);
        }
        self.replicas = self.replicas.emptied(pos.lsn);
        self.links.clear();
        self.committed.clear();
    }

    /// Asserts the machine's invariants: nothing durable past what is applied, and nothing
    /// held under `async` that is already covered (unless a leader waits for its lease, which
    /// holds every reply).
    ///
    /// # Panics
    /// When one is broken: a bug.
    pub fn check_invariants(&self) {
        assert!(
            self.durable <= self.last.lsn,
            "durable {} <= applied {}",
            self.durable,
            self.last.lsn
        );
        let waits_for_lease = self.leader && !self.lease_ok();
        if let Some(front) = self
            .pending
            .first_lsn(AckMode::Async)
            .filter(|_| !waits_for_lease)
        {
            assert!(
                front > self.durable,
                "held {front} is past durable {}",
                self.durable
            );
        }
    }
}
