//! Stale reads: reads that returned a state older than one already acknowledged, and by how
//! much.

use super::verdict::{describe_op, Examples, Status, Verdict};
use super::versions::{Version, Versions};
use crate::history::{Call, History, OpId, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How stale the reads of a history were.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Staleness {
    /// Reads that returned a state older than a write acknowledged before they were invoked.
    pub stale_reads: u64,
    /// Acknowledged reads whose state names a version (the ones this measures).
    pub reads: u64,
    /// The largest staleness in LSN: how far the newest such write's log entry is past the
    /// entry of the state read, by their tokens; 0 when no stale read has both tokens.
    pub max_lsn: u64,
    /// The largest staleness in milliseconds: the read's invocation minus the acknowledgement
    /// of the first write it missed.
    pub max_ms: f64,
    /// The 99th percentile (nearest rank) of the staleness in milliseconds over all `reads`,
    /// a fresh read counting 0.
    pub p99_ms: f64,
}

/// Measures stale reads: a read is stale when everything it may have seen is provably older
/// (see the module docs on version order) than some write of the key acknowledged before the
/// read was invoked. Writes acknowledged before the write of the state read was invoked are
/// taken as older without looking at their tokens (which a correct log cannot contradict).
///
/// Its staleness in milliseconds is its invocation minus the acknowledgement of the earliest
/// acknowledged of those newer writes. Its staleness in LSN is the largest token LSN of those
/// writes minus the LSN of the state read: the token of the write that stored it (0 for the
/// initial state), or, when that is unknown, the read's own token; it is not measured when
/// neither is known.
///
/// Stale reads are legal in most modes, so the verdict's status is always `Pass` and
/// `violations` counts the stale reads; the caller decides (see [`super::check_all`]).
#[must_use]
pub fn stale_reads(h: &History) -> (Verdict, Staleness) {
    let versions = Versions::new(h);
    let mut acked: HashMap<&str, Vec<(u64, OpId, Version)>> = HashMap::new();
    for (id, op) in h.ops.iter().enumerate() {
        if let Some(written) = versions.written(id) {
            acked
                .entry(&op.key)
                .or_default()
                .push((op.end_us, id, written));
        }
    }
    // Per key: acknowledged writes by acknowledgement, and the largest token LSN up to each.
    let mut newest_lsn_upto: HashMap<&str, Vec<Option<u64>>> = HashMap::new();
    for (key, writes) in &mut acked {
        writes.sort_unstable_by_key(|&(end_us, id, _)| (end_us, id));
        let mut newest = None;
        let upto = writes
            .iter()
            .map(|&(_, _, written)| {
                newest = newest.max(versions.lsn(key, written));
                newest
            })
            .collect();
        newest_lsn_upto.insert(key, upto);
    }
    let mut examples = Examples::default();
    let mut found = Staleness::default();
    let mut all_ms = Vec::new();
    for (id, op) in h.ops.iter().enumerate() {
        if !matches!((&op.call, &op.outcome), (Call::Read, Outcome::Ok { .. })) {
            continue;
        }
        let observed = versions.read(id);
        if observed.is_empty() {
            continue;
        }
        found.reads += 1;
        let key = op.key.as_str();
        let writes = acked.get(key).map_or(&[][..], Vec::as_slice);
        let before = writes.partition_point(|&(end_us, _, _)| end_us < op.start_us);
        let mut first_missed: Option<(u64, OpId)> = None;
        let mut newest_lsn: Option<u64> = None;
        if observed == [Version::Initial] {
            // Every write is newer than the initial state.
            first_missed = writes[..before].first().map(|&(end_us, w, _)| (end_us, w));
            newest_lsn = before
                .checked_sub(1)
                .and_then(|last| newest_lsn_upto.get(key)?[last]);
        } else {
            // A write acknowledged before the state read was invoked is not newer.
            let since_us = observed
                .iter()
                .filter(|&&v| v != Version::Initial)
                .map(|&v| versions.invoked_us(key, v))
                .min()
                .unwrap_or(0);
            let since = writes[..before].partition_point(|&(end_us, _, _)| end_us < since_us);
            for &(end_us, w, written) in &writes[since..before] {
                if !versions.all_older(&observed, written) {
                    continue;
                }
                if first_missed.is_none() {
                    first_missed = Some((end_us, w));
                }
                newest_lsn = newest_lsn.max(versions.lsn(key, written));
            }
        }
        let Some((missed_end_us, missed)) = first_missed else {
            all_ms.push(0.0);
            continue;
        };
        found.stale_reads += 1;
        let ms = op.start_us.saturating_sub(missed_end_us) as f64 / 1000.0;
        all_ms.push(ms);
        found.max_ms = found.max_ms.max(ms);
        let read_lsn = match observed.as_slice() {
            [only] => versions.lsn(&op.key, *only),
            _ => None,
        }
        .or_else(|| versions.token(id).map(|t| t.lsn.0));
        let behind_lsn = newest_lsn.zip(read_lsn).map(|(n, r)| n.saturating_sub(r));
        found.max_lsn = found.max_lsn.max(behind_lsn.unwrap_or(0));
        examples.push(
            || {
                let lsn = behind_lsn.map_or(String::new(), |l| format!(", {l} LSN behind"));
                format!(
                    "{}: {} (op {id}) is stale by {ms} ms{lsn}: {} (op {missed}) was acknowledged \
                     before it",
                    op.key,
                    describe_op(op),
                    describe_op(&h.ops[missed])
                )
            },
            vec![missed, id],
        );
    }
    found.p99_ms = percentile_99(&mut all_ms);
    let summary = format!(
        "{} of {} reads stale; most stale {} LSN, {} ms; p99 {} ms",
        found.stale_reads, found.reads, found.max_lsn, found.max_ms, found.p99_ms
    );
    let mut verdict = Verdict::from_violations(
        "stale_reads",
        found.stale_reads,
        summary,
        examples.into_vec(),
    );
    verdict.status = Status::Pass;
    (verdict, found)
}

/// The nearest-rank 99th percentile; 0 for no values.
fn percentile_99(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = (values.len() * 99).div_ceil(100);
    values[rank.max(1) - 1]
}
