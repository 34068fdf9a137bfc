//! The checks and measurements automatic failover adds: one leader per epoch (every
//! acknowledged write records its epoch and the node, and the node's incarnation, that
//! acknowledged it), lease safety (at every event at most one node leads with a lease still
//! running, and a leader answers only while its own lease runs; the simulated clocks are
//! exact, so both are checked directly against virtual time), every election keeps the
//! acknowledged writes (checked on the elected node's durable log when the `Elect` is first
//! applied), liveness after the faults end, and failover time.

use super::config::Property;
use super::control::index_of;
use super::world::World;
use replikv_core::{AckMode, Epoch, LogPosition};
use std::collections::{BTreeMap, BTreeSet};

/// Failovers within this window count together as flapping leadership.
const FLAPPING_WINDOW_MS: u64 = 5_000;
/// After the first write acknowledged once the faults end, clients go on this long.
const CLIENTS_AFTER_HEALED_MS: u64 = 1_000;

/// The state of the automatic-failover checks and measurements.
#[derive(Debug, Default)]
pub(super) struct AutoState {
    /// `(history, epoch)` → the node, and its incarnation, that acknowledged writes in it.
    pub epoch_owner: BTreeMap<(u64, u64), (usize, u64)>,
    /// `(history, epoch, node, incarnation)` already reported as a second leader of the epoch.
    pub epoch_intruders: BTreeSet<(u64, u64, usize, u64)>,
    /// Every write acknowledged (automatic failover only), in order.
    pub acked: Vec<LogPosition>,
    /// Epochs whose `Elect` was applied, with the node elected.
    pub elected: BTreeMap<u64, usize>,
    /// The leader the newest applied `Elect` names, and its epoch.
    pub leader: Option<(usize, Epoch)>,
    /// When the failovers of the last 5 s were applied.
    pub failovers_at: Vec<u64>,
    /// A failover being timed: when a fault hit the leader, its epoch and the node.
    pub episode: Option<(u64, Epoch, usize)>,
    /// Whether the election of the failover being timed was recorded.
    pub episode_elected: bool,
    /// Whether an overlap of leases is being reported (once per overlap).
    pub lease_overlap: bool,
    /// When the faults ended.
    pub healed_at_ms: Option<u64>,
    /// The newest map version applied anywhere (for the trace).
    pub map_version: u64,
}

impl World {
    /// Whether `node`'s durable log holds the entry at `pos` (its own, or in the snapshot its
    /// log continues from).
    pub(super) fn durably_holds(&self, node: usize, pos: LogPosition) -> bool {
        self.nodes[node].disk.durable_epoch_at(pos.lsn) == Some(pos.epoch)
    }

    /// The leader `node` acknowledged the write at `pos`.
    pub(super) fn on_write_acked(&mut self, node: usize, pos: LogPosition, op: u64) {
        let history = self.nodes[node].meta.history;
        let inc = self.nodes[node].inc;
        match self.auto.epoch_owner.get(&(history, pos.epoch.0)) {
            // Reported once per second leader of an epoch.
            Some(&(other, other_inc))
                if (other, other_inc) != (node, inc)
                    && self
                        .auto
                        .epoch_intruders
                        .insert((history, pos.epoch.0, node, inc)) =>
            {
                let who = if other == node {
                    format!("n{node} before its restart")
                } else {
                    format!("n{other}")
                };
                self.violate(
                    Property::OneLeaderPerEpoch,
                    format!(
                        "op {op}: n{node} acknowledged the write at {pos}, but {who} \
                         acknowledged writes in epoch {} too",
                        pos.epoch
                    ),
                );
            }
            Some(_) => {}
            None => {
                self.auto
                    .epoch_owner
                    .insert((history, pos.epoch.0), (node, inc));
            }
        }
        if !self.cfg.is_auto() {
            return;
        }
        self.auto.acked.push(pos);
        if let Some((at, epoch, old)) = self.auto.episode {
            if pos.epoch > epoch {
                let took = self.now_ms - at;
                self.report.auto.failover_ms.push(took);
                self.auto.episode = None;
                self.note(|| format!("failover from n{old} took {took} ms"));
            } else if node == old {
                // The leader came through the fault without an election.
                self.report.auto.leader_faults_ridden_out += 1;
                self.auto.episode = None;
            }
        }
        if let (Some(healed), None) = (self.auto.healed_at_ms, self.report.auto.healed_write_ms) {
            let took = self.now_ms - healed;
            self.report.auto.healed_write_ms = Some(took);
            self.note(|| format!("first write after the faults ended: {took} ms"));
            self.clients_until_ms = self
                .clients_until_ms
                .min(self.now_ms + CLIENTS_AFTER_HEALED_MS);
            self.end_ms = self.clients_until_ms + self.cfg.quiesce_ms;
        }
    }

    /// Whether `node` acknowledged writes in `epoch` (of its history).
    pub(super) fn wrote_in(&self, node: usize, epoch: Epoch) -> bool {
        let history = self.nodes[node].meta.history;
        self.auto
            .epoch_owner
            .get(&(history, epoch.0))
            .is_some_and(|(n, _)| *n == node)
    }

    /// A fault (crash, partition, pause) hit `node`: if it leads, a failover is timed from now.
    pub(super) fn on_leader_fault(&mut self, node: usize) {
        if let Some((leader, epoch)) = self.auto.leader {
            if leader == node && self.auto.episode.is_none() {
                self.auto.episode = Some((self.now_ms, epoch, node));
                self.auto.episode_elected = false;
            }
        }
    }

    /// Whether `node` is cut off from a majority of the nodes (itself included) now.
    fn cut_off(&self, node: usize) -> bool {
        let reach = (0..self.nodes.len())
            .filter(|i| *i == node || !self.cut(node, *i))
            .count();
        reach * 2 <= self.nodes.len()
    }

    /// `by`'s consensus member applied `Elect{id, epoch}`. The first time an epoch's election
    /// is applied anywhere: under lossless modes the elected node's durable log must hold
    /// every acknowledged write; the scenario counters move.
    pub(super) fn on_elect_applied(&mut self, by: usize, id: &str, epoch: Epoch) {
        if self.auto.elected.contains_key(&epoch.0) {
            return;
        }
        let Some(elected) = index_of(id).filter(|i| *i < self.nodes.len()) else {
            self.violate(
                Property::Progress,
                format!("n{by} applied the election of `{id}`, not a node"),
            );
            return;
        };
        self.auto.elected.insert(epoch.0, elected);
        let now = self.now_ms;
        self.report.auto.elections += 1;
        // A failover replaces a leader that had acknowledged writes.
        let replaced = self
            .auto
            .leader
            .filter(|(old, e)| *old != elected && self.wrote_in(*old, *e));
        if let Some((old, _)) = replaced {
            self.auto.failovers_at.push(now);
            self.auto
                .failovers_at
                .retain(|t| now < t + FLAPPING_WINDOW_MS);
            let stats = &mut self.report.auto;
            stats.failovers += 1;
            stats.failovers_max_in_5s = stats
                .failovers_max_in_5s
                .max(self.auto.failovers_at.len() as u64);
            if self.nodes[old].live.is_some() {
                self.report.auto.failovers_leader_alive += 1;
                if self.cut_off(old) {
                    self.report.auto.failovers_leader_cut_off += 1;
                }
            }
        }
        if let Some((at, old_epoch, _)) = self.auto.episode {
            if epoch > old_epoch && !self.auto.episode_elected {
                self.auto.episode_elected = true;
                self.report.auto.elected_ms.push(now - at);
            }
        }
        let previous = self.auto.leader.map(|(n, _)| n);
        self.note(|| {
            format!("election applied (first by n{by}): n{elected} leads in epoch {epoch}")
        });
        // Under lossless modes, the elected node holds every acknowledged write.
        if self.cfg.mode != AckMode::Async {
            let missing: Vec<LogPosition> = self
                .auto
                .acked
                .iter()
                .copied()
                .filter(|p| !self.durably_holds(elected, *p))
                .collect();
            if let Some(first) = missing.first() {
                self.violate(
                    Property::ElectionKeepsWrites,
                    format!(
                        "n{elected} elected in epoch {epoch} lacks {} acknowledged writes, e.g. {first}",
                        missing.len()
                    ),
                );
            }
        }
        let lagging = (0..self.nodes.len())
            .filter(|i| *i != elected && Some(*i) != previous)
            .any(|i| self.auto.acked.iter().any(|p| !self.durably_holds(i, *p)));
        if lagging {
            self.report.auto.elections_past_lagging += 1;
        }
        if self.auto.leader.is_none_or(|(_, e)| epoch > e) {
            self.auto.leader = Some((elected, epoch));
            self.leader = elected;
        }
    }

    /// At most one node leads with a lease still running at this instant.
    pub(super) fn check_leases(&mut self) {
        let now = self.now_ms;
        let holders: Vec<(usize, Epoch, u64)> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let m = &n.live.as_ref()?.machine;
                (m.is_leader() && now < m.lease_until_ms())
                    .then(|| (i, m.epoch(), m.lease_until_ms()))
            })
            .collect();
        if holders.len() < 2 {
            self.auto.lease_overlap = false;
            return;
        }
        if self.auto.lease_overlap {
            return;
        }
        self.auto.lease_overlap = true;
        let list: Vec<String> = holders
            .iter()
            .map(|(i, e, until)| format!("n{i} (epoch {e}, until {until} ms)"))
            .collect();
        self.violate(
            Property::LeaseSafety,
            format!("two leaders hold a valid lease: {}", list.join(", ")),
        );
    }

    /// The leader `node` released a successful answer to operation `op` (a write or a read):
    /// its lease must be running now, by the exact virtual clock (a leader without a lease
    /// neither writes nor answers).
    pub(super) fn check_answer_lease(&mut self, node: usize, op: u64) {
        let Some(m) = self.nodes[node].live.as_ref().map(|l| &l.machine) else {
            return;
        };
        let until = m.lease_until_ms();
        if m.is_leader() && self.now_ms >= until {
            let epoch = m.epoch();
            self.violate(
                Property::LeaseSafety,
                format!(
                    "op {op}: n{node} (epoch {epoch}) answered with its lease expired at {until} ms"
                ),
            );
        }
    }

    /// The faults ended now: liveness is measured from here.
    pub(super) fn on_healed(&mut self) {
        self.auto.healed_at_ms = Some(self.now_ms);
        self.clients_until_ms = self.now_ms + 2 * self.cfg.liveness_ms;
        self.end_ms = self.clients_until_ms + self.cfg.quiesce_ms;
    }

    /// At the end: a write was acknowledged soon enough after the faults ended.
    pub(super) fn check_liveness(&mut self) {
        let bound = self.cfg.liveness_ms;
        match self.report.auto.healed_write_ms {
            None => self.violate(
                Property::Liveness,
                format!(
                    "no write acknowledged in the {} ms after the faults ended",
                    2 * bound
                ),
            ),
            Some(took) if took > bound => self.find(
                Property::Liveness,
                format!("the first write after the faults ended took {took} ms (bound {bound})"),
            ),
            Some(_) => {}
        }
    }
}
