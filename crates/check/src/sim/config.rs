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
}

impl Property {
    /// Every property.
    pub const ALL: [Property; 6] = [
        Property::CommitRule,
        Property::LogMatching,
        Property::Convergence,
        Property::LostWrites,
        Property::Linearizability,
        Property::Progress,
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
pub struct Properties(u8);

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

    fn bit(p: Property) -> u8 {
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
const _: () = assert!(Property::ALL.len() <= 8);

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
    /// Operator failover: promote the most up-to-date replica while the leader is down.
    pub promote: bool,
}

impl Faults {
    /// Every fault on.
    pub const ALL: Faults = Faults {
        crash: true,
        partition: true,
        loss: true,
        delay: true,
        promote: true,
    };
    /// No fault.
    pub const NONE: Faults = Faults {
        crash: false,
        partition: false,
        loss: false,
        delay: false,
        promote: false,
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
        }
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
        if self.duration_ms > DURATION_MS_MAX || self.quiesce_ms > DURATION_MS_MAX {
            return Err(format!("durations must be at most {DURATION_MS_MAX} ms"));
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

/// Most violations (and findings) a report keeps.
pub const VIOLATIONS_MAX: usize = 20;

impl SimReport {
    /// Whether the run broke no asserted property.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}
