//! [`World`]: the simulated cluster (nodes, disks, connections, clients) and its event loop.
//! Handlers live next to it: [`links`](super::links) for the peer protocol,
//! [`workload`](super::workload) for clients, [`nemesis`](super::nemesis) for faults and
//! failover, [`invariants`](super::invariants) for the checks.

use super::config::{Property, SimConfig, SimReport, Violation, TRACE_LINES_MAX, VIOLATIONS_MAX};
use super::control::{Ctl, CtlLink};
use super::digest::Fnv;
use super::disk::{Disk, Meta};
use super::event::{Event, PeerMsg};
use super::failover::AutoState;
use crate::history::{History, Outcome};
use crate::rng::Rng;
use replikv_core::replication::{Answer, Machine};
use replikv_core::{Command, Lsn, Reply};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A replication connection's id.
pub(super) type ConnId = u64;

/// Interval of every node's replication tick, ms (the machine's `tick`).
pub(super) const TICK_MS: u64 = 50;
/// Interval of heartbeats and periodic acks, ms.
pub(super) const HEARTBEAT_MS: u64 = 100;
/// Most entries in one `Entries` message.
pub(super) const BATCH_ENTRIES_MAX: usize = 64;

/// A running node's volatile state: lost in a crash.
#[derive(Debug)]
pub(super) struct Live {
    pub machine: Machine<u64>,
    /// The node it follows; `None` when it leads.
    pub upstream: Option<usize>,
    /// Its link to the upstream.
    pub follow: Option<Follow>,
    /// Links of followers it serves, by connection.
    pub serves: BTreeMap<ConnId, Serve>,
    pub fsync_running: bool,
    pub ticks: u64,
    pub reconnect_armed: bool,
    /// The control plane (automatic failover only).
    pub ctl: Option<Ctl>,
}

/// The follower end of a link.
#[derive(Debug)]
pub(super) struct Follow {
    pub conn: ConnId,
    pub last_heard_ms: u64,
    /// Whether the upstream has sent anything on this link yet.
    pub heard: bool,
    /// `(durable, applied)` last acknowledged.
    pub sent: Option<(Lsn, Lsn)>,
}

/// The upstream end of a link.
#[derive(Debug)]
pub(super) struct Serve {
    pub follower: usize,
    /// The next LSN to send.
    pub next: Lsn,
    pub last_heard_ms: u64,
}

/// One node: what survives a crash (disk, meta) and what does not (`live`).
#[derive(Debug)]
pub(super) struct SimNode {
    pub name: String,
    pub disk: Disk,
    pub meta: Meta,
    /// Bumped at every restart; events and connections of an older one are ignored.
    pub inc: u64,
    pub live: Option<Live>,
    /// Messages to or from the node are held until then (a partition).
    pub isolated_until_ms: u64,
    /// How many of `disk.entries` the log-matching registry has seen.
    pub matched_len: usize,
    /// The control plane's Raft state as last written (automatic failover): written and
    /// synced before any message that depends on it is sent, as the server does, so a crash
    /// keeps it.
    pub control_state: Option<Vec<u8>>,
    /// The process handles nothing until then (a pause); what arrives waits.
    pub paused_until_ms: u64,
    /// Every message to or from the node takes `slow_extra_ms` more until then.
    pub slow_until_ms: u64,
    /// See `slow_until_ms`.
    pub slow_extra_ms: u64,
}

/// A replication connection. Messages each way are delivered in order; once closed (by
/// either end) nothing more is delivered, and each end learns of it on its own.
#[derive(Debug)]
pub(super) struct Conn {
    pub follower: usize,
    pub upstream: usize,
    pub follower_inc: u64,
    pub upstream_inc: u64,
    pub open: bool,
    /// Delivery time of the last message each way: `[to follower, to upstream]`.
    pub last_at_ms: [u64; 2],
}

/// A client: one operation at a time.
#[derive(Debug)]
pub(super) struct Client {
    pub rng: Rng,
    /// The operation waiting for its reply (index in the history) and the node it went to.
    pub outstanding: Option<(u64, usize)>,
    pub issued: u64,
    /// The node it takes for the leader (automatic failover; under operator failover the
    /// operator's leader is used).
    pub target: usize,
}

/// The whole simulated cluster.
pub(super) struct World {
    pub cfg: SimConfig,
    pub now_ms: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    pub rng_net: Rng,
    pub rng_disk: Rng,
    pub rng_nemesis: Rng,
    /// Control-plane messages and automatic-failover faults (a stream of its own, so that
    /// operator-failover runs draw exactly what they drew before it existed).
    pub rng_ctl: Rng,
    pub nodes: Vec<SimNode>,
    pub conns: BTreeMap<ConnId, Conn>,
    pub next_conn: ConnId,
    /// The node the operator (and the clients) take for the leader.
    pub leader: usize,
    pub clients: Vec<Client>,
    pub history: History,
    pub spike_until_ms: u64,
    pub faults_active: bool,
    pub report: SimReport,
    digest: Fnv,
    /// `(history, epoch, lsn)` → the command first seen there, on any disk.
    pub registry: BTreeMap<(u64, u64, u64), Command>,
    /// Partitions that cut a group of nodes (a bit mask) off from the others, until a time
    /// (automatic failover; single nodes use `isolated_until_ms`).
    pub splits: Vec<(u64, u64)>,
    /// Control-plane links, by (from, to).
    pub ctl_links: BTreeMap<(usize, usize), CtlLink>,
    /// The seed of every control-plane member's election timeouts.
    pub group_seed: u64,
    /// The automatic-failover checks' and measurements' state.
    pub auto: AutoState,
    /// The run ends at this virtual time.
    pub end_ms: u64,
    /// Clients issue no operation from this virtual time on.
    pub clients_until_ms: u64,
}

impl World {
    pub(super) fn new(seed: u64, cfg: SimConfig) -> World {
        let mut rng_meta = Rng::stream(seed, 4);
        let mut nodes: Vec<SimNode> = (0..cfg.nodes)
            .map(|i| SimNode {
                name: format!("n{i}"),
                disk: Disk::default(),
                meta: Meta::default(),
                inc: 0,
                live: None,
                isolated_until_ms: 0,
                matched_len: 0,
                control_state: None,
                paused_until_ms: 0,
                slow_until_ms: 0,
                slow_extra_ms: 0,
            })
            .collect();
        // Under automatic failover nobody leads before the control plane elects a leader.
        if let Some(n0) = nodes.first_mut().filter(|_| !cfg.is_auto()) {
            // A history id is never 0 (0 means "none yet").
            n0.meta = Meta {
                epoch: 0,
                history: rng_meta.next_u64() | 1,
                leads: true,
            };
        }
        let clients = (0..cfg.clients)
            .map(|i| Client {
                rng: Rng::stream(seed, 100 + i as u64),
                outstanding: None,
                issued: 0,
                target: 0,
            })
            .collect();
        let mut rng_ctl = Rng::stream(seed, 5);
        let group_seed = rng_ctl.next_u64();
        World {
            cfg,
            now_ms: 0,
            seq: 0,
            queue: BTreeMap::new(),
            rng_net: Rng::stream(seed, 1),
            rng_disk: Rng::stream(seed, 2),
            rng_nemesis: Rng::stream(seed, 3),
            rng_ctl,
            nodes,
            conns: BTreeMap::new(),
            next_conn: 1,
            leader: 0,
            clients,
            history: History::default(),
            spike_until_ms: 0,
            faults_active: true,
            report: SimReport {
                seed,
                mode: cfg.mode.to_string(),
                ..SimReport::default()
            },
            digest: Fnv::new(),
            registry: BTreeMap::new(),
            splits: Vec::new(),
            ctl_links: BTreeMap::new(),
            group_seed,
            auto: AutoState::default(),
            end_ms: cfg.duration_ms + cfg.quiesce_ms,
            clients_until_ms: cfg.duration_ms,
        }
    }

    /// Runs the whole simulation and the final checks.
    pub(super) fn run(mut self) -> SimReport {
        // Node 0 leads, the others follow it: a first start is a restart from an empty disk.
        for node in 0..self.nodes.len() {
            self.restart(node);
        }
        for client in 0..self.clients.len() {
            self.schedule(0, Event::ClientNext { client });
        }
        self.schedule(self.cfg.duration_ms, Event::EndFaults);
        let any_fault = {
            let f = self.cfg.faults;
            let auto = self.cfg.is_auto();
            f.crash || f.partition || f.loss || f.delay || (auto && (f.pause || f.slow))
        };
        if any_fault {
            self.schedule(200, Event::Fault);
        }
        let budget = super::config::EVENTS_MAX;
        while let Some(((at, seq), event)) = self.queue.pop_first() {
            if at > self.end_ms {
                break;
            }
            if self.report.events >= budget {
                self.violate(Property::Progress, format!("gave up after {budget} events"));
                break;
            }
            self.now_ms = at;
            self.report.events += 1;
            self.digest_event(at, seq, &event);
            // A panic (a broken assertion in the replication code or here) ends the run as a
            // `progress` violation, keeping the trace up to it.
            let stepped = catch_unwind(AssertUnwindSafe(|| {
                self.handle(event);
                self.check_nodes();
                if self.cfg.is_auto() {
                    self.check_leases();
                }
            }));
            if let Err(panic) = stepped {
                let what = super::panic_message(panic.as_ref());
                self.violate(Property::Progress, format!("panicked: {what}"));
                self.report.end_ms = self.now_ms;
                self.report.trace_digest = self.digest.value();
                return self.report;
            }
        }
        self.now_ms = self.now_ms.max(self.end_ms);
        self.finish();
        self.report.end_ms = self.now_ms;
        self.report.trace_digest = self.digest.value();
        self.report
    }

    fn digest_event(&mut self, at: u64, seq: u64, event: &Event) {
        // Writing into the hasher cannot fail.
        let _ = writeln!(self.digest, "{at} {seq} {event:?}");
        if self.cfg.trace && self.report.trace.len() < TRACE_LINES_MAX {
            self.report.trace.push(format!("{at:>7} {event:?}"));
        }
    }

    /// Adds a line to the trace (and the digest) outside of an event.
    pub(super) fn note(&mut self, what: impl FnOnce() -> String) {
        if self.cfg.trace && self.report.trace.len() < TRACE_LINES_MAX {
            let line = what();
            self.report
                .trace
                .push(format!("{:>7}   {line}", self.now_ms));
        }
    }

    /// The node whose process handles `event`, if any.
    fn handler_of(&self, event: &Event) -> Option<usize> {
        match event {
            Event::Tick { node, .. }
            | Event::FsyncDone { node, .. }
            | Event::ConnClosed { node, .. }
            | Event::Reconnect { node, .. }
            | Event::Request { node, .. }
            | Event::ControlTick { node, .. } => Some(*node),
            Event::ControlDeliver { to, .. } => Some(*to),
            Event::Deliver {
                conn, to_upstream, ..
            } => self
                .conns
                .get(conn)
                .map(|c| if *to_upstream { c.upstream } else { c.follower }),
            _ => None,
        }
    }

    fn handle(&mut self, event: Event) {
        // A paused process handles nothing: what arrives waits for it, in order.
        if let Some(node) = self.handler_of(&event) {
            let until = self.nodes[node].paused_until_ms;
            if until > self.now_ms && self.nodes[node].live.is_some() {
                self.schedule(until, event);
                return;
            }
        }
        match event {
            Event::Tick { node, inc } => self.on_tick(node, inc),
            Event::FsyncDone {
                node,
                inc,
                generation,
                len,
            } => self.on_fsync_done(node, inc, generation, len),
            Event::Deliver {
                conn,
                to_upstream,
                msg,
            } => self.on_deliver(conn, to_upstream, msg),
            Event::ConnClosed { conn, node, inc } => {
                if self.is_live(node, inc) {
                    self.on_conn_closed_local(conn, node);
                }
            }
            Event::Reconnect { node, inc } => self.on_reconnect(node, inc),
            Event::Request {
                client,
                op,
                node,
                inc,
            } => self.on_request(client, op, node, inc),
            Event::Reply {
                client,
                op,
                outcome,
                token,
            } => self.complete(client, op, outcome, token),
            Event::ClientNext { client } => self.on_client_next(client),
            Event::ClientTimeout { client, op } => self.complete(
                client,
                op,
                Outcome::Indeterminate {
                    error: "timeout".into(),
                },
                None,
            ),
            Event::Fault => self.on_fault(),
            Event::Restart { node } => self.restart(node),
            Event::Heal { node } => self.note(|| format!("n{node}'s partition ends")),
            Event::PromoteCheck => self.on_promote_check(),
            Event::EndFaults => self.on_end_faults(),
            Event::ControlTick { node, inc } => self.on_control_tick(node, inc),
            Event::ControlDeliver {
                from,
                to,
                inc,
                generation,
                msg,
            } => self.on_control_deliver(from, to, inc, generation, msg.0),
            Event::Resume { node } => self.note(|| format!("n{node} runs again")),
        }
    }

    /// Queues `event` at `at_ms` (not before now).
    pub(super) fn schedule(&mut self, at_ms: u64, event: Event) {
        let at = at_ms.max(self.now_ms);
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Records a broken property: a violation when the run asserts it, else a finding.
    pub(super) fn violate(&mut self, property: Property, what: String) {
        let v = Violation {
            at_ms: self.now_ms,
            property,
            what,
        };
        self.note(|| format!("VIOLATION {v}"));
        let list = if self.cfg.asserts(property) {
            &mut self.report.violations
        } else {
            &mut self.report.findings
        };
        if list.len() < VIOLATIONS_MAX {
            list.push(v);
        }
    }

    /// Records a broken property the run only reports, whatever the configuration says.
    pub(super) fn find(&mut self, property: Property, what: String) {
        let v = Violation {
            at_ms: self.now_ms,
            property,
            what,
        };
        if self.report.findings.len() < VIOLATIONS_MAX {
            self.report.findings.push(v);
        }
    }

    pub(super) fn is_live(&self, node: usize, inc: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.inc == inc && n.live.is_some())
    }

    /// A message delay: mostly 0–10 ms, sometimes a long tail, more during a delay spike.
    pub(super) fn delay(&mut self) -> u64 {
        let mut d = self.rng_net.below(11);
        if self.rng_net.below(100) == 0 {
            d += self.rng_net.between(10, 200);
        }
        if self.now_ms < self.spike_until_ms {
            d += self.rng_net.between(20, 300);
        }
        d
    }

    /// When a message from `from` to `to` sent now arrives, before the order of its connection.
    fn arrival(&mut self, from: usize, to: usize) -> u64 {
        let held = [from, to]
            .iter()
            .filter_map(|n| self.nodes.get(*n))
            .map(|n| n.isolated_until_ms)
            .max()
            .unwrap_or(0)
            .max(self.split_until(from, to));
        self.now_ms.max(held) + self.delay() + self.slow_extra(from, to)
    }

    /// Until when a group partition separates `a` from `b` (0: none does).
    pub(super) fn split_until(&self, a: usize, b: usize) -> u64 {
        let bit = |n: usize| 1u64 << n;
        self.splits
            .iter()
            .filter(|(mask, _)| (mask & bit(a) == 0) != (mask & bit(b) == 0))
            .map(|(_, until)| *until)
            .max()
            .unwrap_or(0)
    }

    /// Whether a partition separates `a` from `b` now.
    pub(super) fn cut(&self, a: usize, b: usize) -> bool {
        let now = self.now_ms;
        let isolated = [a, b].iter().any(|n| {
            self.nodes
                .get(*n)
                .is_some_and(|n| n.isolated_until_ms > now)
        });
        isolated || self.split_until(a, b) > now
    }

    /// The extra delay of a message between `a` and `b` while either is slowed down.
    pub(super) fn slow_extra(&self, a: usize, b: usize) -> u64 {
        let now = self.now_ms;
        [a, b]
            .iter()
            .filter_map(|n| self.nodes.get(*n))
            .filter(|n| n.slow_until_ms > now)
            .map(|n| n.slow_extra_ms)
            .max()
            .unwrap_or(0)
    }

    /// Sends `msg` on `conn`, towards the upstream or the follower.
    pub(super) fn send(&mut self, conn: ConnId, to_upstream: bool, msg: PeerMsg) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let (from, to) = if to_upstream {
            (c.follower, c.upstream)
        } else {
            (c.upstream, c.follower)
        };
        let at = self.arrival(from, to);
        let dir = usize::from(to_upstream);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let at = at.max(c.last_at_ms[dir]);
        c.last_at_ms[dir] = at;
        self.schedule(
            at,
            Event::Deliver {
                conn,
                to_upstream,
                msg,
            },
        );
    }

    /// Closes `conn` from `by`'s end: `by` drops it now, the other end learns later.
    pub(super) fn close_conn(&mut self, conn: ConnId, by: usize, why: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        c.open = false;
        let (other, other_inc, to_upstream) = if by == c.follower {
            (c.upstream, c.upstream_inc, true)
        } else {
            (c.follower, c.follower_inc, false)
        };
        let dir = usize::from(to_upstream);
        let last = c.last_at_ms[dir];
        self.note(|| format!("conn {conn} closed by n{by}: {why}"));
        self.on_conn_closed_local(conn, by);
        let at = self.arrival(by, other).max(last);
        self.schedule(
            at,
            Event::ConnClosed {
                conn,
                node: other,
                inc: other_inc,
            },
        );
    }

    /// `node` learnt that `conn` is closed (or closed it).
    pub(super) fn on_conn_closed_local(&mut self, conn: ConnId, node: usize) {
        let now = self.now_ms;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let Some(live) = n.live.as_mut() else {
            return;
        };
        if live.follow.as_ref().is_some_and(|f| f.conn == conn) {
            live.follow = None;
            self.arm_reconnect(node);
            return;
        }
        if let Some(s) = live.serves.remove(&conn) {
            let name = self.nodes[s.follower].name.clone();
            let Some(live) = self.nodes[node].live.as_mut() else {
                return;
            };
            // The end of a link older than the follower's current one changes nothing.
            if !live.machine.follower_down(&name, conn, now) {
                self.report.stale_follower_downs += 1;
            }
        }
    }

    /// Everything that follows a call into `node`'s machine: entries it appended are shipped
    /// to followers (before the local fsync, as the real node does), an fsync is started,
    /// released answers go to their clients, and the follower acknowledges progress.
    pub(super) fn settle(&mut self, node: usize) {
        let now = self.now_ms;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let Some(live) = n.live.as_mut() else {
            return;
        };
        live.machine.note_shipped(now);
        self.register_entries(node);
        self.ship(node);
        self.start_fsync(node);
        self.drain_answers(node);
        self.follower_report(node, false);
    }

    fn start_fsync(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        if live.fsync_running || n.disk.synced_len >= n.disk.entries.len() {
            return;
        }
        live.fsync_running = true;
        let event = Event::FsyncDone {
            node,
            inc: n.inc,
            generation: n.disk.generation,
            len: n.disk.entries.len(),
        };
        let at = self.now_ms + self.rng_disk.between(1, 5);
        self.schedule(at, event);
    }

    fn on_fsync_done(&mut self, node: usize, inc: u64, generation: u64, len: usize) {
        if !self.is_live(node, inc) {
            return;
        }
        let n = &mut self.nodes[node];
        let durable = n.disk.on_fsync_done(generation, len);
        let Some(live) = n.live.as_mut() else {
            return;
        };
        live.fsync_running = false;
        if let Some(lsn) = durable {
            live.machine.log_durable(lsn, self.now_ms);
        }
        self.settle(node);
    }

    fn on_tick(&mut self, node: usize, inc: u64) {
        if !self.is_live(node, inc) {
            return;
        }
        let now = self.now_ms;
        let n = &mut self.nodes[node];
        let Some(live) = n.live.as_mut() else {
            return;
        };
        let changes = live.machine.tick(now, &mut n.disk);
        live.ticks += 1;
        let beat = live.ticks % (HEARTBEAT_MS / TICK_MS) == 0;
        if !changes.is_empty() {
            self.note(|| format!("n{node} in-sync set: {changes:?}"));
        }
        self.settle(node);
        if beat {
            self.heartbeat(node);
        }
        self.schedule(now + TICK_MS, Event::Tick { node, inc });
    }

    /// Turns the answers `node`'s machine released into replies travelling to their clients;
    /// checks the commit rule for every acknowledged write.
    fn drain_answers(&mut self, node: usize) {
        let Some(live) = self.nodes[node].live.as_mut() else {
            return;
        };
        let answers: Vec<(u64, Answer)> = live.machine.answers().collect();
        for (op, answer) in answers {
            let (outcome, token, wrote) = classify(&answer);
            if let (Outcome::Ok { .. }, Some(pos)) = (&outcome, wrote) {
                self.check_commit(node, pos, op);
                self.on_write_acked(node, pos, op);
            }
            if matches!(outcome, Outcome::Ok { .. }) && self.cfg.is_auto() {
                self.check_answer_lease(node, op);
            }
            let Some(client) = usize::try_from(op)
                .ok()
                .and_then(|i| self.history.ops.get(i))
                .and_then(|o| usize::try_from(o.client).ok())
            else {
                continue;
            };
            let at = self.now_ms + self.delay();
            self.schedule(
                at,
                Event::Reply {
                    client,
                    op,
                    outcome,
                    token,
                },
            );
        }
    }
}

/// What a client makes of an answer: its outcome, its token, and the position it wrote.
fn classify(answer: &Answer) -> (Outcome, Option<String>, Option<replikv_core::LogPosition>) {
    let Answer::Batch(b) = answer else {
        return (
            Outcome::Indeterminate {
                error: "unexpected WAIT answer".into(),
            },
            None,
            None,
        );
    };
    let outcome = match b.replies.first() {
        // An error after the write was applied (held past its timeout, or the leader stepped
        // down) leaves it in the log: it may survive.
        Some(Reply::Error(e)) if b.wrote.is_some() || e.starts_with("NOREPLICAS the write") => {
            Outcome::Indeterminate { error: e.clone() }
        }
        Some(Reply::Error(e)) => Outcome::Fail { error: e.clone() },
        Some(Reply::Ok | Reply::Nil) => Outcome::Ok { value: None },
        Some(Reply::Bulk(v)) => Outcome::Ok {
            value: Some(String::from_utf8_lossy(v).into_owned()),
        },
        other => Outcome::Indeterminate {
            error: format!("unexpected reply {other:?}"),
        },
    };
    let token = match &outcome {
        Outcome::Ok { .. } => Some(b.wrote.unwrap_or(b.pos).to_string()),
        _ => None,
    };
    (outcome, token, b.wrote)
}
