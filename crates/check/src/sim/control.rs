//! The control plane on a simulated node (automatic failover), carried out as the server's
//! control task does it (`crates/server/src/control.rs`) and followed as its node task does
//! (`on_map` in `crates/server/src/node.rs`).
//!
//! Every node runs a consensus member ([`Group`]) and a [`Controller`]. Each control tick
//! ticks both; a message that arrives is stepped into the group (Raft) or handed to the
//! controller; then the group is drained until quiet: its Raft state is written to the node's
//! simulated disk (durable at once: the server writes it synchronously, fsynced, before it
//! sends), its messages are sent, its events handled, and the controller's actions carried
//! out: messages (to itself too), proposals, read-index rounds, leases for the machine. Every
//! new map the group applies is followed at once: the node leads when it is named (in the
//! map's epoch), and otherwise raises its epoch to the map's and follows the map's upstream
//! for it, stepping down first if it led.
//!
//! Control messages travel between nodes like replication messages (delays, delay spikes,
//! slow nodes), in order per pair of nodes, but a partition or a crash drops them rather than
//! holding them, as a control link that breaks drops what was queued for it. The nemesis can
//! also reset one pair's link, dropping what is in flight.

use super::config::ControlBug;
use super::event::{CtlMsg, Event};
use super::world::World;
use replikv_core::control::{
    Action, ClusterMap, ControlMsg, Controller, ControllerConfig, Group, GroupConfig, GroupEvent,
    Local, MapCommand,
};
use replikv_core::replication::MapLead;
use replikv_core::AckMode;
use std::collections::BTreeSet;

/// A node's control plane: volatile, lost in a crash (its Raft state is on the node's disk).
#[derive(Debug)]
pub(super) struct Ctl {
    pub group: Group,
    pub controller: Controller,
    /// The map version last handed to the node.
    pub published: Option<u64>,
    /// Messages this node sent itself, handled before the next input.
    pub local_queue: Vec<ControlMsg>,
}

/// One direction of the control link between two nodes.
#[derive(Debug, Default)]
pub(super) struct CtlLink {
    /// Bumped when the link is reset: what was in flight on an older generation is dropped.
    pub generation: u64,
    /// Delivery time of the last message sent on it (messages arrive in order).
    pub last_at_ms: u64,
}

/// Node `i`'s id in the cluster map.
pub(super) fn node_id(i: usize) -> String {
    format!("n{i}")
}

/// The node whose map id is `id`.
pub(super) fn index_of(id: &str) -> Option<usize> {
    id.strip_prefix('n')?.parse().ok()
}

impl World {
    fn group_config(&self, node: usize) -> GroupConfig {
        let voters = self.nodes.len() as u64;
        GroupConfig {
            id: node as u64 + 1,
            voters: (1..=voters).collect(),
            election_tick: self.cfg.control.election_ticks,
            heartbeat_tick: self.cfg.control.heartbeat_ticks,
            seed: self.group_seed,
        }
    }

    fn controller_config(&self) -> ControllerConfig {
        let c = &self.cfg.control;
        ControllerConfig {
            lease_ms: c.lease_ms,
            margin_ms: c.margin_ms,
            renew_ms: (c.lease_ms / 4).max(1),
            report_wait_ms: c.lease_ms.max(3 * c.tick_ms),
            propose_wait_ms: c.propose_wait_ms,
            mode: if self.cfg.control_bug == ControlBug::ElectionIgnoresMode {
                // Planted: elect as if nothing had been promised.
                AckMode::Async
            } else {
                self.cfg.mode
            },
            cluster_size: u32::try_from(self.nodes.len()).unwrap_or(u32::MAX),
            founders: (0..self.nodes.len())
                .map(|i| (node_id(i), format!("{}:6379", node_id(i))))
                .collect(),
        }
    }

    fn ctl_mut(&mut self, node: usize) -> Option<&mut Ctl> {
        self.nodes.get_mut(node)?.live.as_mut()?.ctl.as_mut()
    }

    /// The map `node` has applied, if it runs a control plane.
    pub(super) fn map_of(&self, node: usize) -> Option<&ClusterMap> {
        let live = self.nodes.get(node)?.live.as_ref()?;
        live.ctl.as_ref().map(|c| c.group.map())
    }

    /// Starts `node`'s control plane (it just started): restored from the Raft state on its
    /// disk, or founding; the map it restored is followed at once.
    pub(super) fn control_start(&mut self, node: usize) {
        let config = self.group_config(node);
        let group = match &self.nodes[node].control_state {
            Some(bytes) => Group::restore(&config, bytes),
            None => Group::new(&config),
        };
        let group = match group {
            Ok(g) => g,
            // A bug (the state is the group's own bytes): the run reports the panic.
            Err(e) => panic!("n{node}: the control plane cannot start: {e}"),
        };
        let controller = Controller::new(&node_id(node), self.controller_config());
        let inc = self.nodes[node].inc;
        let Some(live) = self.nodes[node].live.as_mut() else {
            return;
        };
        live.ctl = Some(Ctl {
            group,
            controller,
            published: None,
            local_queue: Vec::new(),
        });
        let at = self.now_ms + self.cfg.control.tick_ms;
        self.schedule(at, Event::ControlTick { node, inc });
        self.control_flush(node);
    }

    pub(super) fn on_control_tick(&mut self, node: usize, inc: u64) {
        if !self.is_live(node, inc) {
            return;
        }
        let now = self.now_ms;
        let local = self.control_local(node);
        let Some(ctl) = self.ctl_mut(node) else {
            return;
        };
        ctl.group.tick();
        let actions = ctl.controller.on_tick(ctl.group.map(), local, now);
        self.control_carry_out(node, actions);
        self.control_flush(node);
        let at = now + self.cfg.control.tick_ms;
        self.schedule(at, Event::ControlTick { node, inc });
    }

    pub(super) fn on_control_deliver(
        &mut self,
        from: usize,
        to: usize,
        inc: u64,
        generation: u64,
        msg: ControlMsg,
    ) {
        if !self.is_live(to, inc) {
            return;
        }
        let current = self.ctl_links.get(&(from, to)).map_or(0, |l| l.generation);
        // The link broke while the message was in flight (reset, or cut by a partition).
        if current != generation || self.cut(from, to) {
            return;
        }
        let now = self.now_ms;
        let local = self.control_local(to);
        let Some(ctl) = self.ctl_mut(to) else {
            return;
        };
        match msg {
            ControlMsg::Raft(bytes) => {
                // A message Raft refuses is dropped, as the server does.
                let _ = ctl.group.step(&bytes);
            }
            other => {
                let actions =
                    ctl.controller
                        .on_message(&node_id(from), other, ctl.group.map(), local, now);
                self.control_carry_out(to, actions);
            }
        }
        self.control_flush(to);
    }

    /// Sends `msg` from `from` to `to` on their control link: dropped when `to` is down or a
    /// partition separates them (the link is broken), else delivered in order after a delay.
    fn control_send(&mut self, from: usize, to: usize, msg: ControlMsg) {
        let Some(target) = self.nodes.get(to) else {
            return;
        };
        if target.live.is_none() || self.cut(from, to) {
            return;
        }
        let inc = target.inc;
        let at = self.now_ms + self.delay() + self.slow_extra(from, to);
        let link = self.ctl_links.entry((from, to)).or_default();
        let at = at.max(link.last_at_ms);
        link.last_at_ms = at;
        let generation = link.generation;
        self.schedule(
            at,
            Event::ControlDeliver {
                from,
                to,
                inc,
                generation,
                msg: CtlMsg(msg),
            },
        );
    }

    /// What `node` says of its own log, as the server's control task reads it.
    fn control_local(&self, node: usize) -> Local {
        let Some(live) = self.nodes.get(node).and_then(|n| n.live.as_ref()) else {
            return Local::default();
        };
        let m = &live.machine;
        let in_sync = if m.is_leader() {
            m.replicas()
                .iter()
                .filter(|r| r.in_sync)
                .map(|r| r.id.clone())
                .collect()
        } else {
            BTreeSet::new()
        };
        Local {
            durable: m.durable_position(),
            epoch: m.epoch(),
            in_sync,
            leads: m.is_leader(),
        }
    }

    /// Carries out the controller's actions, and then what its messages to itself produce.
    fn control_carry_out(&mut self, node: usize, actions: Vec<Action>) {
        let me = node_id(node);
        let bug = self.cfg.control_bug;
        let mut actions = actions;
        while !actions.is_empty() {
            let mut more = Vec::new();
            for action in std::mem::take(&mut actions) {
                let now = self.now_ms;
                match action {
                    Action::Send { to, msg } if to == me => {
                        if let Some(ctl) = self.ctl_mut(node) {
                            ctl.local_queue.push(msg);
                        }
                    }
                    Action::Send { to, msg } => {
                        if let Some(i) = index_of(&to) {
                            self.control_send(node, i, msg);
                        }
                    }
                    Action::Propose(cmd) => {
                        if let Some(ctl) = self.ctl_mut(node) {
                            // A proposal dropped (no longer the controller) is retried by the
                            // controller if it still matters.
                            let _ = ctl.group.propose(&cmd);
                        }
                    }
                    Action::Membership { raft_id, change } => {
                        if let Some(ctl) = self.ctl_mut(node) {
                            // The simulated cluster keeps its founders; a change dropped is
                            // proposed again by whoever asked.
                            let _ = ctl.group.propose_membership(raft_id, change);
                        }
                    }
                    Action::ReadIndex(ctx) => {
                        let Some(ctl) = self.ctl_mut(node) else {
                            continue;
                        };
                        if bug == ControlBug::GrantWithoutReadIndex {
                            // Planted: grant without a quorum's confirmation.
                            more.extend(ctl.controller.on_read_confirmed(
                                &ctx,
                                ctl.group.map(),
                                now,
                            ));
                        } else {
                            // Too many rounds in flight: the lease request is not answered,
                            // and the leader asks again.
                            let _ = ctl.group.read_index(ctx);
                        }
                    }
                    Action::Lease { epoch, until_ms } => self.control_lease(node, epoch, until_ms),
                    Action::Event { kind, detail } => {
                        *self.report.auto.events.entry(kind.to_string()).or_insert(0) += 1;
                        self.note(|| format!("n{node} control: {kind}: {detail}"));
                    }
                }
            }
            loop {
                let local = self.control_local(node);
                let now = self.now_ms;
                let Some(ctl) = self.ctl_mut(node) else {
                    break;
                };
                if ctl.local_queue.is_empty() {
                    break;
                }
                let msg = ctl.local_queue.remove(0);
                more.extend(
                    ctl.controller
                        .on_message(&me, msg, ctl.group.map(), local, now),
                );
            }
            actions = more;
        }
    }

    /// The controller granted this node, the data leader of `epoch`, its lease.
    fn control_lease(&mut self, node: usize, epoch: replikv_core::Epoch, until_ms: u64) {
        let until_ms = match self.cfg.control_bug {
            // Planted: the leader holds its lease three times as long as granted.
            ControlBug::LeaseTooLong => until_ms + 2 * self.cfg.control.lease_ms,
            _ => until_ms,
        };
        let now = self.now_ms;
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        if live.machine.is_leader() && live.machine.epoch() == epoch {
            live.machine.grant_lease(until_ms, now, &mut n.disk);
            self.settle(node);
        }
    }

    /// Persists, sends and handles what the group has, until it has nothing more.
    pub(super) fn control_flush(&mut self, node: usize) {
        loop {
            let now = self.now_ms;
            let Some(ctl) = self.ctl_mut(node) else {
                return;
            };
            let drained = ctl.group.drain();
            let quiet = drained.outgoing.is_empty() && drained.events.is_empty();
            // Written (and synced) before anything is sent.
            if let Some(bytes) = drained.persist {
                self.nodes[node].control_state = Some(bytes);
            }
            for out in drained.outgoing {
                let Some(to) = out.to.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
                    continue;
                };
                self.control_send(node, to, ControlMsg::Raft(out.bytes));
            }
            let mut actions = Vec::new();
            for event in drained.events {
                match event {
                    GroupEvent::BecameController { term } => {
                        if let Some(ctl) = self.ctl_mut(node) {
                            ctl.controller.became_controller(now);
                        }
                        self.note(|| format!("n{node} is the controller (Raft term {term})"));
                    }
                    GroupEvent::LostController { term } => {
                        if let Some(ctl) = self.ctl_mut(node) {
                            ctl.controller.lost_controller();
                        }
                        self.note(|| format!("n{node} is no longer the controller (term {term})"));
                    }
                    GroupEvent::Applied {
                        cmd,
                        result,
                        version,
                    } => {
                        if version > self.auto.map_version {
                            self.auto.map_version = version;
                            self.note(|| {
                                format!("map v{version} (first n{node}): {cmd:?} {result:?}")
                            });
                        }
                        if let (MapCommand::Elect { id, epoch }, Ok(())) = (&cmd, &result) {
                            self.on_elect_applied(node, id, *epoch);
                        }
                    }
                    GroupEvent::SnapshotInstalled { index, version } => {
                        self.note(|| {
                            format!("n{node} installed the map's snapshot {index} (v{version})")
                        });
                    }
                    GroupEvent::ReadConfirmed { ctx } => {
                        if let Some(ctl) = self.ctl_mut(node) {
                            actions.extend(ctl.controller.on_read_confirmed(
                                &ctx,
                                ctl.group.map(),
                                now,
                            ));
                        }
                    }
                }
            }
            let Some(ctl) = self.ctl_mut(node) else {
                return;
            };
            let hint = ctl
                .group
                .controller()
                .and_then(|id| id.checked_sub(1))
                .and_then(|i| usize::try_from(i).ok())
                .map(node_id);
            ctl.controller.set_controller(hint);
            self.publish_map(node);
            self.control_carry_out(node, actions);
            if quiet {
                return;
            }
        }
    }

    /// Hands the node a map it has not followed yet.
    fn publish_map(&mut self, node: usize) {
        let Some(ctl) = self.ctl_mut(node) else {
            return;
        };
        let map = ctl.group.map();
        if map.members.is_empty() || ctl.published == Some(map.version) {
            return;
        }
        ctl.published = Some(map.version);
        let map = map.clone();
        self.on_map(node, &map);
    }

    /// Follows `map`, as the server's `on_map`: lead when it names this node, else raise the
    /// epoch to the map's and follow the node the map gives as upstream (a leader named
    /// elsewhere steps down first). Every node pins the map's in-sync set.
    fn on_map(&mut self, node: usize, map: &ClusterMap) {
        let me = node_id(node);
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        live.machine.pin_in_sync(&map.in_sync, &me, self.now_ms);
        live.machine
            .pin_members(map.members.keys().cloned().collect());
        let Some(leader) = map.leader.clone() else {
            self.settle(node);
            return;
        };
        if leader == me {
            match live.machine.lead_from_map(map.epoch) {
                MapLead::Leading => {
                    self.settle(node);
                    return;
                }
                MapLead::EpochSeen => {
                    let seen = live.machine.epoch();
                    self.note(|| {
                        format!(
                            "n{node}: the map names it leader in epoch {}, seen already (at {seen}); not leading",
                            map.epoch
                        )
                    });
                    self.settle(node);
                    return;
                }
                MapLead::Lead => {}
            }
            if n.meta.history == 0 {
                n.meta.history = self.rng_ctl.next_u64() | 1;
            }
            n.meta.epoch = map.epoch.0;
            n.meta.leads = true;
            live.machine.elected(map.epoch, self.now_ms, &mut n.disk);
            live.upstream = None;
            let follow = live.follow.as_ref().map(|f| f.conn);
            let at = live.machine.last();
            self.note(|| format!("n{node} elected: leads in epoch {} from {at}", map.epoch));
            if let Some(conn) = follow {
                self.close_conn(conn, node, "elected");
            }
            self.settle(node);
            return;
        }
        // The epoch this node led in, if it leads (before the map's raises it).
        let led = live.machine.is_leader().then(|| live.machine.epoch());
        // Fencing: nothing of an older epoch is taken from now on.
        n.meta.epoch = n.meta.epoch.max(map.epoch.0);
        live.machine.raise_epoch(map.epoch);
        let Some(up) = map.upstream_of(&me).and_then(index_of) else {
            self.settle(node);
            return;
        };
        if !live.machine.is_leader() && live.upstream == Some(up) {
            self.settle(node);
            return;
        }
        let was_leader = live.machine.is_leader();
        n.meta.leads = false;
        live.machine.become_replica();
        live.upstream = Some(up);
        let follow = live.follow.as_ref().map(|f| f.conn);
        if was_leader {
            if led.is_some_and(|e| self.wrote_in(node, e)) {
                self.report.auto.stepped_down += 1;
            }
            self.note(|| {
                format!(
                    "n{node} steps down: {leader} leads in epoch {}; follows n{up}",
                    map.epoch
                )
            });
        } else {
            self.note(|| format!("n{node} follows n{up} (epoch {})", map.epoch));
        }
        if let Some(conn) = follow {
            self.close_conn(conn, node, "the upstream setting changed");
        }
        self.settle(node);
        // The link to the new upstream starts at once, as the server's does.
        let inc = self.nodes[node].inc;
        let at = self.now_ms + self.delay();
        if let Some(live) = self.nodes[node].live.as_mut() {
            live.reconnect_armed = true;
        }
        self.schedule(at, Event::Reconnect { node, inc });
    }
}
