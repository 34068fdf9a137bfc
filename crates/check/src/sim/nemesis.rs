//! Faults and the operator: crashes and restarts, partitions, closed links, delay spikes, and
//! failover by promoting the most up-to-date replica while the leader is down. Under automatic
//! failover there is no operator, and the nemesis also pauses processes, slows nodes down,
//! cuts minorities of two nodes off (5 nodes and more), resets control links, and aims half of
//! its crashes, partitions and pauses at the current leader.

use super::event::Event;
use super::world::{Live, World, TICK_MS};
use crate::history::{FaultEvent, Outcome};
use replikv_core::replication::{Machine, MachineConfig};
use replikv_core::Epoch;

/// Gap between two faults, ms.
const FAULT_GAP_MS: (u64, u64) = (300, 1_500);
/// How long a crashed node stays down, ms.
const DOWN_MS: (u64, u64) = (300, 3_000);
/// How long a partition lasts, ms.
const PARTITION_MS: (u64, u64) = (100, 3_000);
/// How long a delay spike lasts, ms.
const SPIKE_MS: (u64, u64) = (200, 2_000);
/// How long the operator waits, after the leader went down, before promoting, ms.
const PROMOTE_AFTER_MS: (u64, u64) = (1_000, 2_000);
/// How often the operator looks again when no replica could be promoted, ms.
const PROMOTE_RETRY_MS: u64 = 500;
/// How long a pause lasts, ms.
const PAUSE_MS: (u64, u64) = (100, 2_000);
/// How long a node stays slow, ms.
const SLOW_MS: (u64, u64) = (500, 3_000);
/// How much a slow node adds to each of its messages, ms.
const SLOW_EXTRA_MS: (u64, u64) = (50, 400);

impl World {
    fn record_fault(&mut self, kind: &str, node: Option<usize>) {
        *self.report.faults.entry(kind.to_string()).or_insert(0) += 1;
        let nodes = node
            .and_then(|n| self.nodes.get(n))
            .map(|n| vec![n.name.clone()])
            .unwrap_or_default();
        self.note(|| format!("fault {kind} {nodes:?}"));
        self.history.faults.push(FaultEvent {
            at_us: self.now_ms * 1000,
            kind: kind.to_string(),
            nodes,
            leader: false,
        });
    }

    pub(super) fn on_fault(&mut self) {
        if !self.faults_active {
            return;
        }
        if self.cfg.is_auto() {
            self.on_fault_auto();
            return;
        }
        let f = self.cfg.faults;
        let kinds: Vec<&str> = [
            (f.crash, "crash"),
            (f.partition, "partition"),
            (f.loss, "loss"),
            (f.delay, "delay"),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        if !kinds.is_empty() {
            let kind = kinds[self.rng_nemesis.index(kinds.len())];
            match kind {
                "crash" => self.fault_crash(),
                "partition" => self.fault_partition(),
                "loss" => self.fault_loss(),
                _ => self.fault_delay(),
            }
        }
        let at = self.now_ms + self.rng_nemesis.between(FAULT_GAP_MS.0, FAULT_GAP_MS.1);
        self.schedule(at, Event::Fault);
    }

    fn fault_crash(&mut self) {
        let nodes = self.nodes.len();
        let down = self.nodes.iter().filter(|n| n.live.is_none()).count();
        // A majority stays up, so the cluster can make progress in every mode.
        if nodes < 2 || down >= ((nodes - 1) / 2).max(1) {
            return;
        }
        let up: Vec<usize> = (0..nodes)
            .filter(|i| self.nodes[*i].live.is_some())
            .collect();
        if up.is_empty() {
            return;
        }
        let node = if self.cfg.is_auto() {
            self.pick_target(&up)
        } else {
            up[self.rng_nemesis.index(up.len())]
        };
        self.crash(node);
        let at = self.now_ms + self.rng_nemesis.between(DOWN_MS.0, DOWN_MS.1);
        self.schedule(at, Event::Restart { node });
    }

    /// Crashes `node`: unsynced entries are lost, its links reset, its clients' operations
    /// become indeterminate.
    pub(super) fn crash(&mut self, node: usize) {
        self.record_fault("crash", Some(node));
        self.on_leader_fault(node);
        let n = &mut self.nodes[node];
        n.live = None;
        n.paused_until_ms = 0;
        n.disk.crash();
        n.matched_len = n.matched_len.min(n.disk.entries.len());
        let conns: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open && (c.follower == node || c.upstream == node))
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            // The process is gone; its kernel resets the connection.
            self.close_conn(conn, node, "crashed");
        }
        let waiting: Vec<(usize, u64)> = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.outstanding
                    .filter(|(_, n)| *n == node)
                    .map(|(op, _)| (i, op))
            })
            .collect();
        for (client, op) in waiting {
            let at = self.now_ms + self.delay();
            self.schedule(
                at,
                Event::Reply {
                    client,
                    op,
                    outcome: Outcome::Indeterminate {
                        error: "connection reset: the node crashed".into(),
                    },
                    token: None,
                },
            );
        }
        if node == self.leader && self.cfg.faults.promote && !self.cfg.is_auto() {
            let at = self.now_ms
                + self
                    .rng_nemesis
                    .between(PROMOTE_AFTER_MS.0, PROMOTE_AFTER_MS.1);
            self.schedule(at, Event::PromoteCheck);
        }
    }

    /// Starts (or restarts) `node` from its disk, as the real node's recovery does: replay
    /// the synced log; a leader starts a new epoch; a replica follows the current leader.
    /// Under automatic failover the node leads nothing and follows nobody until its control
    /// plane (restored from its Raft state) hands it a map; leading needs a lease.
    pub(super) fn restart(&mut self, node: usize) {
        if self.nodes[node].live.is_some() {
            return;
        }
        if self.nodes[node].inc > 0 {
            self.record_fault("restart", Some(node));
        }
        let auto = self.cfg.is_auto();
        let leads = node == self.leader && !auto;
        let config = MachineConfig {
            default_ack: self.cfg.mode,
            write_ack_timeout_ms: self.cfg.write_ack_timeout_ms,
            replica_lag_max_ms: self.cfg.replica_lag_max_ms,
            cluster_size: u32::try_from(self.cfg.nodes).unwrap_or(u32::MAX),
            payload_bytes_max: usize::MAX,
            commit_rule: self.cfg.commit_rule,
        };
        let leader = self.leader;
        let n = &mut self.nodes[node];
        n.inc += 1;
        let (store, last) = n.disk.recover();
        // Followers may hold entries of the old epoch that this node lost (shipped before its
        // own fsync): a new epoch tells them apart from the ones it writes now.
        let seen = n.meta.epoch.max(last.epoch.0);
        // Under automatic failover the server starts at the highest epoch seen, and does not
        // lead in it again even if its map still names it (`Machine::lead_from_map`): the
        // controller elects anew, maybe it, in a newer epoch.
        let epoch = if leads { seen + 1 } else { seen.max(1) };
        n.meta.epoch = epoch;
        // A node that starts leading a history it did not lead starts a new one.
        if leads && (n.meta.history == 0 || !n.meta.leads) {
            n.meta.history = self.rng_nemesis.next_u64() | 1;
        }
        n.meta.leads = leads;
        let mut machine = Machine::new(store, last, Epoch(epoch), leads, config);
        machine.set_epochs(n.disk.epoch_table());
        if auto {
            machine.require_lease();
        }
        n.live = Some(Live {
            machine,
            upstream: (!leads && !auto).then_some(leader),
            follow: None,
            serves: std::collections::BTreeMap::new(),
            fsync_running: false,
            ticks: 0,
            reconnect_armed: false,
            ctl: None,
        });
        let inc = n.inc;
        self.note(|| format!("n{node} starts at {last}, epoch {epoch}, leads: {leads}"));
        let at = self.now_ms + TICK_MS;
        self.schedule(at, Event::Tick { node, inc });
        if auto {
            self.control_start(node);
        } else if !leads {
            let at = self.now_ms + self.delay();
            if let Some(live) = self.nodes[node].live.as_mut() {
                live.reconnect_armed = true;
            }
            self.schedule(at, Event::Reconnect { node, inc });
        }
    }

    fn fault_partition(&mut self) {
        if self.cfg.is_auto() {
            self.fault_partition_auto();
            return;
        }
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].isolated_until_ms <= self.now_ms)
            .collect();
        if candidates.is_empty() || self.nodes.len() < 2 {
            return;
        }
        let node = candidates[self.rng_nemesis.index(candidates.len())];
        let until = self.now_ms + self.rng_nemesis.between(PARTITION_MS.0, PARTITION_MS.1);
        self.nodes[node].isolated_until_ms = until;
        self.record_fault("partition", Some(node));
        self.schedule(until, Event::Heal { node });
    }

    fn fault_loss(&mut self) {
        let open: Vec<(u64, usize, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(id, c)| (*id, c.follower, c.upstream))
            .collect();
        if open.is_empty() {
            return;
        }
        let (conn, follower, upstream) = open[self.rng_nemesis.index(open.len())];
        let by = if self.rng_nemesis.below(2) == 0 {
            follower
        } else {
            upstream
        };
        self.record_fault("loss", Some(by));
        // Only a live end can notice a bad frame.
        if self.nodes[by].live.is_some() {
            self.close_conn(conn, by, "a frame was lost or corrupt");
        }
    }

    fn fault_delay(&mut self) {
        let until = self.now_ms + self.rng_nemesis.between(SPIKE_MS.0, SPIKE_MS.1);
        self.spike_until_ms = self.spike_until_ms.max(until);
        self.record_fault("delay", None);
    }

    /// The operator's failover: while the leader is down, promote the live replica whose
    /// durable log ends highest in `(epoch, lsn)`, provided no other replica (down ones
    /// included) holds more; otherwise look again later.
    pub(super) fn on_promote_check(&mut self) {
        if !self.faults_active || self.nodes[self.leader].live.is_some() {
            return;
        }
        let leader = self.leader;
        let best_anywhere = (0..self.nodes.len())
            .filter(|i| *i != leader)
            .map(|i| self.nodes[i].disk.synced_last())
            .max();
        let candidate = (0..self.nodes.len())
            .filter(|i| *i != leader && self.nodes[*i].live.is_some())
            .max_by_key(|i| (self.nodes[*i].disk.synced_last(), usize::MAX - i));
        match candidate {
            Some(c) if Some(self.nodes[c].disk.synced_last()) == best_anywhere => self.promote(c),
            _ => {
                let at = self.now_ms + PROMOTE_RETRY_MS;
                self.schedule(at, Event::PromoteCheck);
            }
        }
    }

    /// `REPLICAOF NO ONE` on `node`, then `REPLICAOF node` on every other live node.
    fn promote(&mut self, node: usize) {
        self.record_fault("promote", Some(node));
        self.report.promotions += 1;
        // As `REPLICAOF NO ONE` does: the highest epoch this node has seen plus one, and a new
        // history (the old one's leader may have written in epochs this node never saw).
        let history = self.rng_nemesis.next_u64() | 1;
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        let epoch = n.meta.epoch.max(live.machine.epoch().0) + 1;
        n.meta.epoch = epoch;
        n.meta.history = history;
        n.meta.leads = true;
        live.machine.become_leader(Epoch(epoch));
        live.upstream = None;
        let follow = live.follow.as_ref().map(|f| f.conn);
        self.leader = node;
        if let Some(conn) = follow {
            self.close_conn(conn, node, "promoted");
        }
        self.note(|| format!("n{node} promoted at epoch {epoch}"));
        for other in 0..self.nodes.len() {
            if other == node {
                continue;
            }
            let n = &mut self.nodes[other];
            let Some(live) = n.live.as_mut() else {
                continue;
            };
            n.meta.leads = false;
            live.machine.become_replica();
            live.upstream = Some(node);
            let follow = live.follow.as_ref().map(|f| f.conn);
            if let Some(conn) = follow {
                self.close_conn(conn, other, "the upstream setting changed");
            }
            self.settle(other);
            self.arm_reconnect(other);
        }
        self.settle(node);
    }

    /// Faults stop: partitions and delays end, crashed nodes restart, clients finish.
    pub(super) fn on_end_faults(&mut self) {
        self.faults_active = false;
        self.spike_until_ms = self.now_ms;
        for n in &mut self.nodes {
            n.isolated_until_ms = n.isolated_until_ms.min(self.now_ms);
            n.paused_until_ms = n.paused_until_ms.min(self.now_ms);
            n.slow_until_ms = n.slow_until_ms.min(self.now_ms);
        }
        self.splits.clear();
        if self.cfg.is_auto() {
            self.on_healed();
        }
        for node in 0..self.nodes.len() {
            if self.nodes[node].live.is_none() {
                self.restart(node);
            }
        }
        self.note(|| "faults end; everything heals".to_string());
    }
}

impl World {
    /// One fault under automatic failover: crash, partition, loss, delay, pause or slow.
    fn on_fault_auto(&mut self) {
        let f = self.cfg.faults;
        let kinds: Vec<&str> = [
            (f.crash, "crash"),
            (f.partition, "partition"),
            (f.loss, "loss"),
            (f.delay, "delay"),
            (f.pause, "pause"),
            (f.slow, "slow"),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        if !kinds.is_empty() {
            let kind = kinds[self.rng_nemesis.index(kinds.len())];
            match kind {
                "crash" => self.fault_crash(),
                "partition" => self.fault_partition(),
                "loss" => self.fault_loss_auto(),
                "delay" => self.fault_delay(),
                "pause" => self.fault_pause(),
                _ => self.fault_slow(),
            }
        }
        let at = self.now_ms + self.rng_nemesis.between(FAULT_GAP_MS.0, FAULT_GAP_MS.1);
        self.schedule(at, Event::Fault);
    }

    /// One of `candidates` (not empty): the current leader half the time when it is one.
    fn pick_target(&mut self, candidates: &[usize]) -> usize {
        let leader = self.auto.leader.map(|(n, _)| n);
        if let Some(l) = leader.filter(|l| candidates.contains(l)) {
            if self.rng_nemesis.below(2) == 0 {
                return l;
            }
        }
        candidates[self.rng_nemesis.index(candidates.len())]
    }

    /// Cuts one node off (or, with 5 nodes or more, sometimes a minority of two) from the
    /// others, both ways, for a while.
    fn fault_partition_auto(&mut self) {
        let now = self.now_ms;
        let nodes = self.nodes.len();
        let free: Vec<usize> = (0..nodes)
            .filter(|i| {
                self.nodes[*i].isolated_until_ms <= now
                    && self
                        .splits
                        .iter()
                        .all(|(m, u)| *u <= now || m & (1 << i) == 0)
            })
            .collect();
        if free.is_empty() || nodes < 2 {
            return;
        }
        let first = self.pick_target(&free);
        let until = now + self.rng_nemesis.between(PARTITION_MS.0, PARTITION_MS.1);
        let pair = nodes >= 5 && free.len() >= 2 && self.rng_nemesis.below(2) == 0;
        self.splits.retain(|(_, u)| *u > now);
        if pair {
            let others: Vec<usize> = free.iter().copied().filter(|i| *i != first).collect();
            let second = others[self.rng_nemesis.index(others.len())];
            self.splits.push(((1 << first) | (1 << second), until));
            self.record_fault("partition", Some(first));
            self.note(|| format!("n{first} and n{second} cut off together"));
            self.on_leader_fault(first);
            self.on_leader_fault(second);
        } else {
            self.nodes[first].isolated_until_ms = until;
            self.record_fault("partition", Some(first));
            if self.auto.leader.is_some_and(|(l, _)| l != first) {
                self.report.auto.replica_partitions += 1;
            }
            self.on_leader_fault(first);
        }
        self.schedule(until, Event::Heal { node: first });
    }

    /// Closes a replication connection, or resets a control link (what is in flight on it
    /// is lost).
    fn fault_loss_auto(&mut self) {
        let nodes = self.nodes.len();
        if nodes < 2 || self.rng_nemesis.below(2) == 0 {
            self.fault_loss();
            return;
        }
        let a = self.rng_nemesis.index(nodes);
        let b = (a + 1 + self.rng_nemesis.index(nodes - 1)) % nodes;
        self.record_fault("loss", Some(a));
        self.note(|| format!("the control link between n{a} and n{b} is reset"));
        for pair in [(a, b), (b, a)] {
            self.ctl_links.entry(pair).or_default().generation += 1;
        }
    }

    /// Pauses a running node's process for a while.
    fn fault_pause(&mut self) {
        let now = self.now_ms;
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].live.is_some() && self.nodes[*i].paused_until_ms <= now)
            .collect();
        if up.is_empty() {
            return;
        }
        let node = self.pick_target(&up);
        let until = now + self.rng_nemesis.between(PAUSE_MS.0, PAUSE_MS.1);
        self.nodes[node].paused_until_ms = until;
        self.record_fault("pause", Some(node));
        self.on_leader_fault(node);
        self.schedule(until, Event::Resume { node });
    }

    /// Slows one node's messages down for a while.
    fn fault_slow(&mut self) {
        let now = self.now_ms;
        let node = self.rng_nemesis.index(self.nodes.len());
        let until = now + self.rng_nemesis.between(SLOW_MS.0, SLOW_MS.1);
        let extra = self.rng_nemesis.between(SLOW_EXTRA_MS.0, SLOW_EXTRA_MS.1);
        let n = &mut self.nodes[node];
        n.slow_until_ms = until;
        n.slow_extra_ms = extra;
        self.record_fault("slow", Some(node));
    }
}
