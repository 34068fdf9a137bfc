//! Failure detection, leases and elections: what every node does on the control plane besides
//! Raft itself, as a deterministic state machine.
//!
//! Every node runs a [`Controller`]. The one whose consensus member leads the group (the
//! *controller*) grants the data leader its lease and runs elections; the data leader renews
//! its lease; every node answers the controller's position queries. The caller (the server's
//! control task, or the simulator) feeds it ticks, the messages that arrive and the group's
//! news, and carries out the [`Action`]s it returns.
//!
//! **Lease.** The data leader asks the controller for a lease every `renew_ms`. The controller
//! confirms through a `Safe` read-index round, begun after the request arrived, that it still
//! leads a quorum, and only then grants it. The leader holds the lease until `sent + lease_ms`
//! on its own monotonic clock, where `sent` is when it sent the request that was granted; with
//! no valid lease it neither writes nor answers ([`crate::replication::Machine::grant_lease`]).
//!
//! **Detection.** The controller declares the data leader lost once `lease_ms + margin_ms` has
//! passed since the later of its last grant and its own start as controller (a new controller
//! does not know what its predecessor granted), and since the leader's election. By then the
//! old leader has stopped acknowledging anything, even if it is alive behind a partition: the
//! margin covers clock-rate differences and scheduling delays.
//!
//! **Election.** The controller then queries every other member for its last durable position
//! (a query sent after the old lease ran out is answered with everything the old leader ever
//! had acknowledged there), waits until all have answered or `report_wait_ms` has passed, and
//! applies [`choose_leader`]. It proposes `Elect` in an epoch past both the map's and every
//! reported one; once that is applied the new leader asks for its lease like any leader.

use super::election::{choose_leader, choose_leader_sized, Report};
use super::map::{ClusterMap, MapCommand};
use crate::position::{Epoch, LogPosition};
use crate::replication::AckMode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Timings and rules of the control plane.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// How long a granted lease lasts, from when the leader asked for it.
    pub lease_ms: u64,
    /// Added to the lease before the controller acts on an expiry: clock-rate differences and
    /// scheduling delay.
    pub margin_ms: u64,
    /// How often the data leader asks for its lease.
    pub renew_ms: u64,
    /// How long an election waits for the members' positions before deciding with those it has.
    pub report_wait_ms: u64,
    /// How long a proposed election may take to be applied before it is tried again.
    pub propose_wait_ms: u64,
    /// The cluster's acknowledgement mode, whose promise the election keeps.
    pub mode: AckMode,
    /// The cluster size the leaders' commit rule counts `quorum` against (`--cluster-size`);
    /// 0: the founders' number.
    pub cluster_size: u32,
    /// The founding members, by node id and client address: the controller adds them to an
    /// empty map.
    pub founders: Vec<(String, String)>,
}

/// A message between nodes on the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMsg {
    /// A Raft message for the consensus group.
    Raft(Vec<u8>),
    /// The data leader of `epoch` asks for its lease (request number `seq`).
    LeaseRequest {
        /// The leader's epoch.
        epoch: Epoch,
        /// The request's number, for matching the grant.
        seq: u64,
    },
    /// The controller grants the lease asked for by request `seq`.
    LeaseGrant {
        /// The leader's epoch.
        epoch: Epoch,
        /// The request granted.
        seq: u64,
    },
    /// The controller asks for the receiver's last durable position (election `round`).
    Query {
        /// The election round.
        round: u64,
    },
    /// The data leader of `epoch` asks for its in-sync set to become `replicas`.
    SetInSync {
        /// The leader's epoch.
        epoch: Epoch,
        /// The replicas it counts in sync.
        replicas: BTreeSet<String>,
    },
    /// The data leader of `epoch` hands leadership over to `to` (a switchover: it paused
    /// writes, gave up its lease, and `to` holds every entry durably).
    Handover {
        /// The leader's epoch.
        epoch: Epoch,
        /// The node to lead.
        to: String,
    },
    /// An operator's membership change, for the controller.
    Member(MemberOp),
    /// The answer to a `Query`.
    Report {
        /// The election round.
        round: u64,
        /// The last durable log position.
        durable: LogPosition,
        /// The highest epoch the node has seen.
        epoch: Epoch,
    },
}

/// A membership change an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOp {
    /// A node joins: it replicates and learns the map, without voting.
    Add {
        /// Its node id.
        id: String,
        /// Its client address.
        addr: String,
    },
    /// A member starts voting in the control plane.
    Voter {
        /// Its node id.
        id: String,
    },
    /// A member leaves (not the leader: hand leadership over first). The leader of `epoch`
    /// asks for it once the other replicas hold every write acknowledged with the member's
    /// help; from another epoch (a leader elected meanwhile counted the member again) it is
    /// refused.
    Remove {
        /// Its node id.
        id: String,
        /// The epoch of the leader that made sure of the others.
        epoch: Epoch,
    },
    /// A replica replicates from another replica (a tree), or from the leader (`None`).
    Upstream {
        /// The replica.
        id: String,
        /// Its upstream's node id; `None`: the leader.
        upstream: Option<String>,
    },
}

/// The consensus group's id of node `id`: a founder's is its place in `founders` plus one; a
/// node that joined later has one derived from its node id (FNV-1a, high bit set, so it never
/// meets a founder's), which it and every member compute alike.
#[must_use]
pub fn raft_id_of(founders: &[String], id: &str) -> u64 {
    if let Some(i) = founders.iter().position(|f| f == id) {
        return i as u64 + 1;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h | (1 << 63)
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `msg` to node `to` (possibly this node itself).
    Send {
        /// The node id.
        to: String,
        /// The message.
        msg: ControlMsg,
    },
    /// Propose `cmd` to the group (this node is the controller).
    Propose(MapCommand),
    /// Change member `raft_id`'s place in the consensus group (this node is the controller).
    Membership {
        /// The member's group id ([`raft_id_of`]).
        raft_id: u64,
        /// What it becomes.
        change: super::group::Membership,
    },
    /// Start a `Safe` read-index round with this context; report its completion with
    /// [`Controller::on_read_confirmed`].
    ReadIndex(Vec<u8>),
    /// This node, the data leader, holds its lease until `until_ms` (monotonic).
    Lease {
        /// The epoch it leads in.
        epoch: Epoch,
        /// The end of the lease.
        until_ms: u64,
    },
    /// Something worth logging and counting.
    Event {
        /// A short kind (`election`, `leader-lost`, `election-failed`...).
        kind: &'static str,
        /// What happened.
        detail: String,
    },
}

/// What this node can say of its own log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Local {
    /// Its last durable log position.
    pub durable: LogPosition,
    /// The highest epoch it has seen.
    pub epoch: Epoch,
    /// On a leader: the replicas it counts in sync (it asks the controller to make the map's
    /// set this).
    pub in_sync: BTreeSet<String>,
    /// Whether this node acts as the leader (a node the map names may not: restarted in the
    /// epoch it led, it does not write in it again, and must not keep a lease alive for it).
    pub leads: bool,
}

/// An election in progress.
#[derive(Debug)]
struct Election {
    round: u64,
    started_ms: u64,
    /// The member being replaced (`None`: the map has no leader yet).
    replacing: Option<String>,
    reports: BTreeMap<String, (LogPosition, Epoch)>,
}

/// A node's part in the control plane besides Raft: see the module docs.
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    id: String,
    /// When this node became the controller; `None`: it is not.
    active_since: Option<u64>,
    /// When the controller last granted the map's leader a lease.
    last_grant_ms: Option<u64>,
    /// When the map's current leader was elected, as this controller saw it applied.
    leader_since_ms: Option<u64>,
    /// The map's leader and epoch the two times above are about.
    tracked: Option<(String, Epoch)>,
    /// Whether `tracked` was set since this node became the controller (it may be `None`: the
    /// map named no leader then).
    tracking: bool,
    /// Read-index rounds in flight: context → (leader, epoch, seq).
    confirming: BTreeMap<u64, (String, Epoch, u64)>,
    next_ctx: u64,
    election: Option<Election>,
    next_round: u64,
    /// An `Elect` proposed and not yet applied: its epoch and when it was proposed.
    proposed: Option<(Epoch, u64)>,
    /// Whether the founding members were proposed.
    founded: Option<u64>,
    // The data leader's side.
    /// Lease requests sent and not yet granted: seq → when sent.
    asked: BTreeMap<u64, u64>,
    next_seq: u64,
    last_ask_ms: Option<u64>,
    /// When the leader last asked for its in-sync set.
    last_isr_ask_ms: Option<u64>,
    /// The controller's node id, as the consensus member knows it.
    controller_hint: Option<String>,
    /// When the last election failed to choose anyone (the next waits `report_wait_ms`).
    failed_ms: Option<u64>,
}

/// Lease requests remembered at most (older ones are forgotten; their grants are ignored).
const ASKED_MAX: usize = 64;

impl Controller {
    /// This node's part, for node `id`.
    #[must_use]
    pub fn new(id: &str, config: ControllerConfig) -> Controller {
        Controller {
            config,
            id: id.to_string(),
            active_since: None,
            last_grant_ms: None,
            leader_since_ms: None,
            tracked: None,
            tracking: false,
            confirming: BTreeMap::new(),
            next_ctx: 1,
            election: None,
            next_round: 1,
            proposed: None,
            founded: None,
            asked: BTreeMap::new(),
            next_seq: 1,
            last_ask_ms: None,
            last_isr_ask_ms: None,
            controller_hint: None,
            failed_ms: None,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Whether an election is under way here.
    #[must_use]
    pub fn electing(&self) -> bool {
        self.election.is_some() || self.proposed.is_some()
    }

    /// The controller is node `id` (as this node's consensus member last heard).
    pub fn set_controller(&mut self, id: Option<String>) {
        self.controller_hint = id;
    }

    /// This node's consensus member became the controller at `now_ms`.
    pub fn became_controller(&mut self, now_ms: u64) {
        self.active_since = Some(now_ms);
        self.last_grant_ms = None;
        self.leader_since_ms = None;
        self.tracked = None;
        self.tracking = false;
        self.confirming.clear();
        self.election = None;
        self.proposed = None;
        self.founded = None;
    }

    /// This node's consensus member is no longer the controller.
    pub fn lost_controller(&mut self) {
        self.active_since = None;
        self.confirming.clear();
        self.election = None;
        self.proposed = None;
        self.founded = None;
    }

    /// A message from node `from`. `local` is this node's own position, for queries.
    pub fn on_message(
        &mut self,
        from: &str,
        msg: ControlMsg,
        map: &ClusterMap,
        local: Local,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        match msg {
            ControlMsg::Raft(_) => {}
            ControlMsg::LeaseRequest { epoch, seq } => {
                let current = map.leader.as_deref() == Some(from) && map.epoch == epoch;
                if self.active_since.is_some() && current && !self.electing() {
                    let ctx = self.next_ctx;
                    self.next_ctx += 1;
                    self.confirming.insert(ctx, (from.to_string(), epoch, seq));
                    out.push(Action::ReadIndex(ctx.to_be_bytes().to_vec()));
                }
            }
            ControlMsg::LeaseGrant { epoch, seq } => {
                let leads = map.leader.as_deref() == Some(self.id.as_str());
                if leads && map.epoch == epoch {
                    if let Some(sent) = self.asked.remove(&seq) {
                        out.push(Action::Lease {
                            epoch,
                            until_ms: sent + self.config.lease_ms,
                        });
                    }
                    // Older requests can no longer extend anything.
                    self.asked.retain(|s, _| *s > seq);
                }
                let _ = now_ms;
            }
            ControlMsg::Query { round } => out.push(Action::Send {
                to: from.to_string(),
                msg: ControlMsg::Report {
                    round,
                    durable: local.durable,
                    epoch: local.epoch,
                },
            }),
            ControlMsg::Handover { epoch, to } => {
                let current = map.leader.as_deref() == Some(from) && map.epoch == epoch;
                if self.active_since.is_some() {
                    if current && !self.electing() && map.members.contains_key(&to) {
                        let next = Epoch(map.epoch.0 + 1);
                        out.push(Action::Event {
                            kind: "switchover",
                            detail: format!("{from} hands leadership over to {to} in epoch {next}"),
                        });
                        out.push(Action::Propose(MapCommand::Elect {
                            id: to,
                            epoch: next,
                        }));
                        self.proposed = Some((next, now_ms));
                    }
                } else if from == self.id {
                    // This node's own request: for the controller.
                    if let Some(controller) = self.controller_hint.clone() {
                        out.push(Action::Send {
                            to: controller,
                            msg: ControlMsg::Handover { epoch, to },
                        });
                    }
                }
            }
            ControlMsg::Member(op) => {
                if self.active_since.is_some() {
                    self.member_change(op, map, &mut out);
                } else if from == self.id {
                    if let Some(controller) = self.controller_hint.clone() {
                        out.push(Action::Send {
                            to: controller,
                            msg: ControlMsg::Member(op),
                        });
                    }
                }
            }
            ControlMsg::SetInSync { epoch, replicas } => {
                let current = map.leader.as_deref() == Some(from) && map.epoch == epoch;
                if self.active_since.is_some() && current && !self.electing() {
                    out.push(Action::Propose(MapCommand::SetInSync { epoch, replicas }));
                }
            }
            ControlMsg::Report {
                round,
                durable,
                epoch,
            } => {
                if let Some(e) = &mut self.election {
                    if e.round == round {
                        e.reports
                            .entry(from.to_string())
                            .or_insert((durable, epoch));
                    }
                }
            }
        }
        out
    }

    /// A read-index round this node started (context `ctx`) completed: the controller led a
    /// quorum after the request arrived, so the lease it is for may be granted.
    pub fn on_read_confirmed(&mut self, ctx: &[u8], map: &ClusterMap, now_ms: u64) -> Vec<Action> {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return Vec::new();
        };
        let Some((leader, epoch, seq)) = self.confirming.remove(&u64::from_be_bytes(bytes)) else {
            return Vec::new();
        };
        let current = map.leader.as_deref() == Some(leader.as_str()) && map.epoch == epoch;
        if self.active_since.is_none() || !current || self.electing() {
            return Vec::new();
        }
        self.track(map, now_ms);
        self.last_grant_ms = Some(now_ms);
        vec![Action::Send {
            to: leader,
            msg: ControlMsg::LeaseGrant { epoch, seq },
        }]
    }

    /// The periodic tick, with the map as this node has applied it.
    pub fn on_tick(&mut self, map: &ClusterMap, local: Local, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.renew(map, local, now_ms, &mut out);
        if self.active_since.is_some() {
            self.control(map, now_ms, &mut out);
        }
        out
    }

    /// The data leader's side: ask for the lease every `renew_ms`.
    fn renew(&mut self, map: &ClusterMap, local: Local, now_ms: u64, out: &mut Vec<Action>) {
        if map.leader.as_deref() != Some(self.id.as_str())
            || local.epoch != map.epoch
            || !local.leads
        {
            self.asked.clear();
            self.last_ask_ms = None;
            return;
        }
        // A leader just elected asks at once; then every `renew_ms`.
        if self
            .last_ask_ms
            .is_some_and(|t| now_ms < t + self.config.renew_ms)
        {
            return;
        }
        let Some(controller) = self.controller_hint.clone() else {
            return;
        };
        // The in-sync set as this leader counts it, for the map (members only: the map knows
        // no other node).
        let wanted: BTreeSet<String> = local
            .in_sync
            .iter()
            .filter(|id| map.members.contains_key(*id) && **id != self.id)
            .cloned()
            .collect();
        let isr_due = self
            .last_isr_ask_ms
            .is_none_or(|t| now_ms >= t + self.config.renew_ms);
        if wanted != map.in_sync && isr_due {
            self.last_isr_ask_ms = Some(now_ms);
            out.push(Action::Send {
                to: controller.clone(),
                msg: ControlMsg::SetInSync {
                    epoch: map.epoch,
                    replicas: wanted,
                },
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.asked.insert(seq, now_ms);
        while self.asked.len() > ASKED_MAX {
            self.asked.pop_first();
        }
        self.last_ask_ms = Some(now_ms);
        out.push(Action::Send {
            to: controller,
            msg: ControlMsg::LeaseRequest {
                epoch: map.epoch,
                seq,
            },
        });
    }

    /// The proposals an operator's membership change takes (controller side). The map change
    /// and the group change are separate entries; each is refused the same way everywhere if
    /// it breaks a rule, and the operator sees the outcome in the map.
    fn member_change(&mut self, op: MemberOp, map: &ClusterMap, out: &mut Vec<Action>) {
        let founders: Vec<String> = self
            .config
            .founders
            .iter()
            .map(|(i, _)| i.clone())
            .collect();
        let group = super::group::Membership::Learner;
        match op {
            MemberOp::Add { id, addr } => {
                out.push(Action::Event {
                    kind: "member_added",
                    detail: format!("{id} at {addr} joins (learning the map, not voting)"),
                });
                out.push(Action::Propose(MapCommand::AddMember {
                    id: id.clone(),
                    addr,
                    voter: false,
                }));
                out.push(Action::Membership {
                    raft_id: raft_id_of(&founders, &id),
                    change: group,
                });
            }
            MemberOp::Voter { id } => {
                if !map.members.contains_key(&id) {
                    return;
                }
                out.push(Action::Event {
                    kind: "member_voter",
                    detail: format!("{id} votes in the control plane"),
                });
                out.push(Action::Propose(MapCommand::SetVoter {
                    id: id.clone(),
                    voter: true,
                }));
                out.push(Action::Membership {
                    raft_id: raft_id_of(&founders, &id),
                    change: super::group::Membership::Voter,
                });
            }
            MemberOp::Upstream { id, upstream } => {
                out.push(Action::Event {
                    kind: "member_upstream",
                    detail: format!(
                        "{id} replicates from {}",
                        upstream.as_deref().unwrap_or("the leader")
                    ),
                });
                out.push(Action::Propose(MapCommand::SetUpstream { id, upstream }));
            }
            MemberOp::Remove { id, epoch } => {
                if map.leader.as_ref() == Some(&id)
                    || !map.members.contains_key(&id)
                    || map.epoch != epoch
                {
                    return;
                }
                out.push(Action::Event {
                    kind: "member_removed",
                    detail: format!("{id} leaves the cluster"),
                });
                out.push(Action::Propose(MapCommand::RemoveMember { id: id.clone() }));
                out.push(Action::Membership {
                    raft_id: raft_id_of(&founders, &id),
                    change: super::group::Membership::Remove,
                });
            }
        }
    }

    /// Follows the map's leader: a new one (or a new epoch) starts its own clock.
    fn track(&mut self, map: &ClusterMap, now_ms: u64) {
        let current = map.leader.clone().map(|l| (l, map.epoch));
        if !self.tracking || self.tracked != current {
            // The leader this controller found when it took over counts from then; one
            // elected since (the first of the cluster included), from when this controller
            // saw it applied.
            self.leader_since_ms = if self.tracking {
                Some(now_ms)
            } else {
                self.active_since
            };
            self.tracking = true;
            self.tracked = current;
            self.last_grant_ms = None;
        }
    }

    /// The controller's side: found the map, detect a lost leader, run the election.
    fn control(&mut self, map: &ClusterMap, now_ms: u64, out: &mut Vec<Action>) {
        let missing: Vec<&(String, String)> = self
            .config
            .founders
            .iter()
            .filter(|(id, _)| !map.members.contains_key(id))
            .collect();
        if !missing.is_empty() && map.version == 0 {
            if self
                .founded
                .is_none_or(|t| now_ms >= t + self.config.propose_wait_ms)
            {
                self.founded = Some(now_ms);
                for (id, addr) in missing {
                    out.push(Action::Propose(MapCommand::AddMember {
                        id: id.clone(),
                        addr: addr.clone(),
                        voter: true,
                    }));
                }
            }
            return;
        }
        if map.members.is_empty() {
            return;
        }
        if let Some((epoch, at)) = self.proposed {
            if map.epoch >= epoch || now_ms >= at + self.config.propose_wait_ms {
                self.proposed = None;
            } else {
                return;
            }
        }
        self.track(map, now_ms);
        if self.election.is_some() {
            self.decide(map, now_ms, out);
            return;
        }
        if self
            .failed_ms
            .is_some_and(|t| now_ms < t + self.config.report_wait_ms)
        {
            return;
        }
        let lost = match &map.leader {
            None => true,
            Some(_) => {
                let basis = [self.active_since, self.last_grant_ms, self.leader_since_ms]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(now_ms);
                now_ms >= basis + self.config.lease_ms + self.config.margin_ms
            }
        };
        if !lost {
            return;
        }
        let round = self.next_round;
        self.next_round += 1;
        out.push(Action::Event {
            kind: if map.leader.is_some() {
                "leader-lost"
            } else {
                "no-leader"
            },
            detail: match &map.leader {
                Some(l) => format!(
                    "leader {l} (epoch {}) renewed no lease for {} ms; election round {round}",
                    map.epoch,
                    now_ms.saturating_sub(
                        self.last_grant_ms
                            .or(self.leader_since_ms)
                            .unwrap_or(now_ms)
                    )
                ),
                None => format!("the map names no leader; election round {round}"),
            },
        });
        // The leader being replaced is asked too: if it answers (it restarted, or came back
        // after its lease ran out), it may be the only one known to hold every acknowledged
        // write. The election does not wait for it.
        for id in map.members.keys() {
            out.push(Action::Send {
                to: id.clone(),
                msg: ControlMsg::Query { round },
            });
        }
        self.election = Some(Election {
            round,
            started_ms: now_ms,
            replacing: map.leader.clone(),
            reports: BTreeMap::new(),
        });
    }

    /// Decides the election once every member answered or the wait is over.
    fn decide(&mut self, map: &ClusterMap, now_ms: u64, out: &mut Vec<Action>) {
        let Some(e) = &self.election else {
            return;
        };
        let expected = map
            .members
            .keys()
            .filter(|id| e.replacing.as_ref() != Some(*id))
            .count();
        let replicas_reported = e
            .reports
            .keys()
            .filter(|id| e.replacing.as_ref() != Some(*id))
            .count();
        let waited = now_ms >= e.started_ms + self.config.report_wait_ms;
        if replicas_reported < expected && !waited {
            return;
        }
        let Some(e) = self.election.take() else {
            return;
        };
        let reports: Vec<Report> = e
            .reports
            .iter()
            .map(|(id, (durable, _))| Report {
                id: id.clone(),
                durable: *durable,
            })
            .collect();
        let seen = e
            .reports
            .values()
            .map(|(d, epoch)| d.epoch.max(*epoch))
            .max()
            .unwrap_or_default();
        let chosen = if map.leader.is_none() && map.epoch == Epoch(0) {
            // The first election: nothing was acknowledged yet in any epoch of the map; the
            // most up-to-date of a majority's logs leads.
            if e.reports.len() * 2 > map.members.len() {
                choose_leader(map, AckMode::Async, &reports)
            } else {
                Err(super::election::ElectionError::TooFewReports {
                    mode: self.config.mode,
                    have: e.reports.len(),
                    need: map.members.len() / 2 + 1,
                    replicas: map.members.len(),
                })
            }
        } else {
            let cluster = match self.config.cluster_size {
                0 => u32::try_from(self.config.founders.len()).unwrap_or(u32::MAX),
                n => n,
            };
            choose_leader_sized(map, self.config.mode, cluster, &reports)
        };
        // Of equally up-to-date candidates, another node rather than the controller: a leader
        // that is also the controller takes both roles down when it fails, and the group's
        // own election then comes before the data leader's.
        let chosen = chosen.map(|mut choice| {
            if choice.id == self.id {
                let eligible =
                    |id: &str| self.config.mode != AckMode::Sync || map.in_sync.contains(id);
                if let Some(other) = reports
                    .iter()
                    .find(|r| r.id != self.id && r.durable == choice.durable && eligible(&r.id))
                {
                    choice.id.clone_from(&other.id);
                }
            }
            choice
        });
        match chosen {
            Ok(choice) => {
                let epoch = Epoch(map.epoch.0.max(seen.0) + 1);
                out.push(Action::Event {
                    kind: if choice.clean {
                        "election"
                    } else {
                        "unclean-election"
                    },
                    detail: format!(
                        "round {}: {} leads in epoch {epoch} (durable {}; {} of {} replicas reported){}",
                        e.round,
                        choice.id,
                        choice.durable,
                        e.reports.len(),
                        expected,
                        if choice.clean {
                            ""
                        } else {
                            "; UNCLEAN: writes the old leader acknowledged may be lost"
                        }
                    ),
                });
                out.push(Action::Propose(MapCommand::Elect {
                    id: choice.id,
                    epoch,
                }));
                self.proposed = Some((epoch, now_ms));
                self.failed_ms = None;
            }
            Err(why) => {
                out.push(Action::Event {
                    kind: "election-failed",
                    detail: format!("round {}: {why}", e.round),
                });
                self.failed_ms = Some(now_ms);
            }
        }
    }
}
