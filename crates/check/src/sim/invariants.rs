//! The properties checked during and after a run: the commit rule when a write is
//! acknowledged, log matching whenever an entry reaches a disk, every machine's own
//! invariants after every event, and at the end convergence and the history checkers.

use super::config::Property;
use super::world::World;
use crate::checker::{linearizability, lost_writes, Status};
use replikv_core::{AckMode, Execution, LogPosition, Reply};
use std::time::Duration;

/// Wall-clock budget of the linearizability search per run.
const LINEARIZABILITY_BUDGET: Duration = Duration::from_secs(10);

impl World {
    /// The leader `node` acknowledged the write at `pos` (operation `op`): the entry must be
    /// durable on its own disk and on the replicas its mode needs.
    pub(super) fn check_commit(&mut self, node: usize, pos: LogPosition, op: u64) {
        let mode = self.cfg.mode;
        let holds = |n: usize| self.nodes[n].disk.durable_epoch_at(pos.lsn) == Some(pos.epoch);
        let mut problems = Vec::new();
        if !holds(node) {
            problems.push(format!("not durable on the leader n{node}"));
        }
        let replicas: Vec<usize> = (0..self.nodes.len())
            .filter(|i| *i != node && holds(*i))
            .collect();
        let have = replicas.len() as u32;
        let nodes = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        let need = mode.replicas_needed(nodes);
        if have < need {
            problems.push(format!(
                "durable on {have} replicas {replicas:?}, {mode} needs {need}"
            ));
        }
        if mode == AckMode::Sync {
            if let Some(live) = self.nodes[node].live.as_ref() {
                // The replicas it counts in sync, and under automatic failover those of the
                // map it follows (the machine pins them).
                let mut in_sync: Vec<String> = live
                    .machine
                    .replicas()
                    .iter()
                    .filter(|r| r.in_sync)
                    .map(|r| r.id.clone())
                    .collect();
                if let Some(ctl) = live.ctl.as_ref() {
                    in_sync.extend(ctl.group.map().in_sync.iter().cloned());
                    in_sync.sort_unstable();
                    in_sync.dedup();
                }
                for id in in_sync {
                    let i = self.nodes.iter().position(|n| n.name == id);
                    if i.is_some_and(|i| !holds(i)) {
                        problems.push(format!("in-sync replica {id} lacks it"));
                    }
                }
            }
        }
        if !problems.is_empty() {
            let what = format!(
                "op {op}: the write at {pos} was acknowledged under {mode} by n{node} but {}",
                problems.join("; ")
            );
            self.violate(Property::CommitRule, what);
        }
    }

    /// Adds the entries that reached each disk since the last look to the registry of
    /// `(history, epoch, lsn)` → command, reporting a second command at a known position. A
    /// history has one leader, so within one, an epoch and LSN name one command.
    pub(super) fn register_entries(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let from = n.matched_len.min(n.disk.entries.len());
        let history = n.meta.history;
        let mut conflicts = Vec::new();
        for (pos, cmd) in &n.disk.entries[from..] {
            let key = (history, pos.epoch.0, pos.lsn.0);
            match self.registry.get(&key) {
                Some(known) if known != cmd => conflicts.push(*pos),
                Some(_) => {}
                None => {
                    self.registry.insert(key, cmd.clone());
                }
            }
        }
        n.matched_len = n.disk.entries.len();
        for pos in conflicts {
            self.violate(
                Property::LogMatching,
                format!("n{node} holds a different command at {pos} than another log did"),
            );
        }
    }

    /// After every event: each machine's and disk's own invariants, and their agreement.
    pub(super) fn check_nodes(&mut self) {
        let mut problems = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            n.disk.check_invariants();
            let Some(live) = n.live.as_ref() else {
                continue;
            };
            live.machine.check_invariants();
            if live.machine.last() != n.disk.last() {
                problems.push(format!(
                    "n{i}: machine at {} but its disk ends at {}",
                    live.machine.last(),
                    n.disk.last()
                ));
            }
            if live.machine.durable() > n.disk.synced_last().lsn {
                problems.push(format!(
                    "n{i}: machine durable at {} but its disk synced only {}",
                    live.machine.durable(),
                    n.disk.synced_last()
                ));
            }
        }
        for p in problems {
            self.violate(Property::Progress, p);
        }
    }

    /// The end of the run: convergence, final reads, log matching across every pair of
    /// disks, and the history checkers.
    pub(super) fn finish(&mut self) {
        if self.cfg.is_auto() {
            self.check_liveness();
        }
        self.check_convergence();
        self.check_log_pairs();
        self.final_reads();
        self.count_outcomes();
        self.check_history();
    }

    fn check_convergence(&mut self) {
        let leader = self.leader;
        let Some(lead) = self.nodes[leader].live.as_ref() else {
            self.violate(
                Property::Convergence,
                format!("the leader n{leader} is down"),
            );
            return;
        };
        // Under automatic failover the leader is the one the newest election named: it must
        // lead, in that epoch.
        if let Some((_, epoch)) = self.auto.leader {
            if !lead.machine.is_leader() || lead.machine.epoch() != epoch {
                let (leads, at) = (lead.machine.is_leader(), lead.machine.epoch());
                self.violate(
                    Property::Convergence,
                    format!(
                        "n{leader}, elected in epoch {epoch}, is not leading in it (leads: {leads}, epoch {at})"
                    ),
                );
                return;
            }
        }
        let Some(lead) = self.nodes[leader].live.as_ref() else {
            return;
        };
        let want_last = lead.machine.last();
        let want: Vec<_> = lead.machine.store().entries().collect();
        let mut problems = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if i == leader {
                continue;
            }
            let Some(live) = n.live.as_ref() else {
                problems.push(format!("n{i} is down"));
                continue;
            };
            if live.machine.last() != want_last {
                problems.push(format!(
                    "n{i} is at {}, the leader n{leader} at {want_last}",
                    live.machine.last()
                ));
            } else if live.machine.store().entries().collect::<Vec<_>>() != want {
                problems.push(format!(
                    "n{i}'s store differs from the leader's at the same position {want_last}"
                ));
            }
        }
        for p in problems {
            self.violate(Property::Convergence, p);
        }
    }

    fn check_log_pairs(&mut self) {
        let mut problems = Vec::new();
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                let (da, db) = (&self.nodes[a].disk, &self.nodes[b].disk);
                let lo = da.base.lsn.max(db.base.lsn).0 + 1;
                let hi = da.last().lsn.min(db.last().lsn).0;
                for lsn in lo..=hi {
                    let (Some(ea), Some(eb)) = (
                        da.entry(replikv_core::Lsn(lsn)),
                        db.entry(replikv_core::Lsn(lsn)),
                    ) else {
                        continue;
                    };
                    if ea.0.epoch == eb.0.epoch && ea.1 != eb.1 {
                        problems.push(format!("n{a} and n{b} hold different commands at {}", ea.0));
                        break;
                    }
                }
            }
        }
        for p in problems {
            self.violate(Property::LogMatching, p);
        }
    }

    /// Reads every key on the leader, into the history's final state.
    fn final_reads(&mut self) {
        let leader = self.leader;
        let Some(live) = self.nodes[leader].live.as_ref() else {
            return;
        };
        let now = self.now_ms;
        let reads = (0..self.cfg.keys)
            .map(|k| {
                let key = format!("k{k}");
                let args = [
                    bytes::Bytes::from_static(b"GET"),
                    bytes::Bytes::from(key.clone().into_bytes()),
                ];
                let value = match live.machine.store().execute(&args, now) {
                    Execution::Read(Reply::Bulk(v)) => {
                        Some(String::from_utf8_lossy(&v).into_owned())
                    }
                    _ => None,
                };
                (key, value)
            })
            .collect();
        let name = self.nodes[leader].name.clone();
        self.history.final_reads.push((name, reads));
    }

    fn count_outcomes(&mut self) {
        for op in &self.history.ops {
            match op.outcome {
                crate::history::Outcome::Ok { .. } => self.report.ops_ok += 1,
                crate::history::Outcome::Fail { .. } => self.report.ops_fail += 1,
                crate::history::Outcome::Indeterminate { .. } => {
                    self.report.ops_indeterminate += 1;
                }
            }
        }
    }

    /// Lost acknowledged writes and linearizability: promised by every mode but `async`,
    /// where losses are counted as permitted.
    fn check_history(&mut self) {
        let lossy = self.cfg.mode == AckMode::Async;
        let lost = lost_writes(&self.history);
        if lost.status == Status::Fail {
            if lossy {
                self.report.lost_writes_permitted += lost.violations;
            } else {
                let what = describe(&lost.summary, &lost.examples);
                self.violate(Property::LostWrites, what);
            }
        }
        let lin = linearizability(&self.history, LINEARIZABILITY_BUDGET);
        if lin.status == Status::Fail {
            let what = describe(&lin.summary, &lin.examples);
            if lossy {
                // `async` promises no linearizability: a finding at most.
                self.find(Property::Linearizability, what);
            } else {
                self.violate(Property::Linearizability, what);
            }
        }
    }
}

fn describe(summary: &str, examples: &[crate::checker::Example]) -> String {
    match examples.first() {
        Some(e) => format!("{summary}; e.g. {} (ops {:?})", e.what, e.ops),
        None => summary.to_string(),
    }
}
