//! What a simulated run is made of ([`SimConfig`]) and what it reports ([`SimReport`]).

use replikv_core::replication::{plan_fetch, CommitRule, FetchPlan, Replicas};
use replikv_core::{AckMode, Epoch, LogPosition};
use std::collections::BTreeMap;
use std::fmt;

/// Most nodes a simulated cluster may have.
pub const NODES_MAX: usize = 7;
/// Most clients.
pub const CLIENTS_MAX: usize = 64;
/// Most keys.
pub const KEYS_MAX: usize = 64;
/// Longest workload phase, in virtual ms.
pub const DURATION_MS_MAX: u64 = 3_600_000;
/// Most events one run processes; past it the run stops with a violation (a livelock).
pub const EVENTS_MAX: u64 = 50_000_000;
/// Most trace lines kept for `-v`.
pub const TRACE_LINES_MAX: usize = 2_000_000;

/// A property the simulator checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Property {
    /// A write acknowledged in mode M is durable on the leader and on the replicas M needs.
    CommitRule,
    /// Two logs hold the same command wherever both hold an entry of the same epoch and LSN.
    LogMatching,
    /// After healing and quiescence, every replica's store and position equal the leader's.
    Convergence,
    /// No acknowledged write is missing from the final state (modes other than `async`).
    LostWrites,
    /// Per-key linearizability of the history (modes other than `async`).
    Linearizability,
    /// The run ended within its event budget, and the simulator's own bookkeeping held.
    Progress,
    /// No two nodes acknowledge writes in the same epoch (automatic failover).
    OneLeaderPerEpoch,
    /// At no instant do two nodes lead with a valid lease (automatic failover).
    LeaseSafety,
    /// An elected node holds every write acknowledged before its election (automatic
    /// failover, modes other than `async`).
    ElectionKeepsWrites,
    /// After the faults end, a leader takes writes within the bound (automatic failover):
    /// late is a finding, never is a violation.
    Liveness,
}

impl Property {
    /// Every property.
    pub const ALL: [Property; 10] = [
        Property::CommitRule,
        Property::LogMatching,
        Property::Convergence,
        Property::LostWrites,
        Property::Linearizability,
        Property::Progress,
        Property::OneLeaderPerEpoch,
        Property::LeaseSafety,
        Property::ElectionKeepsWrites,
        Property::Liveness,
    ];

    /// The property's name on the command line and in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Property::CommitRule => "commit-rule",
            Property::LogMatching => "log-matching",
            Property::Convergence => "convergence",
            Property::LostWrites => "lost-writes",
            Property::Linearizability => "linearizability",
            Property::Progress => "progress",
            Property::OneLeaderPerEpoch => "one-leader-per-epoch",
            Property::LeaseSafety => "lease-safety",
            Property::ElectionKeepsWrites => "election-keeps-writes",
            Property::Liveness => "liveness",
        }
    }

    /// The property named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Property> {
        Property::ALL.into_iter().find(|p| p.name() == name.trim())
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an upstream answers a `Fetch`: [`plan_fetch`]'s signature, so tests can plant broken
/// rules.
pub type FetchRule = fn(LogPosition, u64, u64, LogPosition, Option<Epoch>) -> FetchPlan;

/// A set of [`Property`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Properties(u16);

impl Properties {
    /// No property.
    pub const NONE: Properties = Properties(0);

    /// The set holding `list`.
    #[must_use]
    pub fn of(list: &[Property]) -> Properties {
        let mut set = Properties::NONE;
        for p in list {
            set.insert(*p);
        }
        set
    }

    fn bit(p: Property) -> u16 {
        1 << (p as u8)
    }

    /// Adds `p`.
    pub fn insert(&mut self, p: Property) {
        self.0 |= Properties::bit(p);
    }

    /// Whether `p` is in the set.
    #[must_use]
    pub fn contains(self, p: Property) -> bool {
        self.0 & Properties::bit(p) != 0
    }
}

// One bit per property.
const _: () = assert!(Property::ALL.len() <= 16);

/// The faults a run may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Crash a node (losing what its disk had not synced), restart it later.
    pub crash: bool,
    /// Cut one node off from its peers for a while.
    pub partition: bool,
    /// Close a replication connection (what a lost or corrupt frame does to a real link).
    pub loss: bool,
    /// Add delay to every message for a while.
    pub delay: bool,
    /// Operator failover: promote the most up-to-date replica while the leader is down
    /// (operator failover only).
    pub promote: bool,
    /// Pause a node's process for a while: it handles nothing, then everything that queued
    /// up (automatic failover only).
    pub pause: bool,
    /// Slow one node's messages down for a while: a lagging replica, or leader (automatic
    /// failover only).
    pub slow: bool,
}

impl Faults {
    /// Every fault on.
    pub const ALL: Faults = Faults {
        crash: true,
        partition: true,
        loss: true,
        delay: true,
        promote: true,
        pause: true,
        slow: true,
    };
    /// No fault.
    pub const NONE: Faults = Faults {
        crash: false,
        partition: false,
        loss: false,
        delay: false,
        promote: false,
        pause: false,
        slow: false,
    };
}

/// Who fails over when the leader is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failover {
    /// The operator promotes the most up-to-date replica while the leader is down
    /// ([`Faults::promote`]); node 0 leads at the start.
    Operator,
    /// Every node runs the control plane (`Group` and `Controller`) as the server does; the
    /// cluster map decides who leads.
    Auto,
}

impl Failover {
    /// The name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Failover::Operator => "operator",
            Failover::Auto => "auto",
        }
    }

    /// The failover named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Failover> {
        match name.trim() {
            "operator" => Some(Failover::Operator),
            "auto" => Some(Failover::Auto),
            _ => None,
        }
    }
}

/// A bug planted in how a node carries out its controller's actions (automatic failover), to
/// show that the checks catch it. Core is not changed: the simulator bends the actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlBug {
    /// None: the actions are carried out as the server does.
    None,
    /// The controller grants a lease as soon as it asks for a read-index round, without
    /// waiting for a quorum to confirm it still leads (a cut-off controller keeps granting).
    GrantWithoutReadIndex,
    /// The data leader holds every lease it is granted three times as long as the controller
    /// assumes (a leader whose clock runs slow, or detection without lease and margin).
    LeaseTooLong,
    /// The controller elects by the `async` rule whatever the mode: the most up-to-date of
    /// whoever reported, without waiting for enough reports or looking at the in-sync set.
    ElectionIgnoresMode,
}

impl ControlBug {
    /// The name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ControlBug::None => "none",
            ControlBug::GrantWithoutReadIndex => "grant-without-read-index",
            ControlBug::LeaseTooLong => "lease-too-long",
            ControlBug::ElectionIgnoresMode => "election-ignores-mode",
        }
    }

    /// The bug named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<ControlBug> {
        [
            ControlBug::None,
            ControlBug::GrantWithoutReadIndex,
            ControlBug::LeaseTooLong,
            ControlBug::ElectionIgnoresMode,
        ]
        .into_iter()
        .find(|b| b.name() == name.trim())
    }
}

/// The control plane's timings (automatic failover), as the server's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlTimings {
    /// The control task's tick, ms.
    pub tick_ms: u64,
    /// Raft heartbeat, in ticks.
    pub heartbeat_ticks: usize,
    /// Raft election timeout, in ticks (randomized up to twice that).
    pub election_ticks: usize,
    /// The data leader's lease, ms.
    pub lease_ms: u64,
    /// The controller's margin past the lease, ms.
    pub margin_ms: u64,
    /// How long a proposed election may take before it is proposed again, ms.
    pub propose_wait_ms: u64,
}

impl ControlTimings {
    /// The server's defaults: tick 50 ms, heartbeat 2 ticks, election 10 ticks, lease 400 ms,
    /// margin 100 ms.
    pub const SERVER: ControlTimings = ControlTimings {
        tick_ms: 50,
        heartbeat_ticks: 2,
        election_ticks: 10,
        lease_ms: 400,
        margin_ms: 100,
        propose_wait_ms: 2_000,
    };
}

/// A simulated run's settings. Everything random in the run is drawn from the seed given to
/// [`run`](super::run); these only set sizes, modes and switches.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Nodes, 1 to [`NODES_MAX`]; node 0 leads at the start.
    pub nodes: usize,
    /// The acknowledgement mode every write uses.
    pub mode: AckMode,
    /// How long clients issue operations and faults are injected, in virtual ms.
    pub duration_ms: u64,
    /// How long after healing the run waits before its final checks, in virtual ms.
    pub quiesce_ms: u64,
    /// Concurrent clients, 1 to [`CLIENTS_MAX`].
    pub clients: usize,
    /// Keys, 1 to [`KEYS_MAX`].
    pub keys: usize,
    /// The faults injected.
    pub faults: Faults,
    /// The commit rule the nodes' machines use; tests plant broken ones.
    pub commit_rule: CommitRule,
    /// How upstreams answer a `Fetch`; tests plant broken rules.
    pub fetch_rule: FetchRule,
    /// Properties reported as findings rather than violations: they do not fail the run.
    pub report_only: Properties,
    /// Keep a readable trace of every event (for `-v`).
    pub trace: bool,
    /// How long a write waits for replicas (the machine's `write_ack_timeout_ms`).
    pub write_ack_timeout_ms: u64,
    /// Lag past which a follower leaves the in-sync set.
    pub replica_lag_max_ms: u64,
    /// Silence after which either end of a replication link closes it.
    pub silence_timeout_ms: u64,
    /// How long a client waits for a reply before calling the operation indeterminate.
    pub client_timeout_ms: u64,
    /// Who fails over.
    pub failover: Failover,
    /// The control plane's timings (automatic failover).
    pub control: ControlTimings,
    /// A planted control-plane bug (automatic failover).
    pub control_bug: ControlBug,
    /// After the faults end, how soon a leader must take a write (automatic failover): later
    /// is a [`Property::Liveness`] finding; none within twice this is a violation. Clients go
    /// on past the workload phase until the first write after healing (plus a second) or
    /// twice this, whichever is first; `quiesce_ms` counts from then.
    pub liveness_ms: u64,
}

impl SimConfig {
    /// Three nodes, `mode`, 20 s of workload, every fault, the real commit rule, every
    /// property asserted.
    #[must_use]
    pub fn new(mode: AckMode) -> SimConfig {
        SimConfig {
            nodes: 3,
            mode,
            duration_ms: 20_000,
            quiesce_ms: 6_000,
            clients: 4,
            keys: 5,
            faults: Faults::ALL,
            commit_rule: Replicas::commit_lsn,
            fetch_rule: plan_fetch,
            report_only: Properties::NONE,
            trace: false,
            write_ack_timeout_ms: 1_000,
            replica_lag_max_ms: 1_000,
            silence_timeout_ms: 1_000,
            client_timeout_ms: 3_000,
            failover: Failover::Operator,
            control: ControlTimings::SERVER,
            control_bug: ControlBug::None,
            liveness_ms: 5_000,
        }
    }

    /// [`SimConfig::new`] with automatic failover.
    #[must_use]
    pub fn auto(mode: AckMode) -> SimConfig {
        SimConfig {
            failover: Failover::Auto,
            ..SimConfig::new(mode)
        }
    }

    /// Whether the control plane decides who leads.
    #[must_use]
    pub fn is_auto(&self) -> bool {
        self.failover == Failover::Auto
    }

    /// Whether a failure of `p` fails the run.
    #[must_use]
    pub fn asserts(&self, p: Property) -> bool {
        !self.report_only.contains(p)
    }

    /// Checks the sizes against their bounds.
    ///
    /// # Errors
    /// The first setting out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=NODES_MAX).contains(&self.nodes) {
            return Err(format!("nodes must be 1 to {NODES_MAX}"));
        }
        if !(1..=CLIENTS_MAX).contains(&self.clients) {
            return Err(format!("clients must be 1 to {CLIENTS_MAX}"));
        }
        if !(1..=KEYS_MAX).contains(&self.keys) {
            return Err(format!("keys must be 1 to {KEYS_MAX}"));
        }
        if self.duration_ms > DURATION_MS_MAX
            || self.quiesce_ms > DURATION_MS_MAX
            || self.liveness_ms > DURATION_MS_MAX
        {
            return Err(format!("durations must be at most {DURATION_MS_MAX} ms"));
        }
        let c = &self.control;
        if c.tick_ms == 0 || c.heartbeat_ticks == 0 || c.election_ticks <= c.heartbeat_ticks {
            return Err("control timings: tick > 0, 0 < heartbeat < election ticks".into());
        }
        Ok(())
    }
}

/// One broken property, or one finding about a property the run only reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time, ms.
    pub at_ms: u64,
    /// The property.
    pub property: Property,
    /// What happened, in one line.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {} ms: {}", self.property, self.at_ms, self.what)
    }
}

/// What one simulated run found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The acknowledgement mode, as text.
    pub mode: String,
    /// Operations acknowledged.
    pub ops_ok: u64,
    /// Operations that certainly did not happen.
    pub ops_fail: u64,
    /// Operations that may or may not have happened.
    pub ops_indeterminate: u64,
    /// Faults injected, by kind (`crash`, `partition`, `loss`, `delay`).
    pub faults: BTreeMap<String, u64>,
    /// Operator promotions.
    pub promotions: u64,
    /// What automatic failover did (empty under operator failover).
    pub auto: AutoStats,
    /// Broken properties the run asserts (at most [`VIOLATIONS_MAX`] kept).
    pub violations: Vec<Violation>,
    /// Broken properties the run only reports (at most [`VIOLATIONS_MAX`] kept).
    pub findings: Vec<Violation>,
    /// Acknowledged writes lost where the mode permits it (`async`).
    pub lost_writes_permitted: u64,
    /// Times a replication link's late end marked a follower down while a newer link of the
    /// same follower was up (the follower then counts as disconnected until it reconnects).
    pub stale_follower_downs: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time at the end, ms.
    pub end_ms: u64,
    /// FNV-1a over every event processed: equal for two runs of one seed.
    pub trace_digest: u64,
    /// The trace, when asked for.
    pub trace: Vec<String>,
}

/// What the control plane did in a run with automatic failover, and the scenarios it went
/// through (tests assert that a pinned seed still hits its scenario).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoStats {
    /// Elections applied (`Elect` commands, one per epoch).
    pub elections: u64,
    /// Elections that replaced a leader that had acknowledged writes in its epoch: failovers
    /// of a working leader (the others elect the first leader, or replace one that never
    /// got to write).
    pub failovers: u64,
    /// Failovers while the leader they replaced was running.
    pub failovers_leader_alive: u64,
    /// Failovers while the leader they replaced was running and cut off from the majority.
    pub failovers_leader_cut_off: u64,
    /// Most failovers within any 5 s (flapping leadership).
    pub failovers_max_in_5s: u64,
    /// Elections where some other member's durable log lacked an acknowledged write: a
    /// lagging replica the rule had to pass over.
    pub elections_past_lagging: u64,
    /// Leaders that had acknowledged writes, learned of their successor while running and
    /// stepped down.
    pub stepped_down: u64,
    /// Partitions that cut off a replica (not the leader).
    pub replica_partitions: u64,
    /// Replicas whose log had diverged (an old leader's tail) and was replaced by a snapshot.
    pub divergent_resyncs: u64,
    /// Replicas whose log had diverged and was cut back to the last entry it shared with its
    /// upstream (`Truncate`).
    pub divergent_truncations: u64,
    /// Entries those replicas discarded (both ways).
    pub divergent_entries: u64,
    /// Controller events by kind (`leader-lost`, `election`, `election-failed`...).
    pub events: BTreeMap<String, u64>,
    /// Failover times, ms: from a fault hitting the leader to the first write acknowledged in
    /// a newer epoch.
    pub failover_ms: Vec<u64>,
    /// The election part of those failovers, ms: from the fault to the first `Elect` of a
    /// newer epoch applied anywhere.
    pub elected_ms: Vec<u64>,
    /// Faults that hit the leader and healed before any election (no failover needed).
    pub leader_faults_ridden_out: u64,
    /// Time from the end of the faults to the first acknowledged write, ms (`None`: none).
    pub healed_write_ms: Option<u64>,
}

/// The `q`-quantile (0..=1, nearest rank) of `values`; `None` when empty.
#[must_use]
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Most violations (and findings) a report keeps.
pub const VIOLATIONS_MAX: usize = 20;

impl SimReport {
    /// Whether the run broke no asserted property.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}
