//! The versions of each key and the order the history proves between them, shared by the
//! checkers that compare what reads saw with what was written.
//!
//! A register's versions are its initial (absent) state and the state each write left; since
//! written values are unique per key, a read of a value names the write it saw. A read of
//! "absent" saw the initial state or one of the deletes. A counter's versions are its values,
//! comparable when every increment is positive (then a larger value is a newer state).
//!
//! One version is *older* than another only when the history proves it: by consistency tokens
//! when both writes carry different ones, else by real time (a write acknowledged before the
//! other was invoked). Without proof two versions are unordered and no checker complains.

use crate::history::{Call, History, Op, OpId, Outcome, Value};
use replikv_core::replication::parse_token;
use replikv_core::LogPosition;
use std::collections::HashMap;

/// A state of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Version {
    /// A register before any write: absent.
    Initial,
    /// The state a register write left: `Write`, `Swap`, `WriteIfAbsent` that wrote, `Delete`.
    Op(OpId),
    /// A counter's value (absent is 0).
    Count(i64),
}

/// The versions of every key of a history.
#[derive(Debug)]
pub(crate) struct Versions<'h> {
    h: &'h History,
    /// Each op's token, parsed; `None` when absent or malformed.
    tokens: Vec<Option<LogPosition>>,
    keys: HashMap<&'h str, KeyVersions<'h>>,
}

/// What is known about one key.
#[derive(Debug, Default)]
struct KeyVersions<'h> {
    /// Incremented and never written as a register: its reads are counter values.
    counter: bool,
    /// A counter whose increments that may have happened are all positive and which was never
    /// deleted: its values grow, so they order its states.
    counter_monotone: bool,
    /// The write that may have stored each value; `None` when two writes stored the same value
    /// (the workload promised it would not), so reads of it name no write.
    writers: HashMap<&'h str, Option<OpId>>,
    /// Acknowledged deletes, by invocation.
    deletes: Vec<OpId>,
    /// Indeterminate deletes, by invocation.
    deletes_maybe: Vec<OpId>,
    /// The longest an acknowledged delete took, µs.
    delete_duration_max_us: u64,
    /// The acknowledged increment that returned each counter value.
    increments: HashMap<i64, OpId>,
}

impl<'h> Versions<'h> {
    /// Indexes `h`.
    pub(crate) fn new(h: &'h History) -> Versions<'h> {
        let tokens = h
            .ops
            .iter()
            .map(|op| {
                op.token
                    .as_deref()
                    .and_then(|t| parse_token(t.as_bytes()).ok())
            })
            .collect();
        let mut keys: HashMap<&str, KeyVersions<'_>> = HashMap::new();
        let mut register_written: HashMap<&str, bool> = HashMap::new();
        let mut increments_positive: HashMap<&str, bool> = HashMap::new();
        for op in &h.ops {
            let register = matches!(
                op.call,
                Call::Write { .. } | Call::Swap { .. } | Call::WriteIfAbsent { .. }
            );
            *register_written.entry(&op.key).or_default() |= register;
            if let Call::Incr { by } = op.call {
                let positive = increments_positive.entry(&op.key).or_insert(true);
                *positive &= by > 0 || !op.may_have_happened();
            }
        }
        for (id, op) in h.ops.iter().enumerate() {
            let key = keys.entry(&op.key).or_default();
            if !op.may_have_happened() {
                continue;
            }
            match &op.call {
                Call::Write { value } | Call::Swap { value } => {
                    record_writer(&mut key.writers, value, id);
                }
                Call::WriteIfAbsent { value } => {
                    let declined = matches!(&op.outcome, Outcome::Ok { value: None });
                    if !declined {
                        record_writer(&mut key.writers, value, id);
                    }
                }
                Call::Delete if op.is_ok() => {
                    key.deletes.push(id);
                    let took = op.end_us.saturating_sub(op.start_us);
                    key.delete_duration_max_us = key.delete_duration_max_us.max(took);
                }
                Call::Delete => key.deletes_maybe.push(id),
                Call::Incr { .. } => {
                    if let Some(n) = ok_integer(op) {
                        key.increments.entry(n).or_insert(id);
                    }
                }
                Call::Read => {}
            }
        }
        for key in keys.values_mut() {
            key.deletes.sort_by_key(|&d| (h.ops[d].start_us, d));
            key.deletes_maybe.sort_by_key(|&d| (h.ops[d].start_us, d));
        }
        for (name, key) in &mut keys {
            let written = register_written.get(name).copied().unwrap_or(false);
            let positive = increments_positive.get(name).copied();
            key.counter = positive.is_some() && !written;
            key.counter_monotone = key.counter
                && positive == Some(true)
                && key.deletes.is_empty()
                && key.deletes_maybe.is_empty();
        }
        Versions { h, tokens, keys }
    }

    /// The op's consistency token, when it carries a valid one.
    pub(crate) fn token(&self, id: OpId) -> Option<LogPosition> {
        self.tokens.get(id).copied().flatten()
    }

    /// Whether `key` holds a counter (incremented, never written as a register).
    pub(crate) fn is_counter(&self, key: &str) -> bool {
        self.keys.get(key).is_some_and(|k| k.counter)
    }

    /// The versions a state `value` of `key`, seen by an op that returned at `at_us`, may be:
    /// one for a written value or a counter value; for "absent" on a register, the initial
    /// state and the deletes invoked before `at_us` that are not provably older than another
    /// of them (an older delete adds nothing: whatever is newer than the newer one is newer
    /// than it too). Empty when the value names no known version (never written, written
    /// twice, or a counter that can shrink).
    pub(crate) fn observed(&self, key: &str, value: &Value, at_us: u64) -> Vec<Version> {
        let Some(k) = self.keys.get(key) else {
            return Vec::new();
        };
        if k.counter {
            if !k.counter_monotone {
                return Vec::new();
            }
            return match value {
                None => vec![Version::Count(0)],
                Some(text) => text.parse().map(Version::Count).into_iter().collect(),
            };
        }
        let Some(v) = value else {
            return self.absent(k, at_us);
        };
        match k.writers.get(v.as_str()) {
            Some(Some(id)) => vec![Version::Op(*id)],
            _ => Vec::new(),
        }
    }

    /// The versions "absent" may be at `at_us`: see [`Versions::observed`].
    fn absent(&self, k: &KeyVersions<'_>, at_us: u64) -> Vec<Version> {
        let ops = &self.h.ops;
        let mut versions = vec![Version::Initial];
        let maybe = k
            .deletes_maybe
            .partition_point(|&d| ops[d].start_us < at_us);
        versions.extend(k.deletes_maybe[..maybe].iter().map(|&d| Version::Op(d)));
        let invoked = k.deletes.partition_point(|&d| ops[d].start_us < at_us);
        if let Some(&latest) = k.deletes[..invoked].last() {
            let latest_start_us = ops[latest].start_us;
            let oldest_start_us = latest_start_us.saturating_sub(k.delete_duration_max_us);
            versions.extend(
                k.deletes[..invoked]
                    .iter()
                    .rev()
                    .take_while(|&&d| ops[d].start_us >= oldest_start_us)
                    .filter(|&&d| d == latest || ops[d].end_us >= latest_start_us)
                    .map(|&d| Version::Op(d)),
            );
        }
        versions
    }

    /// The versions a read saw: [`Versions::observed`] for an acknowledged `Read`, nothing for
    /// any other op.
    pub(crate) fn read(&self, id: OpId) -> Vec<Version> {
        match self.h.ops.get(id) {
            Some(Op {
                call: Call::Read,
                outcome: Outcome::Ok { value },
                key,
                end_us,
                ..
            }) => self.observed(key, value, *end_us),
            _ => Vec::new(),
        }
    }

    /// When a version's write was invoked (0 for the initial state, and for a counter value
    /// no acknowledged increment returned): no write acknowledged before it can be newer.
    pub(crate) fn invoked_us(&self, key: &str, v: Version) -> u64 {
        let id = match v {
            Version::Initial => return 0,
            Version::Op(id) => Some(id),
            Version::Count(n) => self
                .keys
                .get(key)
                .and_then(|k| k.increments.get(&n).copied()),
        };
        id.map_or(0, |id| self.h.ops[id].start_us)
    }

    /// The version an acknowledged write created, if the checkers can name it.
    pub(crate) fn written(&self, id: OpId) -> Option<Version> {
        let op = self.h.ops.get(id)?;
        let k = self.keys.get(op.key.as_str())?;
        let Outcome::Ok { value } = &op.outcome else {
            return None;
        };
        match op.call {
            Call::Incr { .. } if k.counter_monotone => ok_integer(op).map(Version::Count),
            _ if k.counter => None,
            Call::Write { .. } | Call::Swap { .. } | Call::Delete => Some(Version::Op(id)),
            Call::WriteIfAbsent { .. } if value.is_some() => Some(Version::Op(id)),
            _ => None,
        }
    }

    /// Whether the history proves `a` is an older state than `b`.
    pub(crate) fn older(&self, a: Version, b: Version) -> bool {
        match (a, b) {
            (Version::Initial, Version::Op(_)) => true,
            (Version::Count(x), Version::Count(y)) => x < y,
            (Version::Op(x), Version::Op(y)) if x != y => match (self.token(x), self.token(y)) {
                (Some(tx), Some(ty)) if tx != ty => tx < ty,
                _ => self.h.ops[x].is_ok() && self.h.ops[x].end_us < self.h.ops[y].start_us,
            },
            _ => false,
        }
    }

    /// Whether every version in `candidates` is provably older than `b` (false when there
    /// are no candidates: an unknown state proves nothing).
    pub(crate) fn all_older(&self, candidates: &[Version], b: Version) -> bool {
        !candidates.is_empty() && candidates.iter().all(|&a| self.older(a, b))
    }

    /// Whether some version in `candidates` may reflect `w`: is `w`, or is not provably older
    /// than it (a newer write, or one concurrent with it, may have overwritten it legally).
    pub(crate) fn any_reflects(&self, candidates: &[Version], w: Version) -> bool {
        candidates.iter().any(|&c| c == w || !self.older(c, w))
    }

    /// The LSN of a version of `key` as its token tells it: 0 for the initial state, the
    /// write's (or the increment's) token otherwise, `None` when unknown.
    pub(crate) fn lsn(&self, key: &str, v: Version) -> Option<u64> {
        let id = match v {
            Version::Initial | Version::Count(0) => return Some(0),
            Version::Op(id) => id,
            Version::Count(n) => *self.keys.get(key)?.increments.get(&n)?,
        };
        self.token(id).map(|t| t.lsn.0)
    }
}

/// Notes that `id` may have stored `value`; a second writer makes the value ambiguous.
fn record_writer<'h>(writers: &mut HashMap<&'h str, Option<OpId>>, value: &'h str, id: OpId) {
    writers
        .entry(value)
        .and_modify(|w| *w = None)
        .or_insert(Some(id));
}

/// The integer an acknowledged op returned, if any.
fn ok_integer(op: &Op) -> Option<i64> {
    match &op.outcome {
        Outcome::Ok { value: Some(text) } => text.parse().ok(),
        _ => None,
    }
}
