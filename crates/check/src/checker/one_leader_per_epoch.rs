//! One leader per epoch: no two nodes acknowledged writes in the same epoch.

use super::verdict::{describe_op, Examples, Verdict};
use crate::history::{Call, History, Op, OpId, Outcome};
use replikv_core::replication::parse_token;
use replikv_core::Epoch;
use std::collections::BTreeMap;

/// Whether `op` was acknowledged and certainly appended a log entry, so that its token's
/// epoch is the epoch of the leader that wrote it: `SET`, `SET GET`, `INCRBY` and a `SET NX`
/// that wrote. A `DEL` of an absent key and a declined `SET NX` change nothing, and their
/// token may name an older entry, of an earlier leader.
fn appended(op: &Op) -> bool {
    match (&op.call, &op.outcome) {
        (_, Outcome::Fail { .. } | Outcome::Indeterminate { .. }) => false,
        (Call::Write { .. } | Call::Swap { .. } | Call::Incr { .. }, Outcome::Ok { .. }) => true,
        (Call::WriteIfAbsent { .. }, Outcome::Ok { value }) => value.is_some(),
        (Call::Read | Call::Delete, Outcome::Ok { .. }) => false,
    }
}

/// Checks that every epoch had one leader: for each epoch, every acknowledged write whose
/// consistency token (`EPOCH:LSN`) is in that epoch was acknowledged by the same node (the
/// node the client sent it to). Two nodes acknowledging writes in one epoch means two leaders
/// accepted writes at once, or one history was written twice. Only writes that certainly
/// appended an entry are judged, and only those with a valid token; the summary counts the
/// others.
///
/// A violation's example names the epoch, the nodes, and each node's first write in it.
#[must_use]
pub fn one_leader_per_epoch(h: &History) -> Verdict {
    // Per epoch, per node: its first acknowledged write in the epoch, by acknowledgement.
    let mut epochs: BTreeMap<Epoch, BTreeMap<&str, (u64, OpId)>> = BTreeMap::new();
    let (mut judged, mut without_token) = (0u64, 0u64);
    for (id, op) in h.ops.iter().enumerate() {
        if !appended(op) {
            continue;
        }
        let Some(position) = op
            .token
            .as_deref()
            .and_then(|t| parse_token(t.as_bytes()).ok())
        else {
            without_token += 1;
            continue;
        };
        judged += 1;
        let first = epochs
            .entry(position.epoch)
            .or_default()
            .entry(&op.node)
            .or_insert((op.end_us, id));
        *first = (*first).min((op.end_us, id));
    }
    let mut examples = Examples::default();
    let mut violations = 0u64;
    for (epoch, nodes) in &epochs {
        if nodes.len() < 2 {
            continue;
        }
        violations += 1;
        let mut firsts: Vec<(u64, OpId)> = nodes.values().copied().collect();
        firsts.sort_unstable();
        let ids: Vec<OpId> = firsts.iter().map(|&(_, id)| id).collect();
        examples.push(
            || {
                let who: Vec<String> = ids
                    .iter()
                    .map(|&id| {
                        let op = &h.ops[id];
                        format!("{} (first: {})", op.node, describe_op(op))
                    })
                    .collect();
                format!(
                    "epoch {}: writes acknowledged by {} nodes: {}",
                    epoch.0,
                    nodes.len(),
                    who.join(", ")
                )
            },
            ids.clone(),
        );
    }
    let mut summary = format!(
        "{judged} acknowledged writes in {} epochs; {violations} epochs with writes acknowledged \
         by more than one node",
        epochs.len()
    );
    if without_token > 0 {
        summary.push_str(&format!(
            "; {without_token} writes without a token not judged"
        ));
    }
    Verdict::from_violations(
        "one_leader_per_epoch",
        violations,
        summary,
        examples.into_vec(),
    )
}
