//! Lost acknowledged writes: writes the cluster acknowledged and then forgot.

use super::verdict::{Examples, Verdict};
use super::versions::{Version, Versions};
use crate::history::{Call, History, OpId, Outcome, Value};
use std::collections::HashMap;

/// How many of a short counter's increments an example names.
const COUNTER_EXAMPLE_OPS_MAX: usize = 5;

/// Finds acknowledged writes that the rest of the history does not reflect.
///
/// A register write is one of `Write`, `Swap` or a `WriteIfAbsent` that wrote, acknowledged
/// (`Outcome::Ok`). A state of its key **reflects** it when the state is its own value or
/// any state not provably older (see the module docs on version order): a later or concurrent
/// write may have overwritten it legally, and "absent" reflects it when some delete may be
/// newer. The write is **lost** when:
/// - the key's final state ([`History::final_reads`]) is known on at least one node and
///   reflects it on none: the write is gone, whatever reads saw before (a node whose final
///   read does not list the key says nothing about it); or
/// - no node's final state lists the key, and there were acknowledged reads of the key (or
///   `Swap`s, whose returned value is the state they replaced) that completed after the
///   write's acknowledgement, none reflecting it. Without a final state this cannot tell a
///   lost write from reads that all went to lagging replicas; the summary says how many were
///   judged this way.
///
/// A write with neither a final state nor a later read is *unverified*, not lost.
///
/// A counter (a key only ever incremented) is short when the largest final value over the
/// nodes that list it is less than the least value the increments guarantee: the sum of the
/// acknowledged increments plus the negative indeterminate ones. Each short counter is one
/// violation; the summary gives the missing units. Counters that were deleted, and counters
/// without a final state, are skipped.
#[must_use]
pub fn lost_writes(h: &History) -> Verdict {
    let versions = Versions::new(h);
    let finals = final_values(h);
    let observations = observations(h, &versions);
    let mut examples = Examples::default();
    let (mut acked, mut lost, mut lost_by_reads, mut unverified) = (0_u64, 0_u64, 0_u64, 0_u64);
    for (id, op) in h.ops.iter().enumerate() {
        let value = match &op.call {
            Call::Write { value } | Call::Swap { value } | Call::WriteIfAbsent { value } => value,
            _ => continue,
        };
        let Some(written) = versions.written(id) else {
            continue;
        };
        acked += 1;
        let later: &[Observation] = observations.get(op.key.as_str()).map_or(&[], |obs| {
            &obs[obs.partition_point(|o| o.end_us <= op.end_us)..]
        });
        let reflects = |o: &&Observation| o.op != id && versions.any_reflects(&o.versions, written);
        let Some(on_nodes) = finals.get(op.key.as_str()) else {
            if later.is_empty() {
                unverified += 1;
                continue;
            }
            if later.iter().any(|o| reflects(&o)) {
                continue;
            }
            lost += 1;
            lost_by_reads += 1;
            let last = later.iter().map(|o| o.op).rfind(|&r| r != id);
            examples.push(
                || {
                    format!(
                        "{}: the acknowledged write of {value:?} (op {id}) is reflected by none \
                         of the {} reads after it, and no node's final state lists the key",
                        op.key,
                        later.len()
                    )
                },
                std::iter::once(id).chain(last).collect(),
            );
            continue;
        };
        let kept = on_nodes
            .iter()
            .any(|(_, value)| versions.any_reflects(&at_end(&versions, &op.key, value), written));
        if kept {
            continue;
        }
        lost += 1;
        let seen_later = later.iter().filter(reflects).count();
        let mut ops = vec![id];
        ops.extend(on_nodes.iter().filter_map(|(_, value)| {
            match at_end(&versions, &op.key, value).as_slice() {
                [Version::Op(w)] => Some(*w),
                _ => None,
            }
        }));
        ops.dedup();
        examples.push(
            || {
                format!(
                    "{}: the acknowledged write of {value:?} (op {id}), seen by {seen_later} \
                     later reads, is gone: the final value is {}",
                    op.key,
                    describe_finals(on_nodes)
                )
            },
            ops,
        );
    }
    let counters = counters(h, &versions, &finals, &mut examples);
    let violations = lost + counters.short;
    let summary = format!(
        "{lost} of {acked} acknowledged register writes lost ({lost_by_reads} judged by reads \
         alone, without a final state), {} increment units missing from {} of {} counters; \
         {} writes unverifiable (no final state or later read of their key)",
        counters.units_missing,
        counters.short,
        counters.checked,
        unverified + counters.unverified,
    );
    Verdict::from_violations("lost_writes", violations, summary, examples.into_vec())
}

/// A state some op saw after the fact.
struct Observation {
    op: OpId,
    end_us: u64,
    versions: Vec<Version>,
}

/// Per key, the states acknowledged reads and swaps saw, ordered by completion.
fn observations<'h>(h: &'h History, versions: &Versions<'_>) -> HashMap<&'h str, Vec<Observation>> {
    let mut by_key: HashMap<&str, Vec<Observation>> = HashMap::new();
    for (id, op) in h.ops.iter().enumerate() {
        let Outcome::Ok { value } = &op.outcome else {
            continue;
        };
        if !matches!(op.call, Call::Read | Call::Swap { .. }) {
            continue;
        }
        by_key.entry(&op.key).or_default().push(Observation {
            op: id,
            end_us: op.end_us,
            versions: versions.observed(&op.key, value, op.end_us),
        });
    }
    for obs in by_key.values_mut() {
        obs.sort_by_key(|o| (o.end_us, o.op));
    }
    by_key
}

/// The versions a final value may be: read after every operation.
fn at_end(versions: &Versions<'_>, key: &str, value: &Value) -> Vec<Version> {
    versions.observed(key, value, u64::MAX)
}

/// Per key, its final value on every node whose final read lists it.
fn final_values(h: &History) -> HashMap<&str, Vec<(&str, &Value)>> {
    let mut by_key: HashMap<&str, Vec<(&str, &Value)>> = HashMap::new();
    for (node, pairs) in &h.final_reads {
        for (key, value) in pairs {
            by_key.entry(key).or_default().push((node, value));
        }
    }
    by_key
}

/// `"x" on n1, absent on n2`.
fn describe_finals(on_nodes: &[(&str, &Value)]) -> String {
    on_nodes
        .iter()
        .map(|(node, value)| match value {
            Some(v) => format!("{v:?} on {node}"),
            None => format!("absent on {node}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the counter check found.
#[derive(Debug, Default)]
struct CounterFindings {
    /// Counters with a final value to compare.
    checked: u64,
    /// Counters whose final value is below what their acknowledged increments guarantee.
    short: u64,
    /// Units missing, summed over the short counters.
    units_missing: u128,
    /// Acknowledged increments of counters without a final read.
    unverified: u64,
}

/// Compares every counter's final value with the increments acknowledged on it.
fn counters(
    h: &History,
    versions: &Versions<'_>,
    finals: &HashMap<&str, Vec<(&str, &Value)>>,
    examples: &mut Examples,
) -> CounterFindings {
    let mut found = CounterFindings::default();
    for key in h.keys() {
        if !versions.is_counter(key) {
            continue;
        }
        let mut guaranteed = 0_i128;
        let mut acked = Vec::new();
        let mut deleted = false;
        for (id, op) in h.ops_on(key) {
            match (&op.call, &op.outcome) {
                (Call::Incr { by }, Outcome::Ok { .. }) => {
                    guaranteed += i128::from(*by);
                    acked.push(id);
                }
                (Call::Incr { by }, Outcome::Indeterminate { .. }) => {
                    guaranteed += i128::from((*by).min(0));
                }
                (Call::Delete, _) if op.may_have_happened() => deleted = true,
                _ => {}
            }
        }
        if deleted {
            continue;
        }
        let Some(on_nodes) = finals.get(key) else {
            found.unverified += acked.len() as u64;
            continue;
        };
        found.checked += 1;
        let best = on_nodes
            .iter()
            .filter_map(|(_, value)| match value {
                None => Some(0),
                Some(text) => text.parse::<i64>().ok().map(i128::from),
            })
            .max();
        let missing = best.map_or(guaranteed.max(0), |b| guaranteed - b);
        if missing <= 0 {
            continue;
        }
        found.short += 1;
        found.units_missing += missing.unsigned_abs();
        let shown = acked.len().saturating_sub(COUNTER_EXAMPLE_OPS_MAX);
        examples.push(
            || {
                format!(
                    "{key}: acknowledged increments add up to at least {guaranteed}, but the \
                     final value is {} ({missing} units missing)",
                    describe_finals(on_nodes)
                )
            },
            acked[shown..].to_vec(),
        );
    }
    found
}
