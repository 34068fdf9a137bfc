//! A recorded history: every operation a workload invoked, with what it asked, what came back
//! and when.
//!
//! Keys hold either registers (unique string values, so every read names the write it saw) or
//! counters (integers changed by `Incr`). Times are microseconds since the run started, on one
//! monotonic clock shared by every client.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An operation's id: its index in [`History::ops`].
pub type OpId = usize;

/// A value read or written: `None` is "the key is absent".
pub type Value = Option<String>;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// `GET key`.
    Read,
    /// `SET key value`: an unconditional write of a value never written before.
    Write {
        /// The value.
        value: String,
    },
    /// `SET key value NX`: write only when absent; the outcome says whether it did.
    WriteIfAbsent {
        /// The value.
        value: String,
    },
    /// `SET key value GET`: write and return the value it replaced, atomically.
    Swap {
        /// The value.
        value: String,
    },
    /// `INCRBY key by`: add to a counter, returning the new value.
    Incr {
        /// The amount.
        by: i64,
    },
    /// `DEL key`.
    Delete,
}

impl Call {
    /// Whether the call may change the key.
    #[must_use]
    pub fn is_write(&self) -> bool {
        !matches!(self, Call::Read)
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect (a write was acknowledged) and returned this.
    Ok {
        /// `Read`: the value read. `Swap`: the value replaced. `Incr`: the new value, as text.
        /// `WriteIfAbsent`: `Some("1")` when it wrote, `None` when the key existed.
        /// `Write`, `Delete`: `None`.
        value: Value,
    },
    /// It certainly did not take effect (the server refused it before doing anything, for
    /// example `-READONLY`, `-NOREPLICAS Not enough good replicas`, or a connection refused).
    Fail {
        /// Why.
        error: String,
    },
    /// It may or may not have taken effect: a timeout, a dropped connection after sending, or
    /// an error the server gives for a write it may have applied.
    Indeterminate {
        /// Why.
        error: String,
    },
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client (connection) that ran it; a client runs one operation at a time.
    pub client: u32,
    /// The node it was sent to (its client address).
    pub node: String,
    /// The key.
    pub key: String,
    /// What it asked.
    pub call: Call,
    /// When it was sent, µs since the run started.
    pub start_us: u64,
    /// When its reply arrived (or it was given up), µs since the run started.
    pub end_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The consistency token (`EPOCH:LSN`) of the reply, when the client asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Op {
    /// Whether it certainly took effect.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }

    /// Whether it may have taken effect: acknowledged or indeterminate.
    #[must_use]
    pub fn may_have_happened(&self) -> bool {
        !matches!(self.outcome, Outcome::Fail { .. })
    }
}

/// Something done to the cluster during the run (a fault or its end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// When, µs since the run started.
    pub at_us: u64,
    /// What: `kill`, `restart`, `pause`, `resume`, `partition`, `heal`...
    pub kind: String,
    /// The nodes it concerns.
    pub nodes: Vec<String>,
    /// On the start of a kill, pause or partition in a run with automatic failover: whether
    /// its node led when it started, as the nemesis found by asking the nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leader: bool,
}

/// A fault from its start to its end, on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultSpan {
    /// `kill`, `pause`, `partition`, `delay`, `loss` or `skew`.
    pub kind: String,
    /// The node's client address (for a partition, the node cut off).
    pub node: String,
    /// When it started, µs since the run started.
    pub start_us: u64,
    /// When it was undone.
    pub end_us: u64,
    /// Whether the node led when the fault started ([`FaultEvent::leader`]).
    pub leader: bool,
}

/// The start event of the fault that the event `end` ends (`restart` ends `kill`), if it ends
/// one.
#[must_use]
pub fn fault_start_of(end: &str) -> Option<&'static str> {
    match end {
        "restart" => Some("kill"),
        "resume" => Some("pause"),
        "heal" => Some("partition"),
        "undelay" => Some("delay"),
        "unloss" => Some("loss"),
        "unskew" => Some("skew"),
        _ => None,
    }
}

/// Pairs each fault's start with its end (`kill`/`restart`, `pause`/`resume`,
/// `partition`/`heal`, `delay`/`undelay`, `loss`/`unloss`, `skew`/`unskew`), in order of
/// start; a fault never ended lasts until `end_us`.
#[must_use]
pub fn fault_spans(h: &History, end_us: u64) -> Vec<FaultSpan> {
    let mut open: BTreeMap<(String, String), (u64, bool)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in &h.faults {
        let start = fault_start_of(&e.kind);
        for node in &e.nodes {
            match start {
                None => {
                    open.insert((e.kind.clone(), node.clone()), (e.at_us, e.leader));
                }
                Some(kind) => {
                    if let Some((at, leader)) = open.remove(&(kind.to_string(), node.clone())) {
                        out.push(FaultSpan {
                            kind: kind.to_string(),
                            node: node.clone(),
                            start_us: at,
                            end_us: e.at_us,
                            leader,
                        });
                    }
                }
            }
        }
    }
    for ((kind, node), (at, leader)) in open {
        out.push(FaultSpan {
            kind,
            node,
            start_us: at,
            end_us,
            leader,
        });
    }
    out.sort_by_key(|f| (f.start_us, f.node.clone()));
    out
}

/// A run's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Every operation, in order of invocation.
    pub ops: Vec<Op>,
    /// Faults injected, in time order.
    pub faults: Vec<FaultEvent>,
    /// The final state read from every node after the run, when it could be: node, then
    /// `(key, value)` pairs.
    pub final_reads: Vec<(String, Vec<(String, Value)>)>,
}

impl History {
    /// The operations on `key`, with their ids, in order of invocation.
    pub fn ops_on<'a>(&'a self, key: &'a str) -> impl Iterator<Item = (OpId, &'a Op)> + 'a {
        self.ops
            .iter()
            .enumerate()
            .filter(move |(_, op)| op.key == key)
    }

    /// Every key operated on, sorted, once each.
    #[must_use]
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.ops.iter().map(|op| op.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}
