//! Linearizability of each key's history: a Wing–Gong–Lowe search with memoisation, as
//! Porcupine and Knossos do it ([`super::search`]), against the register model
//! ([`super::register`]).
//!
//! Each operation is an interval from its invocation to its reply, and must take effect at one
//! instant inside it (Herlihy and Wing). Failed operations are dropped; indeterminate ones may
//! take effect at any instant after their invocation, or never. Ties in time count as
//! overlapping (invocations sort before replies at the same microsecond).

use super::register::{Interner, Step};
use super::search::{search, KeyOp, SearchEnd};
use super::verdict::{describe_op, Examples, Status, Verdict, EXAMPLES_MAX};
use crate::history::{Call, History, OpId, Outcome};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most memory, roughly, the memo of one key's search may take; past it the search forgets
/// the configurations furthest behind (which costs time, never correctness).
pub const MEMO_BYTES_MAX: usize = 256 << 20;

/// How many placed operations an example shows before the one that cannot be placed.
const EXAMPLE_CONTEXT_OPS: usize = 4;

/// Checks that each key's history is linearizable with respect to a single Redis string (see
/// the register model in the [module docs](super)); keys are independent, so the whole
/// history is linearizable exactly when every key's is.
///
/// Keys are searched smallest first, each within a fair share of what is left of `budget`
/// (time a key does not use passes to the keys after it); a key whose search runs out of time
/// is unknown. The status is `Fail` when any key is not linearizable, else `Unknown` when any
/// key is unknown, else `Pass`. `violations` counts the keys that are not linearizable; each
/// gets an example naming the operation the search could not place and the last operations
/// placed before it, and each unknown key an example without operations.
///
/// The search handles long histories when few operations are indeterminate: in tests, 150,000
/// operations on one key from 10 clients, 0.1% of them indeterminate, take about 5 s (release
/// build). Every indeterminate operation stays a candidate for the rest of its key's history,
/// so a key with hundreds of them may come out unknown; more keys with fewer operations each
/// help (Jepsen's "independent" keys).
#[must_use]
pub fn linearizability(h: &History, budget: Duration) -> Verdict {
    let started = Instant::now();
    let deadline = started.checked_add(budget);
    let mut keys: Vec<(&str, Vec<OpId>)> = h
        .keys()
        .into_iter()
        .map(|key| (key, h.ops_on(key).map(|(id, _)| id).collect()))
        .collect();
    keys.sort_by_key(|(key, ids)| (ids.len(), *key));
    let mut examples = Examples::default();
    let mut unknown_examples = Vec::new();
    let (mut failed, mut unknown) = (0_u64, 0_u64);
    let total = keys.len();
    for (done, (key, ids)) in keys.into_iter().enumerate() {
        let now = Instant::now();
        let key_deadline = deadline.map(|d| {
            let left = u32::try_from(total - done).unwrap_or(u32::MAX);
            now + d.saturating_duration_since(now) / left
        });
        match check_key(h, &ids, key_deadline) {
            KeyResult::Linearizable => {}
            KeyResult::Violation { stuck, placed } => {
                failed += 1;
                let context = placed.len().saturating_sub(EXAMPLE_CONTEXT_OPS);
                let mut ops = placed[context..].to_vec();
                ops.push(stuck);
                examples.push(
                    || {
                        format!(
                            "{key}: not linearizable: after {} of its operations are placed, \
                             op {stuck} ({}) cannot take effect before it returned",
                            placed.len(),
                            describe_op(&h.ops[stuck])
                        )
                    },
                    ops,
                );
            }
            KeyResult::Unknown => {
                unknown += 1;
                if unknown_examples.len() < EXAMPLES_MAX {
                    unknown_examples.push((key, ids.len()));
                }
            }
        }
    }
    for (key, ops) in unknown_examples {
        examples.push(
            || format!("{key}: unknown: the search of its {ops} operations ran out of time"),
            Vec::new(),
        );
    }
    let status = if failed > 0 {
        Status::Fail
    } else if unknown > 0 {
        Status::Unknown
    } else {
        Status::Pass
    };
    let summary = format!(
        "{total} keys: {} linearizable, {failed} not, {unknown} unknown (budget {budget:?}, \
         took {:?})",
        total as u64 - failed - unknown,
        started.elapsed()
    );
    let mut verdict =
        Verdict::from_violations("linearizability", failed, summary, examples.into_vec());
    verdict.status = status;
    verdict
}

/// How one key's search ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyResult {
    /// A linearization exists.
    Linearizable,
    /// None exists. The deepest the search got: the operations it had placed, in order, and
    /// the one whose reply it then reached without being able to place it.
    Violation {
        /// The operation that could not be placed.
        stuck: OpId,
        /// The operations placed before it, in linearization order.
        placed: Vec<OpId>,
    },
    /// The search ran out of time before deciding.
    Unknown,
}

/// Searches for a linearization of the operations `ids` (all on one key) of `h`, giving up at
/// `deadline` (never when `None`).
///
/// Before the search, failed operations and indeterminate reads are dropped, and an
/// indeterminate write whose value (written by no other operation) some acknowledged
/// operation returned is made required: it certainly took effect, before the earliest reply
/// that returned its value. This is exact, and it keeps writes that timed out but were
/// applied from staying optional for the rest of the history.
pub(crate) fn check_key(h: &History, ids: &[OpId], deadline: Option<Instant>) -> KeyResult {
    let mut interner = Interner::default();
    // Per value: how many operations may have written it, and the earliest reply returning it.
    let mut writers: HashMap<&str, u32> = HashMap::new();
    let mut seen_by_us: HashMap<&str, u64> = HashMap::new();
    for &id in ids {
        let op = &h.ops[id];
        match (&op.call, &op.outcome) {
            (_, Outcome::Fail { .. })
            | (Call::WriteIfAbsent { .. }, Outcome::Ok { value: None }) => {}
            (Call::Write { value } | Call::Swap { value } | Call::WriteIfAbsent { value }, _) => {
                *writers.entry(value).or_default() += 1;
            }
            _ => {}
        }
        if let (Call::Read | Call::Swap { .. }, Outcome::Ok { value: Some(v) }) =
            (&op.call, &op.outcome)
        {
            let earliest = seen_by_us.entry(v).or_insert(op.end_us);
            *earliest = (*earliest).min(op.end_us);
        }
    }
    let mut ops: Vec<KeyOp> = Vec::with_capacity(ids.len());
    let mut op_ids: Vec<OpId> = Vec::with_capacity(ids.len());
    for &id in ids {
        let op = &h.ops[id];
        let Some(mut step) = Step::of(op, &mut interner) else {
            continue;
        };
        let end_us = if op.is_ok() {
            Some(op.end_us)
        } else {
            let written = match &op.call {
                Call::Write { value } | Call::Swap { value } | Call::WriteIfAbsent { value } => {
                    Some(value.as_str())
                }
                _ => None,
            };
            let seen = written
                .filter(|v| writers.get(v) == Some(&1))
                .and_then(|v| seen_by_us.get(v).copied());
            if let (Some(_), Step::WriteIfAbsent { value, .. }) = (seen, step) {
                step = Step::WriteIfAbsent {
                    value,
                    wrote: Some(true),
                };
            }
            seen
        };
        ops.push(KeyOp {
            step,
            start_us: op.start_us,
            end_us: end_us.map(|e| e.max(op.start_us)),
        });
        op_ids.push(id);
    }
    match search(&ops, deadline, MEMO_BYTES_MAX) {
        SearchEnd::Linearizable => KeyResult::Linearizable,
        SearchEnd::Violation { stuck, placed } => KeyResult::Violation {
            stuck: op_ids[stuck],
            placed: placed.into_iter().map(|i| op_ids[i]).collect(),
        },
        SearchEnd::OutOfTime => KeyResult::Unknown,
    }
}
